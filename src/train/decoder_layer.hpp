// One decoder layer of a Llama-family model on the CPU backend, forward and backward:
//   h = x + o_proj(attention(rope(q_proj(norm1(x))), rope(k_proj(..)), v_proj(..)))
//   y = h + down_proj(silu(gate_proj(norm2(h))) * up_proj(norm2(h)))
// Each projection carries its LoRA module when the adapter targets it.
#pragma once

#include <array>
#include <cstdint>

#include "core/tensor.hpp"
#include "lora/lora.hpp"
#include "lora/lora_linear.hpp"
#include "model/model.hpp"
#include "train/batch.hpp"

namespace axl {

// What is shared by all layers of one pass.
struct PassContext {
    const Model& model;
    const LoraAdapter* lora;            // null: bare base model
    LoraAdapter* trainable;             // the same adapter when gradients are wanted, else null
    const PreparedBatch& batch;
    const std::shared_ptr<HostAllocator>& allocator;
    const float* rope_cos;              // [max_pos, head_dim/2]
    const float* rope_sin;
    bool training;
    uint64_t dropout_seed;              // of this micro-batch
};

enum LinearSlot { kQ, kK, kV, kO, kGate, kUp, kDown, kNumSlots };

// Activations forward keeps for backward.
struct LayerSaved {
    Tensor x;                     // [N, hidden] layer input
    Tensor norm1, rstd1;          // input RMSNorm output and its 1/rms
    Tensor q_raw, k_raw;          // projections before q/k norm (Qwen3)
    Tensor rstd_q, rstd_k;
    Tensor q, k, v;               // after norm and rotary
    Tensor attn, lse;             // attention output [N, H*D] and log-sum-exp [B, H, T]
    Tensor h;                     // residual after attention
    Tensor norm2, rstd2;
    Tensor gate, up, act;         // MLP
    std::array<LoraLinearSaved, kNumSlots> linear;
};

// y [N, hidden] = layer(x). Fills `saved` when `save` is set (training); x is copied into it.
void decoder_layer_forward(const PassContext& pass, int layer_index, const float* x, float* y,
                           LayerSaved* saved);

// dx [N, hidden] from dy [N, hidden]; accumulates the layer's LoRA gradients.
void decoder_layer_backward(const PassContext& pass, int layer_index, const LayerSaved& saved,
                            const float* dy, float* dx);

}  // namespace axl
