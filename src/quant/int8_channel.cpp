#include "quant/int8_channel.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "quant/minifloat.hpp"

namespace axl {

void quantize_int8_channel(const float* weight, QuantizedTensor* q) {
    const int64_t cols = q->cols;
    q->packed.assign(q->numel(), 0);
    q->scales.assign(q->rows, 0.0f);

#pragma omp parallel for
    for (int64_t row = 0; row < q->rows; ++row) {
        const float* x = weight + row * cols;
        float absmax = 0.0f;
        for (int64_t i = 0; i < cols; ++i) absmax = std::max(absmax, std::fabs(x[i]));
        const float scale = std::max(round_through_dtype(absmax / 127.5f, q->weight_dtype), FLT_EPSILON);
        q->scales[row] = scale;
        const float inverse = 1.0f / scale;
        for (int64_t i = 0; i < cols; ++i) {
            const float level = std::clamp(std::nearbyint(x[i] * inverse), -128.0f, 127.0f);
            q->packed[row * cols + i] = static_cast<uint8_t>(static_cast<int8_t>(level));
        }
    }
}

void dequantize_int8_channel_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out) {
    const int64_t cols = q.cols;
#pragma omp parallel for
    for (int64_t row = row_begin; row < row_end; ++row) {
        float* y = out + (row - row_begin) * cols;
        for (int64_t i = 0; i < cols; ++i)
            y[i] = static_cast<float>(static_cast<int8_t>(q.packed[row * cols + i])) * q.scales[row];
    }
}

}  // namespace axl
