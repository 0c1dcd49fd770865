#include "backend/cuda/device_lora.hpp"

#include <cstring>
#include <unordered_map>
#include <utility>

#include "backend/cuda/check.hpp"
#include "core/error.hpp"

namespace axl::cuda {

void check_device_trainable(const LoraAdapter& adapter) {
    require(!adapter.config.use_dora, AXL_ERR_UNSUPPORTED,
            "DoRA is not supported on the CUDA backend yet; train it with AXL_BACKEND_CPU");
    require(adapter.config.dropout == 0.0, AXL_ERR_UNSUPPORTED,
            "LoRA dropout is not supported on the CUDA backend yet (dropout ", adapter.config.dropout,
            "); set it to 0 or train with AXL_BACKEND_CPU");
}

DeviceLora::DeviceLora(const LoraAdapter& adapter, DeviceAllocator& allocator) {
    check_device_trainable(adapter);
    scaling_ = adapter.config.scaling();
    numel_ = adapter.num_parameters();
    const size_t bytes = sizeof(float) * static_cast<size_t>(numel_);
    params_ = DeviceBuffer(allocator, bytes, "LoRA weights");
    params_bf16_ = DeviceBuffer(allocator, bytes / 2, "LoRA weights (bf16 copy)");
    grads_ = DeviceBuffer(allocator, bytes, "LoRA gradients");
    exp_avg_ = DeviceBuffer(allocator, bytes, "AdamW first moments");
    exp_avg_sq_ = DeviceBuffer(allocator, bytes, "AdamW second moments");
    cudaStream_t stream = allocator.stream();
    AXL_CUDA_CHECK(cudaMemsetAsync(exp_avg_.data(), 0, bytes, stream));
    AXL_CUDA_CHECK(cudaMemsetAsync(exp_avg_sq_.data(), 0, bytes, stream));
    zero_gradients(stream);

    // Which module trains which projection of which layer.
    const Model& model = *adapter.model;
    std::unordered_map<const Linear*, int> index_of_linear;
    for (size_t i = 0; i < adapter.modules.size(); ++i)
        index_of_linear[adapter.modules[i].base] = static_cast<int>(i);
    module_index_.resize(model.layers.size());
    for (size_t l = 0; l < model.layers.size(); ++l) {
        const DecoderLayer& layer = model.layers[l];
        const Linear* linears[kDeviceLinearSlots] = {&layer.q_proj,    &layer.k_proj,  &layer.v_proj,   &layer.o_proj,
                                                     &layer.gate_proj, &layer.up_proj, &layer.down_proj};
        for (int slot = 0; slot < kDeviceLinearSlots; ++slot) {
            auto it = index_of_linear.find(linears[slot]);
            module_index_[l][slot] = it != index_of_linear.end() ? it->second : -1;
        }
    }

    // The flat layout. Per layer, the A's of a group (q k v; gate up: same input, same rank)
    // come first, back to back; then every other A and every B, in adapter.modules order.
    const size_t count = adapter.modules.size();
    std::vector<int64_t> a_offset(count, -1), b_offset(count, -1);
    int64_t offset = 0;
    groups_.resize(model.layers.size());
    for (size_t l = 0; l < model.layers.size(); ++l) {
        for (const auto& [first, size] : {std::pair{int{kSlotQ}, 3}, std::pair{int{kSlotGate}, 2}}) {
            // Every projection of the group trained, each A of the first one's shape.
            const int i0 = module_index_[l][first];
            bool whole = i0 >= 0;
            for (int k = 1; k < size && whole; ++k) {
                const int i = module_index_[l][first + k];
                whole = i >= 0 && adapter.modules[i].a.dim(0) == adapter.modules[i0].a.dim(0) &&
                        adapter.modules[i].a.dim(1) == adapter.modules[i0].a.dim(1);
            }
            if (!whole) continue;
            DeviceLoraGroup& group = groups_[l][lora_group_index(first)];
            group.first_slot = first;
            group.count = size;
            group.rank = adapter.modules[i0].a.dim(0);
            group.in = adapter.modules[i0].a.dim(1);
            group.a = params_bf16_.as<bf16>() + offset;
            group.grad_a = grads() + offset;
            for (int k = 0; k < size; ++k) {
                const int i = module_index_[l][first + k];
                a_offset[i] = offset;
                offset += adapter.modules[i].a.numel();
            }
        }
    }
    host_staging_.resize(numel_);
    for (size_t i = 0; i < count; ++i) {
        const LoraModule& module = adapter.modules[i];
        if (a_offset[i] < 0) {
            a_offset[i] = offset;
            offset += module.a.numel();
        }
        b_offset[i] = offset;
        offset += module.b.numel();
        DeviceLoraModule d;
        d.rank = module.a.dim(0);
        d.in = module.a.dim(1);
        d.out = module.b.dim(0);
        d.a_offset = a_offset[i];
        d.b_offset = b_offset[i];
        d.grad_a = grads() + d.a_offset;
        d.a = params_bf16_.as<bf16>() + d.a_offset;
        d.grad_b = grads() + d.b_offset;
        d.b = params_bf16_.as<bf16>() + d.b_offset;
        std::memcpy(host_staging_.data() + d.a_offset, module.a.f32(), module.a.nbytes());
        std::memcpy(host_staging_.data() + d.b_offset, module.b.f32(), module.b.nbytes());
        modules_.push_back(d);
    }
    require(offset == numel_, AXL_ERR_INTERNAL, "LoRA layout covers ", offset, " of ", numel_, " parameters");
    AXL_CUDA_CHECK(cudaMemcpyAsync(params(), host_staging_.data(), bytes, cudaMemcpyHostToDevice, stream));
    refresh_copies(stream);
}

const DeviceLoraGroup* DeviceLora::group(int layer, int first_slot) const {
    const DeviceLoraGroup& group = groups_[layer][lora_group_index(first_slot)];
    return (first_slot == kSlotQ || first_slot == kSlotGate) && group.count > 0 ? &group : nullptr;
}

std::vector<float> DeviceLora::in_adapter_order(const std::vector<float>& flat) const {
    std::vector<float> out;
    out.reserve(flat.size());
    for (const DeviceLoraModule& d : modules_) {
        out.insert(out.end(), flat.begin() + d.a_offset, flat.begin() + d.a_offset + d.rank * d.in);
        out.insert(out.end(), flat.begin() + d.b_offset, flat.begin() + d.b_offset + d.out * d.rank);
    }
    return out;
}

const DeviceLoraModule* DeviceLora::module(int layer, int slot) const {
    const int index = module_index_[layer][slot];
    return index >= 0 ? &modules_[index] : nullptr;
}

void DeviceLora::zero_gradients(cudaStream_t stream) const {
    AXL_CUDA_CHECK(cudaMemsetAsync(grads(), 0, sizeof(float) * numel_, stream));
}

void DeviceLora::save_gradients(DeviceAllocator& allocator) {
    if (grads_saved_.data() == nullptr)
        grads_saved_ = DeviceBuffer(allocator, sizeof(float) * numel_, "LoRA gradient backup");
    AXL_CUDA_CHECK(cudaMemcpyAsync(grads_saved_.data(), grads(), sizeof(float) * numel_, cudaMemcpyDeviceToDevice,
                                   allocator.stream()));
}

void DeviceLora::restore_gradients(cudaStream_t stream) const {
    AXL_CUDA_CHECK(cudaMemcpyAsync(grads(), grads_saved_.data(), sizeof(float) * numel_, cudaMemcpyDeviceToDevice,
                                   stream));
}

void DeviceLora::refresh_copies(cudaStream_t stream) const {
    convert(params_bf16_.as<bf16>(), params(), numel_, stream);
}

void DeviceLora::download(const LoraAdapter& adapter, cudaStream_t stream) {
    AXL_CUDA_CHECK(cudaMemcpyAsync(host_staging_.data(), params(), sizeof(float) * numel_, cudaMemcpyDeviceToHost,
                                   stream));
    AXL_CUDA_CHECK(cudaStreamSynchronize(stream));
    // adapter.modules directly: parameters() would ask for this very download (sync_host).
    for (size_t i = 0; i < adapter.modules.size(); ++i) {
        const LoraModule& module = adapter.modules[i];
        std::memcpy(module.a.f32(), host_staging_.data() + modules_[i].a_offset, module.a.nbytes());
        std::memcpy(module.b.f32(), host_staging_.data() + modules_[i].b_offset, module.b.nbytes());
    }
}

}  // namespace axl::cuda
