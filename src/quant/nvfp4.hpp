// NVFP4 as torchao's nvfp4_quantize computes it (in f32): blocks of 16 along the row, E2M1
// elements, one float8_e4m3fn scale per block, and optionally a per-tensor f32 scale
// P = amax(W) / (448 * 6) as torchao's NVFP4 weight config uses:
//   without P: s = e4m3(clamp(block_amax / 6, 2^-6, 448));      x' = x * (1 / s)
//   with P:    s = e4m3(clamp(block_amax / 6 / P, 2^-6, 448));  x' = x * ((1 / P) / s)
//   code = e2m1(clamp(x', -6, 6)), two a byte, element 2i in the low nibble.
// Dequantized value: e2m1 * s, or e2m1 * (P * s).
#pragma once

#include <cstdint>

#include "quant/quantized_tensor.hpp"

namespace axl {

void quantize_nvfp4(const float* weight, bool tensor_scale, QuantizedTensor* q);
void dequantize_nvfp4_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out);

}  // namespace axl
