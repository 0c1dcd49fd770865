// The small float encodings the quantized formats store: FP4 E2M1 (MXFP4/NVFP4 elements),
// float8 E4M3FN (fp8 weights, NVFP4 block scales) and E8M0 (MXFP4 block scales). Encoders round
// to nearest, ties to even, as torch's casts and torchao's f32_to_f4_unpacked do.
#pragma once

#include <cstdint>

#include "core/dtype.hpp"

namespace axl {

constexpr float kE2M1Max = 6.0f;
constexpr float kE4M3Max = 448.0f;
constexpr float kE4M3MinNormal = 0.015625f;  // 2^-6, torch.finfo(float8_e4m3fn).tiny

// 4-bit code (sign in bit 3): magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6. |x| >= 6 saturates; the
// sign bit is kept, so -0.1 encodes as -0 (code 8).
uint8_t encode_e2m1(float x);
float decode_e2m1(uint8_t code);

// float8_e4m3fn: bias 7, subnormals, no infinity, 0x7f/0xff NaN. |x| >= 448 saturates to 448;
// torchao clamps to +-448 before casting, so its results do not depend on that choice.
uint8_t encode_e4m3(float x);
float decode_e4m3(uint8_t code);

// E8M0: 2^(byte - 127); 255 is NaN.
float decode_e8m0(uint8_t code);

// The value torch gets from casting `x` to `dtype` (F32, BF16 or F16) and back to f32.
float round_through_dtype(float x, DType dtype);

}  // namespace axl
