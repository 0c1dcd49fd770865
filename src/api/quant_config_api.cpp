// C entry points of axl_quant_config. Each setter checks the settings against each other
// (validate_model_quant_config) and leaves the config unchanged when they contradict; whether a
// model's weights can take them is decided by axl_model_load.
#include "api/guard.hpp"

using namespace axl;

namespace {

// Applies `change` to a copy of the settings and keeps it only if the result is consistent.
template <typename Change>
void update(axl_quant_config* config, Change&& change) {
    ModelQuantConfig next = config->settings;
    change(next);
    validate_model_quant_config(next);
    config->settings = std::move(next);
}

}  // namespace

extern "C" {

AXL_API axl_status axl_quant_config_create(axl_quant_config** out) {
    return guarded(nullptr, "axl_quant_config_create", [&] {
        require_arg(out, "out");
        *out = new axl_quant_config();
    });
}

AXL_API void axl_quant_config_destroy(axl_quant_config* config) { delete config; }

AXL_API const char* axl_quant_config_last_error(const axl_quant_config* config) {
    return config != nullptr ? config->error.get() : "";
}

AXL_API axl_status axl_quant_config_set_format(axl_quant_config* config, int32_t format) {
    return guarded(slot_of(config), "axl_quant_config_set_format", [&] {
        require_arg(config, "config");
        require(format >= AXL_QUANT_NONE && format <= AXL_QUANT_MXFP4, AXL_ERR_INVALID_ARGUMENT,
                "format ", format, " is not one of AXL_QUANT_*");
        update(config, [&](ModelQuantConfig& s) { s.format = format; });
    });
}

AXL_API axl_status axl_quant_config_set_block_size(axl_quant_config* config, int32_t block_size) {
    return guarded(slot_of(config), "axl_quant_config_set_block_size", [&] {
        require_arg(config, "config");
        require(block_size >= 0, AXL_ERR_INVALID_ARGUMENT, "block_size ", block_size, " is negative");
        update(config, [&](ModelQuantConfig& s) { s.block_size = block_size; });
    });
}

AXL_API axl_status axl_quant_config_set_double_quant(axl_quant_config* config, int32_t enabled) {
    return guarded(slot_of(config), "axl_quant_config_set_double_quant", [&] {
        require_arg(config, "config");
        update(config, [&](ModelQuantConfig& s) { s.double_quant = enabled != 0; });
    });
}

AXL_API axl_status axl_quant_config_add_skip_module(axl_quant_config* config, const char* module_name) {
    return guarded(slot_of(config), "axl_quant_config_add_skip_module", [&] {
        require_arg(config, "config");
        require_arg(module_name, "module_name");
        require(module_name[0] != '\0', AXL_ERR_INVALID_ARGUMENT, "module_name is empty");
        config->settings.skip_modules.emplace_back(module_name);
    });
}

AXL_API axl_status axl_quant_config_set_weight_dtype(axl_quant_config* config, int32_t dtype) {
    return guarded(slot_of(config), "axl_quant_config_set_weight_dtype", [&] {
        require_arg(config, "config");
        switch (dtype) {
            case AXL_WEIGHT_DTYPE_AUTO: config->settings.weight_dtype.reset(); break;
            case AXL_WEIGHT_DTYPE_F32: config->settings.weight_dtype = DType::F32; break;
            case AXL_WEIGHT_DTYPE_BF16: config->settings.weight_dtype = DType::BF16; break;
            case AXL_WEIGHT_DTYPE_F16: config->settings.weight_dtype = DType::F16; break;
            default: fail(AXL_ERR_INVALID_ARGUMENT, "weight dtype ", dtype, " is not one of AXL_WEIGHT_DTYPE_*");
        }
    });
}

}  // extern "C"
