#include "quant/nvfp4.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "quant/minifloat.hpp"
#include "quant/quantize.hpp"
#include "quant_test_support.hpp"

namespace axl {
namespace {

QuantizedTensor quantize_nvfp4(const std::vector<float>& w, int64_t rows, int64_t cols, bool tensor_scale) {
    QuantConfig config;
    config.format = QuantFormat::NVFP4;
    config.nvfp4_tensor_scale = tensor_scale;
    return quantize(w.data(), rows, cols, config);
}

TEST(QuantNvfp4, FirstElementGoesToTheLowNibble) {
    // Block amax 6 without a per-tensor scale: the e4m3 block scale is exactly 1.
    std::vector<float> w(16, 0.0f);
    w[0] = 6.0f;    // code 7
    w[1] = -0.5f;   // code 9
    w[2] = 1.25f;   // tie -> 1.0, code 2
    w[3] = -5.0f;   // tie -> -4, code 14
    const QuantizedTensor q = quantize_nvfp4(w, 1, 16, false);
    ASSERT_EQ(q.packed.size(), 8u);
    EXPECT_EQ(q.packed[0], 0x97);
    EXPECT_EQ(q.packed[1], 0xE2);
    ASSERT_EQ(q.scale_codes.size(), 1u);
    EXPECT_EQ(decode_e4m3(q.scale_codes[0]), 1.0f);
    EXPECT_FALSE(q.tensor_scale.has_value());
}

TEST(QuantNvfp4, PerTensorScaleIsAmaxOver2688) {
    std::vector<float> w = quant_test::random_weight(4, 64, 23, 0.1f);
    w[17] = -26.88f;
    const QuantizedTensor q = quantize_nvfp4(w, 4, 64, true);
    ASSERT_TRUE(q.tensor_scale.has_value());
    EXPECT_EQ(*q.tensor_scale, 26.88f / 2688.0f);
}

TEST(QuantNvfp4, AllZeroTensorDequantizesToZero) {
    const std::vector<float> w(32, 0.0f);
    for (bool tensor_scale : {false, true}) {
        const QuantizedTensor q = quantize_nvfp4(w, 1, 32, tensor_scale);
        std::vector<float> out(32, 1.0f);
        dequantize(q, out.data());
        for (float value : out) EXPECT_EQ(value, 0.0f);
    }
}

TEST(QuantNvfp4, RoundTripErrorWithinOneScaleStepPlusClipping) {
    for (bool tensor_scale : {false, true}) {
        const int64_t rows = 32, cols = 256;
        const std::vector<float> w = quant_test::random_weight(rows, cols, 29);
        const QuantizedTensor q = quantize_nvfp4(w, rows, cols, tensor_scale);
        EXPECT_EQ(static_cast<int64_t>(q.packed.size()), rows * cols / 2);
        EXPECT_EQ(static_cast<int64_t>(q.scale_codes.size()), rows * cols / 16);
        std::vector<float> out(rows * cols);
        dequantize(q, out.data());
        for (int64_t block = 0; block < q.num_blocks(); ++block) {
            const float* x = w.data() + block * 16;
            float amax = 0.0f;
            for (int i = 0; i < 16; ++i) amax = std::max(amax, std::fabs(x[i]));
            const float scale = decode_e4m3(q.scale_codes[block]) * q.tensor_scale.value_or(1.0f);
            // The widest E2M1 gap (4 to 6) is 2 steps; the e4m3 scale can round down so that
            // amax / scale exceeds 6 and clips.
            const float bound = (scale + std::max(0.0f, amax - 6.0f * scale)) * 1.0001f;
            for (int i = 0; i < 16; ++i)
                ASSERT_LE(std::fabs(out[block * 16 + i] - x[i]), bound) << "block " << block;
        }
    }
}

}  // namespace
}  // namespace axl
