"""ctest oracle_verify: PEFT reads the adapters axl trained and reproduces axl's logits.

For each arch, oracle_axl (tests/api/oracle_test.cpp) left in <axl>/<arch>/:
  adapter_trained/            written by axl_lora_save
  trained_logits.safetensors  "logits" [B,T,V]: axl_model_forward with that adapter on the ref tokens
This script loads the adapter with PeftModel.from_pretrained onto the checkpoint of <data>/<arch>/
and requires:
  - the adapter config to say what the run used (r, alpha, rsLoRA, DoRA, target modules);
  - every tensor of the file to land in the model unchanged, and no LoRA weight to be missing;
  - PEFT's logits on the ref tokens to match axl's: max|peft-axl| / max|axl| < 1e-5.
"""
import argparse
import json
import os
import sys

import torch
from peft import PeftModel
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file

import common

LOGITS_TOLERANCE = 1e-5


def verify(arch: str, data_dir: str, axl_dir: str) -> list[str]:
    failures = []
    with open(os.path.join(data_dir, "oracle.json")) as f:
        oracle = json.load(f)
    adapter_dir = os.path.join(axl_dir, "adapter_trained")

    base = common.load_base(data_dir)
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()

    config = model.peft_config["default"]
    want = oracle["lora"]
    want_targets = want["target_modules"]
    got_targets = config.target_modules if isinstance(config.target_modules, str) else set(config.target_modules)
    checks = {
        "r": (config.r, want["r"]),
        "lora_alpha": (float(config.lora_alpha), float(want["alpha"])),
        "use_rslora": (bool(config.use_rslora), want["use_rslora"]),
        "use_dora": (bool(config.use_dora), want["use_dora"]),
    }
    for key, (got, expected) in checks.items():
        if got != expected:
            failures.append(f"{arch}: adapter_config {key} = {got}, expected {expected}")
    if want_targets != "all-linear" and got_targets != set(want_targets.split(",")):
        failures.append(f"{arch}: adapter_config target_modules = {got_targets}, expected {want_targets}")

    saved = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    loaded = get_peft_model_state_dict(model)
    if set(saved) != set(loaded):
        failures.append(f"{arch}: tensors only in axl's file: {sorted(set(saved) - set(loaded))}; "
                        f"only in PEFT's model: {sorted(set(loaded) - set(saved))}")
    for name in sorted(set(saved) & set(loaded)):
        if not torch.equal(saved[name].float(), loaded[name].float()):
            failures.append(f"{arch}: {name} changed on load")
    final_keys = set(load_file(os.path.join(data_dir, "adapter_final", "adapter_model.safetensors")))
    if set(saved) != final_keys:
        failures.append(f"{arch}: axl's tensor names differ from PEFT's: "
                        f"missing {sorted(final_keys - set(saved))}, extra {sorted(set(saved) - final_keys)}")

    tokens = load_file(os.path.join(data_dir, "ref.safetensors"))["tokens"].long()
    axl_logits = load_file(os.path.join(axl_dir, "trained_logits.safetensors"))["logits"]
    with torch.no_grad():
        peft_logits = model(input_ids=tokens).logits.float()
    if peft_logits.shape != axl_logits.shape:
        failures.append(f"{arch}: axl logits shape {tuple(axl_logits.shape)}, PEFT {tuple(peft_logits.shape)}")
    else:
        error = common.relative_max_error(peft_logits, axl_logits)
        print(f"verify: {arch}: max|peft-axl|/max|axl| = {error:.3e} (tolerance {LOGITS_TOLERANCE:g})")
        if not error < LOGITS_TOLERANCE:
            failures.append(f"{arch}: PEFT's logits with axl's adapter differ from axl's: "
                            f"max|peft-axl|/max|axl| = {error:.3e} >= {LOGITS_TOLERANCE:g}")
    return failures


def main(data: str, axl: str) -> int:
    failures = []
    for arch in common.ARCHS:
        axl_dir = os.path.join(axl, arch)
        if not os.path.isdir(os.path.join(axl_dir, "adapter_trained")):
            failures.append(f"{arch}: no adapter from axl in {axl_dir} (did oracle_axl fail?)")
            continue
        try:
            failures += verify(arch, os.path.join(data, arch), axl_dir)
        except Exception as e:  # one arch failing to load must not hide the others' results
            failures.append(f"{arch}: {type(e).__name__}: {e}")
    for failure in failures:
        print("FAIL " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="oracle data (generate.py --out)")
    parser.add_argument("--axl", required=True, help="what oracle_axl wrote")
    args = parser.parse_args()
    sys.exit(main(args.data, args.axl))
