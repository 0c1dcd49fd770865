#include "model/model_config.hpp"

#include <climits>
#include <memory>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace axl {

namespace {

using Json = nlohmann::json;

// Typed access to the fields of one JSON object, naming `where` (the file, or the file and the
// sub-object) in every error. A null field counts as absent, as transformers treats
// `"num_key_value_heads": null` or `"rope_scaling": null`.
class FieldReader {
public:
    FieldReader(const Json& object, std::string where) : object_(object), where_(std::move(where)) {}

    const Json* find(const char* key) const {
        auto it = object_.find(key);
        return it == object_.end() || it->is_null() ? nullptr : &*it;
    }
    bool has(const char* key) const { return find(key) != nullptr; }

    int required_positive_int(const char* key) const {
        require(has(key), AXL_ERR_FORMAT, where_, ": required field '", key, "' is missing");
        return positive_int(key);
    }
    int optional_positive_int(const char* key, int fallback) const {
        return has(key) ? positive_int(key) : fallback;
    }
    double required_number(const char* key) const {
        const Json* value = find(key);
        require(value != nullptr, AXL_ERR_FORMAT, where_, ": required field '", key, "' is missing");
        require(value->is_number(), AXL_ERR_FORMAT, where_, ": field '", key,
                "' must be a number, got ", value->dump());
        return value->get<double>();
    }
    double optional_number(const char* key, double fallback) const {
        return has(key) ? required_number(key) : fallback;
    }
    bool optional_bool(const char* key, bool fallback) const {
        const Json* value = find(key);
        if (value == nullptr) return fallback;
        require(value->is_boolean(), AXL_ERR_FORMAT, where_, ": field '", key,
                "' must be true or false, got ", value->dump());
        return value->get<bool>();
    }
    std::string optional_string(const char* key, const std::string& fallback) const {
        const Json* value = find(key);
        if (value == nullptr) return fallback;
        require(value->is_string(), AXL_ERR_FORMAT, where_, ": field '", key,
                "' must be a string, got ", value->dump());
        return value->get<std::string>();
    }
    const std::string& where() const { return where_; }

private:
    int positive_int(const char* key) const {
        const Json& value = *find(key);
        require(value.is_number_integer(), AXL_ERR_FORMAT, where_, ": field '", key,
                "' must be an integer, got ", value.dump());
        bool in_range = value.is_number_unsigned() ? value.get<uint64_t>() <= INT_MAX
                                                   : value.get<int64_t>() >= INT_MIN &&
                                                         value.get<int64_t>() <= INT_MAX;
        require(in_range && value.get<int64_t>() > 0, AXL_ERR_FORMAT, where_, ": field '", key,
                "' must be a positive integer, got ", value.dump());
        return value.get<int>();
    }

    const Json& object_;
    std::string where_;
};

// A rope sub-object (`rope_scaling` or v5 `rope_parameters`) as a reader, or null if absent.
std::unique_ptr<FieldReader> rope_object(const FieldReader& config, const char* key) {
    const Json* value = config.find(key);
    if (value == nullptr) return nullptr;
    require(value->is_object(), AXL_ERR_FORMAT, config.where(), ": field '", key,
            "' must be an object, got ", value->dump());
    return std::make_unique<FieldReader>(*value, cat(config.where(), ": ", key));
}

// Legacy configs keep `rope_theta` and `rope_scaling` at the top level; transformers v5 folds
// both into `rope_parameters`. Either form is read; v5's wins where both say something.
RopeConfig parse_rope(const FieldReader& config) {
    RopeConfig rope;
    auto parameters = rope_object(config, "rope_parameters");
    auto legacy_scaling = rope_object(config, "rope_scaling");

    rope.theta = parameters && parameters->has("rope_theta")
                     ? parameters->required_number("rope_theta")
                     : config.optional_number("rope_theta", rope.theta);
    require(rope.theta > 0, AXL_ERR_FORMAT, config.where(), ": rope_theta must be positive, got ",
            rope.theta);

    const FieldReader* scaling = nullptr;
    for (const FieldReader* candidate : {parameters.get(), legacy_scaling.get()}) {
        if (candidate && (candidate->has("rope_type") || candidate->has("type"))) {
            scaling = candidate;
            break;
        }
    }
    if (scaling == nullptr) return rope;

    // `type` is the older spelling of `rope_type`.
    const std::string type = scaling->optional_string(
        "rope_type", scaling->optional_string("type", "default"));
    if (type == "default") return rope;
    if (type == "linear") {
        rope.scaling = RopeScaling::Linear;
        rope.factor = scaling->required_number("factor");
    } else if (type == "llama3") {
        rope.scaling = RopeScaling::Llama3;
        rope.factor = scaling->required_number("factor");
        rope.low_freq_factor = scaling->required_number("low_freq_factor");
        rope.high_freq_factor = scaling->required_number("high_freq_factor");
        rope.original_max_position_embeddings =
            scaling->required_positive_int("original_max_position_embeddings");
        // The llama3 ramp divides by (high - low).
        require(rope.high_freq_factor > rope.low_freq_factor && rope.low_freq_factor > 0,
                AXL_ERR_FORMAT, scaling->where(), ": llama3 needs 0 < low_freq_factor < ",
                "high_freq_factor, got ", rope.low_freq_factor, " and ", rope.high_freq_factor);
    } else {
        fail(AXL_ERR_UNSUPPORTED, "RoPE scaling type '", type, "' in ", scaling->where(),
             " is not supported (supported: default, linear, llama3)");
    }
    require(rope.factor > 0, AXL_ERR_FORMAT, scaling->where(), ": factor must be positive, got ",
            rope.factor);
    return rope;
}

// axl runs full causal attention only; a config whose layers attend to a window is refused
// rather than silently computed differently.
void reject_sliding_window(const FieldReader& config, const ModelConfig& model) {
    const std::string refusal = cat(config.where(), ": sliding-window attention is not supported yet");
    if (model.model_type == "mistral" && config.has("sliding_window")) {
        int window = config.optional_positive_int("sliding_window", 0);
        require(window >= model.max_position_embeddings, AXL_ERR_UNSUPPORTED, refusal,
                " (sliding_window ", window, " < max_position_embeddings ",
                model.max_position_embeddings, ")");
    }
    if (model.model_type == "qwen2" || model.model_type == "qwen3")
        require(!config.optional_bool("use_sliding_window", false), AXL_ERR_UNSUPPORTED, refusal,
                " (use_sliding_window is true)");
    if (const Json* layer_types = config.find("layer_types")) {
        require(layer_types->is_array(), AXL_ERR_FORMAT, config.where(),
                ": field 'layer_types' must be an array");
        for (const Json& type : *layer_types)
            require(type == "full_attention", AXL_ERR_UNSUPPORTED, refusal, " (layer_types has ",
                    type.dump(), ")");
    }
}

}  // namespace

