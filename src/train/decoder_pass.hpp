// A whole forward (and backward) pass of the model over one batch, top to bottom:
// embed -> decoder layers -> final norm -> LM head + cross-entropy (in row chunks, so the
// [tokens x vocab] logits never exist at once) -> back through the layers into LoRA gradients.
#pragma once

#include <cstdint>
#include <vector>

#include "axl.h"
#include "lora/lora.hpp"
#include "model/model.hpp"
#include "train/batch.hpp"

namespace axl {

struct PassOptions {
    bool gradient_checkpointing = true;  // keep only layer inputs; recompute in backward
    bool offload_activations = false;    // with checkpointing: those inputs in pinned host memory (CUDA only)
    uint64_t dropout_seed = 0;
    axl_progress_fn progress_fn = nullptr;
    void* progress_user_data = nullptr;
};

// Sum of the token losses of `batch` (no gradients, dropout off).
double evaluate_loss_sum(const Model& model, const LoraAdapter* lora, const PreparedBatch& batch);

// Logits [num_positions, vocab] of the flat positions (b*T+t) given, dropout off.
void forward_logits(const Model& model, const LoraAdapter* lora, const PreparedBatch& batch,
                    const std::vector<int64_t>& positions, float* logits);

// Forward and backward with dropout; ADDS d(sum of token losses)/d(param) into the adapter's
// gradients and returns the sum of token losses. Throws Error(AXL_ERR_CANCELLED) when the
// progress callback asks to stop (gradients then partially accumulated: the caller restores).
double train_loss_sum_and_backward(const Model& model, LoraAdapter& lora,
                                   const PreparedBatch& batch, const PassOptions& options);

}  // namespace axl
