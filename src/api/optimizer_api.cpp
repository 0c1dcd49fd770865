// C entry points of axl_optimizer.
#include <cmath>

#include "api/guard.hpp"

using namespace axl;

namespace {

axl_optimizer_options optimizer_defaults() {
    axl_optimizer_options o{};
    o.struct_size = sizeof o;
    o.type = AXL_OPTIMIZER_ADAMW;
    o.lr = 2e-4;
    o.beta1 = 0.9;
    o.beta2 = 0.999;
    o.eps = 1e-8;
    o.weight_decay = 0.0;
    o.schedule = AXL_SCHEDULE_CONSTANT;
    o.max_grad_norm = 1.0;
    return o;
}

void require_finite_nonnegative(double value, const char* name) {
    require(std::isfinite(value) && value >= 0, AXL_ERR_INVALID_ARGUMENT, name,
            " must be a finite number >= 0 (got ", value, ")");
}

OptimizerSettings settings_from(const axl_optimizer_options& o) {
    require(o.type == AXL_OPTIMIZER_ADAMW, AXL_ERR_UNSUPPORTED, "optimizer type ", o.type,
            " is not supported (AXL_OPTIMIZER_ADAMW is)");
    require_finite_nonnegative(o.lr, "opts->lr");
    require(o.beta1 >= 0 && o.beta1 < 1, AXL_ERR_INVALID_ARGUMENT, "opts->beta1 must be in [0, 1)");
    require(o.beta2 >= 0 && o.beta2 < 1, AXL_ERR_INVALID_ARGUMENT, "opts->beta2 must be in [0, 1)");
    require(std::isfinite(o.eps) && o.eps > 0, AXL_ERR_INVALID_ARGUMENT, "opts->eps must be positive");
    require_finite_nonnegative(o.weight_decay, "opts->weight_decay");
    require_finite_nonnegative(o.max_grad_norm, "opts->max_grad_norm");
    require(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1, AXL_ERR_INVALID_ARGUMENT,
            "opts->min_lr_ratio must be in [0, 1]");
    require(o.warmup_steps >= 0, AXL_ERR_INVALID_ARGUMENT, "opts->warmup_steps is negative");
    OptimizerSettings s;
    s.schedule.lr = o.lr;
    s.adamw.beta1 = o.beta1;
    s.adamw.beta2 = o.beta2;
    s.adamw.eps = o.eps;
    s.adamw.weight_decay = o.weight_decay;
    s.max_grad_norm = o.max_grad_norm;
    switch (o.schedule) {
        case AXL_SCHEDULE_CONSTANT: s.schedule.type = ScheduleType::Constant; break;
        case AXL_SCHEDULE_LINEAR: s.schedule.type = ScheduleType::Linear; break;
        case AXL_SCHEDULE_COSINE: s.schedule.type = ScheduleType::Cosine; break;
        default:
            fail(AXL_ERR_INVALID_ARGUMENT, "opts->schedule ", o.schedule, " is not one of AXL_SCHEDULE_*");
    }
    if (o.schedule != AXL_SCHEDULE_CONSTANT)
        require(o.total_steps > o.warmup_steps, AXL_ERR_INVALID_ARGUMENT,
                "opts->total_steps (", o.total_steps, ") must exceed warmup_steps (", o.warmup_steps,
                ") for a decaying schedule");
    s.schedule.warmup_steps = o.warmup_steps;
    s.schedule.total_steps = o.total_steps;
    s.schedule.min_lr_ratio = o.min_lr_ratio;
    return s;
}

}  // namespace

extern "C" {

AXL_API axl_status axl_optimizer_options_init(axl_optimizer_options* opts, size_t struct_size) {
    return guarded(nullptr, "axl_optimizer_options_init",
                   [&] { init_struct(opts, struct_size, optimizer_defaults(), "opts"); });
}

AXL_API axl_status axl_optimizer_create(axl_lora* lora, const axl_optimizer_options* opts,
                                        axl_optimizer** out) {
    return guarded(slot_of(lora), "axl_optimizer_create", [&] {
        require_arg(lora, "lora");
        require_arg(out, "out");
        OptimizerSettings settings = settings_from(read_struct(opts, optimizer_defaults(), "opts"));
        auto handle = std::make_unique<axl_optimizer>();
        handle->impl = std::make_shared<Optimizer>(lora->impl, settings);
        *out = handle.release();
    });
}

AXL_API void axl_optimizer_destroy(axl_optimizer* optimizer) { delete optimizer; }

AXL_API const char* axl_optimizer_last_error(const axl_optimizer* optimizer) {
    return optimizer != nullptr ? optimizer->error.get() : "";
}

AXL_API axl_status axl_optimizer_set_param(axl_optimizer* optimizer, int32_t param, double value) {
    return guarded(slot_of(optimizer), "axl_optimizer_set_param", [&] {
        require_arg(optimizer, "optimizer");
        Optimizer& o = *optimizer->impl;
        switch (param) {
            case AXL_OPTIMIZER_PARAM_LR:
                require_finite_nonnegative(value, "lr");
                o.set_lr(value);
                break;
            case AXL_OPTIMIZER_PARAM_WEIGHT_DECAY:
                require_finite_nonnegative(value, "weight_decay");
                o.set_weight_decay(value);
                break;
            case AXL_OPTIMIZER_PARAM_MAX_GRAD_NORM:
                require_finite_nonnegative(value, "max_grad_norm");
                o.set_max_grad_norm(value);
                break;
            default:
                fail(AXL_ERR_INVALID_ARGUMENT, "unknown optimizer parameter id ", param);
        }
    });
}

AXL_API axl_status axl_optimizer_get_param(const axl_optimizer* optimizer, int32_t param, double* value) {
    return guarded(slot_of(optimizer), "axl_optimizer_get_param", [&] {
        require_arg(optimizer, "optimizer");
        require_arg(value, "value");
        const OptimizerSettings& s = optimizer->impl->settings();
        switch (param) {
            case AXL_OPTIMIZER_PARAM_LR: *value = s.schedule.lr; break;
            case AXL_OPTIMIZER_PARAM_WEIGHT_DECAY: *value = s.adamw.weight_decay; break;
            case AXL_OPTIMIZER_PARAM_MAX_GRAD_NORM: *value = s.max_grad_norm; break;
            default: fail(AXL_ERR_INVALID_ARGUMENT, "unknown optimizer parameter id ", param);
        }
    });
}

AXL_API axl_status axl_optimizer_lr_at(const axl_optimizer* optimizer, int64_t step, double* lr) {
    return guarded(slot_of(optimizer), "axl_optimizer_lr_at", [&] {
        require_arg(optimizer, "optimizer");
        require_arg(lr, "lr");
        require(step >= 0, AXL_ERR_INVALID_ARGUMENT, "step is negative");
        *lr = optimizer->impl->lr_at(step);
    });
}

}  // extern "C"
