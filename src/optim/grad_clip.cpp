#include "optim/grad_clip.hpp"

#include <cmath>

#include "backend/cpu/ops.hpp"

namespace axl {

double global_norm(const std::vector<Tensor>& grads) {
    double sum = 0.0;
    for (const Tensor& grad : grads) sum += cpu::sum_squares(grad.f32(), grad.numel());
    return std::sqrt(sum);
}

double clip_grad_norm(const std::vector<Tensor>& grads, double max_norm) {
    const double norm = global_norm(grads);
    if (!(max_norm > 0.0) || !std::isfinite(norm)) return norm;
    // torch multiplies by the clamped coefficient in f32 even when it is 1; skipping that
    // multiply changes nothing.
    const double coefficient = max_norm / (norm + 1e-6);
    if (coefficient < 1.0) {
        const float scale = static_cast<float>(coefficient);
        for (const Tensor& grad : grads) cpu::scale_inplace(grad.f32(), scale, grad.numel());
    }
    return norm;
}

}  // namespace axl
