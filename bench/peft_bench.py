"""The PyTorch + transformers + PEFT twin of axl-bench (bench/axl_bench.cpp): bf16 LoRA r=16,
alpha 32 on every linear of randomly initialised Llama shapes, SDPA attention, gradient
checkpointing (non-reentrant), fused AdamW, clipping at 1; eager and with each decoder layer
under torch.compile. Prints the same columns (FLOPs counted as axl-bench counts them, MFU
against torch's own 8192^3 bf16 matmul rate).

    python3 bench/peft_bench.py [--models 1b,8b] [--batches 1,4] [--seq 2048] [--modes eager,compiled]
"""
import argparse
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    "1b": dict(hidden_size=2048, num_hidden_layers=16, intermediate_size=8192, num_attention_heads=32,
               num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True),
    "8b": dict(hidden_size=4096, num_hidden_layers=32, intermediate_size=14336, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=False),
}
RANK = 16


def gemm_ceiling_tflops():
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    times = []
    for i in range(13):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b.T
        stop.record()
        stop.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(stop))
    times.sort()
    return 2 * n**3 / (times[len(times) // 2] * 1e-3) / 1e12


def step_flops(s, batch, seq):
    h, im = s["hidden_size"], s["intermediate_size"]
    q = s["num_attention_heads"] * s["head_dim"]
    kv = s["num_key_value_heads"] * s["head_dim"]
    base = h * q + 2 * h * kv + q * h + 3 * h * im
    lora = RANK * ((h + q) + 2 * (h + kv) + (q + h) + 2 * (h + im) + (im + h))
    attention = 8.0 * seq * q / 2.0
    per_token = s["num_hidden_layers"] * (6 * base + 8 * lora + attention) + 4.0 * s["vocab_size"] * h
    return per_token * batch * seq


def run(name, mode, batches, seq, steps, warmup, ceiling):
    shape = SHAPES[name]
    config = LlamaConfig(**shape, max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5,
                         attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM._from_config(config, torch_dtype=torch.bfloat16)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"))
    if mode == "compiled":
        for layer in model.base_model.model.model.layers:
            layer.compile()
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()  # f32 masters, as axl keeps them; autocast runs the math in bf16
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)
    for batch in batches:
        tokens = torch.randint(0, shape["vocab_size"], (batch, seq), device="cuda")

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(input_ids=tokens, labels=tokens).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.item()

        try:
            for _ in range(warmup):
                step()
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                loss = step()
            seconds = (time.perf_counter() - start) / steps
            tflops = step_flops(shape, batch, seq) / seconds / 1e12
            peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"{name:<6} {mode:<9} {batch:5d} {seq:5d} {seconds * 1e3:10.1f} {batch * seq / seconds:10.0f} "
                  f"{peak:9.2f} {tflops:8.0f} {100 * tflops / ceiling:5.1f}% {loss:8.4f}", flush=True)
        except Exception as error:  # noqa: BLE001 - a failed case is reported, the others still run
            print(f"{name:<6} {mode:<9} {batch:5d} {seq:5d} failed: {type(error).__name__}: {error}"[:300], flush=True)
            torch.cuda.empty_cache()
    del model, optimizer, params
    torch.cuda.empty_cache()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="1b,8b")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--modes", default="eager,compiled")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    ceiling = gemm_ceiling_tflops()
    print(f"device: {torch.cuda.get_device_name()}\ntorch {torch.__version__}; bf16 matmul ceiling (8192^3): "
          f"{ceiling:.0f} TFLOP/s")
    print(f"{'model':<6} {'mode':<9} {'batch':>5} {'seq':>5} {'step_ms':>10} {'tokens/s':>10} {'peak_GiB':>9} "
          f"{'TFLOP/s':>8} {'MFU':>6} {'loss':>8}")
    batches = [int(b) for b in args.batches.split(",")]
    for name in args.models.split(","):
        for mode in args.modes.split(","):
            run(name, mode, batches, args.seq, args.steps, args.warmup, ceiling)


if __name__ == "__main__":
    main()
