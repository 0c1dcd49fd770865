#include "quant/fp8_e4m3.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "quant/minifloat.hpp"
#include "quant/quantize.hpp"
#include "quant_test_support.hpp"

namespace axl {
namespace {

QuantizedTensor quantize_fp8(const std::vector<float>& w, int64_t rows, int64_t cols,
                             DType weight_dtype = DType::F32) {
    QuantConfig config;
    config.format = QuantFormat::Fp8E4M3;
    config.weight_dtype = weight_dtype;
    return quantize(w.data(), rows, cols, config);
}

TEST(QuantFp8E4M3, ScaleIsRowAmaxOver448) {
    const std::vector<float> w = {448.0f, -1.0625f, 1.0f, 0.0029296875f, 896.0f, 2.0f, -896.0f, 1.0f};
    const QuantizedTensor q = quantize_fp8(w, 2, 4);
    EXPECT_EQ(q.scales[0], 1.0f);
    EXPECT_EQ(q.scales[1], 2.0f);
    EXPECT_EQ(q.packed[0], 0x7e);                // 448
    EXPECT_EQ(q.packed[1], encode_e4m3(-1.0f));  // tie to even
    EXPECT_EQ(q.packed[3], 0x02);                // subnormal, 1.5 steps -> 2
    EXPECT_EQ(q.packed[4], 0x7e);
    EXPECT_EQ(q.packed[6], 0xfe);
}

TEST(QuantFp8E4M3, AllZeroRowDequantizesToZero) {
    const std::vector<float> w = {0.0f, 0.0f, 1.0f, -3.0f};
    const QuantizedTensor q = quantize_fp8(w, 2, 2);
    std::vector<float> out(4, 5.0f);
    dequantize(q, out.data());
    EXPECT_EQ(out[0], 0.0f);
    EXPECT_EQ(out[1], 0.0f);
    EXPECT_FLOAT_EQ(out[3], -3.0f);
}

TEST(QuantFp8E4M3, RoundTripErrorIsThreeMantissaBits) {
    for (DType dtype : {DType::F32, DType::BF16}) {
        const int64_t rows = 32, cols = 256;
        std::vector<float> w = quant_test::random_weight(rows, cols, 19);
        for (float& x : w) x = round_through_dtype(x, dtype);
        const QuantizedTensor q = quantize_fp8(w, rows, cols, dtype);
        EXPECT_EQ(static_cast<int64_t>(q.packed.size()), rows * cols);
        std::vector<float> out(rows * cols);
        dequantize(q, out.data());
        // Half an ulp of a 3-bit mantissa is 2^-4 relative; subnormals step 2^-9 * scale; a
        // scale rounded down through bf16 can clip the top value by 2^-8.
        const float clip = dtype == DType::BF16 ? std::ldexp(1.0f, -8) : 0.0f;
        for (int64_t r = 0; r < rows; ++r) {
            for (int64_t c = 0; c < cols; ++c) {
                const float x = w[r * cols + c];
                const float bound = std::fabs(x) * (std::ldexp(1.0f, -4) + clip + 1e-6f) + std::ldexp(q.scales[r], -10);
                ASSERT_LE(std::fabs(out[r * cols + c] - x), bound) << r << "," << c;
            }
        }
    }
}

}  // namespace
}  // namespace axl
