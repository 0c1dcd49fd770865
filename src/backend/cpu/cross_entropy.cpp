// Softmax cross-entropy over the vocabulary, fused with its gradient so the logits (the largest
// activation of a step) are read twice and written once, in place if the caller wants.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/ops.hpp"

namespace axl::cpu {

double cross_entropy_forward_backward(float* dlogits, const float* logits, const int32_t* targets,
                                      int64_t rows, int64_t vocab, float grad_scale) {
    // Per-row losses are summed serially afterwards, so the total does not depend on how many
    // threads ran.
    std::vector<double> row_loss(static_cast<std::size_t>(rows), 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float* x = logits + r * vocab;
        float* dx = dlogits ? dlogits + r * vocab : nullptr;
        const int32_t target = targets[r];
        if (target < 0) {
            if (dx) std::fill(dx, dx + vocab, 0.0f);
            continue;
        }
        float max_logit = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < vocab; ++i) max_logit = std::max(max_logit, x[i]);
        const float target_logit = x[target];
        // exp(x - max) lies in (0, 1], so the sum cannot overflow; it is kept in double so that
        // a vocabulary of many small terms is summed without losing them. When a gradient is
        // wanted the exponentials are parked in dx (possibly over x itself, which is no longer
        // read) and only rescaled in the second pass.
        double sum = 0.0;
        for (int64_t i = 0; i < vocab; ++i) {
            const float e = std::exp(x[i] - max_logit);
            if (dx) dx[i] = e;
            sum += e;
        }
        row_loss[static_cast<std::size_t>(r)] =
            static_cast<double>(max_logit) + std::log(sum) - static_cast<double>(target_logit);
        if (dx) {
            const float scale = static_cast<float>(static_cast<double>(grad_scale) / sum);
            for (int64_t i = 0; i < vocab; ++i) dx[i] *= scale;
            dx[target] -= grad_scale;
        }
    }
    double total = 0.0;
    for (double loss : row_loss) total += loss;
    return total;
}

}  // namespace axl::cpu
