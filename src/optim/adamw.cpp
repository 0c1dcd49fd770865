#include "optim/adamw.hpp"

#include <cmath>

#include "core/error.hpp"

namespace axl {

namespace {

// Below this many elements a loop is cheaper than waking the thread team.
constexpr int64_t kParallelElements = 32768;

// torch's CPU lerp: the formula is chosen by the weight's size to keep it accurate.
inline float lerp(float start, float end, float weight) {
    return std::fabs(weight) < 0.5f ? start + weight * (end - start)
                                    : end - (end - start) * (1.0f - weight);
}

}  // namespace

void validate_adamw_config(const AdamWConfig& config) {
    require(config.beta1 >= 0.0 && config.beta1 < 1.0, AXL_ERR_INVALID_ARGUMENT,
            "AdamW beta1 must be in [0, 1), got ", config.beta1);
    require(config.beta2 >= 0.0 && config.beta2 < 1.0, AXL_ERR_INVALID_ARGUMENT,
            "AdamW beta2 must be in [0, 1), got ", config.beta2);
    require(config.eps >= 0.0 && std::isfinite(config.eps), AXL_ERR_INVALID_ARGUMENT,
            "AdamW eps must be >= 0, got ", config.eps);
    require(config.weight_decay >= 0.0 && std::isfinite(config.weight_decay),
            AXL_ERR_INVALID_ARGUMENT, "AdamW weight_decay must be >= 0, got ", config.weight_decay);
}

AdamW::AdamW(const std::vector<Tensor>& params, const AdamWConfig& config,
             const std::shared_ptr<HostAllocator>& allocator)
    : config_(config) {
    validate_adamw_config(config);
    for (const Tensor& param : params) {
        require(param.dtype() == DType::F32, AXL_ERR_INTERNAL, "AdamW needs f32 parameters");
        exp_avg_.push_back(Tensor::zeros(allocator, DType::F32, param.shape(), "AdamW exp_avg"));
        exp_avg_sq_.push_back(Tensor::zeros(allocator, DType::F32, param.shape(), "AdamW exp_avg_sq"));
    }
}

void AdamW::step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, double lr) {
    require(params.size() == exp_avg_.size() && grads.size() == exp_avg_.size(), AXL_ERR_INTERNAL,
            "AdamW built for ", exp_avg_.size(), " tensors got ", params.size(), " parameters and ",
            grads.size(), " gradients");
    for (size_t i = 0; i < params.size(); ++i)
        require(params[i].shape() == exp_avg_[i].shape() && grads[i].shape() == exp_avg_[i].shape(),
                AXL_ERR_INTERNAL, "AdamW tensor ", i, " changed shape");

    ++steps_;
    const double t = static_cast<double>(steps_);
    const double bias_correction1 = 1.0 - std::pow(config_.beta1, t);
    const double bias_correction2 = 1.0 - std::pow(config_.beta2, t);
    // torch turns each Python-float coefficient into an f32 scalar of the tensor op.
    const float decay = static_cast<float>(1.0 - lr * config_.weight_decay);
    const float one_minus_beta1 = static_cast<float>(1.0 - config_.beta1);
    const float beta2 = static_cast<float>(config_.beta2);
    const float one_minus_beta2 = static_cast<float>(1.0 - config_.beta2);
    const float neg_step_size = static_cast<float>(-(lr / bias_correction1));
    const float bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
    const float eps = static_cast<float>(config_.eps);
    const bool decays = config_.weight_decay != 0.0;

    for (size_t i = 0; i < params.size(); ++i) {
        float* p = params[i].f32();
        const float* g = grads[i].f32();
        float* m = exp_avg_[i].f32();
        float* v = exp_avg_sq_[i].f32();
        const int64_t n = params[i].numel();
#pragma omp parallel for schedule(static) if (n > kParallelElements)
        for (int64_t j = 0; j < n; ++j) {
            if (decays) p[j] *= decay;
            m[j] = lerp(m[j], g[j], one_minus_beta1);
            v[j] = v[j] * beta2 + one_minus_beta2 * g[j] * g[j];
            const float denom = std::sqrt(v[j]) / bias_correction2_sqrt + eps;
            p[j] += neg_step_size * m[j] / denom;
        }
    }
}

}  // namespace axl
