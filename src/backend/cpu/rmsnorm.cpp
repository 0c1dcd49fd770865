// RMSNorm as Hugging Face's LlamaRMSNorm computes it in fp32:
//   out = weight * (x * rsqrt(mean(x^2) + eps)).
#include <cmath>

#include "backend/cpu/column_sums.hpp"
#include "backend/cpu/ops.hpp"

namespace axl::cpu {
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* weight, int64_t rows,
                     int64_t cols, float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float* x_row = x + r * cols;
        float* out_row = out + r * cols;
        // The mean of squares is summed in double so that it is the correctly rounded fp32 value
        // whatever the row length; the rest follows the reference's fp32 operation order.
        double sum_sq = 0.0;
        for (int64_t i = 0; i < cols; ++i) sum_sq += static_cast<double>(x_row[i]) * x_row[i];
        const float variance = static_cast<float>(sum_sq / static_cast<double>(cols));
        const float r_std = 1.0f / std::sqrt(variance + eps);
        for (int64_t i = 0; i < cols; ++i) out_row[i] = weight[i] * (x_row[i] * r_std);
        rstd[r] = r_std;
    }
}

// With n = x * rstd and out = weight * n:
//   dx = rstd * (g - n * mean(g * n)), g = dout * weight
//   dweight += sum over rows of dout * n
void rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x,
                      const float* weight, const float* rstd, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float* x_row = x + r * cols;
        const float* dout_row = dout + r * cols;
        float* dx_row = dx + r * cols;
        const float r_std = rstd[r];
        double dot = 0.0;
        for (int64_t i = 0; i < cols; ++i) dot += static_cast<double>(dout_row[i]) * weight[i] * x_row[i];
        const float mean_gn = static_cast<float>(dot / static_cast<double>(cols)) * r_std;
        for (int64_t i = 0; i < cols; ++i) {
            const float n = x_row[i] * r_std;
            dx_row[i] = r_std * (dout_row[i] * weight[i] - n * mean_gn);
        }
    }
    if (dweight == nullptr) return;
    accumulate_column_sums(dweight, rows, cols, [&](int64_t r, int64_t i) {
        return dout[r * cols + i] * (x[r * cols + i] * rstd[r]);  // f32 product, summed in double
    });
}

}  // namespace axl::cpu
