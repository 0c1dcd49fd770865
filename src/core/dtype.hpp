// Element types of tensors: the float and integer types of checkpoints, and (later) the packed
// quantized storage types. Conversions between f32 and the 16-bit floats live here too.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace axl {

enum class DType : int32_t {
    F32 = 0,
    BF16 = 1,
    F16 = 2,
    F64 = 3,
    I64 = 4,
    I32 = 5,
    I16 = 6,
    I8 = 7,
    U8 = 8,
    BOOL = 9,
    F8_E4M3 = 10,
    F8_E5M2 = 11,
    // Packed quantized storage types are appended by src/quant.
};

// Bytes per element; 0 for packed types whose size is not a whole number of bytes per element.
size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
// Parses a safetensors dtype string ("F32", "BF16", ...); returns false if unknown.
bool dtype_from_safetensors(const std::string& name, DType* out);
const char* dtype_safetensors_name(DType dtype);

inline float bf16_to_f32(uint16_t bits) {
    uint32_t word = static_cast<uint32_t>(bits) << 16;
    float value;
    std::memcpy(&value, &word, sizeof value);
    return value;
}

// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t f32_to_bf16(float value) {
    uint32_t word;
    std::memcpy(&word, &value, sizeof word);
    if ((word & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((word >> 16) | 0x40u);
    uint32_t rounding = 0x7fffu + ((word >> 16) & 1u);
    return static_cast<uint16_t>((word + rounding) >> 16);
}

float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);

// Converts `count` elements of `src` (any float dtype) to f32.
void convert_to_f32(const void* src, DType src_dtype, float* dst, size_t count);
// Converts `count` f32 values to `dst_dtype` (F32, BF16 or F16).
void convert_from_f32(const float* src, void* dst, DType dst_dtype, size_t count);

}  // namespace axl
