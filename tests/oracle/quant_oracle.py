"""Reference outputs of every base-weight quantization format, for tests/unit/quant/quant_oracle_test.cpp.

    .cache/oracle-venv/bin/python tests/oracle/quant_oracle.py --out build/quant_oracle.safetensors
    AXL_QUANT_ORACLE=build/quant_oracle.safetensors build/tests/axl_unit_tests --gtest_filter='QuantOracle*'

Each case stores its input (f32 values; for a bf16 case, the bf16 values widened), what the
reference library stored (packed codes and statistics, in our row-major layout) and the
reference's own dequantization in f32. The case's parameters are JSON in the safetensors
metadata under "case:<name>".

References (on the CPU; --device cuda runs the same cases through the CUDA kernels, which
docs/quantization.md compares):
  nf4, fp4, int8 row  bitsandbytes (quantize_4bit / dequantize_4bit, compress_statistics,
                      quantize_blockwise, Int8Params / int8_vectorwise_dequant)
  int8 per-channel    torchao Int8Tensor.from_hp(PerRow) / dequantize
  fp8 e4m3            torchao Float8Tensor.from_hp(PerRow, KernelPreference.TORCH) / dequantize
  nvfp4               torchao NVFP4Tensor.to_nvfp4 (with and without per-tensor scale) / dequantize
  mxfp4               torchao MXTensor.to_mx(float4_e2m1fn_x2, 32, FLOOR) / dequantize
  int4 grouped        torchao's Int4Tensor.from_hp quantizes with mslk's int4_row_quantize_zp,
                      whose native library loads only with CUDA; on the CPU this script runs
                      that function's arithmetic written out in torch below
                      (int4_row_quantize_zp_on_cpu). With --use-mslk (a CUDA machine with mslk
                      installed) it calls torchao itself. torchao defines no dequantization
                      for this tensor; the reference is q * scale + zero in f32.
"""
import argparse
import json
import os

import torch

SEED = 20260825
DEVICE = "cpu"  # --device; inputs are made on the CPU and moved there


def random_weight(generator, rows, cols, dtype=torch.float32):
    """Gaussian values with a few outliers 8-20x larger, both signs, never all zero."""
    w = torch.randn(rows, cols, generator=generator)
    outliers = torch.rand(rows, cols, generator=generator) < 0.01
    w[outliers] *= 8 + 12 * torch.rand(int(outliers.sum()), generator=generator)
    return w.to(dtype)


class Cases:
    def __init__(self):
        self.tensors = {}
        self.metadata = {}

    def add(self, name, params, **tensors):
        self.metadata[f"case:{name}"] = json.dumps(params, sort_keys=True)
        for key, value in tensors.items():
            self.tensors[f"{name}.{key}"] = value.detach().cpu().clone().contiguous()


# ---- bitsandbytes -----------------------------------------------------------------------------


def bnb_4bit_case(cases, name, w, quant_type, blocksize, double_quant):
    import bitsandbytes.functional as F

    packed, state = F.quantize_4bit(
        w.to(DEVICE), blocksize=blocksize, compress_statistics=double_quant, quant_type=quant_type
    )
    dequant = F.dequantize_4bit(packed, state).float()
    stats = {}
    if double_quant:
        stats = dict(
            dq_codes=state.absmax,
            nested_absmax=state.state2.absmax,
            nested_code=state.state2.code,
            offset=state.offset.reshape(1).float(),
        )
    else:
        stats = dict(absmax=state.absmax)
    cases.add(
        name,
        dict(format=quant_type, block_size=blocksize, double_quant=double_quant, weight_dtype="f32"),
        input=w.float(),
        packed=packed.reshape(-1),
        code=state.code,
        dequant=dequant,
        **stats,
    )


def bnb_4bit_tie_weight(quant_type):
    """Blocks of 64 whose absmax is 1, holding every f32 midpoint between neighbouring codes and
    its two f32 neighbours, values around +-0, and one all-zero block."""
    from bitsandbytes.functional import get_4bit_type

    code = get_4bit_type(quant_type, device="cpu")
    values = torch.sort(code).values
    midpoints = (values[:-1] + values[1:]) / 2
    probes = [midpoints, torch.nextafter(midpoints, torch.tensor(2.0)), torch.nextafter(midpoints, torch.tensor(-2.0))]
    probes.append(torch.tensor([0.0, -0.0, 1e-4, -1e-4, 1e-30, -1e-30, 0.5, -0.5, -1.0]))
    body = torch.cat(probes)
    rows = []
    for start in range(0, body.numel(), 63):
        row = torch.zeros(64)
        row[0] = 1.0
        chunk = body[start : start + 63]
        row[1 : 1 + chunk.numel()] = chunk
        rows.append(row)
    rows.append(torch.zeros(64))
    return torch.stack(rows)


