// The elementwise helpers, the bias forward, and the bias backward (accumulating) against
// finite differences.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/ops.hpp"
#include "unit/backend/cpu/op_test_support.hpp"

namespace axl::cpu_test {
namespace {

TEST(CpuElementwise, AddAndScaleInPlace) {
    const int64_t n = 1003;
    const std::vector<float> x = random_values(n, 1);
    const std::vector<float> y0 = random_values(n, 2);
    std::vector<float> y = y0;
    axl::cpu::add_inplace(y.data(), x.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(y[i], y0[i] + x[i]);
    axl::cpu::scale_inplace(y.data(), -0.5f, n);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(y[i], (y0[i] + x[i]) * -0.5f);
}

TEST(CpuElementwise, SumSquaresInDoubleAndIndependentOfThreads) {
    const int64_t n = 100003;  // several reduction blocks and a ragged last one
    const std::vector<float> x = random_values(n, 3, 0.1f, 100.0f);
    double expected = 0.0;
    for (float v : x) expected += static_cast<double>(v) * v;

    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const double serial = axl::cpu::sum_squares(x.data(), n);
    omp_set_num_threads(std::max(threads, 2));
    const double parallel = axl::cpu::sum_squares(x.data(), n);
    omp_set_num_threads(threads);

    EXPECT_NEAR(serial, expected, 1e-12 * expected);
    EXPECT_EQ(serial, parallel);
}

TEST(CpuElementwise, AddBiasForward) {
    const int64_t rows = 3, cols = 5;
    const std::vector<float> bias = random_values(cols, 4);
    const std::vector<float> y0 = random_values(rows * cols, 5);
    std::vector<float> y = y0;
    axl::cpu::add_bias_forward(y.data(), bias.data(), rows, cols);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < cols; ++i) EXPECT_EQ(y[r * cols + i], y0[r * cols + i] + bias[i]);
    }
}

TEST(CpuElementwise, AddBiasBackwardAccumulatesFiniteDifferenceGradient) {
    const int64_t rows = 6, cols = 300;  // more columns than one reduction chunk
    std::vector<float> bias = random_values(cols, 6);
    const std::vector<float> y0 = random_values(rows * cols, 7);
    const std::vector<float> dout = random_values(rows * cols, 8);
    auto loss = [&] {
        std::vector<float> y = y0;
        axl::cpu::add_bias_forward(y.data(), bias.data(), rows, cols);
        return weighted_sum(y, dout);
    };
    const std::vector<float> dbias_before = random_values(cols, 9);
    std::vector<float> dbias = dbias_before;
    axl::cpu::add_bias_backward(dbias.data(), dout.data(), rows, cols);
    for (int64_t i = 0; i < cols; ++i) dbias[i] -= dbias_before[i];
    expect_close(dbias, numeric_gradient(bias, 1e-2f, loss), 1e-5, 1e-4, "dbias");
}

}  // namespace
}  // namespace axl::cpu_test
