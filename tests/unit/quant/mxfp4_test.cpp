#include "quant/mxfp4.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "quant/minifloat.hpp"
#include "quant/quantize.hpp"
#include "quant_test_support.hpp"

namespace axl {
namespace {

QuantizedTensor quantize_mxfp4(const std::vector<float>& w, int64_t rows, int64_t cols) {
    QuantConfig config;
    config.format = QuantFormat::MXFP4;
    config.expert_tensor = true;
    return quantize(w.data(), rows, cols, config);
}

TEST(QuantMxfp4, ScaleIsFloorOfLog2AmaxMinusTwo) {
    EXPECT_EQ(mxfp4_scale_code(4.0f), 127);
    EXPECT_EQ(mxfp4_scale_code(7.99f), 127);
    EXPECT_EQ(mxfp4_scale_code(8.0f), 128);
    EXPECT_EQ(mxfp4_scale_code(1.0f), 125);
    EXPECT_EQ(mxfp4_scale_code(0.0f), 0);
    EXPECT_EQ(mxfp4_scale_code(std::ldexp(1.0f, -130)), 0);
    EXPECT_EQ(mxfp4_scale_code(std::nanf("")), 255);
}

TEST(QuantMxfp4, FirstElementGoesToTheLowNibbleAndFloorScaleClips) {
    std::vector<float> w(32, 0.0f);
    w[0] = 7.9f;   // amax in [4, 8): scale 1, 7.9 clips to 6 (code 7)
    w[1] = 0.75f;  // tie -> 1.0, code 2
    w[2] = -3.5f;  // tie -> -4, code 14
    w[3] = 0.1f;   // -> +0
    const QuantizedTensor q = quantize_mxfp4(w, 1, 32);
    ASSERT_EQ(q.packed.size(), 16u);
    EXPECT_EQ(q.packed[0], 0x27);
    EXPECT_EQ(q.packed[1], 0x0E);
    EXPECT_EQ(q.scale_codes[0], 127);
    std::vector<float> out(32);
    dequantize(q, out.data());
    EXPECT_EQ(out[0], 6.0f);
    EXPECT_EQ(out[2], -4.0f);
}

TEST(QuantMxfp4, RoundTripErrorWithinOneStepOrTheClip) {
    const int64_t rows = 64, cols = 256;
    const std::vector<float> w = quant_test::random_weight(rows, cols, 31);
    const QuantizedTensor q = quantize_mxfp4(w, rows, cols);
    EXPECT_EQ(static_cast<int64_t>(q.packed.size()), rows * cols / 2);
    EXPECT_EQ(static_cast<int64_t>(q.scale_codes.size()), rows * cols / 32);
    std::vector<float> out(rows * cols);
    dequantize(q, out.data());
    for (int64_t block = 0; block < q.num_blocks(); ++block) {
        const float scale = decode_e8m0(q.scale_codes[block]);
        for (int i = 0; i < 32; ++i) {
            const float x = w[block * 32 + i];
            // Below 6 steps the widest gap (4 to 6) rounds by at most one step; above, the value
            // clips to 6 steps (FLOOR leaves amax / scale in [4, 8)).
            const float bound = std::max(scale, std::fabs(x) - 6.0f * scale);
            ASSERT_LE(std::fabs(out[block * 32 + i] - x), bound) << "block " << block;
        }
    }
}

}  // namespace
}  // namespace axl
