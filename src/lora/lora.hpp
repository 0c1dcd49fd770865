// A LoRA adapter: for each targeted frozen Linear W [out,in], trainable A [r,in] and B [out,r]
// (and, with DoRA, a magnitude vector [out]); y = W x + b + scaling * B A dropout(x).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor.hpp"
#include "model/model.hpp"

namespace axl {

enum class LoraInit { Default = 0, Gaussian = 1, RandomB = 2 };

struct LoraConfig {
    int rank = 8;
    double alpha = 8.0;
    double dropout = 0.0;
    bool use_rslora = false;
    bool use_dora = false;
    bool all_linear = true;              // "all-linear": every decoder linear, never lm_head
    std::vector<std::string> target_modules;  // module-name suffixes when !all_linear
    uint64_t seed = 0;
    LoraInit init = LoraInit::Default;

    // alpha / r, or alpha / sqrt(r) with rsLoRA.
    float scaling() const;
};

struct LoraModule {
    const Linear* base = nullptr;
    Tensor a;                 // [r, in] f32
    Tensor b;                 // [out, r] f32
    Tensor magnitude;         // [out] f32, DoRA only
    Tensor grad_a, grad_b, grad_magnitude;  // same shapes, accumulated by backward
};

struct LoraAdapter {
    LoraConfig config;
    std::shared_ptr<const Model> model;
    std::vector<LoraModule> modules;     // in model.decoder_linears() order
    std::unordered_map<const Linear*, size_t> index;

    const LoraModule* find(const Linear* linear) const;
    LoraModule* find(const Linear* linear);

    // Trainable tensors (brought up to date first: sync_host) and their gradients, paired in a
    // stable order.
    std::vector<Tensor> parameters() const;
    std::vector<Tensor> gradients() const;
    int64_t num_parameters() const;
    void zero_gradients() const;

    // A CUDA trainer keeps the adapter's masters on the device and copies them back only when the
    // host reads them: after an update it leaves `download` here, and sync_host() runs it once
    // (then forgets it). Every host read of A/B/magnitude goes through sync_host() (parameters()
    // does; the API's save, merge, copy, forward and evaluate do). Thread-safe.
    void set_host_stale(std::function<void()> download) const;
    void sync_host() const;
    // Forgets a pending download without running it (its trainer is going away after running it).
    void clear_host_stale() const;

private:
    struct HostSync {
        std::mutex mutex;
        std::function<void()> download;
    };
    std::shared_ptr<HostSync> host_sync_ = std::make_shared<HostSync>();
};

// Parses PEFT's target_modules ("all-linear", or names separated by commas) into `config`.
void parse_target_modules(const std::string& text, LoraConfig* config);

// Creates and initialises an adapter (PEFT's init, deterministic from config.seed).
// A target name that matches no decoder linear: Error(AXL_ERR_NOT_FOUND) naming it.
std::shared_ptr<LoraAdapter> create_lora(const std::shared_ptr<const Model>& model,
                                         const LoraConfig& config);

// PEFT format (adapter_config.json + adapter_model.safetensors); see docs/formats.md §5.
void save_peft_adapter(const LoraAdapter& adapter, const std::string& dir);
std::shared_ptr<LoraAdapter> load_peft_adapter(const std::shared_ptr<const Model>& model,
                                               const std::string& dir);

}  // namespace axl