def bnb_dynamic_tie_case(cases):
    """quantize_blockwise (the 8-bit step of double quantization) on every f32 midpoint of the
    dynamic map and its neighbours, in blocks of 256 whose absmax is 1."""
    import bitsandbytes.functional as F

    code = F.create_dynamic_map()
    midpoints = (code[:-1] + code[1:]) / 2
    body = torch.cat([midpoints, torch.nextafter(midpoints, torch.tensor(2.0)), torch.nextafter(midpoints, torch.tensor(-2.0))])
    blocks = []
    for start in range(0, body.numel(), 255):
        block = torch.full((256,), 0.25)
        block[0] = 1.0
        chunk = body[start : start + 255]
        block[1 : 1 + chunk.numel()] = chunk
        blocks.append(block)
    values = torch.cat(blocks)
    codes, state = F.quantize_blockwise(values.to(DEVICE), blocksize=256)
    cases.add(
        "dynamic_map_ties",
        dict(format="dynamic_map", block_size=256),
        input=values,
        codes=codes,
        absmax=state.absmax,
        code=state.code,
    )


def bnb_int8_case(cases, name, w):
    import bitsandbytes.functional as F
    from bitsandbytes.nn import Int8Params

    param = Int8Params(w.clone(), requires_grad=False, has_fp16_weights=False).to(DEVICE)
    dequant = F.int8_vectorwise_dequant(param.data, param.SCB).float()
    cases.add(
        name,
        dict(format="int8_row", block_size=0, weight_dtype="f32"),
        input=w.float(),
        packed=param.data.view(torch.uint8).reshape(-1),
        scales=param.SCB.float(),
        dequant=dequant,
    )


# ---- torchao ----------------------------------------------------------------------------------


def dtype_name(dtype):
    return {torch.float32: "f32", torch.bfloat16: "bf16"}[dtype]


def torchao_int8_channel_case(cases, name, w):
    from torchao.quantization.granularity import PerRow
    from torchao.quantization.quantize_.workflows.int8.int8_tensor import Int8Tensor

    t = Int8Tensor.from_hp(w.to(DEVICE), PerRow())
    cases.add(
        name,
        dict(format="int8_channel", block_size=0, weight_dtype=dtype_name(w.dtype)),
        input=w.float(),
        packed=t.qdata.view(torch.uint8).reshape(-1),
        scales=t.scale.float().reshape(-1),
        dequant=t.dequantize(torch.float32),
    )


def torchao_fp8_case(cases, name, w):
    from torchao.quantization.granularity import PerRow
    from torchao.quantization.quantize_.common import KernelPreference
    from torchao.quantization.quantize_.workflows.float8.float8_tensor import Float8Tensor

    t = Float8Tensor.from_hp(w.to(DEVICE), granularity=PerRow(), kernel_preference=KernelPreference.TORCH)
    cases.add(
        name,
        dict(format="fp8_e4m3", block_size=0, weight_dtype=dtype_name(w.dtype)),
        input=w.float(),
        packed=t.qdata.view(torch.uint8).reshape(-1),
        scales=t.scale.float().reshape(-1),
        dequant=t.dequantize(torch.float32),
    )


def torchao_nvfp4_case(cases, name, w, tensor_scale):
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor, per_tensor_amax_to_scale

    per_tensor = per_tensor_amax_to_scale(torch.max(torch.abs(w.to(DEVICE)))) if tensor_scale else None
    t = NVFP4Tensor.to_nvfp4(w.to(DEVICE), per_tensor_scale=per_tensor)
    extra = dict(tensor_scale=per_tensor.reshape(1).float()) if tensor_scale else {}
    cases.add(
        name,
        dict(format="nvfp4", block_size=16, weight_dtype=dtype_name(w.dtype), tensor_scale=tensor_scale),
        input=w.float(),
        packed=t.qdata.view(torch.uint8).reshape(-1),
        scale_codes=t.scale.view(torch.uint8).reshape(-1),
        dequant=t.dequantize(torch.float32),
        **extra,
    )


