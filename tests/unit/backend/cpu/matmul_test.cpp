// The blocked SGEMM against a triple loop in double, over all transposes and over sizes that
// hit every edge of the blocking (tile edges, several K slices, several row blocks, several
// column blocks), plus the gradients the model takes through it.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/cpu/ops.hpp"
#include "unit/backend/cpu/op_test_support.hpp"

namespace axl::cpu_test {
namespace {

struct Product {
    std::vector<double> value;
    std::vector<double> magnitude;  // sum of |terms|, which bounds the rounding error
};

// alpha * op(A) op(B) + beta * C in double; C is not read when beta == 0.
Product naive_matmul(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c,
                     int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha, float beta) {
    Product out{std::vector<double>(static_cast<std::size_t>(m * n)), std::vector<double>(static_cast<std::size_t>(m * n))};
    for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
            double sum = 0.0;
            double magnitude = 0.0;
            for (int64_t p = 0; p < k; ++p) {
                const double term = static_cast<double>(trans_a ? a[p * m + i] : a[i * k + p]) *
                                    static_cast<double>(trans_b ? b[j * k + p] : b[p * n + j]);
                sum += term;
                magnitude += std::fabs(term);
            }
            double value = alpha * sum;
            magnitude *= std::fabs(alpha);
            if (beta != 0.0f) {
                value += static_cast<double>(beta) * c[i * n + j];
                magnitude += std::fabs(static_cast<double>(beta) * c[i * n + j]);
            }
            out.value[i * n + j] = value;
            out.magnitude[i * n + j] = magnitude;
        }
    }
    return out;
}

struct Shape {
    int64_t m, n, k;
};

void check_against_naive(const Shape& shape, bool trans_a, bool trans_b, float alpha, float beta, uint32_t seed) {
    const auto [m, n, k] = shape;
    const std::vector<float> a = random_values(static_cast<std::size_t>(m * k), seed);
    const std::vector<float> b = random_values(static_cast<std::size_t>(k * n), seed + 1);
    std::vector<float> c = beta == 0.0f ? poisoned(static_cast<std::size_t>(m * n))
                                        : random_values(static_cast<std::size_t>(m * n), seed + 2);
    const Product expected = naive_matmul(a, b, c, m, n, k, trans_a, trans_b, alpha, beta);
    axl::cpu::matmul(c.data(), a.data(), b.data(), m, n, k, trans_a, trans_b, alpha, beta);

    const std::string what = "matmul m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" +
                             std::to_string(k) + " ta=" + std::to_string(trans_a) + " tb=" + std::to_string(trans_b) +
                             " beta=" + std::to_string(beta);
    // fp32 accumulation over k terms: a few units of fp32 epsilon times the sum of |terms|.
    int reported = 0;
    for (std::size_t i = 0; i < c.size(); ++i) {
        const double allowed = 8.0 * 1.2e-7 * std::sqrt(static_cast<double>(k) + 1.0) * expected.magnitude[i];
        const double error = std::fabs(c[i] - expected.value[i]);
        if (!(error <= allowed) && reported++ < 5) {
            ADD_FAILURE() << what << " [" << i << "]: got " << c[i] << ", expected " << expected.value[i];
        }
    }
}

// Sizes around the micro-tile (6 x 16), the row block (96), the K slice (256) and the column
// block (4096), and degenerate ones.
const std::vector<Shape> kShapes = {
    {1, 1, 1},   {1, 9, 5},      {9, 1, 5},     {5, 3, 1},     {6, 16, 8},   {7, 17, 3},
    {13, 31, 19}, {97, 33, 257}, {130, 20, 520}, {3, 4100, 7}, {2, 40, 1000},
};

