// Element type conversion on the device: the f32 master weights of the adapter rounded to the
// bf16 copies the GEMMs read (round to nearest even, as dtype.cpp's f32_to_bf16).
#include "backend/cuda/ops.hpp"
#include "common.cuh"

namespace axl::cuda {
namespace {

constexpr int kConvertThreads = 256;

__global__ void __launch_bounds__(kConvertThreads) convert_kernel(bf16* out, const float* in, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t{kConvertThreads} + threadIdx.x; i < n;
         i += int64_t{gridDim.x} * kConvertThreads)
        out[i] = __float2bfloat16_rn(in[i]);
}

}  // namespace

void convert(bf16* out, const float* in, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    convert_kernel<<<grid_for(n, kConvertThreads), kConvertThreads, 0, stream>>>(out, in, n);
    AXL_CUDA_CHECK_LAUNCH("convert_kernel");
}

}  // namespace axl::cuda
