// The dense GEMM of the CUDA backend (the twin of backend/cpu/matmul.cpp), through cuBLASLt.
#include "backend/cuda/ops.hpp"

namespace axl::cuda {

void matmul(BlasLt& blas, float* c, const float* a, const float* b, int64_t m, int64_t n, int64_t k, bool trans_a,
            bool trans_b, float alpha, float beta) {
    blas.matmul(c, GemmType::F32, a, b, GemmType::F32, m, n, k, trans_a, trans_b, alpha, beta);
}

void matmul(BlasLt& blas, float* c, const bf16* a, const bf16* b, int64_t m, int64_t n, int64_t k, bool trans_a,
            bool trans_b, float alpha, float beta) {
    blas.matmul(c, GemmType::F32, a, b, GemmType::BF16, m, n, k, trans_a, trans_b, alpha, beta);
}

void matmul(BlasLt& blas, bf16* c, const bf16* a, const bf16* b, int64_t m, int64_t n, int64_t k, bool trans_a,
            bool trans_b, float alpha, float beta) {
    blas.matmul(c, GemmType::BF16, a, b, GemmType::BF16, m, n, k, trans_a, trans_b, alpha, beta);
}

void matmul_add(BlasLt& blas, bf16* d, const bf16* a, const bf16* b, const bf16* c, int64_t m, int64_t n, int64_t k,
                bool trans_a, bool trans_b, float alpha, float beta) {
    blas.matmul(d, GemmType::BF16, a, b, GemmType::BF16, m, n, k, trans_a, trans_b, alpha, beta, c);
}

void matmul_strided(BlasLt& blas, bf16* c, int64_t ldc, const bf16* a, int64_t lda, const bf16* b, int64_t ldb,
                    int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha, float beta,
                    const bf16* c_in) {
    blas.matmul(c, GemmType::BF16, a, b, GemmType::BF16, m, n, k, trans_a, trans_b, alpha, beta, c_in, lda, ldb, ldc);
}

void matmul_strided(BlasLt& blas, float* c, int64_t ldc, const bf16* a, int64_t lda, const bf16* b, int64_t ldb,
                    int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha, float beta) {
    blas.matmul(c, GemmType::F32, a, b, GemmType::BF16, m, n, k, trans_a, trans_b, alpha, beta, nullptr, lda, ldb,
                ldc);
}

}  // namespace axl::cuda
