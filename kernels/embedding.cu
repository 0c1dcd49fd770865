// Token embedding lookup on the device: a row copy per token (the twin of
// backend/cpu/embedding.cpp). The table is frozen under LoRA, so there is no backward. Rows are
// copied in 16-byte vectors when the table, the output and the row length allow it.
#include "backend/cuda/ops.hpp"
#include "common.cuh"

namespace axl::cuda {
namespace {

constexpr int kEmbeddingThreads = 256;  // threads per token row

// Copies one row per block as `Unit`s: uint4 (16 bytes) on the vector path, T otherwise;
// units_per_row is the row length in Units.
template <typename Unit>
__global__ void __launch_bounds__(kEmbeddingThreads)
embedding_forward_kernel(Unit* out, const int32_t* tokens, const Unit* table, int64_t units_per_row) {
    const int64_t t = blockIdx.x;
    const Unit* row = table + static_cast<int64_t>(tokens[t]) * units_per_row;
    Unit* out_row = out + t * units_per_row;
    for (int64_t i = threadIdx.x; i < units_per_row; i += kEmbeddingThreads) out_row[i] = row[i];
}

template <typename T>
void launch_embedding_forward(T* out, const int32_t* tokens, const T* table, int64_t n_tokens, int64_t hidden,
                              cudaStream_t stream) {
    require(n_tokens >= 0 && n_tokens < (int64_t{1} << 31) && hidden > 0, AXL_ERR_SHAPE,
            "embedding_forward: ", n_tokens, " tokens of ", hidden, " values");
    if (n_tokens == 0) return;
    const unsigned blocks = static_cast<unsigned>(n_tokens);
    if (hidden % kVectorSize<T> == 0 && is_vector_aligned(out) && is_vector_aligned(table))
        embedding_forward_kernel<<<blocks, kEmbeddingThreads, 0, stream>>>(
            reinterpret_cast<uint4*>(out), tokens, reinterpret_cast<const uint4*>(table), hidden / kVectorSize<T>);
    else
        embedding_forward_kernel<<<blocks, kEmbeddingThreads, 0, stream>>>(out, tokens, table, hidden);
    AXL_CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

}  // namespace

void embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t n_tokens, int64_t hidden,
                       cudaStream_t stream) {
    launch_embedding_forward(out, tokens, table, n_tokens, hidden, stream);
}

void embedding_forward(bf16* out, const int32_t* tokens, const bf16* table, int64_t n_tokens, int64_t hidden,
                       cudaStream_t stream) {
    launch_embedding_forward(out, tokens, table, n_tokens, hidden, stream);
}

}  // namespace axl::cuda
