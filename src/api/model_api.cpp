// C entry points of axl_model: load, describe, forward and evaluate.
#include <cmath>

#include "api/guard.hpp"
#include "io/model_cache.hpp"
#include "train/batch.hpp"
#include "train/decoder_pass.hpp"

using namespace axl;

namespace {

axl_model_options model_defaults() {
    axl_model_options o{};
    o.struct_size = sizeof o;
    return o;
}

axl_batch batch_defaults() {
    axl_batch b{};
    b.struct_size = sizeof b;
    return b;
}

LoadOptions load_options(const axl_model_options& options) {
    LoadOptions load;
    load.progress_fn = options.progress_fn;
    load.progress_user_data = options.progress_user_data;
    if (options.quant != nullptr) load.quant = options.quant->settings;
    return load;
}

void log_loaded(const axl_context* ctx, const Model& model, const char* from) {
    ctx->impl->log(AXL_LOG_INFO, cat("loaded ", model.config.model_type, " model from ", from, ": ",
                                     model.num_parameters, " parameters, ", model.weight_bytes,
                                     " bytes of weights, linears ", describe(model.quant)));
}

// The adapter passed to forward/evaluate must belong to this model.
const LoraAdapter* adapter_for(const axl_model* model, const axl_lora* lora) {
    if (lora == nullptr) return nullptr;
    require(lora->impl->model.get() == model->impl.get(), AXL_ERR_INVALID_ARGUMENT,
            "the adapter was created for a different model handle");
    lora->impl->sync_host();  // weights still on a CUDA trainer's device come back first
    return lora->impl.get();
}

}  // namespace

