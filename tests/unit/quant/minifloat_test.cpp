#include "quant/minifloat.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace axl {
namespace {

TEST(QuantMinifloat, E2M1RoundsToNearestEvenAndSaturates) {
    const float magnitudes[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    for (uint8_t code = 0; code < 16; ++code) {
        const float value = decode_e2m1(code);
        EXPECT_EQ(std::fabs(value), magnitudes[code & 7]);
        EXPECT_EQ(std::signbit(value), code >= 8);
        EXPECT_EQ(encode_e2m1(value), code);
    }
    // Ties go to the even code.
    EXPECT_EQ(encode_e2m1(0.25f), 0);
    EXPECT_EQ(encode_e2m1(0.75f), 2);
    EXPECT_EQ(encode_e2m1(1.25f), 2);
    EXPECT_EQ(encode_e2m1(1.75f), 4);
    EXPECT_EQ(encode_e2m1(2.5f), 4);
    EXPECT_EQ(encode_e2m1(3.5f), 6);
    EXPECT_EQ(encode_e2m1(5.0f), 6);
    EXPECT_EQ(encode_e2m1(-5.0f), 14);
    EXPECT_EQ(encode_e2m1(std::nextafter(5.0f, 6.0f)), 7);
    EXPECT_EQ(encode_e2m1(100.0f), 7);
    EXPECT_EQ(encode_e2m1(-0.1f), 8);  // -0 keeps its sign
}

TEST(QuantMinifloat, E4M3CoversEveryCodeAndRoundsToNearestEven) {
    for (int code = 0; code < 256; ++code) {
        const float value = decode_e4m3(static_cast<uint8_t>(code));
        if ((code & 0x7f) == 0x7f) {
            EXPECT_TRUE(std::isnan(value));
            continue;
        }
        EXPECT_EQ(encode_e4m3(value), code) << value;
    }
    EXPECT_EQ(decode_e4m3(0x7e), 448.0f);
    EXPECT_EQ(decode_e4m3(0x01), std::ldexp(1.0f, -9));
    EXPECT_EQ(decode_e4m3(0x08), std::ldexp(1.0f, -6));
    EXPECT_EQ(encode_e4m3(1.0625f), encode_e4m3(1.0f));     // tie to even mantissa
    EXPECT_EQ(encode_e4m3(1.1875f), encode_e4m3(1.25f));
    EXPECT_EQ(encode_e4m3(248.0f), encode_e4m3(256.0f));
    EXPECT_EQ(encode_e4m3(3.0f * std::ldexp(1.0f, -10)), 0x02);  // subnormal tie: 1.5 steps -> 2
    EXPECT_EQ(encode_e4m3(std::ldexp(1.0f, -10)), 0x00);           // 0.5 steps -> 0
    EXPECT_EQ(encode_e4m3(1000.0f), 0x7e);
    EXPECT_EQ(encode_e4m3(-1000.0f), 0xfe);
}

TEST(QuantMinifloat, E8M0IsAPowerOfTwoWithNaNAt255) {
    EXPECT_EQ(decode_e8m0(127), 1.0f);
    EXPECT_EQ(decode_e8m0(130), 8.0f);
    EXPECT_EQ(decode_e8m0(0), std::ldexp(1.0f, -127));
    EXPECT_EQ(decode_e8m0(254), std::ldexp(1.0f, 127));
    EXPECT_TRUE(std::isnan(decode_e8m0(255)));
}

TEST(QuantMinifloat, RoundsThroughCheckpointDtypes) {
    // Just above a bf16 tie, and between two f16 values well away from theirs.
    const float x = 1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20);
    EXPECT_EQ(round_through_dtype(x, DType::F32), x);
    EXPECT_EQ(round_through_dtype(x, DType::BF16), 1.0f + std::ldexp(1.0f, -7));
    EXPECT_EQ(round_through_dtype(x, DType::F16), 1.0f + std::ldexp(1.0f, -8));
}

}  // namespace
}  // namespace axl
