#include "quant/quant_format.hpp"

#include <algorithm>
#include <array>

#include "core/error.hpp"

namespace axl {

namespace {

// bitsandbytes quantize_4bit accepts exactly these block sizes.
constexpr std::array<int64_t, 8> kBnb4BitBlockSizes = {32, 64, 128, 256, 512, 1024, 2048, 4096};
// torchao Int4WeightOnlyConfig documents these group sizes.
constexpr std::array<int64_t, 4> kInt4GroupSizes = {32, 64, 128, 256};

template <size_t N>
bool contains(const std::array<int64_t, N>& values, int64_t value) {
    return std::find(values.begin(), values.end(), value) != values.end();
}

}  // namespace

const char* quant_format_name(QuantFormat format) {
    switch (format) {
        case QuantFormat::NF4: return "nf4";
        case QuantFormat::FP4: return "fp4";
        case QuantFormat::Int8Row: return "int8 row-wise";
        case QuantFormat::Int4Group: return "int4 grouped";
        case QuantFormat::Int8Channel: return "int8 per-channel";
        case QuantFormat::Fp8E4M3: return "fp8 e4m3";
        case QuantFormat::NVFP4: return "nvfp4";
        case QuantFormat::MXFP4: return "mxfp4";
    }
    return "unknown";
}

bool quant_format_from_int(int32_t value, QuantFormat* out) {
    if (value < AXL_QUANT_NF4 || value > AXL_QUANT_MXFP4) return false;
    *out = static_cast<QuantFormat>(value);
    return true;
}

int64_t default_block_size(QuantFormat format) {
    switch (format) {
        case QuantFormat::NF4:
        case QuantFormat::FP4: return kBnb4BitDefaultBlockSize;
        case QuantFormat::Int4Group: return kInt4DefaultGroupSize;
        case QuantFormat::NVFP4: return kNvfp4BlockSize;
        case QuantFormat::MXFP4: return kMxfp4BlockSize;
        case QuantFormat::Int8Row:
        case QuantFormat::Int8Channel:
        case QuantFormat::Fp8E4M3: return kWholeRow;
    }
    fail(AXL_ERR_INTERNAL, "unknown quant format ", static_cast<int>(format));
}

bool is_whole_row_format(QuantFormat format) { return default_block_size(format) == kWholeRow; }

int64_t resolve_block_size(QuantFormat format, int64_t requested, int64_t cols) {
    if (is_whole_row_format(format)) return cols;
    return requested == 0 ? default_block_size(format) : requested;
}

void validate_quant_shape(QuantFormat format, int64_t rows, int64_t cols, int64_t block_size,
                          bool expert_tensor) {
    const char* name = quant_format_name(format);
    if (format == QuantFormat::MXFP4 && !expert_tensor)
        fail(AXL_ERR_UNSUPPORTED, "mxfp4 is supported only for MoE expert tensors; use nf4, "
             "int4 or nvfp4 for dense weights");
    require(block_size >= 0, AXL_ERR_INVALID_ARGUMENT, name, ": block size ", block_size,
            " is negative");
    require(rows > 0 && cols > 0, AXL_ERR_SHAPE, name, ": cannot quantize a [", rows, ", ", cols,
            "] weight; both dimensions must be positive");

    if (is_whole_row_format(format)) {
        require(block_size == 0 || block_size == cols, AXL_ERR_INVALID_ARGUMENT, name,
                " takes one scale per row; block size must be 0 (whole row), got ", block_size);
        return;
    }
    const int64_t block = resolve_block_size(format, block_size, cols);
    switch (format) {
        case QuantFormat::NF4:
        case QuantFormat::FP4:
            require(contains(kBnb4BitBlockSizes, block), AXL_ERR_INVALID_ARGUMENT, name,
                    ": block size ", block, " is not one bitsandbytes takes "
                    "(32, 64, 128, 256, 512, 1024, 2048 or 4096)");
            break;
        case QuantFormat::Int4Group:
            require(contains(kInt4GroupSizes, block), AXL_ERR_INVALID_ARGUMENT, name,
                    ": group size ", block, " is not one torchao takes (32, 64, 128 or 256)");
            break;
        case QuantFormat::NVFP4:
        case QuantFormat::MXFP4:
            require(block == default_block_size(format), AXL_ERR_INVALID_ARGUMENT, name,
                    ": block size is fixed at ", default_block_size(format), ", got ", block);
            break;
        default:
            break;
    }
    // Blocks never straddle rows, so any row range can be dequantized on its own.
    require(cols % block == 0, AXL_ERR_SHAPE, name, ": row length ", cols,
            " is not a multiple of the block size ", block, " (weight [", rows, ", ", cols, "])");
}

void validate_quant_config(const QuantConfig& config, int64_t rows, int64_t cols) {
    validate_quant_shape(config.format, rows, cols, config.block_size, config.expert_tensor);
    const bool bnb_4bit = config.format == QuantFormat::NF4 || config.format == QuantFormat::FP4;
    require(!config.double_quant || bnb_4bit, AXL_ERR_INVALID_ARGUMENT,
            "double quantization applies to nf4/fp4 only, not ", quant_format_name(config.format));
    require(config.weight_dtype == DType::F32 || config.weight_dtype == DType::BF16 ||
                config.weight_dtype == DType::F16,
            AXL_ERR_INVALID_ARGUMENT, "weight dtype must be f32, bf16 or f16, got ",
            dtype_name(config.weight_dtype));
}

}  // namespace axl
