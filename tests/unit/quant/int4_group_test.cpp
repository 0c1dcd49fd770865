#include "quant/int4_group.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "quant/minifloat.hpp"
#include "quant/quantize.hpp"
#include "quant_test_support.hpp"

namespace axl {
namespace {

QuantizedTensor quantize_int4(const std::vector<float>& w, int64_t rows, int64_t cols, int64_t group,
                              DType weight_dtype = DType::F32) {
    QuantConfig config;
    config.format = QuantFormat::Int4Group;
    config.block_size = group;
    config.weight_dtype = weight_dtype;
    return quantize(w.data(), rows, cols, config);
}

TEST(QuantInt4Group, FirstElementGoesToTheLowNibbleAsSignedInt4) {
    // min 0, max 15: scale 1 and zero 8, so level q stores q - 8.
    std::vector<float> w(32, 7.0f);
    w[0] = 0.0f;    // q 0  -> -8 -> nibble 0x8
    w[1] = 15.0f;   // q 15 ->  7 -> nibble 0x7
    w[2] = 9.0f;    // q 9  ->  1
    w[3] = 2.5f;    // half to even: q 2 -> -6 -> 0xA
    const QuantizedTensor q = quantize_int4(w, 1, 32, 32);
    ASSERT_EQ(q.packed.size(), 16u);
    EXPECT_EQ(q.packed[0], 0x78);
    EXPECT_EQ(q.packed[1], 0xA1);
    EXPECT_EQ(q.scales[0], 1.0f);
    EXPECT_EQ(q.zeros[0], 8.0f);
    std::vector<float> out(32);
    dequantize(q, out.data());
    EXPECT_EQ(out[0], 0.0f);
    EXPECT_EQ(out[1], 15.0f);
    EXPECT_EQ(out[3], 2.0f);
}

TEST(QuantInt4Group, StoresScaleAndZeroInTheWeightDtype) {
    const std::vector<float> w = quant_test::random_weight(4, 128, 5);
    std::vector<float> bf16_values(w.size());
    for (size_t i = 0; i < w.size(); ++i) bf16_values[i] = bf16_to_f32(f32_to_bf16(w[i]));
    const QuantizedTensor q = quantize_int4(bf16_values, 4, 128, 64, DType::BF16);
    for (size_t g = 0; g < q.scales.size(); ++g) {
        EXPECT_EQ(bf16_to_f32(f32_to_bf16(q.scales[g])), q.scales[g]);
        EXPECT_EQ(bf16_to_f32(f32_to_bf16(q.zeros[g])), q.zeros[g]);
    }
}

class Int4GroupRoundTrip : public ::testing::TestWithParam<std::tuple<int64_t, DType>> {};

TEST_P(Int4GroupRoundTrip, ErrorWithinHalfAStep) {
    const auto [group, dtype] = GetParam();
    const int64_t rows = 24, cols = 512;
    std::vector<float> w = quant_test::random_weight(rows, cols, 13, 0.05f);
    for (float& x : w) x = round_through_dtype(x, dtype);
    const QuantizedTensor q = quantize_int4(w, rows, cols, group, dtype);
    EXPECT_EQ(static_cast<int64_t>(q.packed.size()), rows * cols / 2);
    EXPECT_EQ(static_cast<int64_t>(q.scales.size()), rows * cols / group);
    std::vector<float> out(rows * cols);
    dequantize(q, out.data());
    // Half a step, plus what rounding scale and zero through bf16 moves a level (|q| <= 8).
    const float stat_rounding = dtype == DType::BF16 ? std::ldexp(1.0f, -8) : std::ldexp(1.0f, -22);
    for (int64_t g = 0; g < q.num_blocks(); ++g) {
        const float bound = q.scales[g] * (0.5f + 8.0f * stat_rounding) + std::fabs(q.zeros[g]) * stat_rounding +
                            q.scales[g] * 1e-4f;
        for (int64_t i = 0; i < group; ++i) {
            const int64_t at = g * group + i;
            ASSERT_LE(std::fabs(out[at] - w[at]), bound) << "element " << at;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(QuantGroupSizes, Int4GroupRoundTrip,
                         ::testing::Combine(::testing::Values(int64_t{32}, int64_t{64}, int64_t{128}, int64_t{256}),
                                            ::testing::Values(DType::F32, DType::BF16)));

}  // namespace
}  // namespace axl
