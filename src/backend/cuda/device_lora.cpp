#include "backend/cuda/device_lora.hpp"

#include <cstring>

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

    // The flat layout: A then B of each module, in adapter.modules order (= parameters()).
    host_staging_.resize(numel_);
    const Model& model = *adapter.model;
    int64_t offset = 0;
    std::unordered_map<const Linear*, int> index_of_linear;
    for (const LoraModule& module : adapter.modules) {
        DeviceLoraModule d;
        d.rank = module.a.dim(0);
        d.in = module.a.dim(1);
        d.out = module.b.dim(0);
        std::memcpy(host_staging_.data() + offset, module.a.f32(), module.a.nbytes());
        d.grad_a = grads() + offset;
        d.a = params_bf16_.as<bf16>() + offset;
        offset += module.a.numel();
        std::memcpy(host_staging_.data() + offset, module.b.f32(), module.b.nbytes());
        d.grad_b = grads() + offset;
        d.b = params_bf16_.as<bf16>() + offset;
        offset += module.b.numel();
        index_of_linear[module.base] = static_cast<int>(modules_.size());
        modules_.push_back(d);
    }
    AXL_CUDA_CHECK(cudaMemcpyAsync(params(), host_staging_.data(), bytes, cudaMemcpyHostToDevice, stream));
    refresh_copies(stream);

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
    int64_t offset = 0;
    for (const LoraModule& module : adapter.modules)
        for (const Tensor* param : {&module.a, &module.b}) {
            std::memcpy(param->f32(), host_staging_.data() + offset, param->nbytes());
            offset += param->numel();
        }
}

}  // namespace axl::cuda
