#include "quant/int8_row.hpp"

#include <algorithm>
#include <cmath>

#include "quant/minifloat.hpp"

namespace axl {

namespace {

// bitsandbytes int8_vectorwise_dequant multiplies by this literal (1/127), rounded to f32.
constexpr float kInverse127 = static_cast<float>(7.874015718698502e-3);

}  // namespace

void quantize_int8_row(const float* weight, QuantizedTensor* q) {
    const int64_t cols = q->cols;
    q->packed.assign(q->numel(), 0);
    q->scales.assign(q->rows, 0.0f);

#pragma omp parallel for
    for (int64_t row = 0; row < q->rows; ++row) {
        std::vector<float> half(cols);
        float absmax = 0.0f;
        for (int64_t i = 0; i < cols; ++i) {
            half[i] = round_through_dtype(weight[row * cols + i], DType::F16);
            absmax = std::max(absmax, std::fabs(half[i]));
        }
        q->scales[row] = absmax;
        // An all-zero row would be 0 * (127 / 0) = NaN in bitsandbytes; zeros are what it means.
        if (absmax == 0.0f) continue;
        // bitsandbytes writes `127.0 / row_stats`; torch evaluates a scalar divided by a tensor
        // as reciprocal(tensor) * scalar: two roundings, which moves values near .5 ties.
        const float reciprocal = 1.0f / absmax;
        const float scale = reciprocal * 127.0f;
        for (int64_t i = 0; i < cols; ++i) {
            const float rounded = std::clamp(std::nearbyint(half[i] * scale), -127.0f, 127.0f);
            q->packed[row * cols + i] = static_cast<uint8_t>(static_cast<int8_t>(rounded));
        }
    }
}

void dequantize_int8_row_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out) {
    const int64_t cols = q.cols;
#pragma omp parallel for
    for (int64_t row = row_begin; row < row_end; ++row) {
        float* y = out + (row - row_begin) * cols;
        for (int64_t i = 0; i < cols; ++i) {
            const float scaled = static_cast<float>(static_cast<int8_t>(q.packed[row * cols + i])) * q.scales[row];
            y[i] = scaled * kInverse127;
        }
    }
}

}  // namespace axl
