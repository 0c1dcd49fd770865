// Rotary embedding: tables as transformers computes them, the rotate_half layout, and the
// backward as the exact transpose of the forward.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/cpu/ops.hpp"
#include "unit/backend/cpu/op_test_support.hpp"

namespace axl::cpu_test {
namespace {

// inv_freq[i] = theta^(-2i/D), as the model computes it for default rotary scaling.
std::vector<float> inverse_frequencies(int64_t head_dim, double theta) {
    std::vector<float> inv_freq(head_dim / 2);
    for (int64_t i = 0; i < head_dim / 2; ++i) {
        inv_freq[i] = static_cast<float>(1.0 / std::pow(theta, 2.0 * i / head_dim));
    }
    return inv_freq;
}

TEST(CpuRope, TablesUseFp32Angles) {
    const int64_t head_dim = 64, half = head_dim / 2, max_pos = 5000;
    const std::vector<float> inv_freq = inverse_frequencies(head_dim, 500000.0);
    std::vector<float> cos = poisoned(max_pos * half), sin = poisoned(max_pos * half);
    axl::cpu::rope_tables(cos.data(), sin.data(), inv_freq.data(), max_pos, half);

    // The angle is the fp32 product (as in transformers); cos/sin of it are then exact to fp32.
    std::vector<double> expected_cos(max_pos * half), expected_sin(max_pos * half);
    for (int64_t pos = 0; pos < max_pos; ++pos) {
        for (int64_t i = 0; i < half; ++i) {
            const float angle = static_cast<float>(pos) * inv_freq[i];
            expected_cos[pos * half + i] = std::cos(static_cast<double>(angle));
            expected_sin[pos * half + i] = std::sin(static_cast<double>(angle));
        }
    }
    expect_close(cos, expected_cos, 1e-7, 1.2e-7, "cos");
    expect_close(sin, expected_sin, 1e-7, 1.2e-7, "sin");
}

struct RopeCase {
    int64_t tokens = 6, heads = 3, head_dim = 8, max_pos = 20;
    std::vector<int32_t> positions = {0, 1, 2, 7, 19, 3};
    std::vector<float> cos, sin;

    RopeCase() {
        const std::vector<float> inv_freq = inverse_frequencies(head_dim, 10000.0);
        cos.resize(max_pos * head_dim / 2);
        sin.resize(max_pos * head_dim / 2);
        axl::cpu::rope_tables(cos.data(), sin.data(), inv_freq.data(), max_pos, head_dim / 2);
    }
    void forward(std::vector<float>& x) const {
        axl::cpu::rope_forward(x.data(), positions.data(), cos.data(), sin.data(), tokens, heads, head_dim);
    }
    void backward(std::vector<float>& dx) const {
        axl::cpu::rope_backward(dx.data(), positions.data(), cos.data(), sin.data(), tokens, heads, head_dim);
    }
};

TEST(CpuRope, ForwardRotatesFirstHalfWithSecondHalf) {
    const RopeCase rope;
    const std::vector<float> x = random_values(rope.tokens * rope.heads * rope.head_dim, 1);
    std::vector<float> out = x;
    rope.forward(out);

    const int64_t half = rope.head_dim / 2;
    std::vector<float> expected(x.size());
    for (int64_t t = 0; t < rope.tokens; ++t) {
        for (int64_t h = 0; h < rope.heads; ++h) {
            const float* in = x.data() + (t * rope.heads + h) * rope.head_dim;
            float* ref = expected.data() + (t * rope.heads + h) * rope.head_dim;
            for (int64_t i = 0; i < half; ++i) {
                // transformers: q * cos + rotate_half(q) * sin, rotate_half(q) = cat(-q2, q1).
                const float c = rope.cos[rope.positions[t] * half + i];
                const float s = rope.sin[rope.positions[t] * half + i];
                ref[i] = in[i] * c + (-in[i + half]) * s;
                ref[i + half] = in[i + half] * c + in[i] * s;
            }
        }
    }
    // Same fp32 operations in the same order: bitwise equal.
    EXPECT_EQ(out, expected);
}

TEST(CpuRope, BackwardMatchesFiniteDifferences) {
    const RopeCase rope;
    std::vector<float> x = random_values(rope.tokens * rope.heads * rope.head_dim, 2);
    const std::vector<float> dout = random_values(x.size(), 3);
    auto loss = [&] {
        std::vector<float> out = x;
        rope.forward(out);
        return weighted_sum(out, dout);
    };
    std::vector<float> dx = dout;
    rope.backward(dx);
    expect_close(dx, numeric_gradient(x, 1e-2f, loss), 1e-5, 1e-4, "dx");
}

TEST(CpuRope, BackwardUndoesForward) {
    const RopeCase rope;
    const std::vector<float> x = random_values(rope.tokens * rope.heads * rope.head_dim, 4);
    std::vector<float> roundtrip = x;
    rope.forward(roundtrip);
    rope.backward(roundtrip);
    expect_close(roundtrip, x, 1e-6, 1e-6, "backward(forward(x))");
}

}  // namespace
}  // namespace axl::cpu_test
