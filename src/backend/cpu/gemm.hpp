// The single-threaded SGEMM core behind matmul (matmul.cpp), on strided operands, for ops that
// multiply small tiles inside their own parallel loops (attention.cpp). Not part of the op set.
#pragma once

#include <cstdint>

namespace axl::cpu {

// A read-only matrix whose element (i, j) is data[i * row_stride + j * col_stride]: a row-major
// matrix, its transpose, or one head's slice of a [tokens, heads, head_dim] tensor.
struct MatrixView {
    const float* data;
    int64_t row_stride;
    int64_t col_stride;

    const float* address(int64_t row, int64_t col) const { return data + row * row_stride + col * col_stride; }
    float at(int64_t row, int64_t col) const { return *address(row, col); }
};

// C[m, n] (rows ldc apart) = alpha * A[m, k] B[k, n] + beta * C, on the calling thread only.
// beta == 0 ignores C's old contents (NaN-safe).
void gemm_serial(float* c, int64_t ldc, MatrixView a, MatrixView b, int64_t m, int64_t n, int64_t k, float alpha,
                 float beta);

}  // namespace axl::cpu
