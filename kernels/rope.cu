// Rotary position embedding on the device, Hugging Face "rotate_half" layout (the twin of
// backend/cpu/rope.cpp, same formulas and the same f32 angle rounding).
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

// One thread per (token, head, pair i): x1 = x[i], x2 = x[i + half] rotated by +angle
// (forward) or -angle (backward, the transpose).
template <typename T, bool Backward>
__global__ void __launch_bounds__(kRopeThreads)
rope_kernel(T* x, const int32_t* positions, const float* cos, const float* sin, int64_t tokens, int64_t heads,
            int64_t half) {
    const int64_t n = tokens * heads * half;
    for (int64_t i = blockIdx.x * int64_t{kRopeThreads} + threadIdx.x; i < n; i += int64_t{gridDim.x} * kRopeThreads) {
        const int64_t pair = i % half;
        const int64_t head = i / half;  // (t * heads + h)
        const int64_t t = head / heads;
        const int64_t table = static_cast<int64_t>(positions[t]) * half + pair;
        const float c = cos[table];
        const float s = sin[table];
        T* row = x + head * 2 * half;
        const float x1 = to_float(row[pair]);
        const float x2 = to_float(row[pair + half]);
        // Products rounded separately, as the CPU twin (no fused multiply-add).
        if (Backward) {
            row[pair] = from_float<T>(__fadd_rn(__fmul_rn(x1, c), __fmul_rn(x2, s)));
            row[pair + half] = from_float<T>(__fsub_rn(__fmul_rn(x2, c), __fmul_rn(x1, s)));
        } else {
            row[pair] = from_float<T>(__fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s)));
            row[pair + half] = from_float<T>(__fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s)));
        }
    }
}

template <typename T, bool Backward>
void launch_rope(T* x, const int32_t* positions, const float* cos, const float* sin, int64_t tokens, int64_t heads,
                 int64_t head_dim, cudaStream_t stream) {
    require(head_dim > 0 && head_dim % 2 == 0, AXL_ERR_SHAPE, "rope: head_dim ", head_dim, " is not even");
    const int64_t n = tokens * heads * (head_dim / 2);
    if (n <= 0) return;
    rope_kernel<T, Backward><<<grid_for(n, kRopeThreads), kRopeThreads, 0, stream>>>(x, positions, cos, sin, tokens,
                                                                                   heads, head_dim / 2);
    AXL_CUDA_CHECK_LAUNCH("rope_kernel");
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
