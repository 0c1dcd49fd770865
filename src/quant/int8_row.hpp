// bitsandbytes LLM.int8 weight storage (Int8Params / Linear8bitLt): the weight is cast to f16,
// then each row is scaled by (1 / absmax(row)) * 127 (torch's `127.0 / tensor`, two f32
// roundings) and rounded half to even into int8; SCB is the
// f32 row absmax. Dequantization is q * SCB / 127 with bitsandbytes' constant for 1/127.
#pragma once

#include <cstdint>

#include "quant/quantized_tensor.hpp"

namespace axl {

void quantize_int8_row(const float* weight, QuantizedTensor* q);
void dequantize_int8_row_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out);

}  // namespace axl
