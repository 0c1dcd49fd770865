#include "core/dtype.hpp"

#include <cmath>

#include "core/error.hpp"

namespace axl {

namespace {

struct DTypeInfo {
    DType dtype;
    const char* name;
    const char* safetensors;
    size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::F32, "f32", "F32", 4},       {DType::BF16, "bf16", "BF16", 2},
    {DType::F16, "f16", "F16", 2},       {DType::F64, "f64", "F64", 8},
    {DType::I64, "i64", "I64", 8},       {DType::I32, "i32", "I32", 4},
    {DType::I16, "i16", "I16", 2},       {DType::I8, "i8", "I8", 1},
    {DType::U8, "u8", "U8", 1},          {DType::BOOL, "bool", "BOOL", 1},
    {DType::F8_E4M3, "f8_e4m3", "F8_E4M3", 1}, {DType::F8_E5M2, "f8_e5m2", "F8_E5M2", 1},
};

const DTypeInfo& info(DType dtype) {
    for (const auto& entry : kDTypes)
        if (entry.dtype == dtype) return entry;
    fail(AXL_ERR_INTERNAL, "unknown dtype id ", static_cast<int>(dtype));
}

}  // namespace

size_t dtype_size(DType dtype) { return info(dtype).size; }
const char* dtype_name(DType dtype) { return info(dtype).name; }
const char* dtype_safetensors_name(DType dtype) { return info(dtype).safetensors; }

bool dtype_from_safetensors(const std::string& name, DType* out) {
    for (const auto& entry : kDTypes) {
        if (name == entry.safetensors) {
            *out = entry.dtype;
            return true;
        }
    }
    return false;
}

float f16_to_f32(uint16_t bits) {
    uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
    uint32_t exponent = (bits >> 10) & 0x1fu;
    uint32_t mantissa = bits & 0x3ffu;
    uint32_t word;
    if (exponent == 0) {
        if (mantissa == 0) {
            word = sign;
        } else {  // subnormal: renormalise
            int shift = 0;
            while ((mantissa & 0x400u) == 0) {
                mantissa <<= 1;
                ++shift;
            }
            mantissa &= 0x3ffu;
            word = sign | (static_cast<uint32_t>(127 - 15 - shift + 1) << 23) | (mantissa << 13);
        }
    } else if (exponent == 0x1f) {
        word = sign | 0x7f800000u | (mantissa << 13);
    } else {
        word = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    }
    float value;
    std::memcpy(&value, &word, sizeof value);
    return value;
}

uint16_t f32_to_f16(float value) {
    uint32_t word;
    std::memcpy(&word, &value, sizeof word);
    uint16_t sign = static_cast<uint16_t>((word >> 16) & 0x8000u);
    uint32_t abs = word & 0x7fffffffu;
    if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
    if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to Inf
    if (abs < 0x38800000u) {  // result is subnormal or zero: scale and round to nearest even
        float magnitude;
        std::memcpy(&magnitude, &abs, sizeof magnitude);
        float scaled = magnitude * 16777216.0f;  // 2^24: units of the smallest f16 subnormal
        return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(scaled)));
    }
    uint32_t rounded = abs + 0x0fffu + ((abs >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

void convert_to_f32(const void* src, DType src_dtype, float* dst, size_t count) {
    switch (src_dtype) {
        case DType::F32:
            std::memcpy(dst, src, count * sizeof(float));
            return;
        case DType::BF16: {
            auto bits = static_cast<const uint16_t*>(src);
            for (size_t i = 0; i < count; ++i) dst[i] = bf16_to_f32(bits[i]);
            return;
        }
        case DType::F16: {
            auto bits = static_cast<const uint16_t*>(src);
            for (size_t i = 0; i < count; ++i) dst[i] = f16_to_f32(bits[i]);
            return;
        }
        case DType::F64: {
            auto values = static_cast<const double*>(src);
            for (size_t i = 0; i < count; ++i) dst[i] = static_cast<float>(values[i]);
            return;
        }
        default:
            fail(AXL_ERR_UNSUPPORTED, "cannot convert ", dtype_name(src_dtype), " to f32");
    }
}

void convert_from_f32(const float* src, void* dst, DType dst_dtype, size_t count) {
    switch (dst_dtype) {
        case DType::F32:
            std::memcpy(dst, src, count * sizeof(float));
            return;
        case DType::BF16: {
            auto bits = static_cast<uint16_t*>(dst);
            for (size_t i = 0; i < count; ++i) bits[i] = f32_to_bf16(src[i]);
            return;
        }
        case DType::F16: {
            auto bits = static_cast<uint16_t*>(dst);
            for (size_t i = 0; i < count; ++i) bits[i] = f32_to_f16(src[i]);
            return;
        }
        default:
            fail(AXL_ERR_UNSUPPORTED, "cannot convert f32 to ", dtype_name(dst_dtype));
    }
}

}  // namespace axl
