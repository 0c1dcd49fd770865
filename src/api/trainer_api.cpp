// C entry points of axl_trainer.
#include "api/guard.hpp"

using namespace axl;

namespace {

axl_trainer_options trainer_defaults() {
    axl_trainer_options o{};
    o.struct_size = sizeof o;
    o.grad_accum_steps = 1;
    o.gradient_checkpointing = AXL_CHECKPOINT_LAYERS;
    return o;
}

}  // namespace

extern "C" {

AXL_API axl_status axl_trainer_options_init(axl_trainer_options* opts, size_t struct_size) {
    return guarded(nullptr, "axl_trainer_options_init",
                   [&] { init_struct(opts, struct_size, trainer_defaults(), "opts"); });
}

AXL_API axl_status axl_trainer_create(axl_optimizer* optimizer, const axl_trainer_options* opts,
                                      axl_trainer** out) {
    return guarded(slot_of(optimizer), "axl_trainer_create", [&] {
        require_arg(optimizer, "optimizer");
        require_arg(out, "out");
        axl_trainer_options o = read_struct(opts, trainer_defaults(), "opts");
        require(o.grad_accum_steps >= 1, AXL_ERR_INVALID_ARGUMENT,
                "opts->grad_accum_steps must be at least 1 (got ", o.grad_accum_steps, ")");
        require(o.gradient_checkpointing == AXL_CHECKPOINT_NONE || o.gradient_checkpointing == AXL_CHECKPOINT_LAYERS ||
                    o.gradient_checkpointing == AXL_CHECKPOINT_LAYERS_OFFLOAD,
                AXL_ERR_INVALID_ARGUMENT, "opts->gradient_checkpointing must be AXL_CHECKPOINT_NONE (0), "
                "AXL_CHECKPOINT_LAYERS (1) or AXL_CHECKPOINT_LAYERS_OFFLOAD (2) (got ", o.gradient_checkpointing, ")");
        TrainerSettings settings;
        settings.grad_accum_steps = o.grad_accum_steps;
        settings.gradient_checkpointing = o.gradient_checkpointing != AXL_CHECKPOINT_NONE;
        settings.offload_activations = o.gradient_checkpointing == AXL_CHECKPOINT_LAYERS_OFFLOAD;
        settings.progress_fn = o.progress_fn;
        settings.progress_user_data = o.progress_user_data;
        auto handle = std::make_unique<axl_trainer>();
        handle->impl = std::make_unique<Trainer>(optimizer->impl, settings);
        *out = handle.release();
    });
}

AXL_API void axl_trainer_destroy(axl_trainer* trainer) { delete trainer; }

AXL_API const char* axl_trainer_last_error(const axl_trainer* trainer) {
    return trainer != nullptr ? trainer->error.get() : "";
}

AXL_API axl_status axl_step_result_init(axl_step_result* result, size_t struct_size) {
    return guarded(nullptr, "axl_step_result_init", [&] {
        axl_step_result defaults{};
        defaults.struct_size = sizeof defaults;
        init_struct(result, struct_size, defaults, "result");
    });
}

AXL_API axl_status axl_trainer_step(axl_trainer* trainer, const axl_batch* batch,
                                    axl_step_result* result) {
    return guarded(slot_of(trainer), "axl_trainer_step", [&] {
        require_arg(trainer, "trainer");
        require_arg(batch, "batch");
        if (result != nullptr)
            require(result->struct_size >= sizeof(uint32_t), AXL_ERR_INVALID_ARGUMENT,
                    "result->struct_size is not set; initialise it with axl_step_result_init");
        axl_batch b{};
        b.struct_size = sizeof b;
        b = read_struct(batch, b, "batch");
        trainer->impl->optimizer_context().enter_thread();
        StepOutcome outcome = trainer->impl->step(b);
        if (result == nullptr) return;
        axl_step_result value{};
        value.struct_size = sizeof value;
        value.loss = outcome.loss;
        value.grad_norm = outcome.grad_norm;
        value.lr = outcome.lr;
        value.num_tokens = outcome.num_tokens;
        value.optimizer_step = outcome.optimizer_step;
        value.updated = outcome.updated ? 1 : 0;
        write_struct(result, value, "result");
    });
}

AXL_API axl_status axl_trainer_discard_gradients(axl_trainer* trainer) {
    return guarded(slot_of(trainer), "axl_trainer_discard_gradients", [&] {
        require_arg(trainer, "trainer");
        trainer->impl->discard_gradients();
    });
}

}  // extern "C"
