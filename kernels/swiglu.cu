// SwiGLU gating on the device, out = silu(gate) * up (the twin of backend/cpu/swiglu.cpp, with
// the same formulas: silu(g) = g / (1 + exp(-g)), d silu/dg = s * (1 + g * (1 - s))).
#include "backend/cuda/ops.hpp"
#include "common.cuh"

namespace axl::cuda {
namespace {

constexpr int kSwigluThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kSwigluThreads)
swiglu_forward_kernel(T* out, const T* gate, const T* up, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t{kSwigluThreads} + threadIdx.x; i < n;
         i += int64_t{gridDim.x} * kSwigluThreads) {
        const float g = to_float(gate[i]);
        out[i] = from_float<T>(g / (1.0f + expf(-g)) * to_float(up[i]));
    }
}

template <typename T>
__global__ void __launch_bounds__(kSwigluThreads)
swiglu_backward_kernel(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t{kSwigluThreads} + threadIdx.x; i < n;
         i += int64_t{gridDim.x} * kSwigluThreads) {
        const float g = to_float(gate[i]);
        const float sigmoid = 1.0f / (1.0f + expf(-g));
        const float d = to_float(dout[i]);
        dgate[i] = from_float<T>(d * to_float(up[i]) * sigmoid * (1.0f + g * (1.0f - sigmoid)));
        dup[i] = from_float<T>(d * g * sigmoid);
    }
}

}  // namespace

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    swiglu_forward_kernel<<<grid_for(n, kSwigluThreads), kSwigluThreads, 0, stream>>>(out, gate, up, n);
    AXL_CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
}

void swiglu_forward(bf16* out, const bf16* gate, const bf16* up, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    swiglu_forward_kernel<<<grid_for(n, kSwigluThreads), kSwigluThreads, 0, stream>>>(out, gate, up, n);
    AXL_CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                     cudaStream_t stream) {
    if (n <= 0) return;
    swiglu_backward_kernel<<<grid_for(n, kSwigluThreads), kSwigluThreads, 0, stream>>>(dgate, dup, dout, gate, up, n);
    AXL_CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

void swiglu_backward(bf16* dgate, bf16* dup, const bf16* dout, const bf16* gate, const bf16* up, int64_t n,
                     cudaStream_t stream) {
    if (n <= 0) return;
    swiglu_backward_kernel<<<grid_for(n, kSwigluThreads), kSwigluThreads, 0, stream>>>(dgate, dup, dout, gate, up, n);
    AXL_CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

}  // namespace axl::cuda
