// How a model's frozen linears are stored: the settings of an axl_quant_config, checked on
// their own when set and against each weight's shape when a model is loaded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "axl.h"
#include "core/dtype.hpp"
#include "quant/quant_format.hpp"
#include "quant/quantized_tensor.hpp"

namespace axl {

struct ModelQuantConfig {
    int32_t format = AXL_QUANT_NONE;    // AXL_QUANT_*
    int64_t block_size = 0;             // 0: the format's default
    bool double_quant = false;          // nf4/fp4 only
    // The dtype weights are rounded through before quantizing (torchao computes statistics in
    // it); empty: each tensor's checkpoint dtype.
    std::optional<DType> weight_dtype;
    // Linears whose module name contains one of these stay in full precision. The embeddings,
    // the LM head and the norms always do.
    std::vector<std::string> skip_modules;

    bool quantizes() const { return format != AXL_QUANT_NONE; }
};

// The format of a config that quantizes (format != AXL_QUANT_NONE).
QuantFormat quant_format_of(const ModelQuantConfig& config);

// Checks the settings for contradictions that need no shape: a block size the format cannot
// take, double quantization for a format other than nf4/fp4. Throws
// Error(AXL_ERR_INVALID_ARGUMENT) saying which settings contradict.
void validate_model_quant_config(const ModelQuantConfig& config);

// Whether `module` (e.g. "model.layers.0.mlp.down_proj") is kept in full precision.
bool keeps_full_precision(const ModelQuantConfig& config, const std::string& module);

// The per-tensor quantize() config for a weight stored as `checkpoint_dtype`.
QuantConfig tensor_quant_config(const ModelQuantConfig& config, DType checkpoint_dtype);

// A weight stored quantized already (a checkpoint, a cache) against a block size the config
// asks for (0: any). Throws Error(AXL_ERR_INVALID_ARGUMENT) naming `tensor` when they differ.
void check_requested_block_size(const ModelQuantConfig& requested, const QuantizedTensor& q,
                                const std::string& tensor);

// "nf4 (block 64, double quant)", "none": for messages and logs.
std::string describe(const ModelQuantConfig& config);

}  // namespace axl
