// Token embedding lookup: a row copy per token. The backward (a scatter-add into the table) is
// not needed because the embedding table is frozen under LoRA.
#include <algorithm>

#include "backend/cpu/ops.hpp"

namespace axl::cpu {

void embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t n_tokens,
                       int64_t hidden) {
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < n_tokens; ++t) {
        const float* row = table + static_cast<int64_t>(tokens[t]) * hidden;
        std::copy(row, row + hidden, out + t * hidden);
    }
}

}  // namespace axl::cpu
