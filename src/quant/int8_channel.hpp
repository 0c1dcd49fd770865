// torchao int8 weight-only (Int8WeightOnlyConfig, PerRow, symmetric): per row,
//   scale = max(amax / 127.5, f32 eps), computed in the weight dtype (so rounded through it),
//   q = clamp(round_half_even(x * (1 / scale)), -128, 127).
// Note 127.5 = (127 - (-128)) / 2, not bitsandbytes' 127. Dequantized value: q * scale.
#pragma once

#include <cstdint>

#include "quant/quantized_tensor.hpp"

namespace axl {

void quantize_int8_channel(const float* weight, QuantizedTensor* q);
void dequantize_int8_channel_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out);

}  // namespace axl
