#include "backend/cuda/device_model.hpp"

#include <algorithm>
#include <vector>

#include "backend/cuda/check.hpp"
#include "backend/cuda/runtime.hpp"
#include "core/error.hpp"
#include "lora/lora_linear.hpp"

namespace axl::cuda {

namespace {

// Host staging for conversions to bf16, a slice at a time.
constexpr size_t kConvertSlice = size_t{1} << 22;

bool is_bnb_4bit(const Linear& linear) {
    return linear.is_quantized() &&
           (linear.quantized->format == QuantFormat::NF4 || linear.quantized->format == QuantFormat::FP4);
}

}  // namespace

template <typename T>
const T* DeviceModel::upload(const T* host, size_t count, const char* what) {
    DeviceBuffer buffer(allocator_, sizeof(T) * count, what);
    AXL_CUDA_CHECK(cudaMemcpyAsync(buffer.data(), host, sizeof(T) * count, cudaMemcpyHostToDevice,
                                   allocator_.stream()));
    const T* device = buffer.as<T>();
    buffers_.push_back(std::move(buffer));
    return device;
}

const float* DeviceModel::upload_f32(const Tensor& tensor, const char* what) {
    if (!tensor.defined()) return nullptr;
    if (tensor.dtype() == DType::F32) return upload(tensor.f32(), tensor.numel(), what);
    std::vector<float> f32(tensor.numel());
    convert_to_f32(tensor.data(), tensor.dtype(), f32.data(), f32.size());
    return upload(f32.data(), f32.size(), what);
}

const bf16* DeviceModel::upload_bf16(const Tensor& tensor, const char* what) {
    const size_t count = static_cast<size_t>(tensor.numel());
    if (tensor.dtype() == DType::BF16) return upload(tensor.data_as<const bf16>(), count, what);
    DeviceBuffer buffer(allocator_, sizeof(bf16) * count, what);
    std::vector<float> f32(std::min(count, kConvertSlice));
    std::vector<uint16_t> bits(f32.size());
    const size_t element = dtype_size(tensor.dtype());
    for (size_t begin = 0; begin < count; begin += kConvertSlice) {
        const size_t n = std::min(kConvertSlice, count - begin);
        convert_to_f32(static_cast<const char*>(tensor.data()) + begin * element, tensor.dtype(), f32.data(), n);
        convert_from_f32(f32.data(), bits.data(), DType::BF16, n);
        // Pageable source: the copy has read `bits` when it returns, so the slice can be reused.
        AXL_CUDA_CHECK(cudaMemcpyAsync(buffer.as<bf16>() + begin, bits.data(), sizeof(bf16) * n,
                                       cudaMemcpyHostToDevice, allocator_.stream()));
    }
    const bf16* device = buffer.as<bf16>();
    buffers_.push_back(std::move(buffer));
    return device;
}

DeviceLinear DeviceModel::upload_linear(const Linear& linear) {
    DeviceLinear d;
    d.in = linear.in_features;
    d.out = linear.out_features;
    d.bias = upload_f32(linear.bias, "base bias");
    if (!linear.is_quantized()) {
        d.weight = upload_bf16(linear.weight, "base weight");
        return d;
    }
    const QuantizedTensor& q = *linear.quantized;
    if (!is_bnb_4bit(linear)) {
        // No device dequantizer for this format yet: hold the dequantized weight as bf16.
        Tensor weight = linear_weight_f32(linear, host_allocator_);
        d.weight = upload_bf16(weight, "dequantized base weight");
        return d;
    }
    Bnb4BitWeight& p = d.packed;
    p.format = q.format;
    p.rows = q.rows;
    p.cols = q.cols;
    p.block_size = q.block_size;
    p.packed = upload(q.packed.data(), q.packed.size(), "4-bit base weight codes");
    if (q.double_quant.has_value()) {
        const DoubleQuantStats& dq = *q.double_quant;
        p.absmax_codes = upload(dq.codes.data(), dq.codes.size(), "4-bit absmax codes");
        p.nested_absmax = upload(dq.absmax.data(), dq.absmax.size(), "4-bit nested absmax");
        p.code_map = upload(dq.code_map.data(), dq.code_map.size(), "4-bit absmax code map");
        p.offset = dq.offset;
    } else {
        p.absmax = upload(q.scales.data(), q.scales.size(), "4-bit absmax");
    }
    largest_packed_linear = std::max(largest_packed_linear, q.rows * q.cols);
    return d;
}

DeviceModel::DeviceModel(const Model& model, Runtime& runtime)
    : allocator_(runtime.allocator()), host_allocator_(model.context->host_allocator()) {
    runtime.device().make_current();
    embed_tokens = upload_bf16(model.embed_tokens, "token embeddings");
    final_norm = upload_f32(model.final_norm, "final norm");
    const Linear& head = model.lm_head;
    if (!head.is_quantized() && head.weight.data() == model.embed_tokens.data()) {
        lm_head.in = head.in_features;
        lm_head.out = head.out_features;
        lm_head.weight = embed_tokens;
        lm_head.bias = upload_f32(head.bias, "LM head bias");
    } else {
        require(!is_bnb_4bit(head), AXL_ERR_UNSUPPORTED,
                "a 4-bit LM head is not supported on the CUDA backend");
        lm_head = upload_linear(head);
    }
    require(lm_head.bias == nullptr, AXL_ERR_UNSUPPORTED, "an LM head bias is not supported on the CUDA backend");
    layers.resize(model.layers.size());
    for (size_t l = 0; l < model.layers.size(); ++l) {
        const DecoderLayer& host = model.layers[l];
        DeviceLayer& layer = layers[l];
        layer.input_norm = upload_f32(host.input_norm, "input norm");
        layer.post_attention_norm = upload_f32(host.post_attention_norm, "post-attention norm");
        layer.q_norm = upload_f32(host.q_norm, "q norm");
        layer.k_norm = upload_f32(host.k_norm, "k norm");
        const Linear* linears[kDeviceLinearSlots] = {&host.q_proj, &host.k_proj,    &host.v_proj,   &host.o_proj,
                                                     &host.gate_proj, &host.up_proj, &host.down_proj};
        for (int slot = 0; slot < kDeviceLinearSlots; ++slot) layer.linears[slot] = upload_linear(*linears[slot]);
    }
    // The uploads read pageable host memory; they are complete once this returns.
    runtime.device().synchronize();
}

void dequantize_weight(const DeviceLinear& linear, bf16* out, cudaStream_t stream) {
    dequantize_bnb_4bit_rows(linear.packed, 0, linear.out, out, stream);
}

}  // namespace axl::cuda
