#include "backend/cuda/device_model.hpp"

#include <algorithm>
#include <vector>

#include "backend/cuda/check.hpp"
#include "backend/cuda/runtime.hpp"
#include "core/error.hpp"
#include "quant/quantize.hpp"

namespace axl::cuda {

namespace {

// Host staging for conversions to bf16, a slice at a time.
constexpr size_t kConvertSlice = size_t{1} << 22;

bool is_bnb_4bit(QuantFormat format) { return format == QuantFormat::NF4 || format == QuantFormat::FP4; }

}  // namespace

template <typename T>
const T* DeviceModel::upload(const T* host, size_t count, const char* what, std::vector<DeviceBuffer>& owner) {
    if (count == 0) return nullptr;
    DeviceBuffer buffer(allocator_, sizeof(T) * count, what);
    AXL_CUDA_CHECK(cudaMemcpyAsync(buffer.data(), host, sizeof(T) * count, cudaMemcpyHostToDevice,
                                   allocator_.stream()));
    const T* device = buffer.as<T>();
    owner.push_back(std::move(buffer));
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

void DeviceModel::upload_bnb_4bit(const QuantizedTensor& q, Bnb4BitWeight* p, std::vector<DeviceBuffer>& owner) {
    p->format = q.format;
    p->rows = q.rows;
    p->cols = q.cols;
    p->block_size = q.block_size;
    p->packed = upload(q.packed.data(), q.packed.size(), "4-bit base weight codes", owner);
    if (q.double_quant.has_value()) {
        const DoubleQuantStats& dq = *q.double_quant;
        p->absmax_codes = upload(dq.codes.data(), dq.codes.size(), "4-bit absmax codes", owner);
        p->nested_absmax = upload(dq.absmax.data(), dq.absmax.size(), "4-bit nested absmax", owner);
        p->code_map = upload(dq.code_map.data(), dq.code_map.size(), "4-bit absmax code map", owner);
        p->offset = dq.offset;
    } else {
        p->absmax = upload(q.scales.data(), q.scales.size(), "4-bit absmax", owner);
    }
}

void DeviceModel::upload_packed(const QuantizedTensor& q, PackedWeight* p, std::vector<DeviceBuffer>& owner) {
    p->format = q.format;
    p->rows = q.rows;
    p->cols = q.cols;
    p->block_size = q.block_size;
    p->block_rows = q.block_rows;
    p->packed = upload(q.packed.data(), q.packed.size(), "quantized base weight codes", owner);
    // Only the statistics the format reads (check_quantized_tensor has checked their sizes).
    if (q.format == QuantFormat::NVFP4 || q.format == QuantFormat::MXFP4) {
        p->scale_codes = upload(q.scale_codes.data(), q.scale_codes.size(), "block scale codes", owner);
        p->has_tensor_scale = q.tensor_scale.has_value();
        p->tensor_scale = q.tensor_scale.value_or(0.0f);
    } else {
        p->scales = upload(q.scales.data(), q.scales.size(), "quantized base weight scales", owner);
    }
    if (q.format == QuantFormat::Int4Group)
        p->zeros = upload(q.zeros.data(), q.zeros.size(), "int4 zero points", owner);
}

DeviceLinear DeviceModel::upload_linear(const Linear& linear, std::vector<DeviceBuffer>& owner) {
    DeviceLinear d;
    d.in = linear.in_features;
    d.out = linear.out_features;
    d.bias = upload_f32(linear.bias, "base bias");
    if (!linear.is_quantized()) {
        d.weight = upload_bf16(linear.weight, "base weight");
        return d;
    }
    const QuantizedTensor& q = *linear.quantized;
    check_quantized_tensor(q);
    require(q.rows == d.out && q.cols == d.in, AXL_ERR_SHAPE, "linear '", linear.name, "': quantized weight [", q.rows,
            ", ", q.cols, "] for ", d.in, " inputs and ", d.out, " outputs");
    d.format = q.format;
    // Code that reads `packed` (NF4/FP4 only) sees another format there, never an empty NF4.
    d.packed.format = q.format;
    if (is_bnb_4bit(q.format))
        upload_bnb_4bit(q, &d.packed, owner);
    else if (has_packed_dequantizer(q.format))
        upload_packed(q, &d.quantized, owner);
    else
        fail(AXL_ERR_UNSUPPORTED, "linear '", linear.name, "': the CUDA backend has no dequantizer for ",
             quant_format_name(q.format), " weights");
    return d;
}

DeviceLinear DeviceModel::upload_lm_head(const Linear& head) {
    if (!head.is_quantized()) return upload_linear(head, buffers_);
    // The fused LM-head cross-entropy reads the whole weight at once: dequantize it once here,
    // on the device, and let the codes go (freed in stream order, after the kernel).
    std::vector<DeviceBuffer> codes;
    DeviceLinear d = upload_linear(head, codes);
    DeviceBuffer weight(allocator_, sizeof(bf16) * d.out * d.in, "dequantized LM head");
    dequantize_weight(d, weight.as<bf16>(), allocator_.stream());
    d.weight = weight.as<bf16>();
    d.packed = Bnb4BitWeight{};
    d.quantized = PackedWeight{};
    buffers_.push_back(std::move(weight));
    return d;
}

DeviceModel::DeviceModel(const Model& model, Runtime& runtime) : allocator_(runtime.allocator()) {
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
        lm_head = upload_lm_head(head);
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
        for (int slot = 0; slot < kDeviceLinearSlots; ++slot) layer.linears[slot] = upload_linear(*linears[slot], buffers_);
    }
    // The uploads read pageable host memory; they are complete once this returns.
    runtime.device().synchronize();
}

bool DeviceLinear::dequantizes_with_row_stride() const { return is_packed() && is_bnb_4bit(format); }

void dequantize_weight(const DeviceLinear& linear, bf16* out, cudaStream_t stream) {
    dequantize_weight(linear, out, linear.in, stream);
}

void dequantize_weight(const DeviceLinear& linear, bf16* out, int64_t out_ld, cudaStream_t stream) {
    require(linear.is_packed(), AXL_ERR_INTERNAL, "dequantize_weight: the linear is held as bf16, not quantized");
    require(out_ld == linear.in || linear.dequantizes_with_row_stride(), AXL_ERR_INTERNAL, "dequantize_weight: ",
            quant_format_name(linear.format), " rows cannot be written ", out_ld, " apart");
    if (is_bnb_4bit(linear.format))
        dequantize_bnb_4bit_rows(linear.packed, 0, linear.out, out, out_ld, stream);
    else
        dequantize_packed_rows(linear.quantized, 0, linear.out, out, stream);
}

}  // namespace axl::cuda
