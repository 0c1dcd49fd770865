// Small elementwise and reduction helpers of the training step on the device (the twins of
// backend/cpu/elementwise.cpp). add, scale and bias move 16-byte vectors (common.cuh). The
// reductions are deterministic: sum_squares takes partial sums over a fixed grid and adds them
// in a fixed order, add_bias_backward gives each dbias element one owner; neither uses atomics.
#include "backend/cuda/ops.hpp"
#include "common.cuh"

namespace axl::cuda {
namespace {

constexpr int kElementwiseThreads = 256;
constexpr int kSumBlocks = 528;     // partial sums of sum_squares: 4 blocks on each of 132 SMs
constexpr int kSumThreads = 512;
constexpr int kBiasColumns = 32;    // columns a add_bias_backward block owns (one warp's width)
constexpr int kBiasRowGroups = 8;   // threads down the rows per column
static_assert(kBiasColumns == kWarpSize, "a warp reads one row's columns of the block, coalesced");

// add/scale/bias in 16-byte vectors when every pointer is 16-byte aligned (Vectorized), the
// elements after the last whole vector and every element otherwise one at a time; the same one
// f32 operation per element either way.
template <typename T, bool Vectorized>
__global__ void __launch_bounds__(kElementwiseThreads) add_inplace_kernel(T* y, const T* x, int64_t n) {
    constexpr int W = kVectorSize<T>;
    const int64_t vector_end = Vectorized ? n / W * W : 0;
    for (int64_t i = grid_thread_index() * W; i < vector_end; i += grid_thread_count() * W) {
        float a[W], b[W];
        load_vector(y + i, a);
        load_vector(x + i, b);
#pragma unroll
        for (int k = 0; k < W; ++k) a[k] += b[k];
        store_vector(y + i, a);
    }
    for (int64_t i = vector_end + grid_thread_index(); i < n; i += grid_thread_count())
        y[i] = from_float<T>(to_float(y[i]) + to_float(x[i]));
}

template <typename T, bool Vectorized>
__global__ void __launch_bounds__(kElementwiseThreads) scale_inplace_kernel(T* y, float s, int64_t n) {
    constexpr int W = kVectorSize<T>;
    const int64_t vector_end = Vectorized ? n / W * W : 0;
    for (int64_t i = grid_thread_index() * W; i < vector_end; i += grid_thread_count() * W) {
        float a[W];
        load_vector(y + i, a);
#pragma unroll
        for (int k = 0; k < W; ++k) a[k] *= s;
        store_vector(y + i, a);
    }
    for (int64_t i = vector_end + grid_thread_index(); i < n; i += grid_thread_count())
        y[i] = from_float<T>(to_float(y[i]) * s);
}

// Sum over the block in double (blockDim.x = kSumThreads); thread 0 gets it.
__device__ double block_sum_double(double x) {
    __shared__ double warp_sums[kSumThreads / kWarpSize];
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
    if (threadIdx.x % kWarpSize == 0) warp_sums[threadIdx.x / kWarpSize] = x;
    __syncthreads();
    double total = 0.0;
    if (threadIdx.x == 0)
        for (int w = 0; w < kSumThreads / kWarpSize; ++w) total += warp_sums[w];
    return total;
}

// Squares are exact in double (24-bit significands), so only the order of the sums differs
// from the CPU, and it is the same on every run.
__global__ void __launch_bounds__(kSumThreads) sum_squares_partial_kernel(double* partial, const float* x, int64_t n) {
    double sum = 0.0;
    for (int64_t i = blockIdx.x * int64_t{kSumThreads} + threadIdx.x; i < n; i += int64_t{kSumBlocks} * kSumThreads) {
        const double v = x[i];
        sum += v * v;
    }
    sum = block_sum_double(sum);
    if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

__global__ void __launch_bounds__(kSumThreads) sum_squares_total_kernel(double* result, const double* partial) {
    double sum = 0.0;
    for (int i = threadIdx.x; i < kSumBlocks; i += kSumThreads) sum += partial[i];
    sum = block_sum_double(sum);
    if (threadIdx.x == 0) *result = sum;
}

// Vectorized also needs cols to be a multiple of the vector width, so that a vector never
// crosses a row and its bias values are one aligned run.
template <typename T, bool Vectorized>
__global__ void __launch_bounds__(kElementwiseThreads)
add_bias_forward_kernel(T* y, const float* bias, int64_t rows, int64_t cols) {
    constexpr int W = kVectorSize<T>;
    const int64_t n = rows * cols;
    if constexpr (Vectorized) {
        for (int64_t i = grid_thread_index() * W; i < n; i += grid_thread_count() * W) {
            float a[W], b[W];
            load_vector(y + i, a);
            load_floats(bias + i % cols, b);
#pragma unroll
            for (int k = 0; k < W; ++k) a[k] += b[k];
            store_vector(y + i, a);
        }
    } else {
        for (int64_t i = grid_thread_index(); i < n; i += grid_thread_count())
            y[i] = from_float<T>(to_float(y[i]) + bias[i % cols]);
    }
}

// dbias[c] += sum over rows of dout[r, c].
template <typename T>
__global__ void __launch_bounds__(kBiasColumns * kBiasRowGroups)
add_bias_backward_kernel(float* dbias, const T* dout, int64_t rows, int64_t cols) {
    __shared__ float partial[kBiasRowGroups][kBiasColumns];
    const int column_in_block = threadIdx.x % kBiasColumns;
    const int group = threadIdx.x / kBiasColumns;
    const int64_t c = blockIdx.x * int64_t{kBiasColumns} + column_in_block;
    float sum = 0.0f;
    if (c < cols)
        for (int64_t r = group; r < rows; r += kBiasRowGroups) sum += to_float(dout[r * cols + c]);
    partial[group][column_in_block] = sum;
    __syncthreads();
    if (group == 0 && c < cols) {
        float total = 0.0f;
#pragma unroll
        for (int g = 0; g < kBiasRowGroups; ++g) total += partial[g][column_in_block];
        dbias[c] += total;
    }
}

template <typename T>
void launch_add_inplace(T* y, const T* x, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    if (is_vector_aligned(y) && is_vector_aligned(x)) {
        auto* kernel = add_inplace_kernel<T, true>;
        kernel<<<grid_for_resident(kernel, n, int64_t{kElementwiseThreads} * kVectorSize<T>, kElementwiseThreads),
                 kElementwiseThreads, 0, stream>>>(y, x, n);
    } else {
        auto* kernel = add_inplace_kernel<T, false>;
        kernel<<<grid_for_resident(kernel, n, kElementwiseThreads, kElementwiseThreads), kElementwiseThreads, 0,
                 stream>>>(y, x, n);
    }
    AXL_CUDA_CHECK_LAUNCH("add_inplace_kernel");
}

template <typename T>
void launch_scale_inplace(T* y, float s, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    if (is_vector_aligned(y)) {
        auto* kernel = scale_inplace_kernel<T, true>;
        kernel<<<grid_for_resident(kernel, n, int64_t{kElementwiseThreads} * kVectorSize<T>, kElementwiseThreads),
                 kElementwiseThreads, 0, stream>>>(y, s, n);
    } else {
        auto* kernel = scale_inplace_kernel<T, false>;
        kernel<<<grid_for_resident(kernel, n, kElementwiseThreads, kElementwiseThreads), kElementwiseThreads, 0,
                 stream>>>(y, s, n);
    }
    AXL_CUDA_CHECK_LAUNCH("scale_inplace_kernel");
}

template <typename T>
void launch_add_bias_forward(T* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return;
    const int64_t n = rows * cols;
    if (cols % kVectorSize<T> == 0 && is_vector_aligned(y) && is_vector_aligned(bias)) {
        auto* kernel = add_bias_forward_kernel<T, true>;
        kernel<<<grid_for_resident(kernel, n, int64_t{kElementwiseThreads} * kVectorSize<T>, kElementwiseThreads),
                 kElementwiseThreads, 0, stream>>>(y, bias, rows, cols);
    } else {
        auto* kernel = add_bias_forward_kernel<T, false>;
        kernel<<<grid_for_resident(kernel, n, kElementwiseThreads, kElementwiseThreads), kElementwiseThreads, 0,
                 stream>>>(y, bias, rows, cols);
    }
    AXL_CUDA_CHECK_LAUNCH("add_bias_forward_kernel");
}

template <typename T>
void launch_add_bias_backward(float* dbias, const T* dout, int64_t rows, int64_t cols, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return;
    add_bias_backward_kernel<<<static_cast<unsigned>(ceil_div(cols, kBiasColumns)), kBiasColumns * kBiasRowGroups, 0,
                               stream>>>(dbias, dout, rows, cols);
    AXL_CUDA_CHECK_LAUNCH("add_bias_backward_kernel");
}

}  // namespace

void add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream) { launch_add_inplace(y, x, n, stream); }
void add_inplace(bf16* y, const bf16* x, int64_t n, cudaStream_t stream) { launch_add_inplace(y, x, n, stream); }
void scale_inplace(float* y, float s, int64_t n, cudaStream_t stream) { launch_scale_inplace(y, s, n, stream); }
void scale_inplace(bf16* y, float s, int64_t n, cudaStream_t stream) { launch_scale_inplace(y, s, n, stream); }

size_t sum_squares_scratch_doubles() { return kSumBlocks; }

void sum_squares(double* result, const float* x, int64_t n, double* scratch, cudaStream_t stream) {
    require(n >= 0, AXL_ERR_SHAPE, "sum_squares: ", n, " values");
    sum_squares_partial_kernel<<<kSumBlocks, kSumThreads, 0, stream>>>(scratch, x, n);
    AXL_CUDA_CHECK_LAUNCH("sum_squares_partial_kernel");
    sum_squares_total_kernel<<<1, kSumThreads, 0, stream>>>(result, scratch);
    AXL_CUDA_CHECK_LAUNCH("sum_squares_total_kernel");
}

void add_bias_forward(float* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
    launch_add_bias_forward(y, bias, rows, cols, stream);
}
void add_bias_forward(bf16* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
    launch_add_bias_forward(y, bias, rows, cols, stream);
}
void add_bias_backward(float* dbias, const float* dout, int64_t rows, int64_t cols, cudaStream_t stream) {
    launch_add_bias_backward(dbias, dout, rows, cols, stream);
}
void add_bias_backward(float* dbias, const bf16* dout, int64_t rows, int64_t cols, cudaStream_t stream) {
    launch_add_bias_backward(dbias, dout, rows, cols, stream);
}

}  // namespace axl::cuda
