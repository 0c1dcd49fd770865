"""Numbers from torch/transformers that tests/unit/optim/*_test.cpp hard-code (run by hand).

  .cache/oracle-venv/bin/python tests/oracle/optim_oracle.py

Prints, as C++ float literals:
  - the parameters after each of 3 torch.optim.AdamW steps (single-tensor path) from fixed
    parameters and per-step gradients;
  - the learning rates transformers' schedulers give at chosen steps;
  - torch.nn.utils.clip_grad_norm_'s returned norm and clipped gradients.
The C++ tests embed these values; rerun this script when changing any of the inputs below.
"""
import torch
from transformers.optimization import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_cosine_with_min_lr_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

# Keep in step with tests/unit/optim/adamw_test.cpp.
ADAMW_PARAMS = [[1.0, -2.0, 0.5, 0.0], [[0.3, -0.7], [0.05, 4.0]]]
ADAMW_GRADS = [  # one list per step
    [[0.5, -0.25, 1e-3, 2.0], [[-1.5, 0.0], [0.2, 3.0]]],
    [[-0.4, 0.3, 1e-3, -1.0], [[-1.0, 0.1], [0.2, -3.0]]],
    [[0.6, 0.6, -2e-3, 0.5], [[0.5, 0.0], [-0.2, 1.0]]],
]
ADAMW = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)


def literal(x: float) -> str:
    return f"{x:.9g}f"


def adamw() -> None:
    params = [torch.tensor(p, dtype=torch.float32, requires_grad=True) for p in ADAMW_PARAMS]
    opt = torch.optim.AdamW(params, foreach=False, fused=False, **ADAMW)
    for step, grads in enumerate(ADAMW_GRADS, start=1):
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        flat = [literal(v) for p in params for v in p.detach().flatten().tolist()]
        print(f"adamw step {step}: {{{', '.join(flat)}}}")


def schedules() -> None:
    def lrs(make, steps):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2e-4)
        sched = make(opt)
        out = {}
        for s in range(max(steps) + 1):
            if s in steps:
                out[s] = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
        return out

    steps = [0, 1, 4, 5, 6, 50, 99, 100, 101]
    cases = {
        "constant(w=5)": lambda o: get_constant_schedule_with_warmup(o, 5),
        "linear(w=5,T=100)": lambda o: get_linear_schedule_with_warmup(o, 5, 100),
        "cosine(w=5,T=100)": lambda o: get_cosine_schedule_with_warmup(o, 5, 100),
        "cosine_min(w=5,T=100,r=0.1)": lambda o: get_cosine_with_min_lr_schedule_with_warmup(o, 5, 100, min_lr_rate=0.1),
    }
    for name, make in cases.items():
        values = lrs(make, steps)
        print(f"{name}: " + ", ".join(f"{s}: {values[s]!r}" for s in steps))


def clipping() -> None:
    grads = [torch.tensor([3.0, -4.0]), torch.tensor([[12.0]])]  # norm 13
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
    flat = [literal(v) for p in params for v in p.grad.flatten().tolist()]
    print(f"clip max_norm=1: norm {float(norm)!r}, grads {{{', '.join(flat)}}}")


if __name__ == "__main__":
    adamw()
    schedules()
    clipping()
