// Device dequantization of the base-weight formats other than bitsandbytes 4-bit (which is
// kernels/dequantize.cu's): int8 row-wise, int8 per-channel, int4 grouped, fp8 e4m3 (per row or
// 2-D tiles), NVFP4 and MXFP4, each the twin of its dequantize_*_rows in src/quant and bit-exact
// with it (f32 out), or the CPU's f32 value rounded once to bf16. Kernels in
// kernels/dequantize_formats.cu. Pointers are device pointers; nothing synchronizes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/ops.hpp"
#include "quant/quant_format.hpp"

namespace axl::cuda {

// A quantized weight on the device laid out as QuantizedTensor holds it (quant/quantized_tensor.hpp
// says the code layout of each format); only the arrays its format uses are set.
struct PackedWeight {
    QuantFormat format = QuantFormat::Int8Row;
    int64_t rows = 0, cols = 0;
    int64_t block_size = 0;  // elements per scale along a row; cols for the whole-row formats
    int64_t block_rows = 0;  // fp8 with 2-D tile scales: rows per tile; 0: blocks along rows only
    const uint8_t* packed = nullptr;       // codes: int8/fp8 one a byte, int4/E2M1 two (2i LOW)
    const float* scales = nullptr;         // int8 SCB or scale, int4 scale, fp8 scale (per block or tile)
    const float* zeros = nullptr;          // int4 zero points
    const uint8_t* scale_codes = nullptr;  // NVFP4 e4m3, MXFP4 e8m0 block scales
    bool has_tensor_scale = false;         // NVFP4 with torchao's per-tensor scale P
    float tensor_scale = 0.0f;
};

// Whether dequantize_packed_rows takes `format` (every format but NF4/FP4).
bool has_packed_dequantizer(QuantFormat format);

// quant::dequantize_rows's contract for `w`: rows [row_begin, row_end) into `out`
// ((row_end - row_begin) * cols values). Error(AXL_ERR_UNSUPPORTED) for NF4/FP4 or an unknown
// format, AXL_ERR_SHAPE for rows or blocks that do not fit the shape, AXL_ERR_INTERNAL for a
// missing statistics array.
void dequantize_packed_rows(const PackedWeight& w, int64_t row_begin, int64_t row_end, float* out,
                            cudaStream_t stream);
void dequantize_packed_rows(const PackedWeight& w, int64_t row_begin, int64_t row_end, bf16* out,
                            cudaStream_t stream);

}  // namespace axl::cuda
