#include "optim/lr_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.hpp"

namespace axl {

void validate_schedule(const ScheduleConfig& config) {
    require(config.lr >= 0.0 && std::isfinite(config.lr), AXL_ERR_INVALID_ARGUMENT,
            "learning rate must be >= 0, got ", config.lr);
    require(config.warmup_steps >= 0, AXL_ERR_INVALID_ARGUMENT, "warmup_steps must be >= 0, got ",
            config.warmup_steps);
    require(config.min_lr_ratio >= 0.0 && config.min_lr_ratio <= 1.0, AXL_ERR_INVALID_ARGUMENT,
            "min_lr_ratio must be in [0, 1], got ", config.min_lr_ratio);
    require(config.type == ScheduleType::Constant || config.type == ScheduleType::Linear ||
                config.type == ScheduleType::Cosine,
            AXL_ERR_INVALID_ARGUMENT, "unknown schedule ", static_cast<int>(config.type));
    require(config.type == ScheduleType::Constant || config.total_steps >= 1,
            AXL_ERR_INVALID_ARGUMENT, "the linear and cosine schedules need total_steps >= 1, got ",
            config.total_steps);
}

double lr_at(const ScheduleConfig& config, int64_t step) {
    const double s = static_cast<double>(step);
    const double warmup = static_cast<double>(config.warmup_steps);
    if (step < config.warmup_steps) return config.lr * (s / std::max(1.0, warmup));
    if (config.type == ScheduleType::Constant) return config.lr;

    const double decay_steps = std::max(1.0, static_cast<double>(config.total_steps) - warmup);
    double factor;
    if (config.type == ScheduleType::Linear) {
        factor = std::max(0.0, (static_cast<double>(config.total_steps) - s) / decay_steps);
    } else {
        const double progress = std::min(1.0, (s - warmup) / decay_steps);
        factor = std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
    }
    const double ratio = config.min_lr_ratio;
    return config.lr * (ratio + (1.0 - ratio) * factor);
}

}  // namespace axl