extern "C" {

AXL_API axl_status axl_model_options_init(axl_model_options* opts, size_t struct_size) {
    return guarded(nullptr, "axl_model_options_init",
                   [&] { init_struct(opts, struct_size, model_defaults(), "opts"); });
}

AXL_API axl_status axl_batch_init(axl_batch* batch, size_t struct_size) {
    return guarded(nullptr, "axl_batch_init",
                   [&] { init_struct(batch, struct_size, batch_defaults(), "batch"); });
}

AXL_API axl_status axl_model_load(axl_context* ctx, const char* model_dir,
                                  const axl_model_options* opts, axl_model** out) {
    return guarded(slot_of(ctx), "axl_model_load", [&] {
        require_arg(ctx, "ctx");
        require_arg(model_dir, "model_dir");
        require_arg(out, "out");
        axl_model_options options = read_struct(opts, model_defaults(), "opts");
        ctx->impl->enter_thread();
        auto handle = std::make_unique<axl_model>();
        handle->impl = load_model(ctx->impl, model_dir, load_options(options));
        log_loaded(ctx, *handle->impl, model_dir);
        *out = handle.release();
    });
}

AXL_API axl_status axl_model_load_cache(axl_context* ctx, const char* path, const axl_model_options* opts,
                                        axl_model** out) {
    return guarded(slot_of(ctx), "axl_model_load_cache", [&] {
        require_arg(ctx, "ctx");
        require_arg(path, "path");
        require_arg(out, "out");
        axl_model_options options = read_struct(opts, model_defaults(), "opts");
        ctx->impl->enter_thread();
        auto handle = std::make_unique<axl_model>();
        handle->impl = load_model_cache(ctx->impl, path, load_options(options));
        log_loaded(ctx, *handle->impl, path);
        *out = handle.release();
    });
}

AXL_API axl_status axl_model_save_cache(const axl_model* model, const char* path) {
    return guarded(slot_of(model), "axl_model_save_cache", [&] {
        require_arg(model, "model");
        require_arg(path, "path");
        model->impl->context->enter_thread();
        save_model_cache(*model->impl, path);
    });
}

AXL_API axl_status axl_model_weight_bytes(const axl_model* model, int32_t format, uint64_t* out) {
    return guarded(slot_of(model), "axl_model_weight_bytes", [&] {
        require_arg(model, "model");
        require_arg(out, "out");
        require(format >= AXL_QUANT_NONE && format <= AXL_QUANT_MXFP4, AXL_ERR_INVALID_ARGUMENT,
                "format ", format, " is not one of AXL_QUANT_*");
        *out = model->impl->weight_bytes_by_format[format];
    });
}

AXL_API void axl_model_destroy(axl_model* model) { delete model; }

AXL_API const char* axl_model_last_error(const axl_model* model) {
    return model != nullptr ? model->error.get() : "";
}

AXL_API axl_status axl_model_get_info(const axl_model* model, axl_model_info* info) {
    return guarded(slot_of(model), "axl_model_get_info", [&] {
        require_arg(model, "model");
        require_arg(info, "info");
        const ModelConfig& c = model->impl->config;
        axl_model_info value{};
        value.struct_size = sizeof value;
        value.vocab_size = c.vocab_size;
        value.hidden_size = c.hidden_size;
        value.intermediate_size = c.intermediate_size;
        value.num_layers = c.num_layers;
        value.num_heads = c.num_heads;
        value.num_kv_heads = c.num_kv_heads;
        value.head_dim = c.head_dim;
        value.max_position_embeddings = c.max_position_embeddings;
        value.num_parameters = model->impl->num_parameters;
        value.weight_bytes = model->impl->weight_bytes;
        write_struct(info, value, "info");
    });
}

AXL_API const char* axl_model_architecture(const axl_model* model) {
    return model != nullptr ? model->impl->config.model_type.c_str() : "";
}

AXL_API axl_status axl_model_forward(axl_model* model, const axl_lora* lora, const axl_batch* batch,
                                     const int64_t* positions, int64_t num_positions, float* logits,
                                     size_t logits_len) {
    return guarded(slot_of(model), "axl_model_forward", [&] {
        require_arg(model, "model");
        require_arg(batch, "batch");
        require_arg(logits, "logits");
        const LoraAdapter* adapter = adapter_for(model, lora);
        axl_batch b = read_struct(batch, batch_defaults(), "batch");
        const ModelConfig& c = model->impl->config;
        PreparedBatch prepared = prepare_batch(b, c);
        const int64_t n = prepared.num_tokens();
        std::vector<int64_t> selected;
        if (positions == nullptr) {
            require(num_positions == 0 || num_positions == n, AXL_ERR_INVALID_ARGUMENT,
                    "num_positions must be 0 or batch_size*seq_len when positions is NULL");
            for (int64_t i = 0; i < n; ++i) selected.push_back(i);
        } else {
            require(num_positions > 0, AXL_ERR_INVALID_ARGUMENT, "num_positions must be positive");
            for (int64_t i = 0; i < num_positions; ++i) {
                require(positions[i] >= 0 && positions[i] < n, AXL_ERR_INVALID_ARGUMENT,
                        "positions[", i, "] = ", positions[i], " is outside [0, ", n, ")");
                selected.push_back(positions[i]);
            }
        }
        size_t needed = selected.size() * static_cast<size_t>(c.vocab_size);
        require(logits_len >= needed, AXL_ERR_SHAPE, "logits holds ", logits_len, " floats but ",
                selected.size(), " positions x vocab ", c.vocab_size, " need ", needed);
        model->impl->context->enter_thread();
        forward_logits(*model->impl, adapter, prepared, selected, logits);
    });
}

AXL_API axl_status axl_eval_result_init(axl_eval_result* result, size_t struct_size) {
    return guarded(nullptr, "axl_eval_result_init", [&] {
        axl_eval_result defaults{};
        defaults.struct_size = sizeof defaults;
        init_struct(result, struct_size, defaults, "result");
    });
}

AXL_API axl_status axl_model_evaluate(axl_model* model, const axl_lora* lora, const axl_batch* batch,
                                      axl_eval_result* result) {
    return guarded(slot_of(model), "axl_model_evaluate", [&] {
        require_arg(model, "model");
        require_arg(batch, "batch");
        require_arg(result, "result");
        const LoraAdapter* adapter = adapter_for(model, lora);
        PreparedBatch prepared =
            prepare_batch(read_struct(batch, batch_defaults(), "batch"), model->impl->config);
        model->impl->context->enter_thread();
        double sum = evaluate_loss_sum(*model->impl, adapter, prepared);
        axl_eval_result value{};
        value.struct_size = sizeof value;
        value.num_tokens = prepared.num_targets;
        value.loss = prepared.num_targets > 0 ? sum / prepared.num_targets : NAN;
        write_struct(result, value, "result");
    });
}

}  // extern "C"
