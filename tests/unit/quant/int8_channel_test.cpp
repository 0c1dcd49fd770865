#include "quant/int8_channel.hpp"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <vector>

#include "quant/minifloat.hpp"
#include "quant/quantize.hpp"
#include "quant_test_support.hpp"

namespace axl {
namespace {

QuantizedTensor quantize_int8_channel(const std::vector<float>& w, int64_t rows, int64_t cols,
                                      DType weight_dtype = DType::F32) {
    QuantConfig config;
    config.format = QuantFormat::Int8Channel;
    config.weight_dtype = weight_dtype;
    return quantize(w.data(), rows, cols, config);
}

TEST(QuantInt8Channel, ScaleIsAmaxOver127Point5) {
    // amax 127.5: scale 1; the top value rounds half to even to 128 and clamps to 127.
    const std::vector<float> w = {127.5f, -127.5f, 0.5f, 1.5f, -2.5f, 3.0f, 0.0f, -0.5f};
    const QuantizedTensor q = quantize_int8_channel(w, 1, 8);
    EXPECT_EQ(q.scales[0], 1.0f);
    const int8_t expected[8] = {127, -128, 0, 2, -2, 3, 0, 0};
    for (int i = 0; i < 8; ++i) EXPECT_EQ(static_cast<int8_t>(q.packed[i]), expected[i]) << i;
}

TEST(QuantInt8Channel, ScaleIsRoundedThroughTheWeightDtypeAndFloored) {
    const std::vector<float> w = {1.0f, 0.25f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    const QuantizedTensor f32 = quantize_int8_channel(w, 2, 4);
    const QuantizedTensor bf16 = quantize_int8_channel(w, 2, 4, DType::BF16);
    EXPECT_EQ(f32.scales[0], 1.0f / 127.5f);
    EXPECT_EQ(bf16.scales[0], bf16_to_f32(f32_to_bf16(1.0f / 127.5f)));
    EXPECT_EQ(f32.scales[1], FLT_EPSILON);  // an all-zero row keeps a usable scale
}

TEST(QuantInt8Channel, RoundTripErrorWithinHalfAStep) {
    for (DType dtype : {DType::F32, DType::BF16}) {
        const int64_t rows = 32, cols = 256;
        std::vector<float> w = quant_test::random_weight(rows, cols, 17);
        for (float& x : w) x = round_through_dtype(x, dtype);
        const QuantizedTensor q = quantize_int8_channel(w, rows, cols, dtype);
        std::vector<float> out(rows * cols);
        dequantize(q, out.data());
        // A scale rounded down through bf16 can push the top value past 127.5 steps to the clamp.
        const float steps = dtype == DType::F32 ? 0.5001f : 1.0f;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c)
                ASSERT_LE(std::fabs(out[r * cols + c] - w[r * cols + c]), steps * q.scales[r]) << r << "," << c;
    }
}

}  // namespace
}  // namespace axl
