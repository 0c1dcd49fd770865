// PEFT's adapter directory (docs/formats.md §5): adapter_config.json and
// adapter_model.safetensors with keys base_model.model.<module>.lora_A.weight [r,in],
// .lora_B.weight [out,r] and, with DoRA, .lora_magnitude_vector [out].
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "io/safetensors.hpp"
#include "lora/lora.hpp"
#include "lora/lora_init.hpp"

namespace axl {

namespace {

using json = nlohmann::json;

constexpr const char* kConfigName = "adapter_config.json";
constexpr const char* kWeightsName = "adapter_model.safetensors";
constexpr const char* kKeyPrefix = "base_model.model.";
// The PEFT release whose on-disk layout we write (and verified against).
constexpr const char* kPeftVersion = "0.21.2";

std::string join_path(const std::string& dir, const std::string& name) {
    return (std::filesystem::path(dir) / name).string();
}

// ---- saving ----------------------------------------------------------------------------------

// Short names ("q_proj") when they select exactly the adapted modules, as a user would write
// them; otherwise the full module paths, as PEFT itself writes an expanded "all-linear".
json target_modules_json(const LoraAdapter& adapter) {
    std::set<std::string> short_names, full_names;
    for (const LoraModule& module : adapter.modules) {
        short_names.insert(module.base->short_name);
        full_names.insert(module.base->name);
    }
    size_t selected_by_short_names = 0;
    for (const Linear* linear : adapter.model->decoder_linears())
        selected_by_short_names += short_names.count(linear->short_name);
    const auto& names = selected_by_short_names == adapter.modules.size() ? short_names : full_names;
    return json(std::vector<std::string>(names.begin(), names.end()));
}

json adapter_config_json(const LoraAdapter& adapter) {
    const LoraConfig& config = adapter.config;
    json out = json::object();
    out["alpha_pattern"] = json::object();
    out["auto_mapping"] = nullptr;
    out["base_model_name_or_path"] = nullptr;
    out["bias"] = "none";
    out["exclude_modules"] = nullptr;
    out["fan_in_fan_out"] = false;
    out["inference_mode"] = true;
    out["init_lora_weights"] = config.init == LoraInit::Gaussian ? json("gaussian") : json(true);
    out["layers_pattern"] = nullptr;
    out["layers_to_transform"] = nullptr;
    // PEFT users write integer alphas; keep them integers so the file reads the same.
    if (config.alpha == std::floor(config.alpha) && std::fabs(config.alpha) < 1e15)
        out["lora_alpha"] = static_cast<int64_t>(config.alpha);
    else
        out["lora_alpha"] = config.alpha;
    out["lora_bias"] = false;
    out["lora_dropout"] = config.dropout;
    out["modules_to_save"] = nullptr;
    out["peft_type"] = "LORA";
    out["peft_version"] = kPeftVersion;
    out["r"] = config.rank;
    out["rank_pattern"] = json::object();
    out["revision"] = nullptr;
    out["target_modules"] = target_modules_json(adapter);
    out["task_type"] = "CAUSAL_LM";
    out["use_dora"] = config.use_dora;
    out["use_rslora"] = config.use_rslora;
    return out;
}

// ---- loading: adapter_config.json ------------------------------------------------------------

class ConfigReader {
public:
    ConfigReader(const json& root, std::string file) : root_(root), file_(std::move(file)) {}

    bool present(const char* key) const { return root_.contains(key) && !root_[key].is_null(); }
    const json& at(const char* key) const { return root_[key]; }

