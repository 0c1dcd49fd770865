"""PEFT's LoRA training run on each tiny checkpoint: the reference axl's trainer must reproduce.

Needs make_models.py's output. Writes, for each arch, in <out>/<arch>/:
  adapter_init/            the randomly initialised adapter (init_lora_weights=False: B != 0)
  adapter_final/           the adapter after TRAIN_STEPS AdamW steps
  peft_ref.safetensors     init_logits / final_logits [B,T,V] of the PEFT model on ref tokens
  train_batches.safetensors tokens / labels [STEPS,B,T] int32
  oracle.json              settings of the run; per step loss, pre-clip grad norm, tokens; and
                           how far the trained adapter moves without weight decay / clipping
                           (each must exceed twice common.ADAPTER_TOLERANCE, or the run fails)

Training starts from the saved adapter_init, as axl's does. The loss is transformers' own
(model(input_ids, labels=labels).loss): labels shifted inside, cross-entropy averaged over the
targets that are not -100.
"""
import argparse
import math
import os

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file, save_file

import common


def global_grad_norm(params) -> float:
    return math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params if p.grad is not None))


def train(arch_dir: str, tokens: torch.Tensor, labels: torch.Tensor, weight_decay: float, max_grad_norm: float):
    """TRAIN_STEPS AdamW steps from adapter_init; returns the PEFT model and per-step records."""
    opt = common.OPTIMIZER
    model = PeftModel.from_pretrained(common.load_base(arch_dir), os.path.join(arch_dir, "adapter_init"),
                                      is_trainable=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"],
                                  weight_decay=weight_decay)
    model.train()
    steps = []
    for s in range(tokens.shape[0]):
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=tokens[s], labels=labels[s]).loss
        loss.backward()
        grad_norm = global_grad_norm(params)
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        num_tokens = int((labels[s][:, 1:] != -100).sum())
        steps.append(dict(loss=loss.item(), grad_norm=grad_norm, num_tokens=num_tokens))
    return model, steps


def max_adapter_difference(a, b) -> float:
    sa, sb = get_peft_model_state_dict(a), get_peft_model_state_dict(b)
    return max((sa[k] - sb[k]).abs().max().item() for k in sa)


def run(arch: str, spec: dict, arch_dir: str) -> None:
    lora = spec["lora"]
    opt = common.OPTIMIZER
    max_grad_norm = spec["max_grad_norm"]

    base = common.load_base(arch_dir)
    torch.manual_seed(common.arch_seed(arch, "lora_init"))
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=lora["r"],
        lora_alpha=lora["lora_alpha"],
        target_modules=lora["target_modules"],
        use_rslora=lora["use_rslora"],
        use_dora=lora["use_dora"],
        lora_dropout=0.0,
        init_lora_weights=False,
    )
    model = get_peft_model(base, config)
    model.save_pretrained(os.path.join(arch_dir, "adapter_init"))

    ref_tokens = load_file(os.path.join(arch_dir, "ref.safetensors"))["tokens"].long()
    model.eval()
    with torch.no_grad():
        init_logits = model(input_ids=ref_tokens).logits.float().contiguous()

    shape = (common.TRAIN_STEPS, common.BATCH, common.SEQ)
    tokens = common.make_tokens(arch, "train", shape)
    labels = torch.stack([common.make_labels(arch, f"train/{s}", tokens[s]) for s in range(shape[0])])

    model, steps = train(arch_dir, tokens, labels, opt["weight_decay"], max_grad_norm)
    if arch == "llama":
        assert all(step["grad_norm"] > max_grad_norm for step in steps), "clipping must act on every step"

    # The oracle must be able to see the features it claims to test: a trainer that skipped
    # weight decay (or clipping) has to land further from the reference than the tolerance.
    sensitivity = {"no_weight_decay": max_adapter_difference(model, train(arch_dir, tokens, labels, 0.0,
                                                                           max_grad_norm)[0])}
    if max_grad_norm > 0:
        sensitivity["no_clipping"] = max_adapter_difference(model, train(arch_dir, tokens, labels,
                                                                         opt["weight_decay"], 0.0)[0])
    for what, difference in sensitivity.items():
        assert difference > 2 * common.ADAPTER_TOLERANCE, (
            f"{arch}: {what} moves the trained adapter by only {difference:.2e}; the adapter tolerance "
            f"{common.ADAPTER_TOLERANCE:g} could not detect it")

    model.save_pretrained(os.path.join(arch_dir, "adapter_final"))
    model.eval()
    with torch.no_grad():
        final_logits = model(input_ids=ref_tokens).logits.float().contiguous()

    save_file({"init_logits": init_logits, "final_logits": final_logits},
              os.path.join(arch_dir, "peft_ref.safetensors"))
    save_file({"tokens": tokens.to(torch.int32).contiguous(), "labels": labels.to(torch.int32).contiguous()},
              os.path.join(arch_dir, "train_batches.safetensors"))
    target_modules = lora["target_modules"]
    common.write_json(os.path.join(arch_dir, "oracle.json"), dict(
        arch=arch,
        save_dtype=spec["save_dtype"],
        sharded=bool(spec["max_shard_size"]),
        lora=dict(r=lora["r"], alpha=lora["lora_alpha"], use_rslora=lora["use_rslora"],
                  use_dora=lora["use_dora"],
                  target_modules=target_modules if isinstance(target_modules, str) else ",".join(target_modules)),
        optimizer=dict(opt, max_grad_norm=max_grad_norm),
        steps=steps,
        sensitivity=sensitivity,
    ))
    print(f"peft_reference: {arch}: losses {[round(s['loss'], 6) for s in steps]}, "
          f"grad norms {[round(s['grad_norm'], 4) for s in steps]}, "
          f"sensitivity {', '.join(f'{k} {v:.2e}' for k, v in sensitivity.items())}")


def main(out: str) -> None:
    for arch, spec in common.ARCHS.items():
        run(arch, spec, os.path.join(out, arch))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    main(parser.parse_args().out)
