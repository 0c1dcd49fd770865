// The training loop's engine side: the optimizer behind axl_optimizer (AdamW state, LR
// schedule, clipping) and the trainer behind axl_trainer (micro-batches, gradient
// accumulation, the update, and the guarantees on failure: NaN or cancel leaves state intact).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "axl.h"
#include "lora/lora.hpp"
#include "optim/adamw.hpp"
#include "optim/lr_schedule.hpp"

namespace axl {

namespace cuda {
class DeviceTrainer;
}

struct OptimizerSettings {
    AdamWConfig adamw;
    ScheduleConfig schedule;  // holds the peak learning rate
    double max_grad_norm = 1.0;
};

class Optimizer {
public:
    Optimizer(std::shared_ptr<LoraAdapter> adapter, const OptimizerSettings& settings);

    const std::shared_ptr<LoraAdapter>& adapter() const { return adapter_; }
    const OptimizerSettings& settings() const { return settings_; }
    void set_lr(double lr) { settings_.schedule.lr = lr; }
    void set_weight_decay(double wd) { settings_.adamw.weight_decay = wd; adamw_.config().weight_decay = wd; }
    void set_max_grad_norm(double norm) { settings_.max_grad_norm = norm; }
    int64_t steps_taken() const { return steps_taken_; }
    double lr_at(int64_t step) const;

    // Scales the accumulated gradients by `grad_scale`, clips, and applies one AdamW update.
    // Returns the pre-clip global norm and the lr used. Non-finite gradients: Error(NUMERIC),
    // parameters and moments untouched.
    struct Update {
        double grad_norm;
        double lr;
    };
    Update apply(float grad_scale);
    // Counts an update that a CUDA trainer applied on the device (cuda::DeviceTrainer::apply).
    void count_device_update() { ++steps_taken_; }

private:
    std::shared_ptr<LoraAdapter> adapter_;
    OptimizerSettings settings_;
    AdamW adamw_;
    int64_t steps_taken_ = 0;
};

struct TrainerSettings {
    int32_t grad_accum_steps = 1;
    bool gradient_checkpointing = true;
    bool offload_activations = false;  // AXL_CHECKPOINT_LAYERS_OFFLOAD; the CPU pass ignores it
    axl_progress_fn progress_fn = nullptr;
    void* progress_user_data = nullptr;
};

struct StepOutcome {
    double loss = 0;
    double grad_norm = 0;
    double lr = 0;
    int64_t num_tokens = 0;
    int64_t optimizer_step = 0;
    bool updated = false;
};

class Trainer {
public:
    Trainer(std::shared_ptr<Optimizer> optimizer, const TrainerSettings& settings);

    StepOutcome step(const axl_batch& batch);
    void discard_gradients();
    const Context& optimizer_context() const { return *optimizer_->adapter()->model->context; }

private:
    std::shared_ptr<Optimizer> optimizer_;
    TrainerSettings settings_;
    int32_t micro_batches_in_window_ = 0;
    int64_t tokens_in_window_ = 0;
    uint64_t micro_batches_seen_ = 0;
    std::vector<Tensor> gradient_backup_;
    // Set when the model is on a CUDA context: the pass, the gradients and the update run there.
    std::shared_ptr<cuda::DeviceTrainer> device_;
};

}  // namespace axl
