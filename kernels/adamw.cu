// AdamW on the device, for many tensors in few launches (the twin of optim/adamw.cpp). Each
// element gets exactly the CPU's f32 operations in the CPU's order, with every product, sum,
// quotient and square root rounded on its own (the _rn intrinsics forbid fused multiply-adds),
// so parameters and moments come out bit-identical to the CPU step.
//
// Multi-tensor: the tensors are cut into chunks of kChunkElements; one launch takes up to
// kMaxTensorsPerLaunch tensors and kMaxChunksPerLaunch chunks, all passed by value in the
// kernel's parameter block (CUDA 12.1+ takes 32 KB of parameters on Volta and later), one
// block per chunk, so a LoRA adapter's hundreds of small tensors cost a launch or two. A
// tensor whose four arrays are 16-byte aligned is read and written in float4s.
#include <cmath>

#include "backend/cuda/ops.hpp"
#include "common.cuh"

namespace axl::cuda {
namespace {

constexpr int kAdamWThreads = 256;
constexpr int64_t kChunkElements = 8192;  // elements a block updates; a multiple of 4
constexpr int kMaxTensorsPerLaunch = 160;
constexpr int kMaxChunksPerLaunch = 3072;
constexpr size_t kMaxKernelParameterBytes = 32764;

struct AdamWLaunch {
    float* param[kMaxTensorsPerLaunch];
    const float* grad[kMaxTensorsPerLaunch];
    float* exp_avg[kMaxTensorsPerLaunch];
    float* exp_avg_sq[kMaxTensorsPerLaunch];
    int64_t numel[kMaxTensorsPerLaunch];
    bool aligned[kMaxTensorsPerLaunch];         // all four arrays 16-byte aligned
    int32_t chunk_index[kMaxChunksPerLaunch];   // which chunk of its tensor
    uint8_t chunk_tensor[kMaxChunksPerLaunch];  // which tensor the block's chunk belongs to
};
static_assert(sizeof(AdamWLaunch) + sizeof(AdamWCoefficients) < kMaxKernelParameterBytes,
              "kernel parameters fit the 32 KB limit");
static_assert(kMaxTensorsPerLaunch <= 255, "chunk_tensor is a byte");
static_assert(kChunkElements % 4 == 0, "chunks start on float4 boundaries");

// torch's CPU lerp, as in optim/adamw.cpp.
__device__ __forceinline__ float lerp_rn(float start, float end, float weight) {
    return fabsf(weight) < 0.5f ? __fadd_rn(start, __fmul_rn(weight, __fsub_rn(end, start)))
                                : __fsub_rn(end, __fmul_rn(__fsub_rn(end, start), __fsub_rn(1.0f, weight)));
}

__device__ __forceinline__ void adamw_update(float& p, float g, float& m, float& v, const AdamWCoefficients& c) {
    if (c.decays) p = __fmul_rn(p, c.decay);
    m = lerp_rn(m, g, c.one_minus_beta1);
    v = __fadd_rn(__fmul_rn(v, c.beta2), __fmul_rn(__fmul_rn(c.one_minus_beta2, g), g));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), c.bias_correction2_sqrt), c.eps);
    p = __fadd_rn(p, __fdiv_rn(__fmul_rn(c.neg_step_size, m), denom));
}

