// RMSNorm on the device, out = weight * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps) (the twin of
// backend/cpu/rmsnorm.cpp, same operation order; row sums are f32 tree sums here where the
// CPU sums in double, a difference far below the f32 rounding of the outputs).
#include "backend/cuda/ops.hpp"
#include "common.cuh"

namespace axl::cuda {
namespace {

constexpr int kRowThreads = 256;  // one block per row for forward and dx

// The weight-gradient pass: each block owns kColumnsPerBlock columns over all rows, so every
// dweight element has a single writer and the sum does not depend on the launch.
constexpr int kColumnsPerBlock = 32;
constexpr int kRowGroups = 8;  // threads down the rows per column; blockDim = 32 x 8
static_assert(kColumnsPerBlock == kWarpSize, "a warp reads one row's columns of the block, coalesced");

template <typename T>
__global__ void __launch_bounds__(kRowThreads)
rmsnorm_forward_kernel(T* out, float* rstd, const T* x, const float* weight, int64_t cols, float eps) {
    __shared__ float scratch[kWarpSize];
    const int64_t r = blockIdx.x;
    const T* x_row = x + r * cols;
    T* out_row = out + r * cols;
    float sum_sq = 0.0f;
    for (int64_t i = threadIdx.x; i < cols; i += kRowThreads) {
        const float v = to_float(x_row[i]);
        sum_sq += v * v;
    }
    sum_sq = block_sum(sum_sq, scratch);
    const float variance = sum_sq / static_cast<float>(cols);
    const float r_std = 1.0f / sqrtf(variance + eps);
    for (int64_t i = threadIdx.x; i < cols; i += kRowThreads)
        out_row[i] = from_float<T>(weight[i] * (to_float(x_row[i]) * r_std));
    if (threadIdx.x == 0) rstd[r] = r_std;
}

// dx = rstd * (g - n * mean(g * n)) with g = dout * weight, n = x * rstd.
template <typename T>
__global__ void __launch_bounds__(kRowThreads)
rmsnorm_backward_dx_kernel(T* dx, const T* dout, const T* x, const float* weight, const float* rstd, int64_t cols) {
    __shared__ float scratch[kWarpSize];
    const int64_t r = blockIdx.x;
    const T* x_row = x + r * cols;
    const T* dout_row = dout + r * cols;
    T* dx_row = dx + r * cols;
    const float r_std = rstd[r];
    float dot = 0.0f;
    for (int64_t i = threadIdx.x; i < cols; i += kRowThreads)
        dot += to_float(dout_row[i]) * weight[i] * to_float(x_row[i]);
    dot = block_sum(dot, scratch);
    const float mean_gn = dot / static_cast<float>(cols) * r_std;
    for (int64_t i = threadIdx.x; i < cols; i += kRowThreads) {
        const float n = to_float(x_row[i]) * r_std;
        dx_row[i] = from_float<T>(r_std * (to_float(dout_row[i]) * weight[i] - n * mean_gn));
    }
}

// dweight[c] += sum over rows of dout[r, c] * (x[r, c] * rstd[r]).
template <typename T>
__global__ void __launch_bounds__(kColumnsPerBlock * kRowGroups)
rmsnorm_backward_dweight_kernel(float* dweight, const T* dout, const T* x, const float* rstd, int64_t rows,
                                int64_t cols) {
    __shared__ float partial[kRowGroups][kColumnsPerBlock];
    const int column_in_block = threadIdx.x % kColumnsPerBlock;
    const int group = threadIdx.x / kColumnsPerBlock;
    const int64_t c = blockIdx.x * int64_t{kColumnsPerBlock} + column_in_block;
    float sum = 0.0f;
    if (c < cols) {
        for (int64_t r = group; r < rows; r += kRowGroups)
            sum += to_float(dout[r * cols + c]) * (to_float(x[r * cols + c]) * rstd[r]);
    }
    partial[group][column_in_block] = sum;
    __syncthreads();
    if (group == 0 && c < cols) {
        float total = 0.0f;
#pragma unroll
        for (int g = 0; g < kRowGroups; ++g) total += partial[g][column_in_block];
        dweight[c] += total;
    }
}

void check_rows(const char* op, int64_t rows, int64_t cols) {
    require(rows >= 0 && rows < (int64_t{1} << 31) && cols > 0, AXL_ERR_SHAPE, op, ": ", rows, " rows of ", cols,
            " columns");
}

template <typename T>
void launch_rmsnorm_forward(T* out, float* rstd, const T* x, const float* weight, int64_t rows, int64_t cols,
                            float eps, cudaStream_t stream) {
    check_rows("rmsnorm_forward", rows, cols);
    if (rows == 0) return;
    rmsnorm_forward_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(out, rstd, x, weight, cols, eps);
    AXL_CUDA_CHECK_LAUNCH("rmsnorm_forward_kernel");
}

template <typename T>
void launch_rmsnorm_backward(T* dx, float* dweight, const T* dout, const T* x, const float* weight,
                             const float* rstd, int64_t rows, int64_t cols, cudaStream_t stream) {
    check_rows("rmsnorm_backward", rows, cols);
    if (rows == 0) return;
    rmsnorm_backward_dx_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(dx, dout, x, weight, rstd,
                                                                                       cols);
    AXL_CUDA_CHECK_LAUNCH("rmsnorm_backward_dx_kernel");
    if (dweight == nullptr) return;
    rmsnorm_backward_dweight_kernel<<<static_cast<unsigned>(ceil_div(cols, kColumnsPerBlock)),
                                      kColumnsPerBlock * kRowGroups, 0, stream>>>(dweight, dout, x, rstd, rows, cols);
    AXL_CUDA_CHECK_LAUNCH("rmsnorm_backward_dweight_kernel");
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* weight, int64_t rows, int64_t cols,
                     float eps, cudaStream_t stream) {
    launch_rmsnorm_forward(out, rstd, x, weight, rows, cols, eps, stream);
}
void rmsnorm_forward(bf16* out, float* rstd, const bf16* x, const float* weight, int64_t rows, int64_t cols,
                     float eps, cudaStream_t stream) {
    launch_rmsnorm_forward(out, rstd, x, weight, rows, cols, eps, stream);
}
void rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x, const float* weight,
                      const float* rstd, int64_t rows, int64_t cols, cudaStream_t stream) {
    launch_rmsnorm_backward(dx, dweight, dout, x, weight, rstd, rows, cols, stream);
}
void rmsnorm_backward(bf16* dx, float* dweight, const bf16* dout, const bf16* x, const float* weight,
                      const float* rstd, int64_t rows, int64_t cols, cudaStream_t stream) {
    launch_rmsnorm_backward(dx, dweight, dout, x, weight, rstd, rows, cols, stream);
}

}  // namespace axl::cuda
