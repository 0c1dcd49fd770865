#include "model/model_quant.hpp"

#include "core/error.hpp"

namespace axl {

QuantFormat quant_format_of(const ModelQuantConfig& config) {
    QuantFormat format;
    require(quant_format_from_int(config.format, &format), AXL_ERR_INVALID_ARGUMENT,
            "quant format ", config.format, " is not one of AXL_QUANT_*");
    return format;
}

void validate_model_quant_config(const ModelQuantConfig& config) {
    require(config.block_size >= 0, AXL_ERR_INVALID_ARGUMENT, "block size ", config.block_size,
            " is negative");
    if (!config.quantizes()) return;
    const QuantFormat format = quant_format_of(config);
    require(!config.double_quant || format == QuantFormat::NF4 || format == QuantFormat::FP4,
            AXL_ERR_INVALID_ARGUMENT, "double quantization applies to nf4 and fp4 only, not ",
            quant_format_name(format));
    if (config.block_size == 0) return;
    require(!is_whole_row_format(format), AXL_ERR_INVALID_ARGUMENT, quant_format_name(format),
            " takes one scale per row; its block size must be 0, got ", config.block_size);
    // A one-row weight as long as one block: what is left is whether the format takes the size.
    validate_quant_shape(format, 1, config.block_size, config.block_size, true);
}

bool keeps_full_precision(const ModelQuantConfig& config, const std::string& module) {
    for (const std::string& skip : config.skip_modules)
        if (module.find(skip) != std::string::npos) return true;
    return false;
}

QuantConfig tensor_quant_config(const ModelQuantConfig& config, DType checkpoint_dtype) {
    QuantConfig q;
    q.format = quant_format_of(config);
    q.block_size = config.block_size;
    q.double_quant = config.double_quant;
    q.weight_dtype = config.weight_dtype.value_or(checkpoint_dtype);
    return q;
}

void check_requested_block_size(const ModelQuantConfig& requested, const QuantizedTensor& q,
                                const std::string& tensor) {
    if (requested.block_size == 0 || is_whole_row_format(q.format)) return;
    require(requested.block_size == q.block_size, AXL_ERR_INVALID_ARGUMENT, "the quant config asks for ",
            quant_format_name(q.format), " blocks of ", requested.block_size, " but '", tensor,
            "' is stored in blocks of ", q.block_size);
}

std::string describe(const ModelQuantConfig& config) {
    if (!config.quantizes()) return "none (full precision)";
    const QuantFormat format = quant_format_of(config);
    std::string text = quant_format_name(format);
    if (is_whole_row_format(format)) {
        text += " (one scale per row";
    } else {
        const int64_t block = config.block_size != 0 ? config.block_size : default_block_size(format);
        text += cat(" (block ", block);
    }
    if (config.double_quant) text += ", double quant";
    return text + ")";
}

}  // namespace axl
