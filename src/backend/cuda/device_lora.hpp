// The trainable adapter on the device: LoRA A and B of every module as f32 masters, their bf16
// copies for the GEMMs (refreshed after each update), their gradients and the AdamW moments,
// each kept in one flat buffer, so that clipping, the update and the copy back to the host
// adapter are one pass each. In that buffer the A's of projections that read the same input
// (q k v, and gate up) sit back to back: x A^T for the group is one GEMM (DeviceLoraGroup).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "backend/cuda/device_allocator.hpp"
#include "backend/cuda/device_model.hpp"
#include "backend/cuda/ops.hpp"
#include "lora/lora.hpp"

namespace axl::cuda {

// One LoRA module's views into the flat buffers.
struct DeviceLoraModule {
    int64_t rank = 0, in = 0, out = 0;
    int64_t a_offset = 0, b_offset = 0;  // of A and B in the flat buffers
    float* grad_a = nullptr;   // [rank, in]
    float* grad_b = nullptr;   // [out, rank]
    const bf16* a = nullptr;   // [rank, in] bf16 copy of the master
    const bf16* b = nullptr;   // [out, rank]
};

// The A's of the projections of one layer that share their input, with equal rank: q k v
// (first_slot kSlotQ, count 3) or gate up (kSlotGate, 2), in slot order.
// A layer's groups are numbered 0 (q k v) and 1 (gate up), by their first slot.
constexpr int kLoraGroupsPerLayer = 2;
constexpr int lora_group_index(int first_slot) { return first_slot == kSlotQ ? 0 : 1; }

struct DeviceLoraGroup {
    int first_slot = 0, count = 0;
    int64_t rank = 0, in = 0;
    const bf16* a = nullptr;   // [count * rank, in] bf16 copy
    float* grad_a = nullptr;   // [count * rank, in]
};

class DeviceLora {
public:
    // Uploads the adapter's current A and B. DoRA and LoRA dropout are not supported on the
    // device: Error(AXL_ERR_UNSUPPORTED) (check_device_trainable says so before any upload).
    DeviceLora(const LoraAdapter& adapter, DeviceAllocator& allocator);

    float scaling() const { return scaling_; }
    // The module of projection `slot` of layer `layer`, or null when the adapter skips it.
    const DeviceLoraModule* module(int layer, int slot) const;
    // The group starting at `first_slot` (kSlotQ or kSlotGate) of layer `layer`, or null when
    // the adapter does not train all its projections alike.
    const DeviceLoraGroup* group(int layer, int first_slot) const;
    // Flat values (gradients, parameters) reordered as LoraAdapter::gradients() lists them.
    std::vector<float> in_adapter_order(const std::vector<float>& flat) const;

    int64_t numel() const { return numel_; }
    float* params() const { return params_.as<float>(); }
    float* grads() const { return grads_.as<float>(); }
    float* exp_avg() const { return exp_avg_.as<float>(); }
    float* exp_avg_sq() const { return exp_avg_sq_.as<float>(); }

    void zero_gradients(cudaStream_t stream) const;
    // A copy of the gradients to return to when a micro-batch fails part-way.
    void save_gradients(DeviceAllocator& allocator);
    void restore_gradients(cudaStream_t stream) const;
    // After an update: the bf16 copies from the masters. download: the masters back into the
    // host adapter (waits for the stream); the trainer runs it lazily (LoraAdapter::sync_host).
    void refresh_copies(cudaStream_t stream) const;
    void download(const LoraAdapter& adapter, cudaStream_t stream);

private:
    float scaling_ = 0.0f;
    int64_t numel_ = 0;
    DeviceBuffer params_, params_bf16_, grads_, grads_saved_, exp_avg_, exp_avg_sq_;
    std::vector<DeviceLoraModule> modules_;              // in adapter.modules order
    std::vector<std::array<int, kDeviceLinearSlots>> module_index_;  // [layer][slot], -1 none
    std::vector<std::array<DeviceLoraGroup, kLoraGroupsPerLayer>> groups_;  // [layer][lora_group_index]
    std::vector<float> host_staging_;
};

// Error(AXL_ERR_UNSUPPORTED) naming the feature when `adapter` uses what the CUDA step lacks.
void check_device_trainable(const LoraAdapter& adapter);

}  // namespace axl::cuda
