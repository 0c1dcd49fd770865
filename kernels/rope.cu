// Rotary position embedding on the device, Hugging Face "rotate_half" layout (the twin of
// backend/cpu/rope.cpp, same formulas and the same f32 angle rounding). x moves in 16-byte
// vectors where the head layout and the pointers allow it, one pair a thread otherwise.
#include "backend/cuda/ops.hpp"
#include "common.cuh"

namespace axl::cuda {
namespace {

constexpr int kRopeThreads = 256;

__global__ void __launch_bounds__(kRopeThreads)
rope_tables_kernel(float* cos, float* sin, const float* inv_freq, int64_t max_pos, int64_t half_dim) {
    const int64_t n = max_pos * half_dim;
    for (int64_t i = blockIdx.x * int64_t{kRopeThreads} + threadIdx.x; i < n; i += int64_t{gridDim.x} * kRopeThreads) {
        const int64_t pos = i / half_dim;
        const float angle = static_cast<float>(pos) * inv_freq[i % half_dim];
        cos[i] = cosf(angle);
        sin[i] = sinf(angle);
    }
}

// The rotation of one pair, x1 = x[i], x2 = x[i + half], by +angle (forward) or -angle
// (backward, the transpose). Products rounded separately, as the CPU twin (no fused
// multiply-add): f32 results are bit-identical.
template <bool Backward>
__device__ __forceinline__ void rotate(float& x1, float& x2, float c, float s) {
    const float a = x1, b = x2;
    if (Backward) {
        x1 = __fadd_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        x2 = __fsub_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    } else {
        x1 = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        x2 = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    }
}

// One thread per (token, head, pair i). Index: the type the item index is split in (its
// divisions cost several times more in 64 bits, so 32 when the items fit).
template <typename T, bool Backward, typename Index>
__global__ void __launch_bounds__(kRopeThreads)
rope_kernel(T* x, const int32_t* positions, const float* cos, const float* sin, Index tokens, Index heads,
            Index half) {
    const Index n = tokens * heads * half;
    for (int64_t item = grid_thread_index(); item < n; item += grid_thread_count()) {
        const Index i = static_cast<Index>(item);
        const int64_t pair = i % half;
        const int64_t head = i / half;  // (t * heads + h)
        const Index t = static_cast<Index>(head) / heads;
        const int64_t table = static_cast<int64_t>(positions[t]) * half + pair;
        T* row = x + head * 2 * half;
        float x1 = to_float(row[pair]);
        float x2 = to_float(row[pair + half]);
        rotate<Backward>(x1, x2, cos[table], sin[table]);
        row[pair] = from_float<T>(x1);
        row[pair + half] = from_float<T>(x2);
    }
}

// One thread per (token, head, W consecutive pairs): a 16-byte vector from each half of the
// head and the W angles' cos and sin in float4s (a token's table row is shared by its heads,
// so it comes from cache). Needs half % W == 0 and 16-byte aligned x, cos and sin.
template <typename T, bool Backward, typename Index>
__global__ void __launch_bounds__(kRopeThreads)
rope_vector_kernel(T* x, const int32_t* positions, const float* cos, const float* sin, Index tokens, Index heads,
                   Index half) {
    constexpr int W = kVectorSize<T>;
    const Index groups = half / W;  // vectors in a half head
    const Index n = tokens * heads * groups;
    for (int64_t item = grid_thread_index(); item < n; item += grid_thread_count()) {
        const Index i = static_cast<Index>(item);
        const int64_t pair = static_cast<int64_t>(i % groups) * W;
        const int64_t head = i / groups;  // (t * heads + h)
        const Index t = static_cast<Index>(head) / heads;
        const int64_t table = static_cast<int64_t>(positions[t]) * half + pair;
        T* first = x + head * 2 * half + pair;
        T* second = first + half;
        float x1[W], x2[W], c[W], s[W];
        load_vector(first, x1);
        load_vector(second, x2);
        load_floats(cos + table, c);
        load_floats(sin + table, s);
#pragma unroll
        for (int k = 0; k < W; ++k) rotate<Backward>(x1[k], x2[k], c[k], s[k]);
        store_vector(first, x1);
        store_vector(second, x2);
    }
}

template <typename T, bool Backward, typename Index>
void launch_rope_indexed(T* x, const int32_t* positions, const float* cos, const float* sin, int64_t tokens,
                         int64_t heads, int64_t half, cudaStream_t stream) {
    const int64_t n = tokens * heads * half;
    constexpr int W = kVectorSize<T>;
    const Index t = static_cast<Index>(tokens), h = static_cast<Index>(heads), p = static_cast<Index>(half);
    if (half % W == 0 && is_vector_aligned(x) && is_vector_aligned(cos) && is_vector_aligned(sin)) {
        auto* kernel = rope_vector_kernel<T, Backward, Index>;
        kernel<<<grid_for_resident(kernel, n / W, kRopeThreads, kRopeThreads), kRopeThreads, 0, stream>>>(
            x, positions, cos, sin, t, h, p);
    } else {
        auto* kernel = rope_kernel<T, Backward, Index>;
        kernel<<<grid_for_resident(kernel, n, kRopeThreads, kRopeThreads), kRopeThreads, 0, stream>>>(
            x, positions, cos, sin, t, h, p);
    }
    AXL_CUDA_CHECK_LAUNCH("rope_kernel");
}

template <typename T, bool Backward>
void launch_rope(T* x, const int32_t* positions, const float* cos, const float* sin, int64_t tokens, int64_t heads,
                 int64_t head_dim, cudaStream_t stream) {
    require(head_dim > 0 && head_dim % 2 == 0, AXL_ERR_SHAPE, "rope: head_dim ", head_dim, " is not even");
    const int64_t half = head_dim / 2;
    const int64_t n = tokens * heads * half;
    if (n <= 0) return;
    if (n <= int64_t{UINT32_MAX})
        launch_rope_indexed<T, Backward, uint32_t>(x, positions, cos, sin, tokens, heads, half, stream);
    else
        launch_rope_indexed<T, Backward, int64_t>(x, positions, cos, sin, tokens, heads, half, stream);
}

}  // namespace

void rope_tables(float* cos, float* sin, const float* inv_freq, int64_t max_pos, int64_t half_dim,
                 cudaStream_t stream) {
    const int64_t n = max_pos * half_dim;
    if (n <= 0) return;
    rope_tables_kernel<<<grid_for(n, kRopeThreads), kRopeThreads, 0, stream>>>(cos, sin, inv_freq, max_pos, half_dim);
    AXL_CUDA_CHECK_LAUNCH("rope_tables_kernel");
}

void rope_forward(float* x, const int32_t* positions, const float* cos, const float* sin, int64_t tokens,
                  int64_t heads, int64_t head_dim, cudaStream_t stream) {
    launch_rope<float, false>(x, positions, cos, sin, tokens, heads, head_dim, stream);
}
void rope_forward(bf16* x, const int32_t* positions, const float* cos, const float* sin, int64_t tokens,
                  int64_t heads, int64_t head_dim, cudaStream_t stream) {
    launch_rope<bf16, false>(x, positions, cos, sin, tokens, heads, head_dim, stream);
}
void rope_backward(float* dx, const int32_t* positions, const float* cos, const float* sin, int64_t tokens,
                   int64_t heads, int64_t head_dim, cudaStream_t stream) {
    launch_rope<float, true>(dx, positions, cos, sin, tokens, heads, head_dim, stream);
}
void rope_backward(bf16* dx, const int32_t* positions, const float* cos, const float* sin, int64_t tokens,
                   int64_t heads, int64_t head_dim, cudaStream_t stream) {
    launch_rope<bf16, true>(dx, positions, cos, sin, tokens, heads, head_dim, stream);
}

}  // namespace axl::cuda
