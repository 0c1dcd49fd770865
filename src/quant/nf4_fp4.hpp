// bitsandbytes 4-bit blockwise quantization (NF4 and FP4), as quantize_4bit /
// dequantize_4bit compute it: absmax per block of the flattened weight, nearest code of the
// normalized value (ties to the lower code), two codes a byte with the first in the high nibble.
#pragma once

#include <cstdint>

#include "quant/quantized_tensor.hpp"

namespace axl {

// The 16-entry code table bitsandbytes stores as `quant_map` (index = 4-bit code).
const float* bnb_4bit_code_table(QuantFormat format);

// The 4-bit code bitsandbytes picks for a value already divided by its block absmax.
uint8_t bnb_4bit_code(QuantFormat format, float normalized);

// `q` arrives with format, shape and block size set.
void quantize_bnb_4bit(const float* weight, bool double_quant, QuantizedTensor* q);
void dequantize_bnb_4bit_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out);

}  // namespace axl
