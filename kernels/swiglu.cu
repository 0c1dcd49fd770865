// SwiGLU gating on the device, out = silu(gate) * up (the twin of backend/cpu/swiglu.cpp, with
// the same formulas: silu(g) = g / (1 + exp(-g)), d silu/dg = s * (1 + g * (1 - s))).
//
// Memory-bound: a thread takes 16-byte vectors (8 bf16 or 4 f32) of every operand in a
// grid-stride loop sized to one wave of the device; the elements after the last whole vector,
// and every element when some pointer is not 16-byte aligned, go through the same formulas
// one at a time.
#include "backend/cuda/ops.hpp"
#include "common.cuh"

namespace axl::cuda {
namespace {

constexpr int kSwigluThreads = 256;

__device__ __forceinline__ float swiglu_value(float g, float u) { return g / (1.0f + expf(-g)) * u; }

struct SwigluGradient {
    float dgate, dup;
};
__device__ __forceinline__ SwigluGradient swiglu_gradient(float d, float g, float u) {
    const float sigmoid = 1.0f / (1.0f + expf(-g));
    return {d * u * sigmoid * (1.0f + g * (1.0f - sigmoid)), d * g * sigmoid};
}

// Vectorized: every pointer 16-byte aligned; elements [0, n / W * W) in vectors of W.
template <typename T, bool Vectorized>
__global__ void __launch_bounds__(kSwigluThreads)
swiglu_forward_kernel(T* out, const T* gate, const T* up, int64_t n) {
    constexpr int W = kVectorSize<T>;
    const int64_t vector_end = Vectorized ? n / W * W : 0;
    for (int64_t i = grid_thread_index() * W; i < vector_end; i += grid_thread_count() * W) {
        float g[W], u[W], o[W];
        load_vector(gate + i, g);
        load_vector(up + i, u);
#pragma unroll
        for (int k = 0; k < W; ++k) o[k] = swiglu_value(g[k], u[k]);
        store_vector(out + i, o);
    }
    for (int64_t i = vector_end + grid_thread_index(); i < n; i += grid_thread_count())
        out[i] = from_float<T>(swiglu_value(to_float(gate[i]), to_float(up[i])));
}

template <typename T, bool Vectorized>
__global__ void __launch_bounds__(kSwigluThreads)
swiglu_backward_kernel(T* dgate, T* dup, const T* dout,
                       const T* gate, const T* up, int64_t n) {
    constexpr int W = kVectorSize<T>;
    const int64_t vector_end = Vectorized ? n / W * W : 0;
    for (int64_t i = grid_thread_index() * W; i < vector_end; i += grid_thread_count() * W) {
        float d[W], g[W], u[W], dg[W], du[W];
        load_vector(dout + i, d);
        load_vector(gate + i, g);
        load_vector(up + i, u);
#pragma unroll
        for (int k = 0; k < W; ++k) {
            const SwigluGradient grad = swiglu_gradient(d[k], g[k], u[k]);
            dg[k] = grad.dgate;
            du[k] = grad.dup;
        }
        store_vector(dgate + i, dg);
        store_vector(dup + i, du);
    }
    for (int64_t i = vector_end + grid_thread_index(); i < n; i += grid_thread_count()) {
        const SwigluGradient grad = swiglu_gradient(to_float(dout[i]), to_float(gate[i]), to_float(up[i]));
        dgate[i] = from_float<T>(grad.dgate);
        dup[i] = from_float<T>(grad.dup);
    }
}

template <typename T>
void launch_swiglu_forward(T* out, const T* gate, const T* up, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    constexpr int W = kVectorSize<T>;
    if (is_vector_aligned(out) && is_vector_aligned(gate) && is_vector_aligned(up)) {
        auto* kernel = swiglu_forward_kernel<T, true>;
        kernel<<<grid_for_resident(kernel, n, int64_t{kSwigluThreads} * W, kSwigluThreads), kSwigluThreads, 0,
                 stream>>>(out, gate, up, n);
    } else {
        auto* kernel = swiglu_forward_kernel<T, false>;
        kernel<<<grid_for_resident(kernel, n, kSwigluThreads, kSwigluThreads), kSwigluThreads, 0, stream>>>(out, gate,
                                                                                                          up, n);
    }
    AXL_CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
}

template <typename T>
void launch_swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n,
                            cudaStream_t stream) {
    if (n <= 0) return;
    constexpr int W = kVectorSize<T>;
    if (is_vector_aligned(dgate) && is_vector_aligned(dup) && is_vector_aligned(dout) && is_vector_aligned(gate) &&
        is_vector_aligned(up)) {
        auto* kernel = swiglu_backward_kernel<T, true>;
        kernel<<<grid_for_resident(kernel, n, int64_t{kSwigluThreads} * W, kSwigluThreads), kSwigluThreads, 0,
                 stream>>>(dgate, dup, dout, gate, up, n);
    } else {
        auto* kernel = swiglu_backward_kernel<T, false>;
        kernel<<<grid_for_resident(kernel, n, kSwigluThreads, kSwigluThreads), kSwigluThreads, 0, stream>>>(
            dgate, dup, dout, gate, up, n);
    }
    AXL_CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

}  // namespace

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, cudaStream_t stream) {
    launch_swiglu_forward(out, gate, up, n, stream);
}
void swiglu_forward(bf16* out, const bf16* gate, const bf16* up, int64_t n, cudaStream_t stream) {
    launch_swiglu_forward(out, gate, up, n, stream);
}
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                     cudaStream_t stream) {
    launch_swiglu_backward(dgate, dup, dout, gate, up, n, stream);
}
void swiglu_backward(bf16* dgate, bf16* dup, const bf16* dout, const bf16* gate, const bf16* up, int64_t n,
                     cudaStream_t stream) {
    launch_swiglu_backward(dgate, dup, dout, gate, up, n, stream);
}

}  // namespace axl::cuda
