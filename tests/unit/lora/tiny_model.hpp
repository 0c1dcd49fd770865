// A tiny decoder Model built in memory (no files, no loader) for the LoRA tests: random base
// weights in the chosen storage dtype, linear names as Hugging Face Llama checkpoints spell them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/context.hpp"
#include "lora/counter_rng.hpp"
#include "model/model.hpp"

namespace axl::test {

struct TinyModelOptions {
    int layers = 2;
    int hidden = 16;
    int intermediate = 24;
    int heads = 4;
    int kv_heads = 2;
    DType dtype = DType::F32;  // storage dtype of the base weights
    bool qkv_bias = false;
    uint64_t seed = 1;
};

inline std::shared_ptr<Context> make_test_context() {
    axl_context_options options{};
    options.struct_size = sizeof options;
    options.backend = AXL_BACKEND_CPU;
    options.num_threads = 2;
    options.log_level = AXL_LOG_WARN;
    return std::make_shared<Context>(options);
}

// Values uniform in [-scale, scale), stored in `dtype`.
inline Tensor random_tensor(const std::shared_ptr<HostAllocator>& allocator, DType dtype,
                            Shape shape, uint64_t seed, float scale = 0.5f) {
    const int64_t n = shape_numel(shape);
    Tensor f32 = Tensor::empty(allocator, DType::F32, shape, "test tensor");
    for (int64_t i = 0; i < n; ++i)
        f32.f32()[i] = static_cast<float>((2.0 * counter_uniform(seed, i) - 1.0) * scale);
    if (dtype == DType::F32) return f32;
    Tensor out = Tensor::empty(allocator, dtype, std::move(shape), "test tensor");
    convert_from_f32(f32.f32(), out.data(), dtype, static_cast<size_t>(n));
    return out;
}

inline Linear make_linear(const std::shared_ptr<HostAllocator>& allocator, const std::string& name,
                          int in, int out, DType dtype, bool bias, uint64_t seed) {
    Linear linear;
    linear.name = name;
    linear.short_name = name.substr(name.rfind('.') + 1);
    linear.in_features = in;
    linear.out_features = out;
    linear.weight = random_tensor(allocator, dtype, {out, in}, seed);
    if (bias) linear.bias = random_tensor(allocator, dtype, {out}, seed + 1);
    return linear;
}

inline std::shared_ptr<Model> make_tiny_model(const TinyModelOptions& options = {}) {
    auto model = std::make_shared<Model>();
    model->context = make_test_context();
    const auto& allocator = model->context->host_allocator();
    ModelConfig& c = model->config;
    c.model_type = "llama";
    c.vocab_size = 32;
    c.hidden_size = options.hidden;
    c.intermediate_size = options.intermediate;
    c.num_layers = options.layers;
    c.num_heads = options.heads;
    c.num_kv_heads = options.kv_heads;
    c.head_dim = options.hidden / options.heads;
    c.max_position_embeddings = 64;
    c.qkv_bias = options.qkv_bias;

    const int h = options.hidden, kv = options.kv_heads * c.head_dim, im = options.intermediate;
    uint64_t seed = combine_seeds(options.seed, 0x7e57);
    auto linear = [&](int layer, const char* group, const char* name, int in, int out, bool bias) {
        const std::string path = "model.layers." + std::to_string(layer) + "." + group + "." + name;
        return make_linear(allocator, path, in, out, options.dtype, bias, seed += 16);
    };
    for (int i = 0; i < options.layers; ++i) {
        DecoderLayer layer;
        layer.q_proj = linear(i, "self_attn", "q_proj", h, h, options.qkv_bias);
        layer.k_proj = linear(i, "self_attn", "k_proj", h, kv, options.qkv_bias);
        layer.v_proj = linear(i, "self_attn", "v_proj", h, kv, options.qkv_bias);
        layer.o_proj = linear(i, "self_attn", "o_proj", h, h, false);
        layer.gate_proj = linear(i, "mlp", "gate_proj", h, im, false);
        layer.up_proj = linear(i, "mlp", "up_proj", h, im, false);
        layer.down_proj = linear(i, "mlp", "down_proj", im, h, false);
        model->layers.push_back(std::move(layer));
    }
    return model;
}

}  // namespace axl::test