def torchao_mxfp4_case(cases, name, w):
    """`w` may be 3-D [experts, rows, cols], the shape MoE expert weights have."""
    from torchao.prototype.mx_formats.mx_tensor import MXTensor

    t = MXTensor.to_mx(w.to(DEVICE), torch.float4_e2m1fn_x2, 32)
    cases.add(
        name,
        dict(format="mxfp4", block_size=32, weight_dtype=dtype_name(w.dtype)),
        input=w.float().reshape(-1, w.shape[-1]),
        packed=t.qdata.view(torch.uint8).reshape(-1),
        scale_codes=t.scale.view(torch.uint8).reshape(-1),
        dequant=t.dequantize(torch.float32).reshape(-1, w.shape[-1]),
    )


def int4_row_quantize_zp_on_cpu(w, group_size):
    """mslk int4_row_quantize_zp's arithmetic (f32 throughout), returning int8 levels in
    [-8, 7] and [rows, groups] scale and zero in f32."""
    groups = w.float().reshape(w.shape[0], -1, group_size)
    low = groups.amin(dim=-1, keepdim=True)
    high = groups.amax(dim=-1, keepdim=True)
    scale = (high - low).clamp(min=1e-6) / 15
    zero = low + scale * 8
    levels = groups.sub(low).div(scale).round().clamp(0, 15) - 8
    return levels.to(torch.int8).reshape(w.shape), scale.squeeze(-1), zero.squeeze(-1)


def pack_int4_low_first(levels):
    low = levels[:, ::2].to(torch.uint8) & 0xF
    high = (levels[:, 1::2].to(torch.uint8) & 0xF) << 4
    return low | high


def torchao_int4_case(cases, name, w, group_size, use_mslk):
    if use_mslk:
        from torchao.quantization.quantize_.workflows.int4.int4_tensor import Int4Tensor

        t = Int4Tensor.from_hp(w.to(DEVICE), [1, group_size])
        packed = t.qdata.view(torch.uint8)
        scale, zero = t.scale.t(), t.zero_point.t()  # torchao keeps them [groups, rows]
        levels_u8 = torch.stack([packed & 0xF, packed >> 4], dim=-1).reshape(w.shape)
        levels = (levels_u8.to(torch.int16) ^ 8) - 8
        source = "torchao Int4Tensor.from_hp (mslk)"
    else:
        levels, scale, zero = int4_row_quantize_zp_on_cpu(w, group_size)
        packed = pack_int4_low_first(levels)
        scale, zero = scale.to(w.dtype), zero.to(w.dtype)
        source = "int4_row_quantize_zp arithmetic in torch (CPU)"
    scale_f32 = scale.float().contiguous()
    zero_f32 = zero.float().contiguous()
    per_element = lambda s: s.repeat_interleave(group_size, dim=1)
    dequant = levels.float() * per_element(scale_f32)
    dequant = dequant + per_element(zero_f32)
    cases.add(
        name,
        dict(format="int4_group", block_size=group_size, weight_dtype=dtype_name(w.dtype), source=source),
        input=w.float(),
        packed=packed.reshape(-1),
        scales=scale_f32.reshape(-1),
        zeros=zero_f32.reshape(-1),
        dequant=dequant,
    )


# ---- tie patterns for the torchao formats (each makes the quantizer see exact half-steps) -----


