// OCP MXFP4 as torchao's to_mx computes it with its default FLOOR scale rule: blocks of 32
// along the row, one E8M0 scale per block from the exponent field of the block amax,
//   byte = clamp(exponent(amax) - 2, -127, 128) + 127   (2 = emax of E2M1; 255 if amax is NaN),
//   code = e2m1(clamp(x / max(2^(byte - 127), 2^-126), -6, 6)), round to nearest even,
// two a byte with element 2i in the low nibble (as GPT-OSS checkpoints store them).
// Dequantized value: e2m1 * 2^(byte - 127). Only MoE expert weights may use it.
#pragma once

#include <cstdint>

#include "quant/quantized_tensor.hpp"

namespace axl {

// The E8M0 byte the FLOOR rule gives a block whose largest magnitude is `amax`.
uint8_t mxfp4_scale_code(float amax);

void quantize_mxfp4(const float* weight, QuantizedTensor* q);
void dequantize_mxfp4_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out);

}  // namespace axl
