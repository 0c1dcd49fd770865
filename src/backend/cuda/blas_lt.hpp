// Dense GEMMs through cuBLASLt: bf16 (or f32) operands, f32 accumulation, f32 or bf16 output.
// One handle and one workspace per BlasLt, reused by every call; the operation descriptors
// and the algorithm cuBLASLt's heuristic picks are cached per shape, so a training step's
// repeated shapes cost one lookup each after the first.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace axl::cuda {

class DeviceAllocator;

enum class GemmType : int32_t { F32, BF16 };

class BlasLt {
public:
    static constexpr size_t kDefaultWorkspaceBytes = size_t{32} << 20;

    // The workspace comes from `allocator` and the work goes to its stream.
    explicit BlasLt(DeviceAllocator& allocator, size_t workspace_bytes = kDefaultWorkspaceBytes);
    ~BlasLt();
    BlasLt(const BlasLt&) = delete;
    BlasLt& operator=(const BlasLt&) = delete;

    // Row-major, the contract of cpu::matmul: C[M,N] = alpha * op(A) op(B) + beta * C with
    // A [M,K] (or [K,M] if trans_a) and B [K,N] (or [N,K] if trans_b), all contiguous; A and B
    // of `ab_type`, C of `c_type`; f32 accumulation (plain f32 for f32 operands, no TF32).
    // beta == 0 ignores C's old contents. With `c_in`, the sum reads beta * c_in instead of
    // beta * C (same type, shape and stride as C; it may alias C): the GEMM's epilogue then adds
    // a residual or a bias-like term with no pass of its own. lda/ldb/ldc are row strides in
    // elements for operands that are column slices of wider matrices (0: packed rows).
    void matmul(void* c, GemmType c_type, const void* a, const void* b, GemmType ab_type, int64_t m,
                int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha, float beta,
                const void* c_in = nullptr, int64_t lda = 0, int64_t ldb = 0, int64_t ldc = 0);

    cudaStream_t stream() const;
    // Operation shapes planned so far (each planned once).
    size_t planned_shapes() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace axl::cuda
