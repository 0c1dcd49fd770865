#include "quant/minifloat.hpp"

#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace axl {

namespace {

constexpr float kE2M1Magnitudes[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

}  // namespace

uint8_t encode_e2m1(float x) {
    const uint8_t sign = std::signbit(x) ? 0x8 : 0x0;
    const float magnitude = std::fabs(x);
    uint8_t code = 0;
    for (uint8_t upper = 1; upper < 8; ++upper) {
        const float midpoint = (kE2M1Magnitudes[upper - 1] + kE2M1Magnitudes[upper]) * 0.5f;
        // On a tie the code with an even mantissa bit (an even code) wins.
        const bool tie_goes_up = upper % 2 == 0;
        if (magnitude > midpoint || (magnitude == midpoint && tie_goes_up)) code = upper;
    }
    return static_cast<uint8_t>(sign | code);
}

float decode_e2m1(uint8_t code) {
    const float magnitude = kE2M1Magnitudes[code & 0x7];
    return (code & 0x8) ? -magnitude : magnitude;
}

uint8_t encode_e4m3(float x) {
    const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
    if (std::isnan(x)) return static_cast<uint8_t>(sign | 0x7f);
    const float magnitude = std::fabs(x);
    if (magnitude >= kE4M3Max) return static_cast<uint8_t>(sign | 0x7e);
    if (magnitude < kE4M3MinNormal) {
        // Subnormals count steps of 2^-9; 8 steps is exactly the smallest normal's encoding.
        const int steps = static_cast<int>(std::nearbyint(magnitude * 512.0f));
        return static_cast<uint8_t>(sign | steps);
    }
    int exponent;
    const float fraction = std::frexp(magnitude, &exponent);  // magnitude = fraction * 2^exponent
    // (2 * fraction - 1) * 8 is the 3-bit mantissa with its dropped bits, computed exactly.
    int mantissa = static_cast<int>(std::nearbyint((fraction * 2.0f - 1.0f) * 8.0f));
    int biased_exponent = exponent - 1 + 7;
    if (mantissa == 8) {
        mantissa = 0;
        ++biased_exponent;
    }
    return static_cast<uint8_t>(sign | (biased_exponent << 3) | mantissa);
}

float decode_e4m3(uint8_t code) {
    const int biased_exponent = (code >> 3) & 0xf;
    const int mantissa = code & 0x7;
    float magnitude;
    if (biased_exponent == 0xf && mantissa == 0x7)
        magnitude = std::numeric_limits<float>::quiet_NaN();
    else if (biased_exponent == 0)
        magnitude = std::ldexp(static_cast<float>(mantissa), -9);
    else
        magnitude = std::ldexp(static_cast<float>(8 + mantissa), biased_exponent - 7 - 3);
    return (code & 0x80) ? -magnitude : magnitude;
}

float decode_e8m0(uint8_t code) {
    if (code == 0xff) return std::numeric_limits<float>::quiet_NaN();
    return std::ldexp(1.0f, static_cast<int>(code) - 127);
}

float round_through_dtype(float x, DType dtype) {
    switch (dtype) {
        case DType::F32: return x;
        case DType::BF16: return bf16_to_f32(f32_to_bf16(x));
        case DType::F16: return f16_to_f32(f32_to_f16(x));
        default: fail(AXL_ERR_INVALID_ARGUMENT, "cannot round through ", dtype_name(dtype));
    }
}

}  // namespace axl
