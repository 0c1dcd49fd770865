// C entry points of axl_lora: create, load and save in PEFT's format, hot-swap.
#include <cmath>
#include <cstring>

#include "api/guard.hpp"
#include "lora/merge_export.hpp"

using namespace axl;

namespace {

axl_lora_options lora_defaults() {
    axl_lora_options o{};
    o.struct_size = sizeof o;
    o.rank = 8;
    o.alpha = 8.0;
    o.target_modules = nullptr;  // "all-linear"
    o.init = AXL_LORA_INIT_DEFAULT;
    return o;
}

LoraConfig lora_config_from(const axl_lora_options& o) {
    require(o.rank >= 1, AXL_ERR_INVALID_ARGUMENT, "opts->rank must be at least 1 (got ", o.rank, ")");
    require(std::isfinite(o.alpha) && o.alpha > 0, AXL_ERR_INVALID_ARGUMENT,
            "opts->alpha must be a positive number");
    require(o.dropout >= 0 && o.dropout < 1, AXL_ERR_INVALID_ARGUMENT,
            "opts->dropout must be in [0, 1) (got ", o.dropout, ")");
    require(o.init >= AXL_LORA_INIT_DEFAULT && o.init <= AXL_LORA_INIT_RANDOM_B,
            AXL_ERR_INVALID_ARGUMENT, "opts->init ", o.init, " is not one of AXL_LORA_INIT_*");
    LoraConfig config;
    config.rank = o.rank;
    config.alpha = o.alpha;
    config.dropout = o.dropout;
    config.use_rslora = o.use_rslora != 0;
    config.use_dora = o.use_dora != 0;
    config.seed = o.seed;
    config.init = static_cast<LoraInit>(o.init);
    parse_target_modules(o.target_modules != nullptr ? o.target_modules : "all-linear", &config);
    return config;
}

}  // namespace

extern "C" {

AXL_API axl_status axl_lora_options_init(axl_lora_options* opts, size_t struct_size) {
    return guarded(nullptr, "axl_lora_options_init",
                   [&] { init_struct(opts, struct_size, lora_defaults(), "opts"); });
}

AXL_API axl_status axl_lora_create(axl_model* model, const axl_lora_options* opts, axl_lora** out) {
    return guarded(slot_of(model), "axl_lora_create", [&] {
        require_arg(model, "model");
        require_arg(out, "out");
        LoraConfig config = lora_config_from(read_struct(opts, lora_defaults(), "opts"));
        model->impl->context->enter_thread();
        auto handle = std::make_unique<axl_lora>();
        handle->impl = create_lora(model->impl, config);
        *out = handle.release();
    });
}

AXL_API axl_status axl_lora_load(axl_model* model, const char* adapter_dir, axl_lora** out) {
    return guarded(slot_of(model), "axl_lora_load", [&] {
        require_arg(model, "model");
        require_arg(adapter_dir, "adapter_dir");
        require_arg(out, "out");
        model->impl->context->enter_thread();
        auto handle = std::make_unique<axl_lora>();
        handle->impl = load_peft_adapter(model->impl, adapter_dir);
        *out = handle.release();
    });
}

AXL_API axl_status axl_lora_save(const axl_lora* lora, const char* adapter_dir) {
    return guarded(slot_of(lora), "axl_lora_save", [&] {
        require_arg(lora, "lora");
        require_arg(adapter_dir, "adapter_dir");
        save_peft_adapter(*lora->impl, adapter_dir);
    });
}

AXL_API axl_status axl_lora_merge_and_export(const axl_lora* lora, const char* out_dir) {
    return guarded(slot_of(lora), "axl_lora_merge_and_export", [&] {
        require_arg(lora, "lora");
        require_arg(out_dir, "out_dir");
        lora->impl->model->context->enter_thread();
        merge_and_export(*lora->impl, out_dir);
    });
}

AXL_API void axl_lora_destroy(axl_lora* lora) { delete lora; }

AXL_API const char* axl_lora_last_error(const axl_lora* lora) {
    return lora != nullptr ? lora->error.get() : "";
}

AXL_API axl_status axl_lora_num_parameters(const axl_lora* lora, int64_t* out) {
    return guarded(slot_of(lora), "axl_lora_num_parameters", [&] {
        require_arg(lora, "lora");
        require_arg(out, "out");
        *out = lora->impl->num_parameters();
    });
}

AXL_API axl_status axl_lora_copy_from(axl_lora* dst, const axl_lora* src) {
    return guarded(slot_of(dst), "axl_lora_copy_from", [&] {
        require_arg(dst, "dst");
        require_arg(src, "src");
        require(dst->impl->model.get() == src->impl->model.get(), AXL_ERR_INVALID_ARGUMENT,
                "the adapters belong to different model handles");
        std::vector<Tensor> to = dst->impl->parameters();
        std::vector<Tensor> from = src->impl->parameters();
        bool same_layout = to.size() == from.size();
        for (size_t i = 0; same_layout && i < to.size(); ++i)
            same_layout = to[i].shape() == from[i].shape();
        require(same_layout, AXL_ERR_SHAPE,
                "the adapters differ in targets, rank or DoRA; only values can be copied");
        for (size_t i = 0; i < to.size(); ++i) std::memcpy(to[i].data(), from[i].data(), to[i].nbytes());
        dst->impl->config.alpha = src->impl->config.alpha;
        dst->impl->config.use_rslora = src->impl->config.use_rslora;
    });
}

}  // extern "C"
