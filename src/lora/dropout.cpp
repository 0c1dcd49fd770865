#include "lora/dropout.hpp"

#include <cmath>

namespace axl {

namespace {
// Below this many elements a loop is cheaper than waking the thread team.
constexpr int64_t kParallelElements = 32768;
}  // namespace

uint32_t dropout_threshold(float p) {
    if (!(p > 0.0f)) return 0;
    double scaled = std::nearbyint(static_cast<double>(p) * 4294967296.0);
    return scaled >= 4294967295.0 ? 0xffffffffu : static_cast<uint32_t>(scaled);
}

void dropout_forward(float* out, const float* x, int64_t n, float p, uint64_t seed) {
    const uint32_t threshold = dropout_threshold(p);
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > kParallelElements)
    for (int64_t i = 0; i < n; ++i)
        out[i] = dropout_keep(seed, static_cast<uint64_t>(i), threshold) ? x[i] * scale : 0.0f;
}

void dropout_backward_accumulate(float* dx, const float* dout, int64_t n, float p, uint64_t seed) {
    const uint32_t threshold = dropout_threshold(p);
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > kParallelElements)
    for (int64_t i = 0; i < n; ++i)
        if (dropout_keep(seed, static_cast<uint64_t>(i), threshold)) dx[i] += dout[i] * scale;
}

}  // namespace axl
