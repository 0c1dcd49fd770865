"""Quantized base models against transformers + bitsandbytes (CPU).

  generate --out DIR   writes
    DIR/plain/             a tiny random Llama checkpoint in bf16 (config.json, model.safetensors)
    DIR/bnb_nf4_dq/        the same model quantized by transformers + bitsandbytes on load
    DIR/bnb_fp4/           (BitsAndBytesConfig: nf4 with double quant, fp4, LLM.int8) and saved
    DIR/bnb_int8/          with save_pretrained: the files a user brings to axl
    DIR/reference.safetensors
                           tokens [B,T] int32 and, per variant, the logits of transformers'
                           Llama in float32 with each quantized linear replaced by bitsandbytes'
                           own dequantization of its weight (dequantize_4bit /
                           int8_vectorwise_dequant). bitsandbytes' CPU matmul kernels round
                           through bf16, so the quantized model's own forward is no f32 reference.
  verify --data DIR --axl OUT
    loads OUT/merged (axl_lora_merge_and_export of an adapter trained over DIR/bnb_nf4_dq) with
    transformers and checks its logits against axl's, OUT/axl_logits.safetensors.

axl's side (tests/api/bnb_oracle_test.cpp) checks that each saved bitsandbytes model gives the
same logits as axl's own quantize-on-load of DIR/plain, and those logits against transformers'.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

transformers.utils.logging.disable_progress_bar()

BATCH, SEQ, VOCAB = 2, 16, 128
SEED = 20240611

CONFIG = dict(
    vocab_size=VOCAB,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
)

VARIANTS = {
    "bnb_nf4_dq": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True),
    "bnb_fp4": dict(load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=False),
    "bnb_int8": dict(load_in_8bit=True),
}


def randomize_(model: torch.nn.Module) -> None:
    """Random weights at the usual scale: norms near 1, linears ~ 1/sqrt(fan_in), with outliers."""
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif "embed_tokens" in name:
                p.copy_(0.5 * noise)
            else:
                outliers = (torch.rand(p.shape, generator=g) < 0.01).float() * 4.0
                p.copy_(noise * (1.0 + outliers) / p.shape[-1] ** 0.5)


def tokens() -> torch.Tensor:
    g = torch.Generator().manual_seed(SEED + 1)
    return torch.randint(0, VOCAB, (BATCH, SEQ), generator=g, dtype=torch.int32)


def quantization_config(variant: str) -> transformers.BitsAndBytesConfig:
    return transformers.BitsAndBytesConfig(bnb_4bit_compute_dtype=torch.float32, **VARIANTS[variant])


def dequantized_(model: torch.nn.Module) -> None:
    """Replaces each bitsandbytes linear by an nn.Linear holding bitsandbytes' dequantized weight."""
    import bitsandbytes as bnb

    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, bnb.nn.Linear4bit):
                weight = bnb.functional.dequantize_4bit(child.weight.data, child.weight.quant_state)
            elif isinstance(child, bnb.nn.Linear8bitLt):
                weight = bnb.functional.int8_vectorwise_dequant(child.weight.data, child.weight.SCB)
            else:
                continue
            linear = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
            linear.weight.data = weight.float().reshape(child.out_features, child.in_features)
            if child.bias is not None:
                linear.bias.data = child.bias.data.float()
            setattr(module, child_name, linear)


def generate(out: str) -> None:
    plain = os.path.join(out, "plain")
    config = transformers.LlamaConfig(**CONFIG)
    model = transformers.LlamaForCausalLM(config).to(torch.float32)
    randomize_(model)
    model.to(torch.bfloat16).save_pretrained(plain)

    reference = {"tokens": tokens()}
    for variant in VARIANTS:
        # As a user would: load the bf16 checkpoint quantized, save it.
        quantized = transformers.AutoModelForCausalLM.from_pretrained(
            plain, quantization_config=quantization_config(variant), device_map="cpu")
        quantized.save_pretrained(os.path.join(out, variant))
        saved = json.load(open(os.path.join(out, variant, "config.json")))["quantization_config"]
        assert saved["quant_method"] == "bitsandbytes", saved
        # The reference logits: the same quantization of the same (bf16) values, all math in f32.
        f32 = transformers.AutoModelForCausalLM.from_pretrained(
            plain, quantization_config=quantization_config(variant), device_map="cpu",
            dtype=torch.float32)
        dequantized_(f32)
        with torch.no_grad():
            logits = f32(input_ids=reference["tokens"].long()).logits.float()
        reference[f"logits_{variant}"] = logits.contiguous()
    save_file(reference, os.path.join(out, "reference.safetensors"))
    print(f"bnb_model_oracle: wrote {', '.join(['plain', *VARIANTS])} and reference logits to {out}")


def verify(data: str, axl_out: str) -> int:
    axl = load_file(os.path.join(axl_out, "axl_logits.safetensors"))
    merged = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.join(axl_out, "merged"), dtype=torch.float32)
    assert next(merged.parameters()).dtype == torch.float32
    with torch.no_grad():
        logits = merged(input_ids=axl["tokens"].long()).logits.float()
    want = axl["logits"]
    deviation = (logits - want).abs().max().item() / want.abs().max().item()
    base = axl["base_logits"]
    adapter_effect = (want - base).abs().max().item() / want.abs().max().item()
    print(f"bnb_model_oracle verify: transformers on the merged export vs axl with the adapter: "
          f"max relative deviation {deviation:.2e} (adapter moved logits by {adapter_effect:.2e})")
    # The export is bf16: each merged weight is rounded to 8 bits of mantissa.
    ok = deviation < 2e-2 and adapter_effect > 5 * deviation
    if not ok:
        print("bnb_model_oracle verify: FAILED", file=sys.stderr)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--out", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--data", required=True)
    v.add_argument("--axl", required=True)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    if args.command == "generate":
        generate(args.out)
        return 0
    return verify(args.data, args.axl)


if __name__ == "__main__":
    sys.exit(main())
