#include "quant/nf4_fp4.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "quant/double_quant.hpp"
#include "quant/quantize.hpp"
#include "quant_test_support.hpp"

namespace axl {
namespace {

QuantizedTensor quantize_bnb(QuantFormat format, const std::vector<float>& w, int64_t rows, int64_t cols,
                             int64_t block_size = 0, bool double_quant = false) {
    QuantConfig config;
    config.format = format;
    config.block_size = block_size;
    config.double_quant = double_quant;
    return quantize(w.data(), rows, cols, config);
}

// Half the widest gap between neighbouring codes: the most a value inside [-absmax, absmax]
// can move, in units of absmax (NF4: between -1 and -0.696; FP4: between 0.667 and 1).
float half_widest_gap(QuantFormat format) {
    std::vector<float> values(bnb_4bit_code_table(format), bnb_4bit_code_table(format) + 16);
    std::sort(values.begin(), values.end());
    float widest = 0.0f;
    for (int i = 0; i + 1 < 16; ++i) widest = std::max(widest, values[i + 1] - values[i]);
    return widest / 2.0f;
}

TEST(QuantNf4Fp4, CodeTablesAreBitsandbytes) {
    const float* nf4 = bnb_4bit_code_table(QuantFormat::NF4);
    EXPECT_EQ(nf4[0], -1.0f);
    EXPECT_EQ(nf4[7], 0.0f);
    EXPECT_EQ(nf4[8], 0.07958029955625534f);
    EXPECT_EQ(nf4[15], 1.0f);
    const float* fp4 = bnb_4bit_code_table(QuantFormat::FP4);
    EXPECT_EQ(fp4[1], 0.0625f / 12.0f);
    EXPECT_EQ(fp4[2], 8.0f / 12.0f);
    EXPECT_EQ(fp4[3], 1.0f);
    EXPECT_EQ(fp4[11], -1.0f);
    EXPECT_EQ(quant_test::float_bits(fp4[8]), 0u);  // +0, as bitsandbytes stores it
    EXPECT_NEAR(half_widest_gap(QuantFormat::NF4), 0.15190, 1e-5);
    EXPECT_NEAR(half_widest_gap(QuantFormat::FP4), 1.0f / 6.0f, 1e-6);
}

TEST(QuantNf4Fp4, FirstElementGoesToTheHighNibble) {
    std::vector<float> w(64, 0.25f);
    w[0] = 1.0f;   // code 15
    w[1] = -1.0f;  // code 0
    w[2] = 0.0f;   // code 7
    w[3] = 0.5f;   // below the 0.5017 midpoint: code 12 (0.4407)
    const QuantizedTensor q = quantize_bnb(QuantFormat::NF4, w, 1, 64);
    ASSERT_EQ(q.packed.size(), 32u);
    EXPECT_EQ(q.packed[0], 0xF0);
    EXPECT_EQ(q.packed[1], 0x7C);
    ASSERT_EQ(q.scales.size(), 1u);
    EXPECT_EQ(q.scales[0], 1.0f);
}

TEST(QuantNf4Fp4, MidpointsGoToTheLowerCode) {
    const float* nf4 = bnb_4bit_code_table(QuantFormat::NF4);
    for (uint8_t code = 0; code < 15; ++code) {
        const float midpoint = (nf4[code] + nf4[code + 1]) / 2.0f;
        EXPECT_EQ(bnb_4bit_code(QuantFormat::NF4, midpoint), code);
        EXPECT_EQ(bnb_4bit_code(QuantFormat::NF4, std::nextafter(midpoint, 2.0f)), code + 1);
    }
    // FP4 codes 0 and 8 are both zero; bitsandbytes ranks code 0 first, so exact 0 and tiny
    // negative values take code 0 and tiny positive values take code 8.
    EXPECT_EQ(bnb_4bit_code(QuantFormat::FP4, 0.0f), 0);
    EXPECT_EQ(bnb_4bit_code(QuantFormat::FP4, -1e-4f), 0);
    EXPECT_EQ(bnb_4bit_code(QuantFormat::FP4, 1e-4f), 8);
    EXPECT_EQ(bnb_4bit_code(QuantFormat::FP4, 0.4f), 4);
    EXPECT_EQ(bnb_4bit_code(QuantFormat::FP4, -0.9f), 11);
}

TEST(QuantNf4Fp4, AllZeroBlockStaysZero) {
    std::vector<float> w(128, 0.0f);
    w[64] = 3.0f;
    const QuantizedTensor q = quantize_bnb(QuantFormat::NF4, w, 2, 64);
    EXPECT_EQ(q.scales[0], 0.0f);
    EXPECT_EQ(q.packed[0], 0x77);
    std::vector<float> out(128, 1.0f);
    dequantize(q, out.data());
    for (int i = 0; i < 64; ++i) EXPECT_EQ(out[i], 0.0f);
    EXPECT_EQ(out[64], 3.0f);
}

class Nf4Fp4RoundTrip : public ::testing::TestWithParam<std::tuple<QuantFormat, int64_t, bool>> {};

TEST_P(Nf4Fp4RoundTrip, ErrorStaysWithinHalfTheWidestCodeGap) {
    const auto [format, block_size, double_quant] = GetParam();
    const int64_t rows = 48, cols = 512;
    const std::vector<float> w = quant_test::random_weight(rows, cols, 7, 0.02f);
    const QuantizedTensor q = quantize_bnb(format, w, rows, cols, block_size, double_quant);
    EXPECT_EQ(static_cast<int64_t>(q.packed.size()), rows * cols / 2);
    EXPECT_EQ(q.num_blocks(), rows * cols / block_size);
    EXPECT_EQ(q.double_quant.has_value(), double_quant);
    EXPECT_EQ(q.scales.empty(), double_quant);

    std::vector<float> out(rows * cols);
    dequantize(q, out.data());
    const float gap = half_widest_gap(format);
    for (int64_t block = 0; block < q.num_blocks(); ++block) {
        float absmax = 0.0f;
        for (int64_t i = 0; i < block_size; ++i) absmax = std::max(absmax, std::fabs(w[block * block_size + i]));
        // Double quantization moves absmax a little; every value moves with it at most that much.
        const float stored = double_quant ? dequantize_absmax(*q.double_quant, block) : q.scales[block];
        const float bound = gap * absmax * 1.0001f + std::fabs(stored - absmax);
        for (int64_t i = 0; i < block_size; ++i) {
            const int64_t at = block * block_size + i;
            ASSERT_LE(std::fabs(out[at] - w[at]), bound) << "element " << at;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(QuantBlockSizes, Nf4Fp4RoundTrip,
                         ::testing::Combine(::testing::Values(QuantFormat::NF4, QuantFormat::FP4),
                                            ::testing::Values(int64_t{64}, int64_t{256}),
                                            ::testing::Bool()));

}  // namespace
}  // namespace axl
