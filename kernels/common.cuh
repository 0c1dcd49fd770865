// Helpers shared by the kernels: element conversions (all arithmetic is f32), warp and block
// reductions, and the launch-size arithmetic.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/check.hpp"

namespace axl::cuda {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

constexpr int kWarpSize = 32;

// Reductions over groups of `Width` consecutive lanes (a power of two up to 32).
template <int Width = kWarpSize>
__device__ __forceinline__ float group_sum(float x) {
#pragma unroll
    for (int offset = Width / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset, Width);
    return x;
}

template <int Width = kWarpSize>
__device__ __forceinline__ float group_max(float x) {
#pragma unroll
    for (int offset = Width / 2; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset, Width));
    return x;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
// Reuses `scratch` (32 floats of shared memory): callers separate two uses by the barrier
// inside.
__device__ __forceinline__ float block_sum(float x, float* scratch) {
    const int lane = threadIdx.x % kWarpSize;
    const int warp = threadIdx.x / kWarpSize;
    const int warps = blockDim.x / kWarpSize;
    x = group_sum(x);
    __syncthreads();  // an earlier use of scratch is finished
    if (lane == 0) scratch[warp] = x;
    __syncthreads();
    x = lane < warps ? scratch[lane] : 0.0f;
    return group_sum(x);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid size for a grid-stride loop over n items: enough blocks to fill the device, no more
// than the items need.
inline unsigned grid_for(int64_t n, int threads, int64_t max_blocks = 8192) {
    const int64_t blocks = ceil_div(n, threads);
    return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > max_blocks ? max_blocks : blocks));
}

}  // namespace axl::cuda
