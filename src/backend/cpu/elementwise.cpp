// Small elementwise and reduction helpers of the training step.
#include <algorithm>
#include <vector>

#include "backend/cpu/column_sums.hpp"
#include "backend/cpu/ops.hpp"

namespace axl::cpu {
namespace {

// Fixed block sizes for the reductions: partial sums are taken over the same blocks whatever
// the thread count, so the results are reproducible from run to run and machine to machine.
constexpr int64_t kSumBlock = 1 << 14;

}  // namespace

void add_inplace(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void scale_inplace(float* y, float s, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) y[i] *= s;
}

double sum_squares(const float* x, int64_t n) {
    const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
    std::vector<double> partial(static_cast<std::size_t>(blocks), 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t block = 0; block < blocks; ++block) {
        const int64_t end = std::min(n, (block + 1) * kSumBlock);
        double sum = 0.0;
        for (int64_t i = block * kSumBlock; i < end; ++i) sum += static_cast<double>(x[i]) * x[i];
        partial[static_cast<std::size_t>(block)] = sum;
    }
    double total = 0.0;
    for (double sum : partial) total += sum;
    return total;
}

void add_bias_forward(float* y, const float* bias, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        float* y_row = y + r * cols;
        for (int64_t i = 0; i < cols; ++i) y_row[i] += bias[i];
    }
}

// dbias is a parameter gradient, so it is accumulated (+=).
void add_bias_backward(float* dbias, const float* dout, int64_t rows, int64_t cols) {
    accumulate_column_sums(dbias, rows, cols, [&](int64_t r, int64_t i) { return dout[r * cols + i]; });
}

}  // namespace axl::cpu

