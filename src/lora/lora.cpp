#include "lora/lora.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "lora/lora_init.hpp"

namespace axl {

namespace {

std::string trim(const std::string& text) {
    const char* space = " \t\r\n";
    const size_t first = text.find_first_not_of(space);
    if (first == std::string::npos) return "";
    return text.substr(first, text.find_last_not_of(space) - first + 1);
}

}  // namespace

float LoraConfig::scaling() const {
    const double r = rank;
    return static_cast<float>(use_rslora ? alpha / std::sqrt(r) : alpha / r);
}

void parse_target_modules(const std::string& text, LoraConfig* config) {
    const std::string whole = trim(text);
    if (whole == "all-linear") {
        config->all_linear = true;
        config->target_modules.clear();
        return;
    }
    std::vector<std::string> names;
    size_t start = 0;
    while (start <= whole.size()) {
        size_t comma = whole.find(',', start);
        if (comma == std::string::npos) comma = whole.size();
        const std::string name = trim(whole.substr(start, comma - start));
        start = comma + 1;
        if (name.empty()) continue;
        require(name != "all-linear", AXL_ERR_INVALID_ARGUMENT,
                "target_modules: \"all-linear\" cannot be combined with other names");
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
    require(!names.empty(), AXL_ERR_INVALID_ARGUMENT, "target_modules \"", text,
            "\" names no module");
    config->all_linear = false;
    config->target_modules = std::move(names);
}

std::shared_ptr<LoraAdapter> create_lora(const std::shared_ptr<const Model>& model,
                                         const LoraConfig& config) {
    std::shared_ptr<LoraAdapter> adapter = allocate_lora(model, config);
    initialize_lora(*adapter);
    return adapter;
}

const LoraModule* LoraAdapter::find(const Linear* linear) const {
    auto it = index.find(linear);
    return it == index.end() ? nullptr : &modules[it->second];
}

LoraModule* LoraAdapter::find(const Linear* linear) {
    auto it = index.find(linear);
    return it == index.end() ? nullptr : &modules[it->second];
}

std::vector<Tensor> LoraAdapter::parameters() const {
    sync_host();
    std::vector<Tensor> out;
    for (const LoraModule& module : modules) {
        out.push_back(module.a);
        out.push_back(module.b);
        if (module.magnitude.defined()) out.push_back(module.magnitude);
    }
    return out;
}

std::vector<Tensor> LoraAdapter::gradients() const {
    std::vector<Tensor> out;
    for (const LoraModule& module : modules) {
        out.push_back(module.grad_a);
        out.push_back(module.grad_b);
        if (module.grad_magnitude.defined()) out.push_back(module.grad_magnitude);
    }
    return out;
}

int64_t LoraAdapter::num_parameters() const {
    int64_t total = 0;
    for (const LoraModule& module : modules) {
        total += module.a.numel() + module.b.numel();
        if (module.magnitude.defined()) total += module.magnitude.numel();
    }
    return total;
}

void LoraAdapter::set_host_stale(std::function<void()> download) const {
    std::lock_guard<std::mutex> lock(host_sync_->mutex);
    host_sync_->download = std::move(download);
}

void LoraAdapter::sync_host() const {
    std::lock_guard<std::mutex> lock(host_sync_->mutex);
    if (!host_sync_->download) return;
    host_sync_->download();  // throws on a device error; then it stays pending
    host_sync_->download = nullptr;
}

void LoraAdapter::clear_host_stale() const {
    std::lock_guard<std::mutex> lock(host_sync_->mutex);
    host_sync_->download = nullptr;
}

void LoraAdapter::zero_gradients() const {
    for (const Tensor& tensor : gradients()) tensor.fill_zero();
}

}  // namespace axl
