#include "quant/nvfp4.hpp"

#include <algorithm>
#include <cmath>

#include "quant/minifloat.hpp"
#include "quant/nibble_packing.hpp"

namespace axl {

namespace {

constexpr NibbleOrder kOrder = NibbleOrder::FirstLow;

float max_abs(const float* x, int64_t count) {
    float result = 0.0f;
    for (int64_t i = 0; i < count; ++i) result = std::max(result, std::fabs(x[i]));
    return result;
}

}  // namespace

void quantize_nvfp4(const float* weight, bool tensor_scale, QuantizedTensor* q) {
    const int64_t block_size = q->block_size;
    const int64_t blocks = q->num_blocks();
    q->packed.assign(q->numel() / 2, 0);
    q->scale_codes.assign(blocks, 0);

    float per_tensor = 1.0f;
    if (tensor_scale) {
        per_tensor = max_abs(weight, q->numel()) / (kE4M3Max * kE2M1Max);
        q->tensor_scale = per_tensor;
    }
    // torchao would compute 0 / 0 for an all-zero tensor; every code and the scale stay 0.
    if (tensor_scale && per_tensor == 0.0f) {
        std::fill(q->scale_codes.begin(), q->scale_codes.end(), encode_e4m3(kE4M3MinNormal));
        return;
    }

#pragma omp parallel for
    for (int64_t block = 0; block < blocks; ++block) {
        const float* x = weight + block * block_size;
        const float block_scale = max_abs(x, block_size) / kE2M1Max;
        const float scale_to_encode = tensor_scale ? block_scale / per_tensor : block_scale;
        const uint8_t scale_code = encode_e4m3(std::clamp(scale_to_encode, kE4M3MinNormal, kE4M3Max));
        q->scale_codes[block] = scale_code;
        const float decoded_scale = decode_e4m3(scale_code);
        const float multiplier = tensor_scale ? (1.0f / per_tensor) / decoded_scale : 1.0f / decoded_scale;
        uint8_t* bytes = q->packed.data() + block * block_size / 2;
        for (int64_t i = 0; i < block_size; i += 2) {
            const uint8_t first = encode_e2m1(std::clamp(x[i] * multiplier, -kE2M1Max, kE2M1Max));
            const uint8_t second = encode_e2m1(std::clamp(x[i + 1] * multiplier, -kE2M1Max, kE2M1Max));
            bytes[i / 2] = pack_nibbles(first, second, kOrder);
        }
    }
}

void dequantize_nvfp4_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out) {
    const int64_t first_block = row_begin * q.blocks_per_row();
    const int64_t last_block = row_end * q.blocks_per_row();

#pragma omp parallel for
    for (int64_t block = first_block; block < last_block; ++block) {
        const float decoded_scale = decode_e4m3(q.scale_codes[block]);
        const float scale = q.tensor_scale ? *q.tensor_scale * decoded_scale : decoded_scale;
        const int64_t begin = block * q.block_size;
        float* y = out + (begin - row_begin * q.cols);
        for (int64_t i = 0; i < q.block_size; ++i)
            y[i] = decode_e2m1(unpack_nibble(q.packed.data(), begin + i, kOrder)) * scale;
    }
}

}  // namespace axl
