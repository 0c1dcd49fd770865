"""PEFT's LoRA/DoRA linear, forward and backward, on fixed inputs: the fixture that
tests/unit/lora/lora_linear_peft_test.cpp compares lora_linear_forward/backward against.

  .cache/oracle-venv/bin/python tests/oracle/lora_linear_oracle.py \
      --out tests/unit/lora/data/lora_linear_peft.safetensors

Each case is a PEFT LoraModel around one nn.Linear in training mode. Where a case has
dropout, PEFT's nn.Dropout is swapped for axl's counter-based mask (splitmix64 below, as in
src/lora/dropout.hpp) so that both sides drop the same elements. The file holds, per case
"caseN.": inputs x, weight, bias, lora_A, lora_B, magnitude, dy and PEFT's y, dx, grad_A,
grad_B, grad_magnitude; metadata holds each case's scaling, dropout p, seed and use_dora.
"""
import argparse

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

M, IN, OUT, R = 6, 10, 7, 3
MASK64 = (1 << 64) - 1

CASES = [
    dict(dora=True, bias=True, rslora=False, alpha=4.5, dropout=0.0, seed=0),
    dict(dora=True, bias=True, rslora=True, alpha=6.0, dropout=0.3, seed=1234),
    dict(dora=False, bias=False, rslora=False, alpha=6.0, dropout=0.25, seed=99),
    dict(dora=True, bias=False, rslora=False, alpha=3.0, dropout=0.0, seed=0),
]


def splitmix64_mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def dropout_mask(seed: int, n: int, p: float) -> torch.Tensor:
    threshold = min(round(float(np.float32(p)) * 2.0**32), 0xFFFFFFFF)
    keep = [(splitmix64_mix((seed + (i + 1) * 0x9E3779B97F4A7C15) & MASK64) >> 32) >= threshold for i in range(n)]
    scale = np.float32(1.0) / (np.float32(1.0) - np.float32(p))
    return torch.tensor(keep, dtype=torch.float32) * float(scale)


class CounterDropout(torch.nn.Module):
    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.mask = mask

    def forward(self, x):
        return x * self.mask.view_as(x)


class One(torch.nn.Module):
    def __init__(self, bias: bool):
        super().__init__()
        self.proj = torch.nn.Linear(IN, OUT, bias=bias)

    def forward(self, x):
        return self.proj(x)


def run(index: int, case: dict, out: dict, metadata: dict) -> None:
    g = torch.Generator().manual_seed(1000 + index)
    rand = lambda *shape: torch.rand(*shape, generator=g) * 2 - 1  # noqa: E731
    base = One(case["bias"])
    with torch.no_grad():
        base.proj.weight.copy_(rand(OUT, IN))
        if case["bias"]:
            base.proj.bias.copy_(rand(OUT))
    config = LoraConfig(r=R, lora_alpha=case["alpha"], lora_dropout=case["dropout"], use_dora=case["dora"],
                        use_rslora=case["rslora"], target_modules=["proj"], init_lora_weights=False)
    model = get_peft_model(base, config)
    layer = model.base_model.model.proj
    a, b = rand(R, IN), rand(OUT, R)
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(a)
        layer.lora_B["default"].weight.copy_(b)
    magnitude = None
    if case["dora"]:
        magnitude = rand(OUT) * 0.5 + 2.0
        with torch.no_grad():
            layer.lora_magnitude_vector["default"].weight.copy_(magnitude)
    if case["dropout"] > 0:
        layer.lora_dropout["default"] = CounterDropout(dropout_mask(case["seed"], M * IN, case["dropout"]))
    model.train()

    x = rand(M, IN).requires_grad_(True)
    dy = rand(M, OUT)
    y = model(x)
    y.backward(dy)

    p = f"case{index}."
    out[p + "x"], out[p + "weight"], out[p + "dy"] = x.detach(), base.proj.weight.detach(), dy
    out[p + "lora_A"], out[p + "lora_B"] = a, b
    out[p + "y"], out[p + "dx"] = y.detach(), x.grad
    out[p + "grad_A"] = layer.lora_A["default"].weight.grad
    out[p + "grad_B"] = layer.lora_B["default"].weight.grad
    if case["bias"]:
        out[p + "bias"] = base.proj.bias.detach()
    if case["dora"]:
        out[p + "magnitude"] = magnitude
        out[p + "grad_magnitude"] = layer.lora_magnitude_vector["default"].weight.grad
    metadata[p + "scaling"] = repr(layer.scaling["default"])
    metadata[p + "dropout"] = repr(case["dropout"])
    metadata[p + "seed"] = str(case["seed"])
    metadata[p + "dora"] = "1" if case["dora"] else "0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    tensors, metadata = {}, {"format": "pt", "cases": str(len(CASES))}
    for i, case in enumerate(CASES):
        run(i, case, tensors, metadata)
    save_file({k: v.contiguous().float() for k, v in tensors.items()}, args.out, metadata=metadata)
    print(f"wrote {len(tensors)} tensors to {args.out}")


if __name__ == "__main__":
    main()
