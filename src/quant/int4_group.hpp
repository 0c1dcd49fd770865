// torchao int4 weight-only, grouped asymmetric (Int4WeightOnlyConfig, PLAIN packing), which
// quantizes with mslk's int4_row_quantize_zp: per group of the row, in f32,
//   scale = max(max - min, 1e-6) / 15,  zero = min + 8 * scale,
//   q = clamp(round_half_even((x - min) / scale), 0, 15) - 8   (stored as int4 in [-8, 7]),
// then scale and zero are cast to the weight dtype. Dequantized value: q * scale + zero.
#pragma once

#include <cstdint>

#include "quant/quantized_tensor.hpp"

namespace axl {

void quantize_int4_group(const float* weight, QuantizedTensor* q);
void dequantize_int4_group_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out);

}  // namespace axl
