// Writes a random tiny Hugging Face checkpoint (config.json + safetensors) without Python, for
// tests, examples and bindings tests that need a model axl can load. The weights come from a
// counter-based generator, so a given seed gives the same bytes on every platform.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "test_safetensors.hpp"

namespace axl_test {

struct TinyCheckpointOptions {
    std::string model_type = "llama";
    int vocab_size = 64;
    int hidden_size = 32;
    int intermediate_size = 64;
    int num_layers = 2;
    int num_heads = 4;
    int num_kv_heads = 2;
    int max_position_embeddings = 64;
    bool tie_word_embeddings = false;
    uint64_t seed = 1;
    // More than 1 writes model-0000k-of-0000n.safetensors and model.safetensors.index.json.
    int num_shards = 1;
    // Tensors left out of the files (and of the index), to test missing-tensor errors.
    std::set<std::string> omit_tensors;
};

// Uniform in [-1, 1) from (seed, stream, index): splitmix64 of the three.
inline float counter_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + stream * 0xBF58476D1CE4E5B9ull + index + 0x94D049BB133111EBull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<float>(static_cast<double>(z >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

struct TinyTensorSpec {
    std::string name;
    std::vector<int64_t> shape;
    float center;  // values are center + spread * U[-1,1)
    float spread;
};

inline std::vector<TinyTensorSpec> tiny_checkpoint_tensors(const TinyCheckpointOptions& o) {
    const int64_t head_dim = o.hidden_size / o.num_heads;
    const int64_t q = o.num_heads * head_dim, kv = o.num_kv_heads * head_dim;
    const int64_t h = o.hidden_size, f = o.intermediate_size;
    const float linear = 1.0f / std::sqrt(static_cast<float>(h));
    std::vector<TinyTensorSpec> specs;
    specs.push_back({"model.embed_tokens.weight", {o.vocab_size, h}, 0.0f, 1.0f});
    for (int layer = 0; layer < o.num_layers; ++layer) {
        const std::string p = "model.layers." + std::to_string(layer) + ".";
        specs.push_back({p + "input_layernorm.weight", {h}, 1.0f, 0.2f});
        specs.push_back({p + "self_attn.q_proj.weight", {q, h}, 0.0f, linear});
        specs.push_back({p + "self_attn.k_proj.weight", {kv, h}, 0.0f, linear});
        specs.push_back({p + "self_attn.v_proj.weight", {kv, h}, 0.0f, linear});
        specs.push_back({p + "self_attn.o_proj.weight", {h, q}, 0.0f, linear});
        specs.push_back({p + "post_attention_layernorm.weight", {h}, 1.0f, 0.2f});
        specs.push_back({p + "mlp.gate_proj.weight", {f, h}, 0.0f, linear});
        specs.push_back({p + "mlp.up_proj.weight", {f, h}, 0.0f, linear});
        specs.push_back({p + "mlp.down_proj.weight", {h, f}, 0.0f, 1.0f / std::sqrt(static_cast<float>(f))});
    }
    specs.push_back({"model.norm.weight", {h}, 1.0f, 0.2f});
    if (!o.tie_word_embeddings) specs.push_back({"lm_head.weight", {o.vocab_size, h}, 0.0f, linear});
    return specs;
}

inline nlohmann::json tiny_checkpoint_config(const TinyCheckpointOptions& o) {
    // The transformers 4 layout (top-level rope_theta), which the python oracles do not cover.
    return {
        {"architectures", {"LlamaForCausalLM"}},
        {"model_type", o.model_type},
        {"vocab_size", o.vocab_size},
        {"hidden_size", o.hidden_size},
        {"intermediate_size", o.intermediate_size},
        {"num_hidden_layers", o.num_layers},
        {"num_attention_heads", o.num_heads},
        {"num_key_value_heads", o.num_kv_heads},
        {"max_position_embeddings", o.max_position_embeddings},
        {"hidden_act", "silu"},
        {"rms_norm_eps", 1e-6},
        {"rope_theta", 10000.0},
        {"rope_scaling", nullptr},
        {"attention_bias", false},
        {"mlp_bias", false},
        {"tie_word_embeddings", o.tie_word_embeddings},
        {"torch_dtype", "float32"},
        {"bos_token_id", 1},
        {"eos_token_id", 2},
    };
}

inline void write_text_file(const std::filesystem::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

inline std::string shard_file_name(int shard, int num_shards) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", shard + 1, num_shards);
    return name;
}

// Writes config.json and the weights into `dir` (created if missing).
inline void write_tiny_checkpoint(const std::filesystem::path& dir, const TinyCheckpointOptions& o = {}) {
    std::filesystem::create_directories(dir);
    write_text_file(dir / "config.json", tiny_checkpoint_config(o).dump(2));

    const auto specs = tiny_checkpoint_tensors(o);
    std::vector<StFile> shards(static_cast<size_t>(std::max(o.num_shards, 1)));
    nlohmann::json weight_map = nlohmann::json::object();
    for (size_t i = 0; i < specs.size(); ++i) {
        const auto& spec = specs[i];
        StTensor t{"F32", spec.shape, {}};
        std::vector<float> values(static_cast<size_t>(t.numel()));
        for (size_t j = 0; j < values.size(); ++j) values[j] = spec.center + spec.spread * counter_uniform(o.seed, i, j);
        if (o.omit_tensors.count(spec.name)) continue;
        const size_t shard = i * shards.size() / specs.size();
        shards[shard].emplace(spec.name, make_f32(spec.shape, values));
        weight_map[spec.name] = shard_file_name(static_cast<int>(shard), static_cast<int>(shards.size()));
    }
    if (shards.size() == 1) {
        write_safetensors(dir / "model.safetensors", shards[0], {{"format", "pt"}});
        return;
    }
    for (size_t s = 0; s < shards.size(); ++s)
        write_safetensors(dir / shard_file_name(static_cast<int>(s), static_cast<int>(shards.size())), shards[s],
                          {{"format", "pt"}});
    nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
    write_text_file(dir / "model.safetensors.index.json", index.dump(2));
}

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
public:
    explicit TempDir(const std::string& tag) {
        static int counter = 0;
        path_ = std::filesystem::temp_directory_path() /
                ("axl_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::remove_all(path_);
        std::filesystem::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

}  // namespace axl_test
