// The CUDA side of a Trainer (train/trainer.hpp) whose model lives on a CUDA context: the
// micro-batch pass (device_pass.hpp) into gradients kept on the device, and the update
// (scale, global norm, clipping, AdamW) on the device, with the Optimizer's settings and step
// count. The host adapter is a copy of the device masters, refreshed lazily: an update marks it
// stale (LoraAdapter::set_host_stale) and the first host read (save, merge, CPU forward) or the
// trainer's end copies the masters back, so a training loop pays no per-step download.
#pragma once

#include <memory>
#include <vector>

#include "backend/cuda/activation_offload.hpp"
#include "backend/cuda/device_lora.hpp"
#include "backend/cuda/device_model.hpp"
#include "backend/cuda/runtime.hpp"
#include "train/batch.hpp"
#include "train/decoder_pass.hpp"
#include "train/trainer.hpp"

namespace axl::cuda {

class DeviceTrainer {
public:
    // Checks what the CUDA step supports (Error(AXL_ERR_UNSUPPORTED) for DoRA and dropout);
    // uploads nothing yet: the model and adapter go to the device at the first micro-batch,
    // under the budget in force then.
    explicit DeviceTrainer(const LoraAdapter& adapter);
    // Copies pending trained weights back into the host adapter (errors are logged, not thrown).
    ~DeviceTrainer();
    DeviceTrainer(const DeviceTrainer&) = delete;
    DeviceTrainer& operator=(const DeviceTrainer&) = delete;

    // train_loss_sum_and_backward on the device: adds into the device gradients.
    double train_loss_sum_and_backward(const LoraAdapter& adapter, const PreparedBatch& batch,
                                       const PassOptions& options);

    void zero_gradients();
    void save_gradients();
    void restore_gradients();

    // The accumulated gradients, flat in LoraAdapter::gradients() order (for checks; waits).
    std::vector<float> gradients() const;

    // Optimizer::apply's contract, on the device gradients and masters.
    Optimizer::Update apply(Optimizer& optimizer, float grad_scale);

private:
    void prepare(const LoraAdapter& adapter);

    Runtime& runtime_;
    const LoraAdapter* adapter_ = nullptr;  // the trained adapter (outlives this: the Trainer holds it)
    std::shared_ptr<DeviceModel> model_;
    std::unique_ptr<DeviceLora> lora_;
    std::unique_ptr<ActivationOffload> offload_;  // made by the first pass that offloads
};

}  // namespace axl::cuda
