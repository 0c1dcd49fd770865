// RMSNorm against a double-precision reference, and its backward against finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/cpu/ops.hpp"
#include "unit/backend/cpu/op_test_support.hpp"

namespace axl::cpu_test {
namespace {

constexpr float kEps = 1e-5f;

TEST(CpuRmsnorm, ForwardMatchesReference) {
    const int64_t rows = 7, cols = 301;
    const std::vector<float> x = random_values(rows * cols, 1, 0.1f, 3.0f);
    const std::vector<float> weight = random_values(cols, 2);
    std::vector<float> out = poisoned(rows * cols);
    std::vector<float> rstd = poisoned(rows);
    axl::cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), weight.data(), rows, cols, kEps);

    std::vector<double> expected_out(rows * cols), expected_rstd(rows);
    for (int64_t r = 0; r < rows; ++r) {
        double sum_sq = 0.0;
        for (int64_t i = 0; i < cols; ++i) sum_sq += static_cast<double>(x[r * cols + i]) * x[r * cols + i];
        expected_rstd[r] = 1.0 / std::sqrt(sum_sq / cols + kEps);
        for (int64_t i = 0; i < cols; ++i) expected_out[r * cols + i] = weight[i] * x[r * cols + i] * expected_rstd[r];
    }
    // A few fp32 roundings per element.
    expect_close(rstd, expected_rstd, 0.0, 4e-7, "rstd");
    expect_close(out, expected_out, 1e-7, 6e-7, "out");
}

TEST(CpuRmsnorm, BackwardMatchesFiniteDifferences) {
    const int64_t rows = 4, cols = 10;
    std::vector<float> x = random_values(rows * cols, 3);
    std::vector<float> weight = random_values(cols, 4);
    const std::vector<float> dout = random_values(rows * cols, 5);
    auto loss = [&] {
        std::vector<float> out = poisoned(rows * cols);
        std::vector<float> rstd = poisoned(rows);
        axl::cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), weight.data(), rows, cols, kEps);
        return weighted_sum(out, dout);
    };

    std::vector<float> out(rows * cols), rstd(rows);
    axl::cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), weight.data(), rows, cols, kEps);
    std::vector<float> dx = poisoned(rows * cols);
    // dweight is accumulated: start from a known value and subtract it afterwards.
    const std::vector<float> dweight_before = random_values(cols, 6);
    std::vector<float> dweight = dweight_before;
    axl::cpu::rmsnorm_backward(dx.data(), dweight.data(), dout.data(), x.data(), weight.data(), rstd.data(), rows, cols);
    for (int64_t i = 0; i < cols; ++i) dweight[i] -= dweight_before[i];

    expect_close(dx, numeric_gradient(x, 1e-3f, loss), 2e-4, 2e-3, "dx");
    expect_close(dweight, numeric_gradient(weight, 1e-3f, loss), 2e-4, 2e-3, "dweight");

    // A frozen weight passes no dweight and gets the same dx.
    std::vector<float> dx_frozen = poisoned(rows * cols);
    axl::cpu::rmsnorm_backward(dx_frozen.data(), nullptr, dout.data(), x.data(), weight.data(), rstd.data(), rows, cols);
    EXPECT_EQ(dx_frozen, dx);
}

// Wider than one reduction chunk of the weight gradient, so chunk edges are exercised.
TEST(CpuRmsnorm, WeightGradientOverManyColumns) {
    const int64_t rows = 3, cols = 600;
    const std::vector<float> x = random_values(rows * cols, 7);
    const std::vector<float> weight = random_values(cols, 8);
    const std::vector<float> dout = random_values(rows * cols, 9);
    std::vector<float> out(rows * cols), rstd(rows), dx(rows * cols);
    axl::cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), weight.data(), rows, cols, kEps);
    std::vector<float> dweight(cols, 0.0f);
    axl::cpu::rmsnorm_backward(dx.data(), dweight.data(), dout.data(), x.data(), weight.data(), rstd.data(), rows, cols);
    std::vector<double> expected(cols, 0.0);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < cols; ++i) expected[i] += static_cast<double>(dout[r * cols + i]) * x[r * cols + i] * rstd[r];
    }
    expect_close(dweight, expected, 1e-6, 1e-5, "dweight");
}

}  // namespace
}  // namespace axl::cpu_test
