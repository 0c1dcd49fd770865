// The LoRA B columns of a base weight with room for them (the LoRA product folded into the base
// GEMM, device_projection.cpp): a projection's y = x W^T + s (x A^T) B^T is one GEMM over
// [x | s x A^T] and [W | B], so y is written once instead of being written, read and written
// again by a second GEMM. The weight's rows hold W (dequantized there), then `width` columns:
// this projection's B (rank of them, from column b_col) and zeros for the other projections of
// its group, whose x A^T share the input's extra columns.
#include "backend/cuda/ops.hpp"
#include "common.cuh"

namespace axl::cuda {
namespace {

constexpr int kColumnThreads = 256;

__global__ void __launch_bounds__(kColumnThreads)
lora_weight_columns_kernel(bf16* columns, int64_t ld, int64_t rows, int64_t width, const bf16* b, int64_t rank,
                           int64_t b_col) {
    const int64_t n = rows * width;
    for (int64_t i = grid_thread_index(); i < n; i += grid_thread_count()) {
        const int64_t row = i / width;
        const int64_t col = i - row * width;
        const int64_t j = col - b_col;
        columns[row * ld + col] = (j >= 0 && j < rank) ? b[row * rank + j] : __float2bfloat16_rn(0.0f);
    }
}

}  // namespace

void lora_weight_columns(bf16* weight, int64_t ld, int64_t rows, int64_t first_col, int64_t width, const bf16* b,
                         int64_t rank, int64_t b_col, cudaStream_t stream) {
    require(rows >= 0 && first_col >= 0 && width >= 0 && first_col + width <= ld && rank > 0 && b_col >= 0 &&
                b_col + rank <= width,
            AXL_ERR_SHAPE, "lora_weight_columns: B of rank ", rank, " at column ", b_col, " of ", width,
            " columns from ", first_col, " in rows of ", ld);
    if (rows == 0 || width == 0) return;
    auto* kernel = lora_weight_columns_kernel;
    kernel<<<grid_for_resident(kernel, rows * width, kColumnThreads, kColumnThreads), kColumnThreads, 0, stream>>>(
        weight + first_col, ld, rows, width, b, rank, b_col);
    AXL_CUDA_CHECK_LAUNCH("lora_weight_columns_kernel");
}

}  // namespace axl::cuda
