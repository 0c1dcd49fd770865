// Fused dequantize + GEMM of a bitsandbytes 4-bit base weight (kernels/dequant_gemm.cu), for
// few tokens (decode-like steps, tiny batches). Dequantizing the whole weight to bf16 and then
// running cuBLASLt writes and re-reads 2 bytes a weight; these kernels read the packed codes
// (half a byte a weight) once and dequantize in registers, into tensor-core fragments.
//
// W[o, i] is exactly the bf16 value dequantize_bnb_4bit_rows produces (code_table[code] *
// absmax in f32, rounded once to bf16), so the results are those of "dequantize, then GEMM" up
// to the order of the f32 sums. Activations are bf16, row-major [tokens, features]; sums are
// f32; outputs are rounded once to bf16.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cuda/ops.hpp"

namespace axl::cuda {

// The most tokens one call takes: the token dimension is two n-tiles (8 each) of mma.sync.
constexpr int64_t kFusedDequantMaxTokens = 16;

// Whether the fused kernels take this weight for `tokens` tokens: NF4 or FP4 (with or without
// double quantization), 1..kFusedDequantMaxTokens tokens, rows of a multiple of 64 elements,
// blocks of a power of two >= 32 elements (every block size bitsandbytes takes) that do not
// straddle rows, packed codes 16-byte aligned.
// When false, callers dequantize and use matmul.
bool fused_dequant_gemm_supported(const Bnb4BitWeight& w, int64_t tokens);

// y[t, o] = sum_i x[t, i] W[o, i] (+ beta y[t, o] when beta != 0), for the [out, in] weight w:
// y [tokens, out], x [tokens, in] (16-byte aligned). Deterministic (fixed summation order).
void fused_dequant_gemm_forward(bf16* y, const bf16* x, const Bnb4BitWeight& w, int64_t tokens, int64_t out,
                                int64_t in, float beta, cudaStream_t stream);

// dx[t, i] = sum_o dy[t, o] W[o, i] (+ beta dx[t, i] when beta != 0): dx [tokens, in], dy
// [tokens, out] (any alignment). `out` is split across blocks; each block writes its f32
// partial sums to `scratch`, which a second kernel sums in a fixed order (deterministic, no
// atomics) into dx. `scratch` holds fused_dequant_gemm_backward_scratch_floats(tokens, out, in)
// floats; its contents need no initialization and are dead after the call.
size_t fused_dequant_gemm_backward_scratch_floats(int64_t tokens, int64_t out, int64_t in);
void fused_dequant_gemm_backward(bf16* dx, const bf16* dy, const Bnb4BitWeight& w, int64_t tokens, int64_t out,
                                 int64_t in, float beta, float* scratch, cudaStream_t stream);

}  // namespace axl::cuda
