// The frozen linear with its LoRA path, forward and backward, on the CPU backend:
//   y = x W^T + b + scaling * dropout(x) A^T B^T           (LoRA)
// and with DoRA (PEFT's formulation, the weight norm treated as a constant as in PEFT):
//   y = x W^T + b + (m/||W + s B A||_row - 1) * (dropout(x) W^T) + m/||...|| * s * dropout(x) A^T B^T
// The base weight is read in its storage dtype and converted to f32 per call (a scratch copy
// of the layer's weight); a quantized weight is dequantized the same way, so the LoRA path and
// the gradient reaching x (through the dequantized W) do not depend on the storage format.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.hpp"
#include "lora/lora.hpp"
#include "model/model.hpp"

namespace axl {

// What forward keeps for backward (owned tensors, sized by forward).
struct LoraLinearSaved {
    Tensor dropped_x;   // [M, in] dropout(x), only when dropout > 0 in training
    Tensor u;           // [M, r]  dropout(x) A^T
    Tensor weight_norm; // [out]   DoRA: ||W + s B A||_row
    Tensor base_out;    // [M, out] DoRA: dropout(x) W^T without bias
};

struct LoraLinearContext {
    const std::shared_ptr<HostAllocator>& allocator;
    bool training = false;        // dropout on, save for backward
    uint64_t dropout_seed = 0;    // distinct per call site and step (see dropout_mask)
};

// The base weight as f32: the weight itself when stored as f32, else a converted or dequantized
// copy. The one place the graph turns a base weight into f32.
Tensor linear_weight_f32(const Linear& linear, const std::shared_ptr<HostAllocator>& allocator);

// y [M, out] = the frozen linear (with its LoRA module if `lora` is non-null) applied to x [M, in].
void lora_linear_forward(float* y, const float* x, int64_t m, const Linear& base,
                         const LoraModule* lora, float scaling, float dropout,
                         const LoraLinearContext& ctx, LoraLinearSaved* saved);

// dx [M, in] written (null: not needed); LoRA gradients accumulated into lora->grad_*.
void lora_linear_backward(float* dx, const float* dy, const float* x, int64_t m,
                          const Linear& base, LoraModule* lora, float scaling, float dropout,
                          const LoraLinearContext& ctx, const LoraLinearSaved& saved);

}  // namespace axl
