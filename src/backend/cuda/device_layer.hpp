// One decoder layer of a Llama-family model on the CUDA backend, forward and backward: the
// twin of train/decoder_layer.hpp, step for step, with bf16 activations (f32 statistics):
//   h = x + o_proj(attention(rope(q_proj(norm1(x))), rope(k_proj(..)), v_proj(..)))
//   y = h + down_proj(silu(gate_proj(norm2(h))) * up_proj(norm2(h)))
// The projections and their LoRA path are device_projection.hpp's.
#pragma once

#include <array>
#include <cstdint>

#include "backend/cuda/device_lora.hpp"
#include "backend/cuda/device_model.hpp"
#include "backend/cuda/runtime.hpp"
#include "model/model_config.hpp"

namespace axl::cuda {

// A batch on the device (train/batch.hpp's PreparedBatch, uploaded).
struct DeviceBatch {
    int64_t batch_size = 0, seq_len = 0;
    const int32_t* tokens = nullptr;     // [B*T]
    const int32_t* targets = nullptr;    // [B*T], < 0 ignored
    const int32_t* positions = nullptr;  // [B*T]
    const int32_t* segments = nullptr;   // [B*T] or null when not packed

    int64_t num_tokens() const { return batch_size * seq_len; }
};

// What is shared by all layers of one pass (the twin of PassContext).
struct DevicePass {
    Runtime& runtime;
    const ModelConfig& config;
    const DeviceModel& model;
    const DeviceLora* lora;   // trainable adapter, gradients accumulated; null: bare base model
    const DeviceBatch& batch;
    const float* rope_cos;    // [max_pos, head_dim/2]
    const float* rope_sin;
    bf16* weight_scratch;     // one dequantized base weight at a time, weight_scratch_elements (null: none packed)

    cudaStream_t stream() const { return runtime.device().stream(); }
    // Times the device work queued while the result lives as op `name` (StepProfile).
    ProfileScope timed(const char* name) const { return ProfileScope(runtime.profile(), name, stream()); }
};

// Activations forward keeps for backward; the layer input stays with the caller.
struct DeviceLayerSaved {
    DeviceBuffer norm1, rstd1;        // bf16 [N, hidden], f32 [N]
    DeviceBuffer q_raw, k_raw;        // before q/k norm (Qwen3)
    DeviceBuffer rstd_q, rstd_k;
    DeviceBuffer q, k, v;             // after norm and rotary
    DeviceBuffer attn, lse;           // bf16 [N, H*D], f32 [B, H, T]
    DeviceBuffer h;                   // residual after attention
    DeviceBuffer norm2, rstd2;
    DeviceBuffer gate, up, act;       // MLP
    std::array<DeviceBuffer, kDeviceLinearSlots> lora_u;  // x A^T [N, r] per projection outside a group
    std::array<DeviceBuffer, kLoraGroupsPerLayer> lora_group_u;  // x A^T [N, count*r] per lora_group_index
    // Set by a recomputed forward (device_layer_forward with y null): its dequantized base weights
    // are kept here for the backward that follows (instead of dequantizing them again).
    bool keep_dequantized_weights = false;
    std::array<DeviceBuffer, kDeviceLinearSlots> weights;  // bf16 [out, in] when kept
};

// y [N, hidden] = layer(x). Fills `saved` when given (training). With y null (the recomputed
// forward of a checkpointed layer, saved given) the output is not made: the down projection's
// base GEMM is skipped and only its LoRA input x A^T, which backward reads, is computed.
void device_layer_forward(const DevicePass& pass, int layer_index, const bf16* x, bf16* y,
                          DeviceLayerSaved* saved);

// dx [N, hidden] from dy [N, hidden]; accumulates the layer's LoRA gradients. `x` is the
// layer's input.
void device_layer_backward(const DevicePass& pass, int layer_index, const bf16* x,
                           const DeviceLayerSaved& saved, const bf16* dy, bf16* dx);

// Buffers of the pass, from the runtime's caching allocator (stream-ordered).
DeviceBuffer device_bf16(const DevicePass& pass, int64_t rows, int64_t cols, const char* what);
DeviceBuffer device_f32(const DevicePass& pass, int64_t rows, int64_t cols, const char* what);

}  // namespace axl::cuda
