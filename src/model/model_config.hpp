// The architecture of a dense decoder, read from a Hugging Face config.json.
#pragma once

#include <string>

namespace axl {

enum class RopeScaling { None, Linear, Llama3 };

struct RopeConfig {
    double theta = 10000.0;
    RopeScaling scaling = RopeScaling::None;
    double factor = 1.0;
    double low_freq_factor = 1.0;                   // llama3
    double high_freq_factor = 4.0;                  // llama3
    int original_max_position_embeddings = 8192;    // llama3
};

struct ModelConfig {
    std::string model_type;  // "llama", "mistral", "qwen2", "qwen3"
    int vocab_size = 0;
    int hidden_size = 0;
    int intermediate_size = 0;
    int num_layers = 0;
    int num_heads = 0;
    int num_kv_heads = 0;
    int head_dim = 0;
    int max_position_embeddings = 0;
    double rms_norm_eps = 1e-6;
    RopeConfig rope;
    bool tie_word_embeddings = false;
    bool qkv_bias = false;   // q/k/v projections carry a bias (Qwen2; Llama attention_bias)
    bool o_bias = false;     // o_proj bias (Llama attention_bias)
    bool mlp_bias = false;   // Llama mlp_bias
    bool qk_norm = false;    // Qwen3: RMSNorm over head_dim on q and k before RoPE
    std::string torch_dtype; // as stored, informative only
};

// Parses and validates config.json text; `source` names the file in errors.
// Throws Error(AXL_ERR_FORMAT) on malformed JSON or fields of the wrong type,
// Error(AXL_ERR_UNSUPPORTED) naming the model_type / feature for architectures axl does not run.
ModelConfig parse_model_config(const std::string& json_text, const std::string& source);

}  // namespace axl
