#include "quant/fp8_e4m3.hpp"

#include <algorithm>
#include <cmath>

#include "quant/minifloat.hpp"

namespace axl {

void quantize_fp8_e4m3(const float* weight, QuantizedTensor* q) {
    const int64_t cols = q->cols;
    q->packed.assign(q->numel(), 0);
    q->scales.assign(q->rows, 0.0f);

#pragma omp parallel for
    for (int64_t row = 0; row < q->rows; ++row) {
        const float* x = weight + row * cols;
        float absmax = 0.0f;
        for (int64_t i = 0; i < cols; ++i) absmax = std::max(absmax, std::fabs(x[i]));
        const float scale = round_through_dtype(absmax / kE4M3Max, q->weight_dtype);
        q->scales[row] = scale;
        // torchao divides an all-zero row by a zero scale and stores NaN; zeros are what it means.
        if (scale == 0.0f) continue;
        for (int64_t i = 0; i < cols; ++i)
            q->packed[row * cols + i] = encode_e4m3(std::clamp(x[i] / scale, -kE4M3Max, kE4M3Max));
    }
}

void dequantize_fp8_e4m3_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out) {
    const int64_t cols = q.cols;
    if (q.block_rows > 0) {
        const int64_t tiles_per_row = q.blocks_per_row();
#pragma omp parallel for
        for (int64_t row = row_begin; row < row_end; ++row) {
            float* y = out + (row - row_begin) * cols;
            const float* tile_scales = q.scales.data() + (row / q.block_rows) * tiles_per_row;
            for (int64_t i = 0; i < cols; ++i)
                y[i] = decode_e4m3(q.packed[row * cols + i]) * tile_scales[i / q.block_size];
        }
        return;
    }
#pragma omp parallel for
    for (int64_t row = row_begin; row < row_end; ++row) {
        float* y = out + (row - row_begin) * cols;
        for (int64_t i = 0; i < cols; ++i) y[i] = decode_e4m3(q.packed[row * cols + i]) * q.scales[row];
    }
}

}  // namespace axl
