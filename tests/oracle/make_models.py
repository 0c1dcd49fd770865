"""Writes a tiny random checkpoint per architecture and the logits transformers computes on it.

Output, for each arch in common.ARCHS, in <out>/<arch>/:
  config.json, model.safetensors (or model-0000k-of-0000n.safetensors + the index)
  ref.safetensors   tokens [B,T] int32, logits [B,T,V] f32 (transformers, eager, fp32)

The reference logits come from the checkpoint as transformers reads it back from disk, so
they describe exactly the files axl loads (for the bf16 checkpoint: bf16 weights, fp32 math).
"""
import argparse
import os

import torch
import transformers
from safetensors.torch import save_file

import common


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Replaces every parameter with random values: no zero biases, no all-ones norms."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            elif "embed_tokens" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(noise / p.shape[-1] ** 0.5)


def make_model(arch: str, spec: dict, arch_dir: str) -> None:
    config_class = getattr(transformers, spec["config_class"])
    config = config_class(**common.COMMON_CONFIG, **spec["config"])
    torch.manual_seed(common.arch_seed(arch, "construct"))
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    randomize_(model, common.arch_seed(arch, "weights"))
    if spec["save_dtype"] == "bfloat16":
        model = model.to(torch.bfloat16)
    save_kwargs = {}
    if spec["max_shard_size"]:
        save_kwargs["max_shard_size"] = spec["max_shard_size"]
    model.save_pretrained(arch_dir, **save_kwargs)

    if spec["max_shard_size"]:
        assert os.path.exists(os.path.join(arch_dir, "model.safetensors.index.json")), "not sharded"
    else:
        assert os.path.exists(os.path.join(arch_dir, "model.safetensors"))

    base = common.load_base(arch_dir)
    tokens = common.make_tokens(arch, "ref", (common.BATCH, common.SEQ))
    with torch.no_grad():
        logits = base(input_ids=tokens).logits.float()
    assert logits.abs().max() > 0
    save_file({"tokens": tokens.to(torch.int32).contiguous(), "logits": logits.contiguous()},
              os.path.join(arch_dir, "ref.safetensors"))


def main(out: str) -> None:
    for arch, spec in common.ARCHS.items():
        arch_dir = os.path.join(out, arch)
        os.makedirs(arch_dir, exist_ok=True)
        make_model(arch, spec, arch_dir)
        print(f"make_models: {arch} -> {arch_dir}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    main(parser.parse_args().out)
