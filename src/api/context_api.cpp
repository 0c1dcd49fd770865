// C entry points of axl_context.
#include <cstddef>

#include "api/guard.hpp"

using namespace axl;

namespace {

axl_context_options context_defaults() {
    axl_context_options o{};
    o.struct_size = sizeof o;
    o.backend = AXL_BACKEND_AUTO;
    o.log_level = AXL_LOG_WARN;
    return o;
}

}  // namespace

extern "C" {

AXL_API axl_status axl_context_options_init(axl_context_options* opts, size_t struct_size) {
    return guarded(nullptr, "axl_context_options_init",
                   [&] { init_struct(opts, struct_size, context_defaults(), "opts"); });
}

AXL_API axl_status axl_context_create(const axl_context_options* opts, axl_context** out) {
    return guarded(nullptr, "axl_context_create", [&] {
        require_arg(out, "out");
        axl_context_options options = read_struct(opts, context_defaults(), "opts");
        require(options.log_level >= AXL_LOG_ERROR && options.log_level <= AXL_LOG_DEBUG,
                AXL_ERR_INVALID_ARGUMENT, "opts->log_level ", options.log_level,
                " is not one of AXL_LOG_*");
        require(options.num_threads >= 0, AXL_ERR_INVALID_ARGUMENT, "opts->num_threads is negative");
        require(options.device >= 0, AXL_ERR_INVALID_ARGUMENT, "opts->device is negative");
        if (options.host_allocator != nullptr) {
            const axl_host_allocator* hooks = options.host_allocator;
            // The first published layout ends with `deallocate`; later versions only append.
            constexpr size_t first_layout = offsetof(axl_host_allocator, deallocate) +
                                            sizeof(hooks->deallocate);
            require(hooks->struct_size >= first_layout && hooks->allocate != nullptr &&
                        hooks->deallocate != nullptr,
                    AXL_ERR_INVALID_ARGUMENT,
                    "opts->host_allocator needs struct_size, allocate and deallocate set");
        }
        auto handle = std::make_unique<axl_context>();
        handle->impl = std::make_shared<Context>(options);
        *out = handle.release();
    });
}

AXL_API void axl_context_destroy(axl_context* ctx) { delete ctx; }

AXL_API const char* axl_context_last_error(const axl_context* ctx) {
    return ctx != nullptr ? ctx->error.get() : "";
}

AXL_API axl_status axl_context_backend(const axl_context* ctx, int32_t* out_backend) {
    return guarded(slot_of(ctx), "axl_context_backend", [&] {
        require_arg(ctx, "ctx");
        require_arg(out_backend, "out_backend");
        *out_backend = ctx->impl->backend();
    });
}

AXL_API axl_status axl_context_memory_stats(const axl_context* ctx, axl_memory_stats* stats) {
    return guarded(slot_of(ctx), "axl_context_memory_stats", [&] {
        require_arg(ctx, "ctx");
        require_arg(stats, "stats");
        axl_memory_stats value{};
        value.struct_size = sizeof value;
        value.host_current_bytes = ctx->impl->host_allocator()->current_bytes();
        value.host_peak_bytes = ctx->impl->host_allocator()->peak_bytes();
        value.device_current_bytes = ctx->impl->device_current_bytes();
        value.device_peak_bytes = ctx->impl->device_peak_bytes();
        write_struct(stats, value, "stats");
    });
}

AXL_API axl_status axl_context_reset_peak_memory(axl_context* ctx) {
    return guarded(slot_of(ctx), "axl_context_reset_peak_memory", [&] {
        require_arg(ctx, "ctx");
        ctx->impl->host_allocator()->reset_peak();
        ctx->impl->reset_device_peak();
    });
}

}  // extern "C"
