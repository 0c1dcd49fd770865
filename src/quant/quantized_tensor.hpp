// A quantized [rows, cols] weight: its packed codes exactly as the reference library stores
// them, and its statistics. Blocks never straddle rows (validate_quant_shape), so block b of
// row r is block index r * (cols / block_size) + b everywhere below.
#pragma once

#include <cstdint>
#include <optional>

#include "core/dtype.hpp"
#include "quant/quant_array.hpp"
#include "quant/quant_format.hpp"

namespace axl {

// bitsandbytes compress_statistics: the 4-bit block absmax values, less their mean, quantized
// to 8 bits with the dynamic map in blocks of 256 (QuantState.state2).
struct DoubleQuantStats {
    QuantArray<uint8_t> codes;    // one per 4-bit block (checkpoint key `absmax`, uint8)
    QuantArray<float> absmax;     // one per 256 codes (`nested_absmax`)
    QuantArray<float> code_map;   // 256 entries (`nested_quant_map`)
    float offset = 0.0f;           // mean of the first-level absmax (`nested_offset`)
};

struct QuantizedTensor {
    QuantFormat format = QuantFormat::NF4;
    int64_t rows = 0;
    int64_t cols = 0;
    int64_t block_size = 0;  // elements per scale; cols for the whole-row formats
    // 0: blocks run along rows only (every format as axl quantizes it). Positive: Fp8E4M3 read
    // from a checkpoint with 2-D tile scales (transformers' fine-grained FP8 `weight_scale_inv`),
    // one scale per [block_rows, block_size] tile, [ceil(rows / block_rows), ceil(cols /
    // block_size)] row-major; edge tiles may be partial.
    int64_t block_rows = 0;
    DType weight_dtype = DType::F32;

    // Codes, row-major, as the reference stores them:
    //   NF4/FP4      two codes a byte, element 2i in the HIGH nibble (bitsandbytes)
    //   Int4Group    two codes a byte, element 2i in the LOW nibble; nibble = q - 8 as a
    //                two's-complement int4 (torchao/mslk pack_int4)
    //   NVFP4/MXFP4  two E2M1 codes a byte, element 2i in the LOW nibble (torchao pack_uint4)
    //   Int8Row/Int8Channel  one int8 a byte;  Fp8E4M3  one float8_e4m3fn a byte
    QuantArray<uint8_t> packed;

    // One f32 per block, row-major [rows, cols / block_size]: bitsandbytes absmax (empty when
    // double quantized), int8 SCB, torchao int4/int8/fp8 scale. The int4 and int8/fp8 scales are
    // already rounded through weight_dtype where torchao does. torchao keeps int4 scale and
    // zero transposed ([cols / group, rows]); an exporter transposes.
    QuantArray<float> scales;
    QuantArray<float> zeros;  // Int4Group: zero point in the float domain, like `scales`

    // NVFP4: one float8_e4m3fn byte per block; MXFP4: one E8M0 byte per block.
    QuantArray<uint8_t> scale_codes;
    // NVFP4 with a per-tensor scale; absent: block scales are used alone.
    std::optional<float> tensor_scale;

    std::optional<DoubleQuantStats> double_quant;  // NF4/FP4 with compress_statistics

    int64_t numel() const { return rows * cols; }
    int64_t blocks_per_row() const {
        return block_rows > 0 ? (cols + block_size - 1) / block_size : cols / block_size;
    }
    int64_t num_blocks() const {
        const int64_t block_row_count = block_rows > 0 ? (rows + block_rows - 1) / block_rows : rows;
        return block_row_count * blocks_per_row();
    }
};

}  // namespace axl