ModelConfig parse_model_config(const std::string& json_text, const std::string& source) {
    // nlohmann stops at a NUL byte as if the input ended there; JSON text never holds one.
    size_t nul = json_text.find('\0');
    require(nul == std::string::npos, AXL_ERR_FORMAT, source, " is not valid JSON: NUL byte at offset ",
            nul);
    Json root;
    try {
        root = Json::parse(json_text);
    } catch (const Json::exception& e) {
        fail(AXL_ERR_FORMAT, source, " is not valid JSON: ", e.what());
    }
    require(root.is_object(), AXL_ERR_FORMAT, source, " must hold a JSON object");
    const FieldReader config(root, source);

    ModelConfig model;
    require(config.has("model_type"), AXL_ERR_FORMAT, source, ": required field 'model_type' is missing");
    model.model_type = config.optional_string("model_type", "");
    const std::string& type = model.model_type;
    require(type == "llama" || type == "mistral" || type == "qwen2" || type == "qwen3",
            AXL_ERR_UNSUPPORTED, "unsupported architecture '", type, "' in ", source,
            " (supported: llama, mistral, qwen2, qwen3)");

    const std::string activation = config.optional_string("hidden_act", "silu");
    require(activation == "silu", AXL_ERR_UNSUPPORTED, source, ": hidden_act '", activation,
            "' is not supported (only silu)");

    model.vocab_size = config.required_positive_int("vocab_size");
    model.hidden_size = config.required_positive_int("hidden_size");
    model.intermediate_size = config.required_positive_int("intermediate_size");
    model.num_layers = config.required_positive_int("num_hidden_layers");
    model.num_heads = config.required_positive_int("num_attention_heads");
    model.num_kv_heads = config.optional_positive_int("num_key_value_heads", model.num_heads);
    require(model.num_heads % model.num_kv_heads == 0, AXL_ERR_FORMAT, source,
            ": num_key_value_heads ", model.num_kv_heads, " does not divide num_attention_heads ",
            model.num_heads);
    if (config.has("head_dim")) {
        model.head_dim = config.required_positive_int("head_dim");
    } else {
        require(model.hidden_size % model.num_heads == 0, AXL_ERR_FORMAT, source, ": hidden_size ",
                model.hidden_size, " is not divisible by num_attention_heads ", model.num_heads,
                " and no head_dim is given");
        model.head_dim = model.hidden_size / model.num_heads;
    }
    require(model.head_dim % 2 == 0, AXL_ERR_FORMAT, source, ": head_dim ", model.head_dim,
            " must be even for rotary embeddings");
    model.max_position_embeddings = config.optional_positive_int("max_position_embeddings", 4096);
    model.rms_norm_eps = config.optional_number("rms_norm_eps", 1e-6);
    require(model.rms_norm_eps > 0, AXL_ERR_FORMAT, source, ": rms_norm_eps must be positive");
    model.rope = parse_rope(config);
    model.tie_word_embeddings = config.optional_bool("tie_word_embeddings", false);

    // Which projections carry biases follows the transformers modeling code: Qwen2 hard-codes
    // q/k/v biases, Mistral hard-codes none (its config has no attention_bias), Llama and
    // Qwen3 read attention_bias for q/k/v/o, and only Llama reads mlp_bias.
    const bool attention_bias = config.optional_bool("attention_bias", false);
    if (type == "qwen2") {
        model.qkv_bias = true;
    } else if (type == "llama" || type == "qwen3") {
        model.qkv_bias = attention_bias;
        model.o_bias = attention_bias;
    }
    if (type == "llama") model.mlp_bias = config.optional_bool("mlp_bias", false);
    model.qk_norm = type == "qwen3";

    reject_sliding_window(config, model);
    // transformers v4 writes torch_dtype, v5 writes dtype.
    model.torch_dtype = config.optional_string("torch_dtype", config.optional_string("dtype", ""));
    return model;
}

}  // namespace axl
