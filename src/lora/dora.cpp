#include "lora/dora.hpp"

#include <algorithm>
#include <cmath>

#include "backend/cpu/ops.hpp"
#include "core/tensor.hpp"

namespace axl {

namespace {
// Below this many elements a loop is cheaper than waking the thread team.
constexpr int64_t kParallelElements = 32768;
constexpr int64_t kRowBlock = 256;  // rows of B A materialised at a time
}  // namespace

void dora_weight_norm(float* norm, const float* w, const float* a, const float* b, int64_t out,
                      int64_t in, int64_t rank, float scaling,
                      const std::shared_ptr<HostAllocator>& allocator) {
    const int64_t block = std::min(out, kRowBlock);
    Tensor delta = Tensor::empty(allocator, DType::F32, {block, in}, "DoRA weight-norm scratch");
    for (int64_t row0 = 0; row0 < out; row0 += block) {
        const int64_t rows = std::min(block, out - row0);
        // (B A)[row0:row0+rows, :] = B[row0:row0+rows, :] @ A
        cpu::matmul(delta.f32(), b + row0 * rank, a, rows, in, rank, false, false, 1.0f, 0.0f);
#pragma omp parallel for schedule(static) if (rows * in > kParallelElements)
        for (int64_t i = 0; i < rows; ++i) {
            const float* w_row = w + (row0 + i) * in;
            const float* d_row = delta.f32() + i * in;
            double sum = 0.0;
            for (int64_t j = 0; j < in; ++j) {
                const float v = w_row[j] + scaling * d_row[j];
                sum += static_cast<double>(v) * v;
            }
            norm[row0 + i] = static_cast<float>(std::sqrt(sum));
        }
    }
}

}  // namespace axl
