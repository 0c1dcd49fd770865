// The frozen base model: its config and its weights, the linears held in the dtype they are
// stored in (f32/bf16/f16) or in a quantized format. The graph code reads weights only through
// Linear (linear_weight_f32), so a quantized weight slots in without touching the model code.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "core/context.hpp"
#include "core/tensor.hpp"
#include "model/model_config.hpp"
#include "model/model_quant.hpp"
#include "quant/quantized_tensor.hpp"

namespace axl {

// A frozen linear map y = x W^T + b, W of shape [out_features, in_features].
struct Linear {
    std::string name;        // module path without ".weight", e.g. "model.layers.0.self_attn.q_proj"
    std::string short_name;  // last component, e.g. "q_proj" (LoRA targets match it)
    int in_features = 0;
    int out_features = 0;
    Tensor weight;           // [out, in], any float storage dtype; undefined when quantized
    std::shared_ptr<const QuantizedTensor> quantized;  // [out, in] quantized, or null
    Tensor bias;             // [out] or undefined

    bool is_quantized() const { return quantized != nullptr; }
};

// Bytes of base weights per storage format, indexed by AXL_QUANT_* (AXL_QUANT_NONE: every
// tensor held in a float dtype: embeddings, norms, biases, unquantized linears).
constexpr int kNumWeightFormats = AXL_QUANT_MXFP4 + 1;
using WeightBytesByFormat = std::array<uint64_t, kNumWeightFormats>;

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
    uint64_t weight_bytes = 0;                 // sum of weight_bytes_by_format
    WeightBytesByFormat weight_bytes_by_format{};
    // How the decoder linears are stored (format NONE when none is quantized).
    ModelQuantConfig quant;
    std::string config_json;                   // config.json as read; export and the cache keep it

    // The linears of the decoder layers in a stable order (layer by layer, q k v o gate up down).
    std::vector<const Linear*> decoder_linears() const;
};

struct LoadOptions {
    axl_progress_fn progress_fn = nullptr;
    void* progress_user_data = nullptr;
    ModelQuantConfig quant;  // format NONE: keep the checkpoint's storage
};

// Loads a Hugging Face model directory. See axl_model_load.
std::shared_ptr<Model> load_model(const std::shared_ptr<Context>& context, const std::string& dir,
                                  const LoadOptions& options);

// Where a model's tensors come from while it is built: a checkpoint directory or a cache file.
class WeightSource {
public:
    virtual ~WeightSource() = default;
    // A small tensor the graph reads directly (norms, biases, embeddings), as f32.
    virtual Tensor load_f32(const std::string& name, const Shape& shape) = 0;
    // Fills linear.weight or linear.quantized from `<linear.name>.weight` of [out, in].
    // `decoder_linear` is false for the LM head (never quantized on load).
    virtual void load_linear_weight(Linear& linear, bool decoder_linear) = 0;
};

// Builds the model `config` describes from `source`: tensor by tensor, counting parameters and
// bytes per format and reporting progress. `model` holds the context, config and config_json.
void build_model(Model& model, WeightSource& source, const LoadOptions& options);

// Each tensor of a built model under its checkpoint name, in load order; `lm_head.weight` only
// when the embeddings are not tied. Exactly one of `tensor`, `linear` is set.
struct NamedWeight {
    std::string name;
    const Tensor* tensor = nullptr;   // norms, embeddings, biases
    const Linear* linear = nullptr;   // a linear's weight (plain or quantized)
};
std::vector<NamedWeight> model_weights(const Model& model);

// Bytes a quantized tensor's codes and statistics occupy.
uint64_t quantized_storage_bytes(const QuantizedTensor& q);

}  // namespace axl
