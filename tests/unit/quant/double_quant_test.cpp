#include "quant/double_quant.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "quant_test_support.hpp"

namespace axl {
namespace {

// The largest distance from a value in [-1, 1] to its nearest map entry.
float worst_normalized_error(std::span<const float> map) {
    float worst = 1.0f + map.front();  // -1 lies below the most negative entry
    for (size_t i = 0; i + 1 < map.size(); ++i) worst = std::max(worst, (map[i + 1] - map[i]) / 2.0f);
    return worst;
}

TEST(QuantDoubleQuant, DynamicMapIsBitsandbytes) {
    const std::vector<float>& map = dynamic_code_map();
    ASSERT_EQ(map.size(), 256u);
    EXPECT_TRUE(std::is_sorted(map.begin(), map.end()));
    EXPECT_EQ(map[127], 0.0f);
    EXPECT_EQ(map[255], 1.0f);
    // Values bitsandbytes 0.50.2's create_dynamic_map() returns; the oracle test checks all 256.
    EXPECT_EQ(map[0], -0.992968738079071f);
    EXPECT_EQ(map[254], 0.992968738079071f);
    EXPECT_EQ(map[128], 5.500000384017767e-07f);
    EXPECT_EQ(map[1], -0.9789062738418579f);
    for (int i = 0; i < 127; ++i) EXPECT_EQ(map[i], -map[254 - i]) << i;
}

TEST(QuantDoubleQuant, CodesComeFromASixteenBitGrid) {
    const std::vector<float>& map = dynamic_code_map();
    EXPECT_EQ(dynamic_code_of(1.0f), 255);
    EXPECT_EQ(dynamic_code_of(-1.0f), 0);
    // Where entries are farther apart than the grid step, every entry maps to itself...
    for (int i = 0; i < 256; ++i) {
        if (std::fabs(map[i]) > 0.01f) {
            EXPECT_EQ(dynamic_code_of(map[i]), i) << i;
        }
    }
    // ...but near 0 the grid (step 2/65535, no point at 0) is coarser than the map: 0 and
    // 5.5e-7 both land on the grid point 1.53e-5, whose nearest entry is 2.125e-5 (index 131).
    EXPECT_EQ(dynamic_code_of(0.0f), 131);
    EXPECT_EQ(dynamic_code_of(map[128]), 131);
    std::vector<float> probes = quant_test::random_weight(1, 5000, 9);
    const float bound = worst_normalized_error(map) + 1.0f / 65535.0f;
    for (float probe : probes) {
        const float v = std::clamp(probe / 4.0f, -1.0f, 1.0f);
        EXPECT_LE(std::fabs(map[dynamic_code_of(v)] - v), bound) << v;
    }
}

TEST(QuantDoubleQuant, AbsmaxComesBackWithinHalfAMapStep) {
    std::vector<float> absmax = quant_test::random_weight(1, 700, 3);
    for (float& value : absmax) value = std::fabs(value) + 0.01f;
    const DoubleQuantStats stats = double_quantize_absmax(absmax);
    ASSERT_EQ(stats.codes.size(), 700u);
    ASSERT_EQ(stats.absmax.size(), 3u);  // 256 + 256 + 188
    EXPECT_EQ(stats.offset, absmax_mean(absmax));
    const float step = worst_normalized_error(stats.code_map) + 1.0f / 65535.0f;
    for (int64_t i = 0; i < 700; ++i) {
        const float bound = step * stats.absmax[i / 256] * 1.0001f;
        EXPECT_LE(std::fabs(dequantize_absmax(stats, i) - absmax[i]), bound) << i;
    }
}

TEST(QuantDoubleQuant, ConstantAbsmaxIsRestoredExactly) {
    const std::vector<float> absmax(300, 0.125f);
    const DoubleQuantStats stats = double_quantize_absmax(absmax);
    EXPECT_EQ(stats.offset, 0.125f);
    EXPECT_EQ(stats.absmax[0], 0.0f);
    EXPECT_EQ(stats.codes[0], 0);
    for (int64_t i = 0; i < 300; ++i) EXPECT_EQ(dequantize_absmax(stats, i), 0.125f);
}

TEST(QuantDoubleQuant, MeanIsAccumulatedInDouble) {
    std::vector<float> values(1000, 1.0f);
    values.push_back(1e-4f);
    const double exact = (1000.0 + static_cast<double>(1e-4f)) / 1001.0;
    EXPECT_EQ(absmax_mean(values), static_cast<float>(exact));
}

}  // namespace
}  // namespace axl