__global__ void __launch_bounds__(kAdamWThreads)
adamw_kernel(const __grid_constant__ AdamWLaunch launch, const AdamWCoefficients c) {
    const int tensor = launch.chunk_tensor[blockIdx.x];
    const int64_t begin = static_cast<int64_t>(launch.chunk_index[blockIdx.x]) * kChunkElements;
    const int64_t end = min(begin + kChunkElements, launch.numel[tensor]);
    float* p = launch.param[tensor];
    const float* g = launch.grad[tensor];
    float* m = launch.exp_avg[tensor];
    float* v = launch.exp_avg_sq[tensor];
    int64_t scalar_begin = begin;
    if (launch.aligned[tensor]) {
        const int64_t vector_end = begin + (end - begin) / 4 * 4;
        for (int64_t j = begin + 4 * threadIdx.x; j < vector_end; j += 4 * kAdamWThreads) {
            float4 p4 = *reinterpret_cast<const float4*>(p + j);
            const float4 g4 = *reinterpret_cast<const float4*>(g + j);
            float4 m4 = *reinterpret_cast<const float4*>(m + j);
            float4 v4 = *reinterpret_cast<const float4*>(v + j);
            adamw_update(p4.x, g4.x, m4.x, v4.x, c);
            adamw_update(p4.y, g4.y, m4.y, v4.y, c);
            adamw_update(p4.z, g4.z, m4.z, v4.z, c);
            adamw_update(p4.w, g4.w, m4.w, v4.w, c);
            *reinterpret_cast<float4*>(p + j) = p4;
            *reinterpret_cast<float4*>(m + j) = m4;
            *reinterpret_cast<float4*>(v + j) = v4;
        }
        scalar_begin = vector_end;
    }
    for (int64_t j = scalar_begin + threadIdx.x; j < end; j += kAdamWThreads) {
        float param = p[j], exp_avg = m[j], exp_avg_sq = v[j];
        adamw_update(param, g[j], exp_avg, exp_avg_sq, c);
        p[j] = param;
        m[j] = exp_avg;
        v[j] = exp_avg_sq;
    }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

AdamWCoefficients adamw_coefficients(double beta1, double beta2, double eps, double weight_decay, int64_t step,
                                     double lr) {
    const double t = static_cast<double>(step);
    const double bias_correction1 = 1.0 - std::pow(beta1, t);
    const double bias_correction2 = 1.0 - std::pow(beta2, t);
    AdamWCoefficients c{};
    c.decay = static_cast<float>(1.0 - lr * weight_decay);
    c.one_minus_beta1 = static_cast<float>(1.0 - beta1);
    c.beta2 = static_cast<float>(beta2);
    c.one_minus_beta2 = static_cast<float>(1.0 - beta2);
    c.neg_step_size = static_cast<float>(-(lr / bias_correction1));
    c.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
    c.eps = static_cast<float>(eps);
    c.decays = weight_decay != 0.0;
    return c;
}

void adamw_step(const AdamWTensor* tensors, size_t count, const AdamWCoefficients& coefficients,
                cudaStream_t stream) {
    AdamWLaunch launch{};
    int tensors_in_launch = 0;
    int chunks_in_launch = 0;
    auto flush = [&]() {
        if (chunks_in_launch > 0) {
            adamw_kernel<<<chunks_in_launch, kAdamWThreads, 0, stream>>>(launch, coefficients);
            AXL_CUDA_CHECK_LAUNCH("adamw_kernel");
        }
        tensors_in_launch = 0;
        chunks_in_launch = 0;
    };
    for (size_t i = 0; i < count; ++i) {
        const AdamWTensor& tensor = tensors[i];
        require(tensor.numel >= 0, AXL_ERR_SHAPE, "adamw_step: tensor ", i, " has ", tensor.numel, " elements");
        const int64_t chunks = ceil_div(tensor.numel, kChunkElements);
        require(chunks < (int64_t{1} << 31), AXL_ERR_SHAPE, "adamw_step: tensor ", i, " is too large");
        for (int64_t chunk = 0; chunk < chunks; ++chunk) {
            // A tensor's chunks may spread over launches; its slot is (re)filled when needed.
            if (chunk == 0 || chunks_in_launch == 0) {
                if (tensors_in_launch == kMaxTensorsPerLaunch) flush();
                launch.param[tensors_in_launch] = tensor.param;
                launch.grad[tensors_in_launch] = tensor.grad;
                launch.exp_avg[tensors_in_launch] = tensor.exp_avg;
                launch.exp_avg_sq[tensors_in_launch] = tensor.exp_avg_sq;
                launch.numel[tensors_in_launch] = tensor.numel;
                launch.aligned[tensors_in_launch] = aligned16(tensor.param) && aligned16(tensor.grad) &&
                                                    aligned16(tensor.exp_avg) && aligned16(tensor.exp_avg_sq);
                ++tensors_in_launch;
            }
            launch.chunk_tensor[chunks_in_launch] = static_cast<uint8_t>(tensors_in_launch - 1);
            launch.chunk_index[chunks_in_launch] = static_cast<int32_t>(chunk);
            if (++chunks_in_launch == kMaxChunksPerLaunch) flush();
        }
    }
    flush();
}

}  // namespace axl::cuda
