// A whole training pass of the model over one batch on the CUDA backend, the twin of
// train/decoder_pass.hpp: embed -> decoder layers -> final norm -> LM head + cross-entropy in
// row chunks (linear_cross_entropy: the [tokens x vocab] logits never exist) -> back through
// the layers into the LoRA gradients. With gradient checkpointing only the layer inputs live
// between forward and backward; each layer is recomputed right before its backward. With
// options.offload_activations as well, the inputs of all layers but the last wait in pinned
// host memory instead (activation_offload.hpp), two at most on the device at a time.
#pragma once

#include "backend/cuda/activation_offload.hpp"
#include "backend/cuda/device_lora.hpp"
#include "backend/cuda/device_model.hpp"
#include "backend/cuda/runtime.hpp"
#include "train/batch.hpp"
#include "train/decoder_pass.hpp"

namespace axl::cuda {

// Forward and backward; ADDS d(sum of token losses)/d(param) into lora's gradients and returns
// the sum of token losses (the one wait on the device: the per-row losses are read back).
// Throws Error(AXL_ERR_CANCELLED) when the progress callback asks to stop (gradients then
// partially accumulated: the caller restores). options.dropout_seed is unused (no dropout).
// `offload` is the trainer's offload state, required when options.gradient_checkpointing and
// options.offload_activations are both set, unused otherwise (may then be null).
double train_loss_sum_and_backward(Runtime& runtime, const ModelConfig& config, const DeviceModel& model,
                                   const DeviceLora& lora, const PreparedBatch& batch, const PassOptions& options,
                                   ActivationOffload* offload);

}  // namespace axl::cuda
