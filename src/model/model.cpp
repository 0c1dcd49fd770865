#include "model/model.hpp"

#include "core/error.hpp"

namespace axl {

namespace {

// Counts each tensor as it arrives and reports it to the progress callback.
class LoadProgress {
public:
    LoadProgress(Model& model, const LoadOptions& options, int64_t total)
        : model_(model), options_(options), total_(total) {}

    void tensor(const std::string& name, const Tensor& t) {
        add(AXL_QUANT_NONE, t.numel(), t.nbytes());
        step(name);
    }
    void linear(const std::string& name, const Linear& linear) {
        if (linear.is_quantized())
            add(static_cast<int32_t>(linear.quantized->format), linear.quantized->numel(),
                quantized_storage_bytes(*linear.quantized));
        else
            add(AXL_QUANT_NONE, linear.weight.numel(), linear.weight.nbytes());
        step(name);
    }

private:
    void add(int32_t format, int64_t numel, uint64_t bytes) {
        model_.num_parameters += numel;
        model_.weight_bytes += bytes;
        model_.weight_bytes_by_format[format] += bytes;
    }
    void step(const std::string& name) {
        ++done_;
        if (options_.progress_fn == nullptr) return;
        axl_progress progress{sizeof(axl_progress), AXL_STAGE_LOAD, done_, total_, name.c_str()};
        if (options_.progress_fn(options_.progress_user_data, &progress) != 0)
            fail(AXL_ERR_CANCELLED, "model load cancelled by the progress callback at tensor '", name, "'");
    }

    Model& model_;
    const LoadOptions& options_;
    int64_t total_;
    int64_t done_ = 0;
};

}  // namespace

std::vector<const Linear*> Model::decoder_linears() const {
    std::vector<const Linear*> out;
    out.reserve(layers.size() * 7);
    for (const DecoderLayer& layer : layers) {
        for (const Linear* linear : {&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj,
                                     &layer.gate_proj, &layer.up_proj, &layer.down_proj})
            out.push_back(linear);
    }
    return out;
}

uint64_t quantized_storage_bytes(const QuantizedTensor& q) {
    uint64_t bytes = q.packed.size() + q.scales.size() * sizeof(float) + q.zeros.size() * sizeof(float) +
                     q.scale_codes.size() + (q.tensor_scale ? sizeof(float) : 0);
    if (q.double_quant)
        bytes += q.double_quant->codes.size() + (q.double_quant->absmax.size() + q.double_quant->code_map.size() + 1) * sizeof(float);
    return bytes;
}

void build_model(Model& model, WeightSource& source, const LoadOptions& options) {
    const ModelConfig& c = model.config;
    const int64_t per_layer = 9 + (c.qkv_bias ? 3 : 0) + (c.o_bias ? 1 : 0) + (c.mlp_bias ? 3 : 0) +
                              (c.qk_norm ? 2 : 0);
    LoadProgress progress(model, options, 2 + (c.tie_word_embeddings ? 0 : 1) + per_layer * c.num_layers);

    auto load_f32 = [&](const std::string& name, const Shape& shape) {
        Tensor t = source.load_f32(name, shape);
        progress.tensor(name, t);
        return t;
    };
    auto load_linear = [&](const std::string& name, int in, int out, bool bias, bool decoder_linear) {
        Linear linear;
        linear.name = name;
        linear.short_name = name.substr(name.rfind('.') + 1);
        linear.in_features = in;
        linear.out_features = out;
        source.load_linear_weight(linear, decoder_linear);
        progress.linear(name + ".weight", linear);
        if (bias) linear.bias = load_f32(name + ".bias", {out});
        return linear;
    };

    const int hidden = c.hidden_size;
    const int q_width = c.num_heads * c.head_dim;
    const int kv_width = c.num_kv_heads * c.head_dim;
    model.embed_tokens = load_f32("model.embed_tokens.weight", {c.vocab_size, hidden});
    model.layers.resize(c.num_layers);
    for (int i = 0; i < c.num_layers; ++i) {
        DecoderLayer& layer = model.layers[i];
        const std::string prefix = "model.layers." + std::to_string(i) + ".";
        layer.input_norm = load_f32(prefix + "input_layernorm.weight", {hidden});
        layer.q_proj = load_linear(prefix + "self_attn.q_proj", hidden, q_width, c.qkv_bias, true);
        layer.k_proj = load_linear(prefix + "self_attn.k_proj", hidden, kv_width, c.qkv_bias, true);
        layer.v_proj = load_linear(prefix + "self_attn.v_proj", hidden, kv_width, c.qkv_bias, true);
        layer.o_proj = load_linear(prefix + "self_attn.o_proj", q_width, hidden, c.o_bias, true);
        if (c.qk_norm) {
            layer.q_norm = load_f32(prefix + "self_attn.q_norm.weight", {c.head_dim});
            layer.k_norm = load_f32(prefix + "self_attn.k_norm.weight", {c.head_dim});
        }
        layer.post_attention_norm = load_f32(prefix + "post_attention_layernorm.weight", {hidden});
        const int inter = c.intermediate_size;
        layer.gate_proj = load_linear(prefix + "mlp.gate_proj", hidden, inter, c.mlp_bias, true);
        layer.up_proj = load_linear(prefix + "mlp.up_proj", hidden, inter, c.mlp_bias, true);
        layer.down_proj = load_linear(prefix + "mlp.down_proj", inter, hidden, c.mlp_bias, true);
    }
    model.final_norm = load_f32("model.norm.weight", {hidden});

    if (c.tie_word_embeddings) {
        Linear& head = model.lm_head;
        head.name = "lm_head";
        head.short_name = "lm_head";
        head.in_features = hidden;
        head.out_features = c.vocab_size;
        head.weight = model.embed_tokens;
    } else {
        model.lm_head = load_linear("lm_head", hidden, c.vocab_size, false, false);
    }
}

std::vector<NamedWeight> model_weights(const Model& model) {
    std::vector<NamedWeight> out;
    auto tensor = [&](const std::string& name, const Tensor& t) {
        if (t.defined()) out.push_back({name, &t, nullptr});
    };
    auto linear = [&](const Linear& l) {
        out.push_back({l.name + ".weight", nullptr, &l});
        tensor(l.name + ".bias", l.bias);
    };
    tensor("model.embed_tokens.weight", model.embed_tokens);
    for (size_t i = 0; i < model.layers.size(); ++i) {
        const DecoderLayer& layer = model.layers[i];
        const std::string prefix = "model.layers." + std::to_string(i) + ".";
        tensor(prefix + "input_layernorm.weight", layer.input_norm);
        linear(layer.q_proj);
        linear(layer.k_proj);
        linear(layer.v_proj);
        linear(layer.o_proj);
        tensor(prefix + "self_attn.q_norm.weight", layer.q_norm);
        tensor(prefix + "self_attn.k_norm.weight", layer.k_norm);
        tensor(prefix + "post_attention_layernorm.weight", layer.post_attention_norm);
        linear(layer.gate_proj);
        linear(layer.up_proj);
        linear(layer.down_proj);
    }
    tensor("model.norm.weight", model.final_norm);
    if (!model.config.tie_word_embeddings) linear(model.lm_head);
    return out;
}

}  // namespace axl
