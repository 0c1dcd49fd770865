// The frozen base model: its config and its weights, held in the dtype they are stored in
// (f32/bf16/f16 now, packed quantized formats later). The graph code reads weights through
// Linear so that a quantized weight slots in without touching the model code.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/context.hpp"
#include "core/tensor.hpp"
#include "model/model_config.hpp"

namespace axl {

// A frozen linear map y = x W^T + b, W of shape [out_features, in_features].
struct Linear {
    std::string name;        // module path without ".weight", e.g. "model.layers.0.self_attn.q_proj"
    std::string short_name;  // last component, e.g. "q_proj" (LoRA targets match it)
    int in_features = 0;
    int out_features = 0;
    Tensor weight;           // [out, in], any float storage dtype
    Tensor bias;             // [out] or undefined
};

struct DecoderLayer {
    Tensor input_norm;          // [hidden]
    Tensor post_attention_norm; // [hidden]
    Linear q_proj, k_proj, v_proj, o_proj;
    Tensor q_norm, k_norm;      // [head_dim], Qwen3 only
    Linear gate_proj, up_proj, down_proj;
};

struct Model {
    ModelConfig config;
    std::shared_ptr<Context> context;
    Tensor embed_tokens;        // [vocab, hidden]
    std::vector<DecoderLayer> layers;
    Tensor final_norm;          // [hidden]
    Linear lm_head;             // weight aliases embed_tokens when embeddings are tied
    int64_t num_parameters = 0;
    uint64_t weight_bytes = 0;

    // The linears of the decoder layers in a stable order (layer by layer, q k v o gate up down).
    std::vector<const Linear*> decoder_linears() const;
};

struct LoadOptions {
    axl_progress_fn progress_fn = nullptr;
    void* progress_user_data = nullptr;
};

// Loads a Hugging Face model directory. See axl_model_load.
std::shared_ptr<Model> load_model(const std::shared_ptr<Context>& context, const std::string& dir,
                                  const LoadOptions& options);

}  // namespace axl
