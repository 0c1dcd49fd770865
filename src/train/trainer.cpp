#include "train/trainer.hpp"

#include <cmath>
#include <cstring>

#include "backend/cpu/ops.hpp"
#include "core/error.hpp"
#include "optim/grad_clip.hpp"
#include "train/batch.hpp"
#include "train/decoder_pass.hpp"
#ifdef AXL_HAVE_CUDA
#include "backend/cuda/device_trainer.hpp"
#endif

namespace axl {

namespace {

bool all_finite(const std::vector<Tensor>& tensors) {
    for (const Tensor& t : tensors) {
        const float* p = t.f32();
        for (int64_t i = 0, n = t.numel(); i < n; ++i)
            if (!std::isfinite(p[i])) return false;
    }
    return true;
}

}  // namespace

Optimizer::Optimizer(std::shared_ptr<LoraAdapter> adapter, const OptimizerSettings& settings)
    : adapter_(std::move(adapter)),
      settings_(settings),
      adamw_(adapter_->parameters(), settings.adamw, adapter_->model->context->host_allocator()) {
    validate_adamw_config(settings.adamw);
    validate_schedule(settings.schedule);
}

double Optimizer::lr_at(int64_t step) const { return axl::lr_at(settings_.schedule, step); }

Optimizer::Update Optimizer::apply(float grad_scale) {
    std::vector<Tensor> params = adapter_->parameters();
    std::vector<Tensor> grads = adapter_->gradients();
    for (const Tensor& g : grads) cpu::scale_inplace(g.f32(), grad_scale, g.numel());
    if (!all_finite(grads))
        fail(AXL_ERR_NUMERIC, "non-finite gradient; the update was skipped and the accumulated "
                              "gradients discarded");
    Update update;
    update.grad_norm = clip_grad_norm(grads, settings_.max_grad_norm);
    update.lr = lr_at(steps_taken_);
    adamw_.step(params, grads, update.lr);
    ++steps_taken_;
    return update;
}

Trainer::Trainer(std::shared_ptr<Optimizer> optimizer, const TrainerSettings& settings)
    : optimizer_(std::move(optimizer)), settings_(settings) {
#ifdef AXL_HAVE_CUDA
    if (optimizer_->adapter()->model->context->backend() == AXL_BACKEND_CUDA)
        device_ = std::make_shared<cuda::DeviceTrainer>(*optimizer_->adapter());
#endif
}

void Trainer::discard_gradients() {
    optimizer_->adapter()->zero_gradients();
#ifdef AXL_HAVE_CUDA
    if (device_ != nullptr) device_->zero_gradients();
#endif
    micro_batches_in_window_ = 0;
    tokens_in_window_ = 0;
}

StepOutcome Trainer::step(const axl_batch& batch) {
    LoraAdapter& adapter = *optimizer_->adapter();
    const Model& model = *adapter.model;
    PreparedBatch prepared = prepare_batch(batch, model.config);

    // A failure part-way through backward must not leave half a micro-batch in the gradients.
    std::vector<Tensor> grads = adapter.gradients();
#ifdef AXL_HAVE_CUDA
    if (device_ != nullptr) {
        if (micro_batches_in_window_ == 0)
            device_->zero_gradients();
        else
            device_->save_gradients();
    } else
#endif
    if (micro_batches_in_window_ == 0) {
        adapter.zero_gradients();
        gradient_backup_.clear();
    } else {
        gradient_backup_.resize(grads.size());
        for (size_t i = 0; i < grads.size(); ++i) {
            if (!gradient_backup_[i].defined())
                gradient_backup_[i] = Tensor::empty(model.context->host_allocator(), DType::F32,
                                                    grads[i].shape(), "gradient backup");
            std::memcpy(gradient_backup_[i].data(), grads[i].data(), grads[i].nbytes());
        }
    }
    auto restore = [&] {
#ifdef AXL_HAVE_CUDA
        if (device_ != nullptr) {
            if (micro_batches_in_window_ == 0)
                device_->zero_gradients();
            else
                device_->restore_gradients();
            return;
        }
#endif
        if (micro_batches_in_window_ == 0) {
            adapter.zero_gradients();
            return;
        }
        for (size_t i = 0; i < grads.size(); ++i)
            std::memcpy(grads[i].data(), gradient_backup_[i].data(), grads[i].nbytes());
    };

    PassOptions options;
    options.gradient_checkpointing = settings_.gradient_checkpointing;
    options.offload_activations = settings_.offload_activations;
    options.dropout_seed = adapter.config.seed * 0x2545f4914f6cdd1dull + ++micro_batches_seen_;
    options.progress_fn = settings_.progress_fn;
    options.progress_user_data = settings_.progress_user_data;

    double loss_sum;
    try {
#ifdef AXL_HAVE_CUDA
        if (device_ != nullptr)
            loss_sum = device_->train_loss_sum_and_backward(adapter, prepared, options);
        else
#endif
            loss_sum = train_loss_sum_and_backward(model, adapter, prepared, options);
    } catch (...) {
        restore();
        throw;
    }
    StepOutcome outcome;
    outcome.num_tokens = prepared.num_targets;
    outcome.loss = prepared.num_targets > 0 ? loss_sum / prepared.num_targets : 0.0;
    if (!std::isfinite(loss_sum)) {
        discard_gradients();
        fail(AXL_ERR_NUMERIC, "the loss is not finite (", loss_sum,
             "); the accumulated gradients were discarded and the adapter is unchanged");
    }
    ++micro_batches_in_window_;
    tokens_in_window_ += prepared.num_targets;

    outcome.grad_norm = NAN;
    outcome.lr = NAN;
    if (micro_batches_in_window_ >= settings_.grad_accum_steps) {
        float scale = tokens_in_window_ > 0 ? 1.0f / static_cast<float>(tokens_in_window_) : 0.0f;
        try {
#ifdef AXL_HAVE_CUDA
            Optimizer::Update update =
                device_ != nullptr ? device_->apply(*optimizer_, scale) : optimizer_->apply(scale);
#else
            Optimizer::Update update = optimizer_->apply(scale);
#endif
            outcome.grad_norm = update.grad_norm;
            outcome.lr = update.lr;
            outcome.updated = true;
        } catch (...) {
            discard_gradients();
            throw;
        }
        micro_batches_in_window_ = 0;
        tokens_in_window_ = 0;
    }
    outcome.optimizer_step = optimizer_->steps_taken();
    return outcome;
}

}  // namespace axl
