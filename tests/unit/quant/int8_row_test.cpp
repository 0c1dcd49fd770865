#include "quant/int8_row.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "quant/minifloat.hpp"
#include "quant/quantize.hpp"
#include "quant_test_support.hpp"

namespace axl {
namespace {

QuantizedTensor quantize_int8_row(const std::vector<float>& w, int64_t rows, int64_t cols) {
    QuantConfig config;
    config.format = QuantFormat::Int8Row;
    return quantize(w.data(), rows, cols, config);
}

TEST(QuantInt8Row, ScalesBy127OverTheRowAbsmaxAndRoundsHalfToEven) {
    // Row absmax 127 makes the scale exactly 1, so the halves show the rounding.
    const std::vector<float> w = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.0f,
                                  -2.0f, 1.0f, 0.0f, 0.5f, 0.25f, -1.0f, 2.0f, -0.5f};
    const QuantizedTensor q = quantize_int8_row(w, 2, 8);
    ASSERT_EQ(q.packed.size(), 16u);
    const int8_t expected_first[8] = {127, 0, 2, 2, 0, -2, -2, 3};
    for (int i = 0; i < 8; ++i) EXPECT_EQ(static_cast<int8_t>(q.packed[i]), expected_first[i]) << i;
    EXPECT_EQ(q.scales[0], 127.0f);
    EXPECT_EQ(q.scales[1], 2.0f);
    EXPECT_EQ(static_cast<int8_t>(q.packed[8]), -127);  // -2 * 127 / 2
    EXPECT_EQ(static_cast<int8_t>(q.packed[12]), 16);   // 0.25 * 63.5 = 15.875
}

TEST(QuantInt8Row, RoundsTheWeightThroughF16First) {
    const float not_f16 = 1.0f + std::ldexp(1.0f, -12);  // f16 has 10 mantissa bits
    const std::vector<float> w = {not_f16, 0.5f};
    const QuantizedTensor q = quantize_int8_row(w, 1, 2);
    EXPECT_EQ(q.scales[0], 1.0f);
}

TEST(QuantInt8Row, AllZeroRowDequantizesToZero) {
    const std::vector<float> w = {0.0f, 0.0f, 0.0f, 0.0f, 1.0f, -1.0f, 0.5f, 0.25f};
    const QuantizedTensor q = quantize_int8_row(w, 2, 4);
    std::vector<float> out(8, 9.0f);
    dequantize(q, out.data());
    for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], 0.0f);
    EXPECT_EQ(out[4], 1.0f);
}

TEST(QuantInt8Row, RoundTripErrorWithinHalfAStepPlusF16Rounding) {
    const int64_t rows = 40, cols = 300;
    const std::vector<float> w = quant_test::random_weight(rows, cols, 11);
    const QuantizedTensor q = quantize_int8_row(w, rows, cols);
    EXPECT_EQ(static_cast<int64_t>(q.packed.size()), rows * cols);
    std::vector<float> out(rows * cols);
    dequantize(q, out.data());
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
            const float x = w[r * cols + c];
            const float bound = q.scales[r] / 254.0f * 1.0001f + std::fabs(x) * std::ldexp(1.0f, -11);
            ASSERT_LE(std::fabs(out[r * cols + c] - x), bound) << r << "," << c;
        }
    }
}

}  // namespace
}  // namespace axl
