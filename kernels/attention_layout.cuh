// What every attention kernel (kernels/attention.cu and its attention_*.cuh) needs to find its
// rows: the [B, T, heads, D] layouts, and the segment runs that bound which keys a query sees.
// Private to kernels/attention.cu, which includes it once.
#pragma once

#include <cstdint>

#include "common.cuh"

namespace axl::cuda::attention_detail {

__device__ __forceinline__ int ceil_div_device(int a, int b) { return (a + b - 1) / b; }

// Where the rows of batch row b live: [B, T, heads, D] and [B, T, kv_heads, D] layouts.
struct HeadLayout {
    int seq, heads, kv_heads, head_dim;

    __device__ int64_t q_stride() const { return int64_t{heads} * head_dim; }
    __device__ int64_t kv_stride() const { return int64_t{kv_heads} * head_dim; }
    // Offset of row t = 0 of query head h (or kv head) of batch row b.
    __device__ int64_t q_head(int b, int h) const { return (int64_t{b} * seq * heads + h) * head_dim; }
    __device__ int64_t kv_head(int b, int h) const { return (int64_t{b} * seq * kv_heads + h) * head_dim; }
    __device__ int64_t stat(int b, int h, int t) const { return (int64_t{b} * heads + h) * seq + t; }
};

// First position of the segment run holding position t (0 without segment ids). The whole
// block scans backwards from t, blockDim.x positions a step; runs are short next to the tiles
// they save.
__device__ inline int segment_run_begin(const int32_t* segment_row, int t) {
    __shared__ int begin;
    if (segment_row == nullptr) return 0;
    const int32_t id = segment_row[t];
    if (threadIdx.x == 0) begin = 0;
    __syncthreads();
    for (int base = t; base > 0; base -= static_cast<int>(blockDim.x)) {
        const int p = base - 1 - static_cast<int>(threadIdx.x);
        const bool boundary = p >= 0 && segment_row[p] != id;
        if (boundary) atomicMax(&begin, p + 1);
        if (__syncthreads_or(boundary)) break;
    }
    return begin;
}

// One past the last position of the run holding position t (seq without segment ids).
__device__ inline int segment_run_end(const int32_t* segment_row, int t, int seq) {
    __shared__ int end;
    if (segment_row == nullptr) return seq;
    const int32_t id = segment_row[t];
    if (threadIdx.x == 0) end = seq;
    __syncthreads();
    for (int base = t + 1; base < seq; base += static_cast<int>(blockDim.x)) {
        const int p = base + static_cast<int>(threadIdx.x);
        const bool boundary = p < seq && segment_row[p] != id;
        if (boundary) atomicMin(&end, p);
        if (__syncthreads_or(boundary)) break;
    }
    return end;
}

}  // namespace axl::cuda::attention_detail
