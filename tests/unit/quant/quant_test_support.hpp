// What the quantization tests share: random weights that look like real ones (gaussian, both
// signs, about 1% outliers 8-20x larger, never an exact zero) and an error check that names
// the status code and a phrase of the message.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "unit/expect_error.hpp"

namespace axl::quant_test {

inline std::vector<float> random_weight(int64_t rows, int64_t cols, uint32_t seed, float stddev = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, stddev);
    std::uniform_real_distribution<float> unit(0.0f, 1.0f);
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (float& value : w) {
        value = normal(rng);
        if (unit(rng) < 0.01f) value *= 8.0f + 12.0f * unit(rng);
        if (value == 0.0f) value = 0.5f * stddev;
    }
    return w;
}

using test::expect_error;

inline uint32_t float_bits(float value) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
}

}  // namespace axl::quant_test
