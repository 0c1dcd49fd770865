// Builds a Model from a Hugging Face directory: config.json names the architecture and shapes,
// the (possibly sharded) safetensors checkpoint supplies the tensors under transformers' names.
#include <cstring>

#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "io/safetensors.hpp"
#include "model/model.hpp"

namespace axl {

namespace {

class TensorLoader {
public:
    TensorLoader(const Checkpoint& checkpoint, Model& model, const LoadOptions& options,
                 int64_t total)
        : checkpoint_(checkpoint), model_(model), options_(options), total_(total) {}

    // A small tensor the graph reads directly (norms, biases, embeddings): always f32.
    Tensor load_f32(const std::string& name, const Shape& shape) {
        const TensorInfo& info = checkpoint_.get(name);
        Tensor t = read_as_f32(info, shape, model_.context->host_allocator());
        account(name, info);
        return t;
    }

    // A linear weight stays in the dtype it is stored in; the graph converts it when used.
    Tensor load_weight(const std::string& name, const Shape& shape) {
        const TensorInfo& info = checkpoint_.get(name);
        require(info.shape == shape, AXL_ERR_SHAPE, "tensor '", name, "' has shape ",
                shape_string(info.shape), " but the config implies ", shape_string(shape));
        if (info.dtype != DType::F32 && info.dtype != DType::BF16 && info.dtype != DType::F16)
            fail(AXL_ERR_UNSUPPORTED, "tensor '", name, "' has dtype ", dtype_name(info.dtype),
                 "; linear weights must be F32, BF16 or F16");
        Tensor t = Tensor::empty(model_.context->host_allocator(), info.dtype, shape, name.c_str());
        std::memcpy(t.data(), info.data, info.nbytes);
        account(name, info);
        return t;
    }

    Linear load_linear(const std::string& name, int in, int out, bool bias) {
        Linear linear;
        linear.name = name;
        linear.short_name = name.substr(name.rfind('.') + 1);
        linear.in_features = in;
        linear.out_features = out;
        linear.weight = load_weight(name + ".weight", {out, in});
        if (bias) linear.bias = load_f32(name + ".bias", {out});
        return linear;
    }

private:
    void account(const std::string& name, const TensorInfo& info) {
        model_.num_parameters += shape_numel(info.shape);
        model_.weight_bytes += info.nbytes;
        ++done_;
        if (options_.progress_fn != nullptr) {
            axl_progress progress{sizeof(axl_progress), AXL_STAGE_LOAD, done_, total_, name.c_str()};
            if (options_.progress_fn(options_.progress_user_data, &progress) != 0)
                fail(AXL_ERR_CANCELLED, "model load cancelled by the progress callback at tensor '",
                     name, "'");
        }
    }

    const Checkpoint& checkpoint_;
    Model& model_;
    const LoadOptions& options_;
    int64_t total_;
    int64_t done_ = 0;
};

}  // namespace

std::shared_ptr<Model> load_model(const std::shared_ptr<Context>& context, const std::string& dir,
                                  const LoadOptions& options) {
    auto model = std::make_shared<Model>();
    model->context = context;
    std::string config_path = dir + "/config.json";
    model->config = parse_model_config(read_text_file(config_path), config_path);
    const ModelConfig& c = model->config;
    Checkpoint checkpoint(dir);

    int64_t per_layer = 9 + (c.qkv_bias ? 3 : 0) + (c.o_bias ? 1 : 0) + (c.mlp_bias ? 3 : 0) +
                        (c.qk_norm ? 2 : 0);
    int64_t total = 2 + (c.tie_word_embeddings ? 0 : 1) + per_layer * c.num_layers;
    TensorLoader loader(checkpoint, *model, options, total);

    const int hidden = c.hidden_size;
    const int q_width = c.num_heads * c.head_dim;
    const int kv_width = c.num_kv_heads * c.head_dim;
    model->embed_tokens = loader.load_f32("model.embed_tokens.weight", {c.vocab_size, hidden});
    model->layers.resize(c.num_layers);
    for (int i = 0; i < c.num_layers; ++i) {
        DecoderLayer& layer = model->layers[i];
        std::string prefix = "model.layers." + std::to_string(i) + ".";
        layer.input_norm = loader.load_f32(prefix + "input_layernorm.weight", {hidden});
        layer.q_proj = loader.load_linear(prefix + "self_attn.q_proj", hidden, q_width, c.qkv_bias);
        layer.k_proj = loader.load_linear(prefix + "self_attn.k_proj", hidden, kv_width, c.qkv_bias);
        layer.v_proj = loader.load_linear(prefix + "self_attn.v_proj", hidden, kv_width, c.qkv_bias);
        layer.o_proj = loader.load_linear(prefix + "self_attn.o_proj", q_width, hidden, c.o_bias);
        if (c.qk_norm) {
            layer.q_norm = loader.load_f32(prefix + "self_attn.q_norm.weight", {c.head_dim});
            layer.k_norm = loader.load_f32(prefix + "self_attn.k_norm.weight", {c.head_dim});
        }
        layer.post_attention_norm =
            loader.load_f32(prefix + "post_attention_layernorm.weight", {hidden});
        const int inter = c.intermediate_size;
        layer.gate_proj = loader.load_linear(prefix + "mlp.gate_proj", hidden, inter, c.mlp_bias);
        layer.up_proj = loader.load_linear(prefix + "mlp.up_proj", hidden, inter, c.mlp_bias);
        layer.down_proj = loader.load_linear(prefix + "mlp.down_proj", inter, hidden, c.mlp_bias);
    }
    model->final_norm = loader.load_f32("model.norm.weight", {hidden});

    Linear& head = model->lm_head;
    head.name = "lm_head";
    head.short_name = "lm_head";
    head.in_features = hidden;
    head.out_features = c.vocab_size;
    if (c.tie_word_embeddings) {
        head.weight = model->embed_tokens;
    } else {
        head.weight = loader.load_weight("lm_head.weight", {c.vocab_size, hidden});
    }
    return model;
}

}  // namespace axl
