#include "quant/quantize.hpp"

#include <cstring>
#include <memory>
#include <vector>

#include "core/error.hpp"
#include "quant/fp8_e4m3.hpp"
#include "quant/int4_group.hpp"
#include "quant/int8_channel.hpp"
#include "quant/int8_row.hpp"
#include "quant/minifloat.hpp"
#include "quant/mxfp4.hpp"
#include "quant/nf4_fp4.hpp"
#include "quant/nvfp4.hpp"

namespace axl {

namespace {

bool is_4bit(QuantFormat format) {
    return format != QuantFormat::Int8Row && format != QuantFormat::Int8Channel &&
           format != QuantFormat::Fp8E4M3;
}

void require_size(size_t actual, int64_t expected, const QuantizedTensor& q, const char* what) {
    require(static_cast<int64_t>(actual) == expected, AXL_ERR_SHAPE, quant_format_name(q.format),
            " weight [", q.rows, ", ", q.cols, "]: ", what, " has ", actual, " entries, expected ",
            expected);
}

// Whether every value is exactly a value of `dtype` (rounding through it changes nothing).
bool representable_in(const float* values, int64_t count, DType dtype) {
    if (dtype == DType::BF16) {
        // A bf16 value is an f32 whose low 16 bits are zero.
        uint32_t low_bits = 0;
#pragma omp parallel for schedule(static) reduction(| : low_bits)
        for (int64_t i = 0; i < count; ++i) {
            uint32_t bits;
            std::memcpy(&bits, values + i, sizeof bits);
            low_bits |= bits & 0xffffu;
        }
        return low_bits == 0;
    }
    bool all = true;
#pragma omp parallel for schedule(static) reduction(&& : all)
    for (int64_t i = 0; i < count; ++i) {
        const float x = values[i];
        all = all && (round_through_dtype(x, dtype) == x || x != x);
    }
    return all;
}

}  // namespace

int64_t packed_size_bytes(QuantFormat format, int64_t rows, int64_t cols) {
    const int64_t count = rows * cols;
    return is_4bit(format) ? (count + 1) / 2 : count;
}

QuantizedTensor quantize(const float* weight, int64_t rows, int64_t cols, const QuantConfig& config) {
    validate_quant_config(config, rows, cols);
    require(weight != nullptr, AXL_ERR_INVALID_ARGUMENT, "quantize: weight is null");

    QuantizedTensor q;
    q.format = config.format;
    q.rows = rows;
    q.cols = cols;
    q.block_size = resolve_block_size(config.format, config.block_size, cols);
    q.weight_dtype = config.weight_dtype;

    // A weight that came from weight_dtype (the common case: a bf16 checkpoint) is its own
    // rounding; only a weight that is not needs the rounded copy.
    std::unique_ptr<float[]> rounded;
    const float* input = weight;
    if (config.weight_dtype != DType::F32 && !representable_in(weight, q.numel(), config.weight_dtype)) {
        rounded.reset(new float[q.numel()]);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < q.numel(); ++i) rounded[i] = round_through_dtype(weight[i], config.weight_dtype);
        input = rounded.get();
    }

    switch (config.format) {
        case QuantFormat::NF4:
        case QuantFormat::FP4: quantize_bnb_4bit(input, config.double_quant, &q); break;
        case QuantFormat::Int8Row: quantize_int8_row(input, &q); break;
        case QuantFormat::Int4Group: quantize_int4_group(input, &q); break;
        case QuantFormat::Int8Channel: quantize_int8_channel(input, &q); break;
        case QuantFormat::Fp8E4M3: quantize_fp8_e4m3(input, &q); break;
        case QuantFormat::NVFP4: quantize_nvfp4(input, config.nvfp4_tensor_scale, &q); break;
        case QuantFormat::MXFP4: quantize_mxfp4(input, &q); break;
    }
    return q;
}

void check_quantized_tensor(const QuantizedTensor& q) {
    require(q.block_rows == 0 || q.format == QuantFormat::Fp8E4M3, AXL_ERR_SHAPE,
            quant_format_name(q.format), " weight [", q.rows, ", ", q.cols,
            "]: 2-D tile scales exist only for fp8 e4m3");
    require(q.block_rows >= 0 && q.rows > 0 && q.cols > 0 && q.block_size > 0 &&
                (q.block_rows > 0 || q.cols % q.block_size == 0),
            AXL_ERR_SHAPE, quant_format_name(q.format), " weight [", q.rows, ", ", q.cols,
            "] does not split into blocks of ", q.block_size);
    require_size(q.packed.size(), packed_size_bytes(q.format, q.rows, q.cols), q, "packed data");
    const int64_t blocks = q.num_blocks();
    switch (q.format) {
        case QuantFormat::NF4:
        case QuantFormat::FP4:
            if (q.double_quant) {
                const DoubleQuantStats& stats = *q.double_quant;
                require_size(stats.codes.size(), blocks, q, "double-quantized absmax");
                require_size(stats.absmax.size(), (blocks + kDoubleQuantBlockSize - 1) / kDoubleQuantBlockSize,
                             q, "nested absmax");
                require_size(stats.code_map.size(), 256, q, "nested code map");
            } else {
                require_size(q.scales.size(), blocks, q, "absmax");
            }
            break;
        case QuantFormat::Int4Group:
            require_size(q.scales.size(), blocks, q, "scales");
            require_size(q.zeros.size(), blocks, q, "zero points");
            break;
        case QuantFormat::Int8Row:
        case QuantFormat::Int8Channel:
        case QuantFormat::Fp8E4M3: require_size(q.scales.size(), blocks, q, "scales"); break;
        case QuantFormat::NVFP4:
        case QuantFormat::MXFP4: require_size(q.scale_codes.size(), blocks, q, "block scales"); break;
    }
}

void dequantize_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out) {
    check_quantized_tensor(q);
    require(0 <= row_begin && row_begin <= row_end && row_end <= q.rows, AXL_ERR_INVALID_ARGUMENT,
            "dequantize_rows: rows [", row_begin, ", ", row_end, ") are outside [0, ", q.rows, ")");
    require(out != nullptr || row_begin == row_end, AXL_ERR_INVALID_ARGUMENT, "dequantize_rows: out is null");

    switch (q.format) {
        case QuantFormat::NF4:
        case QuantFormat::FP4: dequantize_bnb_4bit_rows(q, row_begin, row_end, out); break;
        case QuantFormat::Int8Row: dequantize_int8_row_rows(q, row_begin, row_end, out); break;
        case QuantFormat::Int4Group: dequantize_int4_group_rows(q, row_begin, row_end, out); break;
        case QuantFormat::Int8Channel: dequantize_int8_channel_rows(q, row_begin, row_end, out); break;
        case QuantFormat::Fp8E4M3: dequantize_fp8_e4m3_rows(q, row_begin, row_end, out); break;
        case QuantFormat::NVFP4: dequantize_nvfp4_rows(q, row_begin, row_end, out); break;
        case QuantFormat::MXFP4: dequantize_mxfp4_rows(q, row_begin, row_end, out); break;
    }
}

void dequantize(const QuantizedTensor& q, float* out) { dequantize_rows(q, 0, q.rows, out); }

}  // namespace axl
