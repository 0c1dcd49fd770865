// C entry points of axl_quant_config. The settings are validated here for range; whether a
// model can be loaded with them is decided by axl_model_load.
#include "api/guard.hpp"

using namespace axl;

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
        config->settings.format = format;
    });
}

AXL_API axl_status axl_quant_config_set_block_size(axl_quant_config* config, int32_t block_size) {
    return guarded(slot_of(config), "axl_quant_config_set_block_size", [&] {
        require_arg(config, "config");
        require(block_size >= 0, AXL_ERR_INVALID_ARGUMENT, "block_size ", block_size, " is negative");
        config->settings.block_size = block_size;
    });
}

AXL_API axl_status axl_quant_config_set_double_quant(axl_quant_config* config, int32_t enabled) {
    return guarded(slot_of(config), "axl_quant_config_set_double_quant", [&] {
        require_arg(config, "config");
        config->settings.double_quant = enabled != 0;
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

}  // extern "C"
