#include "quant/mxfp4.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "quant/minifloat.hpp"
#include "quant/nibble_packing.hpp"

namespace axl {

namespace {

constexpr NibbleOrder kOrder = NibbleOrder::FirstLow;
constexpr int kE2M1MaxExponent = 2;  // 6 = 1.5 * 2^2
constexpr int kE8M0Bias = 127;

// The f32 the element step divides by: the scale's bit pattern as an f32, raised to the
// smallest normal as torchao does (so byte 0 divides by 2^-126, though it decodes as 2^-127).
float element_divisor(uint8_t scale_code) {
    const uint32_t bits = static_cast<uint32_t>(scale_code) << 23;
    float divisor;
    std::memcpy(&divisor, &bits, sizeof divisor);
    return std::max(divisor, FLT_MIN);
}

}  // namespace

uint8_t mxfp4_scale_code(float amax) {
    if (std::isnan(amax)) return 0xff;
    uint32_t bits;
    std::memcpy(&bits, &amax, sizeof bits);
    // The raw exponent field: floor(log2(amax)) for normal amax, -127 for zero and subnormals.
    const int exponent = static_cast<int>((bits >> 23) & 0xff) - kE8M0Bias;
    const int scale_exponent = std::clamp(exponent - kE2M1MaxExponent, -kE8M0Bias, kE8M0Bias + 1);
    return static_cast<uint8_t>(scale_exponent + kE8M0Bias);
}

void quantize_mxfp4(const float* weight, QuantizedTensor* q) {
    const int64_t block_size = q->block_size;
    const int64_t blocks = q->num_blocks();
    q->packed.assign(q->numel() / 2, 0);
    q->scale_codes.assign(blocks, 0);

#pragma omp parallel for
    for (int64_t block = 0; block < blocks; ++block) {
        const float* x = weight + block * block_size;
        float amax = 0.0f;
        for (int64_t i = 0; i < block_size; ++i) amax = std::max(amax, std::fabs(x[i]));
        const uint8_t scale_code = mxfp4_scale_code(amax);
        q->scale_codes[block] = scale_code;
        const float divisor = element_divisor(scale_code);
        uint8_t* bytes = q->packed.data() + block * block_size / 2;
        for (int64_t i = 0; i < block_size; i += 2) {
            const uint8_t first = encode_e2m1(std::clamp(x[i] / divisor, -kE2M1Max, kE2M1Max));
            const uint8_t second = encode_e2m1(std::clamp(x[i + 1] / divisor, -kE2M1Max, kE2M1Max));
            bytes[i / 2] = pack_nibbles(first, second, kOrder);
        }
    }
}

void dequantize_mxfp4_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out) {
    const int64_t first_block = row_begin * q.blocks_per_row();
    const int64_t last_block = row_end * q.blocks_per_row();

#pragma omp parallel for
    for (int64_t block = first_block; block < last_block; ++block) {
        const float scale = decode_e8m0(q.scale_codes[block]);
        const int64_t begin = block * q.block_size;
        float* y = out + (begin - row_begin * q.cols);
        for (int64_t i = 0; i < q.block_size; ++i)
            y[i] = decode_e2m1(unpack_nibble(q.packed.data(), begin + i, kOrder)) * scale;
    }
}

}  // namespace axl
