// Learning-rate schedules with linear warmup, the formulas of transformers'
// get_{constant,linear,cosine}_schedule_with_warmup (num_cycles 0.5) extended with a floor:
//   warmup (step < warmup):  lr * step / max(1, warmup)
//   constant:                lr
//   linear:                  lr * (r + (1 - r) * max(0, (total - step) / max(1, total - warmup)))
//   cosine:                  lr * (r + (1 - r) * 0.5 * (1 + cos(pi * progress)))
// with r = min_lr_ratio and progress = (step - warmup) / max(1, total - warmup). r = 0 gives
// transformers' values exactly; with r > 0 cosine is get_cosine_with_min_lr_schedule_with_warmup.
// One deliberate difference: past total_steps cosine stays at its floor (progress is clamped
// to 1) where transformers' cosine would rise again.
#pragma once

#include <cstdint>

namespace axl {

enum class ScheduleType { Constant = 0, Linear = 1, Cosine = 2 };

struct ScheduleConfig {
    ScheduleType type = ScheduleType::Constant;
    double lr = 2e-4;          // peak learning rate
    int64_t warmup_steps = 0;
    int64_t total_steps = 0;   // needed by Linear and Cosine
    double min_lr_ratio = 0.0;
};

// Error(AXL_ERR_INVALID_ARGUMENT) naming the field unless lr >= 0, warmup_steps >= 0,
// 0 <= min_lr_ratio <= 1, and total_steps >= 1 for Linear and Cosine.
void validate_schedule(const ScheduleConfig& config);

// Learning rate of optimizer step `step` (0-based, as the scheduler's counter in transformers).
double lr_at(const ScheduleConfig& config, int64_t step);

}  // namespace axl
