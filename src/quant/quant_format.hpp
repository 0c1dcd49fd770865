// The base-weight formats axl stores frozen weights in, their block sizes, and the checks a
// (format, shape, block size) must pass before anything is quantized. Each format follows one
// reference library bit for bit; docs/quantization.md says which and how.
#pragma once

#include <cstdint>

#include "axl.h"
#include "core/dtype.hpp"

namespace axl {

enum class QuantFormat : int32_t {
    NF4 = AXL_QUANT_NF4,                // bitsandbytes NF4
    FP4 = AXL_QUANT_FP4,                // bitsandbytes FP4 (not OCP E2M1)
    Int8Row = AXL_QUANT_INT8_ROW,       // bitsandbytes LLM.int8 weight: absmax per row
    Int4Group = AXL_QUANT_INT4_GROUP,   // torchao int4 weight-only, grouped asymmetric
    Int8Channel = AXL_QUANT_INT8_CHAN,  // torchao int8 weight-only, symmetric per row
    Fp8E4M3 = AXL_QUANT_FP8_E4M3,       // torchao float8 weight-only, per row
    NVFP4 = AXL_QUANT_NVFP4,            // torchao NVFP4: E2M1 elements, E4M3 scale per 16
    MXFP4 = AXL_QUANT_MXFP4,            // OCP MXFP4 as torchao: E2M1 elements, E8M0 scale per 32
};

const char* quant_format_name(QuantFormat format);
// Maps an AXL_QUANT_* value (other than AXL_QUANT_NONE) to the format; false if unknown.
bool quant_format_from_int(int32_t value, QuantFormat* out);

// Block sizes of the references' defaults. A whole-row format takes one scale per output row;
// its block size is the row length, spelled 0 here because it depends on the shape.
constexpr int64_t kWholeRow = 0;
constexpr int64_t kBnb4BitDefaultBlockSize = 64;
constexpr int64_t kInt4DefaultGroupSize = 128;
constexpr int64_t kNvfp4BlockSize = 16;
constexpr int64_t kMxfp4BlockSize = 32;
// bitsandbytes double quantization: the 4-bit block absmax values are quantized to 8 bits in
// blocks of this many.
constexpr int64_t kDoubleQuantBlockSize = 256;

int64_t default_block_size(QuantFormat format);
bool is_whole_row_format(QuantFormat format);

// What a caller asks for. Weights reach quantize() as f32 whatever their checkpoint dtype;
// `weight_dtype` says what that dtype was, because the torchao formats compute or store some
// statistics in it (and bitsandbytes int8 always rounds weights through f16).
struct QuantConfig {
    QuantFormat format = QuantFormat::NF4;
    int64_t block_size = 0;        // 0: the format's default
    bool double_quant = false;     // NF4/FP4 only: bitsandbytes compress_statistics
    bool expert_tensor = false;    // MXFP4 is accepted only for MoE expert weights
    bool nvfp4_tensor_scale = true;  // NVFP4: add torchao's per-tensor f32 scale (its weight default)
    DType weight_dtype = DType::F32;  // F32, BF16 or F16
};

// The block size `requested` resolves to for a [rows, cols] weight: the format's default for
// 0, the row length for whole-row formats.
int64_t resolve_block_size(QuantFormat format, int64_t requested, int64_t cols);

// Checks that `format` can quantize a [rows, cols] weight in blocks of `block_size` (0: the
// default). Throws Error with AXL_ERR_INVALID_ARGUMENT for a block size or dtype the format
// does not take, AXL_ERR_SHAPE when the shape does not split into whole blocks per row, and
// AXL_ERR_UNSUPPORTED for MXFP4 on a tensor that is not a MoE expert weight.
void validate_quant_shape(QuantFormat format, int64_t rows, int64_t cols, int64_t block_size,
                          bool expert_tensor);
// The same checks for a whole config (also the options that only some formats take).
void validate_quant_config(const QuantConfig& config, int64_t rows, int64_t cols);

}  // namespace axl
