#include "lora/lora_init.hpp"

#include <cmath>
#include <numbers>

#include "core/error.hpp"
#include "lora/counter_rng.hpp"
#include "lora/dora.hpp"
#include "lora/lora_linear.hpp"

namespace axl {

namespace {

// Below this many elements a loop is cheaper than waking the thread team.
constexpr int64_t kParallelElements = 32768;

bool ends_with(const std::string& text, const std::string& suffix) {
    return text.size() >= suffix.size() &&
           text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// PEFT matches a target against the module path as a whole or as a dotted suffix.
bool matches(const std::string& target, const Linear& linear) {
    return linear.short_name == target || linear.name == target ||
           ends_with(linear.name, "." + target);
}

bool targets(const LoraConfig& config, const Linear& linear) {
    if (config.all_linear) return true;
    for (const std::string& target : config.target_modules)
        if (matches(target, linear)) return true;
    return false;
}

void fill_uniform(const Tensor& tensor, double bound, uint64_t seed) {
    float* data = tensor.f32();
    const int64_t n = tensor.numel();
#pragma omp parallel for schedule(static) if (n > kParallelElements)
    for (int64_t i = 0; i < n; ++i)
        data[i] = static_cast<float>((2.0 * counter_uniform(seed, static_cast<uint64_t>(i)) - 1.0) * bound);
}

// Box-Muller from draws 2i and 2i+1, so every element stands on its own.
void fill_normal(const Tensor& tensor, double stddev, uint64_t seed) {
    float* data = tensor.f32();
    const int64_t n = tensor.numel();
#pragma omp parallel for schedule(static) if (n > kParallelElements)
    for (int64_t i = 0; i < n; ++i) {
        const double u1 = 1.0 - counter_uniform(seed, 2 * static_cast<uint64_t>(i));  // (0, 1]
        const double u2 = counter_uniform(seed, 2 * static_cast<uint64_t>(i) + 1);
        const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
        data[i] = static_cast<float>(z * stddev);
    }
}

}  // namespace

void validate_lora_config(const LoraConfig& config) {
    require(config.rank >= 1, AXL_ERR_INVALID_ARGUMENT, "LoRA rank must be >= 1, got ", config.rank);
    require(std::isfinite(config.alpha) && config.alpha > 0.0, AXL_ERR_INVALID_ARGUMENT,
            "LoRA alpha must be > 0, got ", config.alpha);
    require(config.dropout >= 0.0 && config.dropout < 1.0, AXL_ERR_INVALID_ARGUMENT,
            "LoRA dropout must be in [0, 1), got ", config.dropout);
    require(config.init == LoraInit::Default || config.init == LoraInit::Gaussian ||
                config.init == LoraInit::RandomB,
            AXL_ERR_INVALID_ARGUMENT, "unknown LoRA init ", static_cast<int>(config.init));
    require(config.all_linear || !config.target_modules.empty(), AXL_ERR_INVALID_ARGUMENT,
            "LoRA target_modules is empty");
}

std::shared_ptr<LoraAdapter> allocate_lora(const std::shared_ptr<const Model>& model,
                                           const LoraConfig& config) {
    require(model != nullptr, AXL_ERR_INVALID_ARGUMENT, "LoRA adapter needs a model");
    validate_lora_config(config);
    const std::vector<const Linear*> linears = model->decoder_linears();
    for (const std::string& name : config.target_modules) {
        bool found = false;
        for (const Linear* linear : linears) found = found || matches(name, *linear);
        require(found, AXL_ERR_NOT_FOUND, "LoRA target module '", name,
                "' matches no linear of the decoder layers (valid names: q_proj, k_proj, v_proj, "
                "o_proj, gate_proj, up_proj, down_proj)");
    }

    const auto& allocator = model->context->host_allocator();
    auto adapter = std::make_shared<LoraAdapter>();
    adapter->config = config;
    adapter->model = model;
    for (const Linear* linear : linears) {
        if (!targets(config, *linear)) continue;
        const int64_t r = config.rank;
        LoraModule module;
        module.base = linear;
        module.a = Tensor::zeros(allocator, DType::F32, {r, linear->in_features}, "LoRA A");
        module.b = Tensor::zeros(allocator, DType::F32, {linear->out_features, r}, "LoRA B");
        module.grad_a = Tensor::zeros(allocator, DType::F32, module.a.shape(), "LoRA grad A");
        module.grad_b = Tensor::zeros(allocator, DType::F32, module.b.shape(), "LoRA grad B");
        if (config.use_dora) {
            module.magnitude =
                Tensor::zeros(allocator, DType::F32, {linear->out_features}, "DoRA magnitude");
            module.grad_magnitude =
                Tensor::zeros(allocator, DType::F32, {linear->out_features}, "DoRA grad magnitude");
        }
        adapter->index[linear] = adapter->modules.size();
        adapter->modules.push_back(std::move(module));
    }
    return adapter;
}

void initialize_lora(LoraAdapter& adapter) {
    const LoraConfig& config = adapter.config;
    const auto& allocator = adapter.model->context->host_allocator();
    const double r = config.rank;
    for (size_t k = 0; k < adapter.modules.size(); ++k) {
        LoraModule& module = adapter.modules[k];
        const uint64_t module_seed = combine_seeds(config.seed, k);
        const uint64_t seed_a = combine_seeds(module_seed, 0);
        const uint64_t seed_b = combine_seeds(module_seed, 1);
        if (config.init == LoraInit::Gaussian)
            fill_normal(module.a, 1.0 / r, seed_a);
        else
            fill_uniform(module.a, 1.0 / std::sqrt(static_cast<double>(module.base->in_features)), seed_a);
        if (config.init == LoraInit::RandomB)
            fill_uniform(module.b, 1.0 / std::sqrt(r), seed_b);
        else
            module.b.fill_zero();
        if (config.use_dora) {
            const Tensor weight = linear_weight_f32(*module.base, allocator);
            dora_weight_norm(module.magnitude.f32(), weight.f32(), module.a.f32(), module.b.f32(),
                             module.base->out_features, module.base->in_features, config.rank,
                             config.scaling(), allocator);
        }
    }
}

}  // namespace axl
