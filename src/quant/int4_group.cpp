#include "quant/int4_group.hpp"

#include <algorithm>
#include <cmath>

#include "quant/minifloat.hpp"
#include "quant/nibble_packing.hpp"

namespace axl {

namespace {

constexpr NibbleOrder kOrder = NibbleOrder::FirstLow;

// The stored nibble is q - 8 as a two's-complement int4, which for 0..15 is q with bit 3 flipped.
uint8_t int4_nibble(float unsigned_level) { return static_cast<uint8_t>(static_cast<int>(unsigned_level) ^ 0x8); }
int signed_level(uint8_t nibble) { return static_cast<int>(nibble ^ 0x8) - 8; }

}  // namespace

void quantize_int4_group(const float* weight, QuantizedTensor* q) {
    const int64_t group = q->block_size;
    const int64_t groups = q->num_blocks();
    q->packed.assign(q->numel() / 2, 0);
    q->scales.assign(groups, 0.0f);
    q->zeros.assign(groups, 0.0f);

#pragma omp parallel for
    for (int64_t g = 0; g < groups; ++g) {
        const float* x = weight + g * group;
        const auto [min_it, max_it] = std::minmax_element(x, x + group);
        const float min_value = *min_it;
        const float scale = std::max(*max_it - min_value, 1e-6f) / 15.0f;
        const float offset = scale * 8.0f;
        const float zero = min_value + offset;
        uint8_t* bytes = q->packed.data() + g * group / 2;
        for (int64_t i = 0; i < group; i += 2) {
            const float first = std::clamp(std::nearbyint((x[i] - min_value) / scale), 0.0f, 15.0f);
            const float second = std::clamp(std::nearbyint((x[i + 1] - min_value) / scale), 0.0f, 15.0f);
            bytes[i / 2] = pack_nibbles(int4_nibble(first), int4_nibble(second), kOrder);
        }
        q->scales[g] = round_through_dtype(scale, q->weight_dtype);
        q->zeros[g] = round_through_dtype(zero, q->weight_dtype);
    }
}

void dequantize_int4_group_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out) {
    const int64_t group = q.block_size;
    const int64_t first_group = row_begin * q.blocks_per_row();
    const int64_t last_group = row_end * q.blocks_per_row();

#pragma omp parallel for
    for (int64_t g = first_group; g < last_group; ++g) {
        const int64_t begin = g * group;
        float* y = out + (begin - row_begin * q.cols);
        for (int64_t i = 0; i < group; ++i) {
            const float scaled = static_cast<float>(signed_level(unpack_nibble(q.packed.data(), begin + i, kOrder))) * q.scales[g];
            y[i] = scaled + q.zeros[g];
        }
    }
}

}  // namespace axl