    double number(const char* key, double fallback) const {
        if (!present(key)) return fallback;
        require(at(key).is_number(), AXL_ERR_FORMAT, file_, ": ", key, " must be a number");
        return at(key).get<double>();
    }
    bool boolean(const char* key) const {
        if (!present(key)) return false;
        require(at(key).is_boolean(), AXL_ERR_FORMAT, file_, ": ", key, " must be true or false");
        return at(key).get<bool>();
    }
    // Fields whose non-default values change the math in ways axl does not implement.
    void require_unset(const char* key, const char* why) const {
        if (!present(key)) return;
        const json& value = at(key);
        const bool unset = (value.is_boolean() && !value.get<bool>()) ||
                           ((value.is_object() || value.is_array()) && value.empty());
        require(unset, AXL_ERR_UNSUPPORTED, file_, ": ", key, " = ", value.dump(),
                " is not supported (", why, ")");
    }
    const std::string& file() const { return file_; }

private:
    const json& root_;
    std::string file_;
};

LoraConfig parse_adapter_config(const std::string& text, const std::string& file) {
    json root;
    try {
        root = json::parse(text);
    } catch (const json::exception& e) {
        fail(AXL_ERR_FORMAT, file, " is not valid JSON: ", e.what());
    }
    require(root.is_object(), AXL_ERR_FORMAT, file, " must hold a JSON object");
    const ConfigReader reader(root, file);

    require(reader.present("peft_type") && reader.at("peft_type").is_string(), AXL_ERR_FORMAT, file,
            ": peft_type is missing");
    const std::string peft_type = reader.at("peft_type").get<std::string>();
    require(peft_type == "LORA", AXL_ERR_UNSUPPORTED, file, ": peft_type \"", peft_type,
            "\" is not supported (only LORA)");

    reader.require_unset("rank_pattern", "per-module ranks");
    reader.require_unset("alpha_pattern", "per-module alphas");
    reader.require_unset("fan_in_fan_out", "transposed base weights");
    reader.require_unset("lora_bias", "a bias on lora_B");
    reader.require_unset("layers_to_transform", "adapters on a subset of layers");
    reader.require_unset("modules_to_save", "fully trained extra modules");
    reader.require_unset("exclude_modules", "excluded modules");
    reader.require_unset("target_parameters", "LoRA on parameters");
    reader.require_unset("layer_replication", "replicated layers");
    reader.require_unset("trainable_token_indices", "trainable token embeddings");
    reader.require_unset("alora_invocation_tokens", "activated LoRA");
    reader.require_unset("use_qalora", "QA-LoRA");
    if (reader.present("bias")) {
        require(reader.at("bias").is_string(), AXL_ERR_FORMAT, file, ": bias must be a string");
        const std::string bias = reader.at("bias").get<std::string>();
        require(bias == "none", AXL_ERR_UNSUPPORTED, file, ": bias \"", bias,
                "\" is not supported (only \"none\")");
    }
    if (reader.present("init_lora_weights") && reader.at("init_lora_weights").is_string()) {
        // These initialisations rewrite the base weights, which the saved adapter then assumes.
        const std::string init = reader.at("init_lora_weights").get<std::string>();
        const bool edits_base = init.rfind("pissa", 0) == 0 || init == "olora" || init == "loftq" ||
                                init == "corda" || init == "lora_ga";
        require(!edits_base, AXL_ERR_UNSUPPORTED, file, ": init_lora_weights \"", init,
                "\" modifies the base weights; convert the adapter to a plain LoRA first");
    }

    LoraConfig config;
    require(reader.present("r") && reader.at("r").is_number_integer(), AXL_ERR_FORMAT, file,
            ": r must be an integer");
    config.rank = reader.at("r").get<int>();
    config.alpha = reader.number("lora_alpha", 8.0);
    config.dropout = reader.number("lora_dropout", 0.0);
    config.use_rslora = reader.boolean("use_rslora");
    config.use_dora = reader.boolean("use_dora");

    require(reader.present("target_modules"), AXL_ERR_UNSUPPORTED, file,
            ": target_modules is missing (adapters on parameters are not supported)");
    const json& targets = reader.at("target_modules");
    if (targets.is_string()) {
        const std::string text = targets.get<std::string>();
        require(text == "all-linear", AXL_ERR_UNSUPPORTED, file, ": target_modules \"", text,
                "\" is a regular expression, which is not supported; list the module names");
        config.all_linear = true;
    } else {
        require(targets.is_array(), AXL_ERR_FORMAT, file,
                ": target_modules must be a list of names or \"all-linear\"");
        config.all_linear = false;
        for (const json& name : targets) {
            require(name.is_string(), AXL_ERR_FORMAT, file, ": target_modules must hold strings");
            config.target_modules.push_back(name.get<std::string>());
        }
    }
    try {
        validate_lora_config(config);
    } catch (const Error& e) {
        fail(AXL_ERR_FORMAT, file, ": ", e.what());
    }
    return config;
}

// ---- loading: adapter_model.safetensors ------------------------------------------------------

enum class Slot { A, B, Magnitude };

struct KeyTarget {
    std::string module;  // module path, e.g. model.layers.0.self_attn.q_proj
    Slot slot;
};

// Splits `<module>.lora_A[.<adapter>].weight`, `<module>.lora_B[.<adapter>].weight` and
// `<module>.lora_magnitude_vector[.<adapter>][.weight]`, after dropping the PeftModel prefix.
bool parse_key(const std::string& key, KeyTarget* out) {
    std::string rest = key.rfind(kKeyPrefix, 0) == 0 ? key.substr(std::string(kKeyPrefix).size()) : key;
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
        const size_t dot = rest.find('.', start);
        parts.push_back(rest.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
        if (dot == std::string::npos) break;
        start = dot + 1;
    }
    for (size_t i = parts.size(); i-- > 1;) {
        const std::string& part = parts[i];
        const size_t tail = parts.size() - i - 1;
        Slot slot;
        if (part == "lora_A" || part == "lora_B") {
            if (tail < 1 || tail > 2 || parts.back() != "weight") return false;
            slot = part == "lora_A" ? Slot::A : Slot::B;
        } else if (part == "lora_magnitude_vector") {
            if (tail > 2 || (tail == 2 && parts.back() != "weight")) return false;
            slot = Slot::Magnitude;
        } else {
            continue;
        }
        out->module.clear();
        for (size_t j = 0; j < i; ++j) out->module += (j ? "." : "") + parts[j];
        out->slot = slot;
        return true;
    }
    return false;
}

// Replaces `dst` (zeroed by allocate_lora) with the file's tensor converted to f32.
void load_tensor(const TensorInfo& info, Tensor& dst) {
    require(info.dtype == DType::F32 || info.dtype == DType::BF16 || info.dtype == DType::F16,
            AXL_ERR_FORMAT, info.file, ": adapter tensor ", info.name, " has dtype ",
            dtype_safetensors_name(info.dtype), " (expected F32, BF16 or F16)");
    require(info.shape == dst.shape(), AXL_ERR_SHAPE, info.file, ": adapter tensor ", info.name,
            ": expected shape ", shape_string(dst.shape()), ", got ", shape_string(info.shape));
    dst = read_as_f32(info, dst.shape(), dst.allocator());
}

void load_weights(LoraAdapter& adapter, const std::string& path) {
    const SafetensorsFile file(path);
    std::map<std::string, LoraModule*> by_name;
    for (LoraModule& module : adapter.modules) by_name[module.base->name] = &module;
    std::set<std::pair<std::string, int>> seen;

    for (const auto& [key, info] : file.tensors()) {
        KeyTarget target;
        require(parse_key(key, &target), AXL_ERR_FORMAT, path, ": unknown tensor ", key,
                " (expected <module>.lora_A.weight, .lora_B.weight or .lora_magnitude_vector)");
        auto it = by_name.find(target.module);
        require(it != by_name.end(), AXL_ERR_FORMAT, path, ": tensor ", key, " is for module ",
                target.module, ", which is not a module targeted by adapter_config.json");
        require(target.slot != Slot::Magnitude || adapter.config.use_dora, AXL_ERR_FORMAT, path,
                ": tensor ", key, " is a DoRA magnitude but adapter_config.json has use_dora false");
        require(seen.insert({target.module, static_cast<int>(target.slot)}).second, AXL_ERR_FORMAT,
                path, ": tensor ", key, " duplicates another tensor of module ", target.module);
        LoraModule& module = *it->second;
        Tensor& dst = target.slot == Slot::A   ? module.a
                            : target.slot == Slot::B ? module.b
                                                     : module.magnitude;
        load_tensor(info, dst);
    }

    for (const LoraModule& module : adapter.modules) {
        for (Slot slot : {Slot::A, Slot::B, Slot::Magnitude}) {
            if (slot == Slot::Magnitude && !adapter.config.use_dora) continue;
            const char* what = slot == Slot::A ? "lora_A.weight"
                               : slot == Slot::B ? "lora_B.weight"
                                                 : "lora_magnitude_vector";
            require(seen.count({module.base->name, static_cast<int>(slot)}) == 1, AXL_ERR_FORMAT,
                    path, " has no ", kKeyPrefix, module.base->name, ".", what);
        }
    }
}

}  // namespace

void save_peft_adapter(const LoraAdapter& adapter, const std::string& dir) {
    adapter.sync_host();  // weights still on a CUDA trainer's device come back first
    make_directories(dir);
    std::vector<NamedTensor> tensors;
    for (const LoraModule& module : adapter.modules) {
        const std::string prefix = kKeyPrefix + module.base->name;
        tensors.push_back({prefix + ".lora_A.weight", DType::F32, module.a.shape(), module.a.data()});
        tensors.push_back({prefix + ".lora_B.weight", DType::F32, module.b.shape(), module.b.data()});
        if (module.magnitude.defined())
            tensors.push_back({prefix + ".lora_magnitude_vector", DType::F32, module.magnitude.shape(),
                               module.magnitude.data()});
    }
    write_safetensors(join_path(dir, kWeightsName), tensors, {{"format", "pt"}});
    write_file_atomic(join_path(dir, kConfigName), adapter_config_json(adapter).dump(2));
}

std::shared_ptr<LoraAdapter> load_peft_adapter(const std::shared_ptr<const Model>& model,
                                               const std::string& dir) {
    const std::string config_path = join_path(dir, kConfigName);
    const LoraConfig config = parse_adapter_config(read_text_file(config_path), config_path);

    const std::string weights_path = join_path(dir, kWeightsName);
    if (!std::filesystem::exists(weights_path)) {
        const std::string bin_path = join_path(dir, "adapter_model.bin");
        require(!std::filesystem::exists(bin_path), AXL_ERR_UNSUPPORTED, bin_path,
                " is a pickled PyTorch file, which axl does not read; convert the adapter to "
                "safetensors (PeftModel.save_pretrained(..., safe_serialization=True))");
        fail(AXL_ERR_NOT_FOUND, weights_path, " does not exist");
    }
    std::shared_ptr<LoraAdapter> adapter = allocate_lora(model, config);
    load_weights(*adapter, weights_path);
    return adapter;
}

}  // namespace axl
