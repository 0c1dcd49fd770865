// Softmax cross-entropy over a chunk of logits, fused with its gradient (the twin of
// backend/cpu/cross_entropy.cpp): one block per row reads the row once for an online
// max/sum-of-exponentials, then once more to write grad_scale * (softmax - onehot), in place
// if asked (same element type), or into a bf16 gradient beside f32 logits (the input of the
// bf16 GEMM that follows). The row's loss stays on the device (row_loss), so no step waits
// for it.
#include <cfloat>

#include "backend/cuda/ops.hpp"
#include "common.cuh"

namespace axl::cuda {
namespace {

constexpr int kCrossEntropyThreads = 512;  // per row: a 128K vocabulary is 256 values a thread

// (max, sum of exp(x - max)) pairs merge associatively; an empty side has max = -inf.
struct SoftmaxStats {
    float max;
    float sum;
};

__device__ __forceinline__ SoftmaxStats merge(SoftmaxStats a, SoftmaxStats b) {
    const float m = fmaxf(a.max, b.max);
    if (m == -INFINITY) return {m, 0.0f};
    return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

template <typename T, typename Grad>
__global__ void __launch_bounds__(kCrossEntropyThreads)
cross_entropy_kernel(float* row_loss, Grad* dlogits, const T* logits, const int32_t* targets, int64_t vocab,
                     float grad_scale) {
    __shared__ SoftmaxStats warp_stats[kCrossEntropyThreads / kWarpSize];
    __shared__ float target_logit_shared;
    const int64_t r = blockIdx.x;
    const T* x = logits + r * vocab;
    Grad* dx = dlogits ? dlogits + r * vocab : nullptr;
    const int32_t target = targets[r];
    if (target < 0) {
        if (dx)
            for (int64_t i = threadIdx.x; i < vocab; i += kCrossEntropyThreads) dx[i] = from_float<Grad>(0.0f);
        if (threadIdx.x == 0) row_loss[r] = 0.0f;
        return;
    }
    if (threadIdx.x == 0) target_logit_shared = to_float(x[target]);  // read before dx may overwrite it

    SoftmaxStats stats{-INFINITY, 0.0f};
    for (int64_t i = threadIdx.x; i < vocab; i += kCrossEntropyThreads) {
        const float v = to_float(x[i]);
        if (v > stats.max) {
            stats.sum = stats.sum * expf(stats.max - v) + 1.0f;
            stats.max = v;
        } else {
            stats.sum += expf(v - stats.max);
        }
    }
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
        const SoftmaxStats other{__shfl_xor_sync(0xffffffffu, stats.max, offset),
                                 __shfl_xor_sync(0xffffffffu, stats.sum, offset)};
        stats = merge(stats, other);
    }
    const int lane = threadIdx.x % kWarpSize;
    const int warp = threadIdx.x / kWarpSize;
    if (lane == 0) warp_stats[warp] = stats;
    __syncthreads();
    stats = warp_stats[0];
#pragma unroll
    for (int w = 1; w < kCrossEntropyThreads / kWarpSize; ++w) stats = merge(stats, warp_stats[w]);
    const float target_logit = target_logit_shared;

    if (threadIdx.x == 0) row_loss[r] = stats.max + logf(stats.sum) - target_logit;
    if (dx == nullptr) return;
    const float scale = grad_scale / stats.sum;
    for (int64_t i = threadIdx.x; i < vocab; i += kCrossEntropyThreads) {
        float d = expf(to_float(x[i]) - stats.max) * scale;
        if (i == target) d -= grad_scale;
        dx[i] = from_float<Grad>(d);
    }
}

template <typename T, typename Grad>
void launch_cross_entropy(float* row_loss, Grad* dlogits, const T* logits, const int32_t* targets, int64_t rows,
                          int64_t vocab, float grad_scale, cudaStream_t stream) {
    require(rows >= 0 && rows < (int64_t{1} << 31) && vocab > 0, AXL_ERR_SHAPE, "cross_entropy_forward_backward: ",
            rows, " rows of ", vocab, " logits");
    if (rows == 0) return;
    cross_entropy_kernel<<<static_cast<unsigned>(rows), kCrossEntropyThreads, 0, stream>>>(
        row_loss, dlogits, logits, targets, vocab, grad_scale);
    AXL_CUDA_CHECK_LAUNCH("cross_entropy_kernel");
}

}  // namespace

void cross_entropy_forward_backward(float* row_loss, float* dlogits, const float* logits, const int32_t* targets,
                                    int64_t rows, int64_t vocab, float grad_scale, cudaStream_t stream) {
    launch_cross_entropy(row_loss, dlogits, logits, targets, rows, vocab, grad_scale, stream);
}

void cross_entropy_forward_backward(float* row_loss, bf16* dlogits, const bf16* logits, const int32_t* targets,
                                    int64_t rows, int64_t vocab, float grad_scale, cudaStream_t stream) {
    launch_cross_entropy(row_loss, dlogits, logits, targets, rows, vocab, grad_scale, stream);
}

void cross_entropy_forward_backward(float* row_loss, bf16* dlogits, const float* logits, const int32_t* targets,
                                    int64_t rows, int64_t vocab, float grad_scale, cudaStream_t stream) {
    launch_cross_entropy(row_loss, dlogits, logits, targets, rows, vocab, grad_scale, stream);
}

}  // namespace axl::cuda
