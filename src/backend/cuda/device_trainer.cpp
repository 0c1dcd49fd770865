#include "backend/cuda/device_trainer.hpp"

#include <cmath>

#include "backend/cuda/check.hpp"
#include "backend/cuda/device_pass.hpp"
#include "backend/cuda/ops.hpp"
#include "core/error.hpp"

namespace axl::cuda {

namespace {

Runtime& runtime_of(const LoraAdapter& adapter) {
    Runtime* runtime = adapter.model->context->cuda();
    require(runtime != nullptr, AXL_ERR_INTERNAL, "the CUDA trainer needs a model on a CUDA context");
    return *runtime;
}

}  // namespace

DeviceTrainer::DeviceTrainer(const LoraAdapter& adapter) : runtime_(runtime_of(adapter)), adapter_(&adapter) {
    check_device_trainable(adapter);
}

DeviceTrainer::~DeviceTrainer() {
    try {
        adapter_->sync_host();
    } catch (const std::exception& e) {
        adapter_->clear_host_stale();
        adapter_->model->context->log(AXL_LOG_ERROR, std::string("the trained adapter could not be copied back "
                                                                 "from the device: ") + e.what());
    }
}

void DeviceTrainer::prepare(const LoraAdapter& adapter) {
    runtime_.device().make_current();
    if (model_ == nullptr) model_ = runtime_.model_mirror(adapter.model);
    if (lora_ == nullptr) lora_ = std::make_unique<DeviceLora>(adapter, runtime_.allocator());
}

double DeviceTrainer::train_loss_sum_and_backward(const LoraAdapter& adapter, const PreparedBatch& batch,
                                                  const PassOptions& options) {
    prepare(adapter);
    if (options.gradient_checkpointing && options.offload_activations && offload_ == nullptr)
        offload_ = std::make_unique<ActivationOffload>(runtime_);
    return cuda::train_loss_sum_and_backward(runtime_, adapter.model->config, *model_, *lora_, batch, options,
                                             offload_.get());
}

void DeviceTrainer::zero_gradients() {
    if (lora_ != nullptr) lora_->zero_gradients(runtime_.device().stream());
}

void DeviceTrainer::save_gradients() {
    if (lora_ != nullptr) lora_->save_gradients(runtime_.allocator());
}

void DeviceTrainer::restore_gradients() {
    if (lora_ != nullptr) lora_->restore_gradients(runtime_.device().stream());
}

std::vector<float> DeviceTrainer::gradients() const {
    require(lora_ != nullptr, AXL_ERR_INTERNAL, "no gradients before the first micro-batch");
    std::vector<float> out(lora_->numel());
    AXL_CUDA_CHECK(cudaMemcpyAsync(out.data(), lora_->grads(), sizeof(float) * out.size(), cudaMemcpyDeviceToHost,
                                   runtime_.device().stream()));
    runtime_.device().synchronize();
    return lora_->in_adapter_order(out);
}

Optimizer::Update DeviceTrainer::apply(Optimizer& optimizer, float grad_scale) {
    require(lora_ != nullptr, AXL_ERR_INTERNAL, "an update before any micro-batch");
    runtime_.device().make_current();
    cudaStream_t stream = runtime_.device().stream();
    const OptimizerSettings& settings = optimizer.settings();
    const int64_t n = lora_->numel();
    float* grads = lora_->grads();

    StepProfile& profile = runtime_.profile();
    double sum = 0.0;
    {
        ProfileScope timed(profile, "gradient norm", stream);
        scale_inplace(grads, grad_scale, n, stream);
        DeviceBuffer sums(runtime_.allocator(), sizeof(double) * (1 + sum_squares_scratch_doubles()), "gradient norm");
        sum_squares(sums.as<double>(), grads, n, sums.as<double>() + 1, stream);
        AXL_CUDA_CHECK(cudaMemcpyAsync(&sum, sums.data(), sizeof sum, cudaMemcpyDeviceToHost, stream));
        runtime_.device().synchronize();
    }
    if (!std::isfinite(sum))
        fail(AXL_ERR_NUMERIC, "non-finite gradient; the update was skipped and the accumulated "
                              "gradients discarded");

    // clip_grad_norm's arithmetic (optim/grad_clip.cpp).
    Optimizer::Update update;
    update.grad_norm = std::sqrt(sum);
    update.lr = optimizer.lr_at(optimizer.steps_taken());
    const AdamWConfig& adamw = settings.adamw;
    const AdamWCoefficients coefficients = adamw_coefficients(adamw.beta1, adamw.beta2, adamw.eps, adamw.weight_decay,
                                                              optimizer.steps_taken() + 1, update.lr);
    const AdamWTensor all{lora_->params(), grads, lora_->exp_avg(), lora_->exp_avg_sq(), n};
    {
        ProfileScope timed(profile, "clip + AdamW + bf16 copies", stream);
        if (settings.max_grad_norm > 0.0) {
            const double coefficient = settings.max_grad_norm / (update.grad_norm + 1e-6);
            if (coefficient < 1.0) scale_inplace(grads, static_cast<float>(coefficient), n, stream);
        }
        adamw_step(&all, 1, coefficients, stream);
        lora_->refresh_copies(stream);
    }
    // The host copy is now stale; it is fetched when something on the host reads it.
    const LoraAdapter* adapter = optimizer.adapter().get();
    adapter->set_host_stale([this, adapter] {
        runtime_.device().make_current();
        lora_->download(*adapter, runtime_.device().stream());
    });
    optimizer.count_device_update();
    return update;
}

}  // namespace axl::cuda
