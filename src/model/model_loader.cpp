// Builds a Model from a Hugging Face directory: config.json names the architecture and shapes,
// the (possibly sharded) safetensors checkpoint supplies the tensors under transformers' names.
// Linears are kept in their float dtype, quantized on load one tensor at a time, or read as the
// checkpoint already stores them quantized (checkpoint_quant.hpp).
#include <algorithm>
#include <cstring>

#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "io/safetensors.hpp"
#include "model/checkpoint_quant.hpp"
#include "model/model.hpp"
#include "quant/quantize.hpp"

namespace axl {

namespace {

bool is_float_dtype(DType dtype) {
    return dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16;
}

// Elements a thread converts or copies at a time: big enough to amortise the scheduling,
// small enough that every thread faults in (reads) its own part of the mapped file.
constexpr int64_t kChunkElements = 1 << 20;

// Whether read_as_f32's work can be split into chunks: a float tensor of the expected shape
// whose elements are aligned (else read_as_f32 itself, with its checks and bounce buffer).
bool converts_in_place(const TensorInfo& info, const Shape& shape) {
    return is_float_dtype(info.dtype) && info.shape == shape &&
           reinterpret_cast<uintptr_t>(info.data) % dtype_size(info.dtype) == 0;
}

// Converts the tensor to f32 into `out`, the conversion and the reading of the mapped file
// spread over the context's threads; the kernel is told to read the whole range ahead.
void convert_parallel(const TensorInfo& info, float* out) {
    prefetch_mapped_pages(info);
    const int64_t count = shape_numel(info.shape);
    const size_t element_size = dtype_size(info.dtype);
    const auto* source = static_cast<const unsigned char*>(info.data);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t begin = 0; begin < count; begin += kChunkElements) {
        const int64_t n = std::min(kChunkElements, count - begin);
        convert_to_f32(source + begin * element_size, info.dtype, out + begin, static_cast<size_t>(n));
    }
}

Tensor read_f32_parallel(const TensorInfo& info, const Shape& shape, const std::shared_ptr<HostAllocator>& allocator) {
    if (!converts_in_place(info, shape)) return read_as_f32(info, shape, allocator);
    Tensor out = Tensor::empty(allocator, DType::F32, shape, info.name.c_str());
    convert_parallel(info, out.f32());
    return out;
}

// The checkpoint tensor copied as it is stored, in parallel chunks like read_f32_parallel.
Tensor copy_parallel(const TensorInfo& info, const Shape& shape, const std::shared_ptr<HostAllocator>& allocator) {
    prefetch_mapped_pages(info);
    Tensor out = Tensor::empty(allocator, info.dtype, shape, info.name.c_str());
    const int64_t bytes = static_cast<int64_t>(info.nbytes);
    const int64_t chunk = kChunkElements * 4;
    const auto* source = static_cast<const unsigned char*>(info.data);
    auto* target = static_cast<unsigned char*>(out.data());
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t begin = 0; begin < bytes; begin += chunk)
        std::memcpy(target + begin, source + begin, static_cast<size_t>(std::min(chunk, bytes - begin)));
    return out;
}

// Moves a quantized tensor's arrays into blocks of the context's allocator (so they are counted
// and go through the caller's hooks) and freezes it.
template <typename T>
void move_to_allocator(QuantArray<T>& array, const std::shared_ptr<HostAllocator>& allocator) {
    if (array.empty()) return;
    const size_t bytes = array.size() * sizeof(T);
    auto buffer = std::make_shared<Buffer>(allocator, bytes, "quantized weight");
    std::memcpy(buffer->data(), array.data(), bytes);
    const T* data = static_cast<const T*>(buffer->data());
    array = QuantArray<T>::view(data, array.size(), std::move(buffer));
}

std::shared_ptr<const QuantizedTensor> adopt(QuantizedTensor q, const std::shared_ptr<HostAllocator>& allocator) {
    move_to_allocator(q.packed, allocator);
    move_to_allocator(q.scales, allocator);
    move_to_allocator(q.zeros, allocator);
    move_to_allocator(q.scale_codes, allocator);
    if (q.double_quant) {
        move_to_allocator(q.double_quant->codes, allocator);
        move_to_allocator(q.double_quant->absmax, allocator);
        move_to_allocator(q.double_quant->code_map, allocator);
    }
    return std::make_shared<const QuantizedTensor>(std::move(q));
}

class CheckpointSource : public WeightSource {
public:
    CheckpointSource(const Checkpoint& checkpoint, const CheckpointQuant& checkpoint_quant,
                     const ModelQuantConfig& requested, std::shared_ptr<HostAllocator> allocator)
        : checkpoint_(checkpoint), checkpoint_quant_(checkpoint_quant), requested_(requested),
          allocator_(std::move(allocator)) {}

    Tensor load_f32(const std::string& name, const Shape& shape) override {
        const TensorInfo& info = checkpoint_.get(name);
        Tensor t = read_f32_parallel(info, shape, allocator_);
        release_mapped_pages(info);
        return t;
    }

