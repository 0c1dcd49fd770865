// torchao float8 weight-only (Float8WeightOnlyConfig, PerRow, the torch kernel path): per row,
//   scale = amax / 448, computed in the weight dtype (so rounded through it), then f32;
//   code = float8_e4m3fn(clamp(x / scale, -448, 448)), rounded to nearest even.
// Dequantized value: float(code) * scale. A tensor read from a checkpoint with 2-D tile scales
// (block_rows > 0) takes the scale of the tile the element lies in.
#pragma once

#include <cstdint>

#include "quant/quantized_tensor.hpp"

namespace axl {

void quantize_fp8_e4m3(const float* weight, QuantizedTensor* q);
void dequantize_fp8_e4m3_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out);

}  // namespace axl