TEST(CpuMatmul, MatchesNaiveForAllTransposesAndSizes) {
    uint32_t seed = 1;
    for (const Shape& shape : kShapes) {
        for (bool trans_a : {false, true}) {
            for (bool trans_b : {false, true}) {
                check_against_naive(shape, trans_a, trans_b, 1.0f, 0.0f, seed++);
                check_against_naive(shape, trans_a, trans_b, -0.75f, 0.5f, seed++);
            }
        }
    }
}

TEST(CpuMatmul, BetaOneAccumulatesAcrossKSlices) {
    check_against_naive({37, 45, 700}, false, true, 2.0f, 1.0f, 99);
    check_against_naive({37, 45, 700}, true, false, 1.0f, 1.0f, 100);
}

TEST(CpuMatmul, BetaZeroIgnoresNaNInOutput) {
    const std::vector<float> a = random_values(4 * 3, 5);
    const std::vector<float> b = random_values(3 * 2, 6);
    std::vector<float> c = poisoned(4 * 2);
    axl::cpu::matmul(c.data(), a.data(), b.data(), 4, 2, 3, false, false, 1.0f, 0.0f);
    for (float x : c) EXPECT_FALSE(std::isnan(x));
}

TEST(CpuMatmul, EmptyDepthScalesOutput) {
    std::vector<float> c = random_values(6, 7);
    const std::vector<float> before = c;
    axl::cpu::matmul(c.data(), nullptr, nullptr, 2, 3, 0, false, false, 1.0f, 0.5f);
    for (std::size_t i = 0; i < c.size(); ++i) EXPECT_EQ(c[i], 0.5f * before[i]);

    c = poisoned(6);
    axl::cpu::matmul(c.data(), nullptr, nullptr, 2, 3, 0, false, false, 1.0f, 0.0f);
    for (float x : c) EXPECT_EQ(x, 0.0f);
}

// Every element is summed by one thread in a fixed order, so the result must not depend on
// the number of threads.
TEST(CpuMatmul, ResultIndependentOfThreadCount) {
    const int64_t m = 150, n = 70, k = 300;
    const std::vector<float> a = random_values(m * k, 8);
    const std::vector<float> b = random_values(k * n, 9);
    std::vector<float> serial(m * n), parallel(m * n);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    axl::cpu::matmul(serial.data(), a.data(), b.data(), m, n, k, false, false, 1.0f, 0.0f);
    omp_set_num_threads(std::max(threads, 2));
    axl::cpu::matmul(parallel.data(), a.data(), b.data(), m, n, k, false, false, 1.0f, 0.0f);
    omp_set_num_threads(threads);
    EXPECT_EQ(serial, parallel);
}

// The linear layer's backward as the model writes it with this matmul: for Y = X W^T,
// dX = dY W and dW = dY^T X, checked against finite differences of sum(Y * dY).
TEST(CpuMatmul, LinearLayerGradientsMatchFiniteDifferences) {
    const int64_t tokens = 5, in = 7, out = 4;
    std::vector<float> x = random_values(tokens * in, 10);
    std::vector<float> w = random_values(out * in, 11);
    const std::vector<float> dy = random_values(tokens * out, 12);
    auto loss = [&] {
        std::vector<float> y = poisoned(tokens * out);
        axl::cpu::matmul(y.data(), x.data(), w.data(), tokens, out, in, false, true, 1.0f, 0.0f);
        return weighted_sum(y, dy);
    };

    std::vector<float> dx = poisoned(tokens * in);
    std::vector<float> dw = poisoned(out * in);
    axl::cpu::matmul(dx.data(), dy.data(), w.data(), tokens, in, out, false, false, 1.0f, 0.0f);
    axl::cpu::matmul(dw.data(), dy.data(), x.data(), out, in, tokens, true, false, 1.0f, 0.0f);

    expect_close(dx, numeric_gradient(x, 1e-2f, loss), 1e-4, 1e-3, "dx");
    expect_close(dw, numeric_gradient(w, 1e-2f, loss), 1e-4, 1e-3, "dw");
}

}  // namespace
}  // namespace axl::cpu_test
