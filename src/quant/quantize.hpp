// Quantizing a weight into any base format and back: the CPU reference every backend is
// checked against. Weights are row-major [rows, cols] f32 ([out_features, in_features]).
#pragma once

#include <cstdint>

#include "quant/quant_format.hpp"
#include "quant/quantized_tensor.hpp"

namespace axl {

// Quantizes `weight` as `config` asks, after rounding it through config.weight_dtype (a no-op
// for weights that came from that dtype). Throws what validate_quant_config throws.
QuantizedTensor quantize(const float* weight, int64_t rows, int64_t cols, const QuantConfig& config);

// Writes all rows * cols dequantized values to `out`.
void dequantize(const QuantizedTensor& q, float* out);
// Writes rows [row_begin, row_end) to `out` ((row_end - row_begin) * cols values), for
// dequantizing one tile of a weight at a time.
void dequantize_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out);

// Bytes of `packed` for a [rows, cols] weight in `format`.
int64_t packed_size_bytes(QuantFormat format, int64_t rows, int64_t cols);

// Checks that the vectors of `q` have the sizes its format and shape imply (a quantized tensor
// may come from a file). Throws Error(AXL_ERR_SHAPE) naming the first that does not.
void check_quantized_tensor(const QuantizedTensor& q);

}  // namespace axl