    void load_linear_weight(Linear& linear, bool decoder_linear) override {
        const std::string name = linear.name + ".weight";
        if (checkpoint_quant_.method != CheckpointQuantMethod::None) {
            std::optional<QuantizedTensor> stored = read_quantized_linear(
                checkpoint_, checkpoint_quant_, linear.name, linear.out_features, linear.in_features);
            if (stored) {
                require(!keeps_full_precision(requested_, linear.name), AXL_ERR_INVALID_ARGUMENT,
                        "the quant config keeps '", linear.name, "' in full precision but the "
                        "checkpoint (", checkpoint_quant_.description, ") stores it quantized");
                check_requested_block_size(requested_, *stored, name);
                linear.quantized = adopt(std::move(*stored), allocator_);
                release_mapped_pages(checkpoint_.get(name));
                return;
            }
        }
        const TensorInfo& info = checkpoint_.get(name);
        const Shape shape{linear.out_features, linear.in_features};
        require(info.shape == shape, AXL_ERR_SHAPE, "tensor '", name, "' has shape ",
                shape_string(info.shape), " but the config implies ", shape_string(shape));
        require(is_float_dtype(info.dtype), AXL_ERR_UNSUPPORTED, "tensor '", name, "' has dtype ",
                dtype_name(info.dtype), "; linear weights must be F32, BF16 or F16",
                checkpoint_quant_.method == CheckpointQuantMethod::None
                    ? " (config.json names no quantization_config)" : "");
        if (quantize_on_load(linear, decoder_linear)) {
            QuantizedTensor q = quantize(f32_scratch(info, shape), linear.out_features, linear.in_features,
                                         tensor_quant_config(requested_, info.dtype));
            linear.quantized = adopt(std::move(q), allocator_);
        } else {
            linear.weight = copy_parallel(info, shape, allocator_);
        }
        release_mapped_pages(info);
    }

private:
    // The weight in f32, in a scratch buffer that holds one weight at a time and is reused (so
    // its pages are faulted in once per load, not once per weight).
    const float* f32_scratch(const TensorInfo& info, const Shape& shape) {
        const size_t bytes = static_cast<size_t>(shape_numel(shape)) * sizeof(float);
        if (!converts_in_place(info, shape)) {
            scratch_tensor_ = read_as_f32(info, shape, allocator_);
            return scratch_tensor_.f32();
        }
        if (scratch_ == nullptr || scratch_->size() < bytes) {
            scratch_.reset();
            scratch_ = std::make_unique<Buffer>(allocator_, bytes, "f32 scratch of a weight being quantized");
        }
        convert_parallel(info, static_cast<float*>(scratch_->data()));
        return static_cast<const float*>(scratch_->data());
    }

    bool quantize_on_load(const Linear& linear, bool decoder_linear) const {
        return checkpoint_quant_.method == CheckpointQuantMethod::None && requested_.quantizes() &&
               decoder_linear && !keeps_full_precision(requested_, linear.name);
    }

    const Checkpoint& checkpoint_;
    const CheckpointQuant& checkpoint_quant_;
    const ModelQuantConfig& requested_;
    std::shared_ptr<HostAllocator> allocator_;
    std::unique_ptr<Buffer> scratch_;
    Tensor scratch_tensor_;
};

// Checks every weight to be quantized against the config before any work is done, so an
// impossible config fails at once and names the first tensor it cannot take.
void validate_quantize_on_load(const Model& model, const ModelQuantConfig& requested) {
    const ModelConfig& c = model.config;
    const int64_t q_width = static_cast<int64_t>(c.num_heads) * c.head_dim;
    const int64_t kv_width = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
    const struct {
        const char* name;
        int64_t rows, cols;
    } shapes[] = {{"self_attn.q_proj", q_width, c.hidden_size},
                  {"self_attn.k_proj", kv_width, c.hidden_size},
                  {"self_attn.v_proj", kv_width, c.hidden_size},
                  {"self_attn.o_proj", c.hidden_size, q_width},
                  {"mlp.gate_proj", c.intermediate_size, c.hidden_size},
                  {"mlp.up_proj", c.intermediate_size, c.hidden_size},
                  {"mlp.down_proj", c.hidden_size, c.intermediate_size}};
    for (int layer = 0; layer < c.num_layers; ++layer) {
        for (const auto& s : shapes) {
            const std::string module = "model.layers." + std::to_string(layer) + "." + s.name;
            if (keeps_full_precision(requested, module)) continue;
            try {
                validate_quant_config(tensor_quant_config(requested, DType::F32), s.rows, s.cols);
            } catch (const Error& e) {
                fail(e.code(), "cannot quantize '", module, ".weight': ", e.what());
            }
        }
    }
}

}  // namespace

std::shared_ptr<Model> load_model(const std::shared_ptr<Context>& context, const std::string& dir,
                                  const LoadOptions& options) {
    validate_model_quant_config(options.quant);
    auto model = std::make_shared<Model>();
    model->context = context;
    const std::string config_path = dir + "/config.json";
    model->config_json = read_text_file(config_path);
    model->config = parse_model_config(model->config_json, config_path);
    const CheckpointQuant checkpoint_quant = parse_checkpoint_quant(model->config_json, config_path);
    model->quant = reconcile_quant_config(options.quant, checkpoint_quant);
    if (checkpoint_quant.method == CheckpointQuantMethod::None && options.quant.quantizes())
        validate_quantize_on_load(*model, options.quant);

    Checkpoint checkpoint(dir);
    CheckpointSource source(checkpoint, checkpoint_quant, options.quant, context->host_allocator());
    build_model(*model, source, options);
    return model;
}

}  // namespace axl
