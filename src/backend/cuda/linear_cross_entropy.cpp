// The LM head's loss without the [tokens x vocab] logits: a chunk of rows at a time goes
// through the GEMM, the cross-entropy kernel and (for the gradient) the GEMM back, so only
// chunk_rows x vocab logits exist at once. The logits are bf16, as PyTorch's bf16 LM head makes
// them: the GEMM writes them in half the bytes of f32, the cross-entropy kernel reads them in
// f32 arithmetic and overwrites them with their gradient, the operand of the bf16 GEMM that
// follows. (f32 logits cost the 1B step about 2 ms of memory traffic for a loss that differs in
// the fourth digit.)
#include <algorithm>

#include "backend/cuda/ops.hpp"
#include "core/error.hpp"

namespace axl::cuda {

void linear_cross_entropy(BlasLt& blas, float* row_loss, bf16* dhidden, const bf16* hidden, const bf16* weight,
                          const int32_t* targets, int64_t rows, int64_t dim, int64_t vocab, float grad_scale,
                          bf16* logits_scratch, int64_t chunk_rows) {
    require(rows >= 0 && dim > 0 && vocab > 0 && chunk_rows > 0, AXL_ERR_SHAPE, "linear_cross_entropy: ", rows,
            " rows, dim ", dim, ", vocab ", vocab, ", chunks of ", chunk_rows);
    require(logits_scratch != nullptr, AXL_ERR_INTERNAL, "linear_cross_entropy: no logits scratch");
    for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
        const int64_t n = std::min(chunk_rows, rows - r0);
        matmul(blas, logits_scratch, hidden + r0 * dim, weight, n, vocab, dim, false, true, 1.0f, 0.0f);
        cross_entropy_forward_backward(row_loss + r0, dhidden ? logits_scratch : nullptr, logits_scratch,
                                       targets + r0, n, vocab, grad_scale, blas.stream());
        if (dhidden != nullptr)
            matmul(blas, dhidden + r0 * dim, logits_scratch, weight, n, dim, vocab, false, false, 1.0f, 0.0f);
    }
}

}  // namespace axl::cuda
