// SwiGLU against a double-precision reference, its backward against finite differences, and
// saturation at large |gate|.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/cpu/ops.hpp"
#include "unit/backend/cpu/op_test_support.hpp"

namespace axl::cpu_test {
namespace {

TEST(CpuSwiglu, ForwardMatchesReference) {
    const int64_t n = 1001;
    const std::vector<float> gate = random_values(n, 1, 0.01f, 8.0f);
    const std::vector<float> up = random_values(n, 2);
    std::vector<float> out = poisoned(n);
    axl::cpu::swiglu_forward(out.data(), gate.data(), up.data(), n);
    std::vector<double> expected(n);
    for (int64_t i = 0; i < n; ++i) {
        const double g = gate[i];
        expected[i] = g / (1.0 + std::exp(-g)) * up[i];
    }
    expect_close(out, expected, 1e-7, 1e-6, "out");
}

TEST(CpuSwiglu, BackwardMatchesFiniteDifferences) {
    const int64_t n = 40;
    std::vector<float> gate = random_values(n, 3, 0.05f, 4.0f);
    std::vector<float> up = random_values(n, 4);
    const std::vector<float> dout = random_values(n, 5);
    auto loss = [&] {
        std::vector<float> out = poisoned(n);
        axl::cpu::swiglu_forward(out.data(), gate.data(), up.data(), n);
        return weighted_sum(out, dout);
    };
    std::vector<float> dgate = poisoned(n), dup = poisoned(n);
    axl::cpu::swiglu_backward(dgate.data(), dup.data(), dout.data(), gate.data(), up.data(), n);
    expect_close(dgate, numeric_gradient(gate, 1e-3f, loss), 1e-4, 1e-3, "dgate");
    expect_close(dup, numeric_gradient(up, 1e-3f, loss), 1e-4, 1e-3, "dup");
}

TEST(CpuSwiglu, LargeGatesStayFinite) {
    const std::vector<float> gate = {-200.0f, -90.0f, 90.0f, 200.0f};
    const std::vector<float> up = {1.5f, 1.5f, 1.5f, 1.5f};
    const std::vector<float> dout = {1.0f, 1.0f, 1.0f, 1.0f};
    std::vector<float> out = poisoned(4), dgate = poisoned(4), dup = poisoned(4);
    axl::cpu::swiglu_forward(out.data(), gate.data(), up.data(), 4);
    axl::cpu::swiglu_backward(dgate.data(), dup.data(), dout.data(), gate.data(), up.data(), 4);
    // silu(g) -> 0 for g -> -inf and -> g for g -> +inf; its slope -> 0 and -> 1.
    expect_close(out, std::vector<double>{0.0, 0.0, 135.0, 300.0}, 1e-6, 1e-6, "out");
    expect_close(dgate, std::vector<double>{0.0, 0.0, 1.5, 1.5}, 1e-6, 1e-6, "dgate");
    expect_close(dup, std::vector<double>{0.0, 0.0, 90.0, 200.0}, 1e-6, 1e-6, "dup");
}

}  // namespace
}  // namespace axl::cpu_test
