// bitsandbytes double quantization (compress_statistics): the f32 absmax of the 4-bit blocks
// is stored as 8-bit codes into the signed dynamic map, after subtracting its mean, with one
// f32 absmax per 256 codes. Follows bitsandbytes 0.50's CPU quantize_blockwise bit for bit; see
// docs/quantization.md for where CUDA bitsandbytes can differ.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "quant/quantized_tensor.hpp"

namespace axl {

// bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), bit for bit:
// 256 sorted f32 values in [-0.99297, 1], 0 at index 127.
const std::vector<float>& dynamic_code_map();

// Mean of the absmax values, accumulated in double and rounded once. torch's f32 mean sums in
// an order that depends on the CPU's vector width and thread count, so this can differ from
// bitsandbytes' offset in the last bit.
float absmax_mean(std::span<const float> absmax);

// Quantizes `absmax - offset` in blocks of kDoubleQuantBlockSize.
DoubleQuantStats double_quantize_absmax(std::span<const float> absmax, float offset);
inline DoubleQuantStats double_quantize_absmax(std::span<const float> absmax) {
    return double_quantize_absmax(absmax, absmax_mean(absmax));
}

// The absmax of 4-bit block `block`: code_map[code] * nested absmax + offset.
float dequantize_absmax(const DoubleQuantStats& stats, int64_t block);

// The code bitsandbytes' CPU kernel gives `normalized` (a value divided by its block absmax):
// it snaps the value to a 16-bit grid over [-1, 1] and looks the grid point up in a table of
// each point's nearest code (ties to the lower code). Near 0, where the map's entries are
// closer than the grid's 2/65535 step, this is not always the nearest code.
uint8_t dynamic_code_of(float normalized);

}  // namespace axl
