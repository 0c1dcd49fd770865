// Helpers shared by the kernels: element conversions (all arithmetic is f32), 16-byte vector
// loads and stores, warp and block reductions, and the launch-size arithmetic.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

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

// ---- 16-byte vectors ------------------------------------------------------------------------
// The memory-bound kernels move their data in the widest access a thread has (16 bytes: 8 bf16
// or 4 f32): fewer, fuller memory transactions are what takes them near the card's copy rate.
// Values are widened to f32 on load (exact) and rounded once on store, as the scalar paths do.
constexpr int kVectorBytes = 16;
template <typename T>
inline constexpr int kVectorSize = kVectorBytes / static_cast<int>(sizeof(T));

__host__ __device__ __forceinline__ bool is_vector_aligned(const void* p) {
    return reinterpret_cast<uintptr_t>(p) % kVectorBytes == 0;
}

// A vector as loaded (16 raw bytes), for kernels that keep it in registers between passes:
// 4 registers whatever the element type, widened to f32 when used.
template <typename T>
__device__ __forceinline__ uint4 load_raw_vector(const T* p) {
    return *reinterpret_cast<const uint4*>(p);
}

// The f32 values of a raw vector; the array's length says the element type (4: f32, 8: bf16).
__device__ __forceinline__ void unpack_vector(const uint4& raw, float (&v)[4]) {
    v[0] = __uint_as_float(raw.x);
    v[1] = __uint_as_float(raw.y);
    v[2] = __uint_as_float(raw.z);
    v[3] = __uint_as_float(raw.w);
}

// bf16 is the upper half of an f32: widening is a shift, and element 2i sits in the low half of
// word i (little endian).
__device__ __forceinline__ void unpack_vector(const uint4& raw, float (&v)[8]) {
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[2 * i] = __uint_as_float(words[i] << 16);
        v[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
    }
}

template <typename T>
__device__ __forceinline__ void load_vector(const T* p, float (&v)[kVectorSize<T>]) {
    unpack_vector(load_raw_vector(p), v);
}

__device__ __forceinline__ void store_vector(float* p, const float (&v)[4]) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}

__device__ __forceinline__ void store_vector(__nv_bfloat16* p, const float (&v)[8]) {
    uint32_t words[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const __nv_bfloat162 pair = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);  // .x: the lower address
        words[i] = *reinterpret_cast<const uint32_t*>(&pair);
    }
    *reinterpret_cast<uint4*>(p) = make_uint4(words[0], words[1], words[2], words[3]);
}

// N f32 values (N a multiple of 4, p 16-byte aligned) in float4 loads: the f32 side inputs
// (norm weights, biases, rotary tables) of a vector of activations.
template <int N>
__device__ __forceinline__ void load_floats(const float* p, float (&v)[N]) {
    static_assert(N % 4 == 0, "whole float4s");
#pragma unroll
    for (int i = 0; i < N; i += 4) {
        const float4 raw = *reinterpret_cast<const float4*>(p + i);
        v[i] = raw.x;
        v[i + 1] = raw.y;
        v[i + 2] = raw.z;
        v[i + 3] = raw.w;
    }
}

// A grid-stride loop's first index and stride, in 64 bits (tensors pass 2^31 elements).
__device__ __forceinline__ int64_t grid_thread_index() {
    return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_thread_count() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

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

// Blocks of `kernel` the current device holds at once (SMs x resident blocks per SM), cached
// per (device, kernel, block size): a grid-stride loop launched with this many blocks runs in
// one wave, with no tail of late blocks, whatever registers the kernel ended up using.
inline int64_t resident_blocks(const void* kernel, int threads) {
    struct Entry {
        int device;
        const void* kernel;
        int threads;
        int64_t blocks;
    };
    static std::mutex mutex;
    static std::vector<Entry> cache;
    int device = 0;
    AXL_CUDA_CHECK(cudaGetDevice(&device));
    std::lock_guard<std::mutex> lock(mutex);
    for (const Entry& e : cache)
        if (e.device == device && e.kernel == kernel && e.threads == threads) return e.blocks;
    int multiprocessors = 0, per_multiprocessor = 0;
    AXL_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
    AXL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_multiprocessor, kernel, threads, 0));
    const int64_t blocks = static_cast<int64_t>(multiprocessors) * (per_multiprocessor > 0 ? per_multiprocessor : 1);
    cache.push_back({device, kernel, threads, blocks});
    return blocks;
}

// Grid for a grid-stride loop of `kernel` over n items of `items_per_block` each: one full wave,
// or fewer blocks when the items need fewer.
template <typename Kernel>
unsigned grid_for_resident(Kernel* kernel, int64_t n, int64_t items_per_block, int threads) {
    const int64_t needed = ceil_div(n, items_per_block);
    const int64_t wave = resident_blocks(reinterpret_cast<const void*>(kernel), threads);
    return static_cast<unsigned>(needed < 1 ? 1 : (needed < wave ? needed : wave));
}

}  // namespace axl::cuda
