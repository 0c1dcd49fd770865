// AdamW with decoupled weight decay and bias correction, step for step the arithmetic of
// torch.optim.AdamW's single-tensor path (foreach=False, fused=False), in f32 with the scalar
// coefficients computed in double:
//   p *= 1 - lr*wd;  m = lerp(m, g, 1-b1);  v = b2*v + (1-b2)*g*g;
//   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/allocator.hpp"
#include "core/tensor.hpp"

namespace axl {

struct AdamWConfig {
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
};

// Error(AXL_ERR_INVALID_ARGUMENT) naming the field unless 0 <= beta < 1, eps >= 0, wd >= 0.
void validate_adamw_config(const AdamWConfig& config);

class AdamW {
public:
    // Zeroed moments shaped like each f32 parameter, allocated through `allocator`.
    AdamW(const std::vector<Tensor>& params, const AdamWConfig& config,
          const std::shared_ptr<HostAllocator>& allocator);

    // One update of `params` from `grads` (same order and shapes as at construction) with
    // learning rate `lr`; the step counter t advances first, so the first call uses t = 1.
    void step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, double lr);

    AdamWConfig& config() { return config_; }
    const AdamWConfig& config() const { return config_; }
    int64_t steps() const { return steps_; }
    const std::vector<Tensor>& exp_avg() const { return exp_avg_; }
    const std::vector<Tensor>& exp_avg_sq() const { return exp_avg_sq_; }

private:
    AdamWConfig config_;
    int64_t steps_ = 0;
    std::vector<Tensor> exp_avg_;     // m
    std::vector<Tensor> exp_avg_sq_;  // v
};

}  // namespace axl