def half_step_row(count, scale_to_one, values):
    row = torch.zeros(count)
    row[0] = scale_to_one
    row[1 : 1 + len(values)] = torch.tensor(values)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--use-mslk", action="store_true", help="int4 through torchao+mslk (needs CUDA)")
    parser.add_argument("--device", default="cpu", help="where the references run (cuda: bitsandbytes' CUDA kernels)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device

    import bitsandbytes
    import torchao

    g = torch.Generator().manual_seed(SEED)
    cases = Cases()

    # bitsandbytes 4-bit: 96 x 320 = 480 blocks of 64 -> two nested blocks (256 + 224).
    for quant_type in ("nf4", "fp4"):
        w = random_weight(g, 96, 320)
        for double_quant in (False, True):
            bnb_4bit_case(cases, f"{quant_type}_dq{int(double_quant)}", w, quant_type, 64, double_quant)
        bnb_4bit_case(cases, f"{quant_type}_block128", random_weight(g, 16, 256) * 0.02, quant_type, 128, False)
        bnb_4bit_case(cases, f"{quant_type}_ties", bnb_4bit_tie_weight(quant_type), quant_type, 64, False)
    bnb_dynamic_tie_case(cases)

    # bitsandbytes int8: random rows, and a row whose scale is exactly 1 holding k + 0.5.
    bnb_int8_case(cases, "int8_row", random_weight(g, 24, 200))
    halves = [k + 0.5 for k in range(-6, 6)]
    bnb_int8_case(cases, "int8_row_ties", torch.stack([half_step_row(32, 127.0, halves), torch.linspace(-3, 3, 32)]))
    # Rows whose absmax is not 127: `127.0 / SCB` is reciprocal(SCB) * 127 in torch, which puts
    # values at (k + 0.5) / 127 of the absmax (half the absmax among them) on either side of the tie.
    near_ties = []
    for absmax in (0.263671875, 0.287109375, 0.435546875, 0.3, 0.7, 1.9):
        near_ties.append(half_step_row(32, absmax, [absmax * (k + 0.5) / 127.0 for k in range(56, 72)]))
    bnb_int8_case(cases, "int8_row_reciprocal", torch.stack(near_ties))

    for dtype in (torch.bfloat16, torch.float32):
        suffix = dtype_name(dtype)
        w = random_weight(g, 32, 256, dtype)
        torchao_int8_channel_case(cases, f"int8_channel_{suffix}", w)
        torchao_fp8_case(cases, f"fp8_{suffix}", w)
        torchao_nvfp4_case(cases, f"nvfp4_pts_{suffix}", w, tensor_scale=True)
        torchao_nvfp4_case(cases, f"nvfp4_{suffix}", w, tensor_scale=False)
        torchao_mxfp4_case(cases, f"mxfp4_{suffix}", random_weight(g, 4 * 16, 128, dtype).reshape(4, 16, 128))
        for group in (32, 128):
            torchao_int4_case(cases, f"int4_g{group}_{suffix}", random_weight(g, 16, 256, dtype), group, args.use_mslk)

    # Exact half-steps: scale 1 for int8 (amax 127.5), fp8 (amax 448), nvfp4 (block amax 6,
    # no per-tensor scale), mxfp4 (amax in [4, 8)) and int4 (min 0, max 15).
    int8_halves = [k + 0.5 for k in range(-8, 8)]
    torchao_int8_channel_case(cases, "int8_channel_ties", torch.stack([half_step_row(32, 127.5, int8_halves)] * 2))
    e4m3_ties = [1.0625, 1.1875, 0.0029296875, 0.0048828125, -1.0625, 240.0 + 8.0, 3.5 * 2**-7, -(2**-10)]
    torchao_fp8_case(cases, "fp8_ties", torch.stack([half_step_row(32, 448.0, e4m3_ties)] * 2))
    e2m1_ties = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.25, -0.75, -1.25, -1.75, -2.5, -3.5, -5.0, 0.1]
    torchao_nvfp4_case(cases, "nvfp4_ties", torch.stack([half_step_row(16, 6.0, e2m1_ties)] * 2), tensor_scale=False)
    mx_row = half_step_row(32, 4.0, e2m1_ties + [7.9, -7.0])
    torchao_mxfp4_case(cases, "mxfp4_ties", torch.stack([mx_row, mx_row * 2**-3]))
    int4_row = half_step_row(32, 15.0, [k + 0.5 for k in range(15)])
    torchao_int4_case(cases, "int4_ties", torch.stack([int4_row, int4_row * 0.25]), 32, args.use_mslk)

    cases.metadata["versions"] = json.dumps(
        dict(torch=torch.__version__, bitsandbytes=bitsandbytes.__version__, torchao=torchao.__version__, device=DEVICE)
    )
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(cases.tensors, args.out, metadata=cases.metadata)
    print(f"wrote {len([k for k in cases.metadata if k.startswith('case:')])} cases to {args.out}")


if __name__ == "__main__":
    main()
