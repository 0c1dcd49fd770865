#include "quant/nf4_fp4.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "quant/double_quant.hpp"
#include "quant/nibble_packing.hpp"

namespace axl {

namespace {

constexpr NibbleOrder kOrder = NibbleOrder::FirstHigh;

// bitsandbytes get_4bit_type("nf4"): quantiles of N(0, 1) normalized to [-1, 1], sorted.
constexpr std::array<float, 16> kNf4Values = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// bitsandbytes get_4bit_type("fp4") before its division by the largest magnitude (12): bit 3
// is the sign, the low three bits index these magnitudes (not in value order). Code 8 is +0,
// not -0: the Python list spells it `-0`, an integer.
constexpr std::array<float, 16> kFp4RawValues = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f,
                                                 0.0f, -0.0625f, -8.0f, -12.0f, -4.0f, -6.0f, -2.0f, -3.0f};

// What bitsandbytes' quantizer compares against: the codes sorted by value (a stable sort, so
// FP4's code 0 ranks before code 8, both zero) and the f32 midpoints between neighbours. A value
// goes to rank = number of midpoints strictly below it (torch.bucketize, right=False).
struct CodeBook {
    std::array<float, 16> values;
    std::array<uint8_t, 16> code_of_rank;
    std::array<float, 15> midpoints;
};

CodeBook make_code_book(const std::array<float, 16>& values) {
    CodeBook book;
    book.values = values;
    std::array<uint8_t, 16> order;
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](uint8_t a, uint8_t b) { return values[a] < values[b]; });
    book.code_of_rank = order;
    for (int rank = 0; rank < 15; ++rank)
        book.midpoints[rank] = (values[order[rank]] + values[order[rank + 1]]) / 2.0f;
    return book;
}

const CodeBook& code_book(QuantFormat format) {
    static const CodeBook nf4 = make_code_book(kNf4Values);
    static const CodeBook fp4 = [] {
        std::array<float, 16> normalized;
        for (int i = 0; i < 16; ++i) normalized[i] = kFp4RawValues[i] / 12.0f;
        return make_code_book(normalized);
    }();
    return format == QuantFormat::NF4 ? nf4 : fp4;
}

}  // namespace

const float* bnb_4bit_code_table(QuantFormat format) { return code_book(format).values.data(); }

namespace {

// The number of midpoints strictly below the value, counted without branches: on real weights
// a binary search's branches are unpredictable and cost more than the 15 comparisons.
inline uint8_t code_of(const CodeBook& book, float normalized) {
    int rank = 0;
    for (float midpoint : book.midpoints) rank += midpoint < normalized ? 1 : 0;
    return book.code_of_rank[rank];
}

}  // namespace

uint8_t bnb_4bit_code(QuantFormat format, float normalized) { return code_of(code_book(format), normalized); }

void quantize_bnb_4bit(const float* weight, bool double_quant, QuantizedTensor* q) {
    const int64_t block_size = q->block_size;
    const int64_t blocks = q->num_blocks();
    const CodeBook& book = code_book(q->format);
    std::vector<float> absmax(blocks);
    q->packed.assign((q->numel() + 1) / 2, 0);
    uint8_t* packed = q->packed.data();

#pragma omp parallel
    {
        // A block's normalized values and ranks, so each step below is one loop over the block
        // that the compiler vectorizes (the largest block bitsandbytes takes is 4096).
        std::vector<float> normalized(block_size);
        std::vector<int32_t> rank(block_size);
#pragma omp for
        for (int64_t block = 0; block < blocks; ++block) {
            const float* x = weight + block * block_size;
            // Eight running maxima, combined at the end: the same maximum, without a serial chain.
            float lane_max[8] = {};
            for (int64_t i = 0; i < block_size; ++i) lane_max[i % 8] = std::max(lane_max[i % 8], std::fabs(x[i]));
            float block_absmax = 0.0f;
            for (float m : lane_max) block_absmax = std::max(block_absmax, m);
            absmax[block] = block_absmax;
            // bitsandbytes multiplies by the reciprocal; the 1e-38 floor keeps an all-zero block
            // at code 0.0 instead of 0/0.
            const float inverse = 1.0f / std::max(block_absmax, 1e-38f);
            for (int64_t i = 0; i < block_size; ++i) {
                normalized[i] = std::clamp(x[i] * inverse, -1.0f, 1.0f);
                rank[i] = 0;
            }
            // rank = number of midpoints strictly below the value (as code_of).
            for (float midpoint : book.midpoints)
                for (int64_t i = 0; i < block_size; ++i) rank[i] += midpoint < normalized[i] ? 1 : 0;
            uint8_t* bytes = packed + block * block_size / 2;
            for (int64_t i = 0; i < block_size; i += 2)
                bytes[i / 2] = pack_nibbles(book.code_of_rank[rank[i]], book.code_of_rank[rank[i + 1]], kOrder);
        }
    }

    if (double_quant)
        q->double_quant = double_quantize_absmax(absmax);
    else
        q->scales = std::move(absmax);
}

void dequantize_bnb_4bit_rows(const QuantizedTensor& q, int64_t row_begin, int64_t row_end, float* out) {
    const float* table = bnb_4bit_code_table(q.format);
    const int64_t first_block = row_begin * q.blocks_per_row();
    const int64_t last_block = row_end * q.blocks_per_row();

#pragma omp parallel for
    for (int64_t block = first_block; block < last_block; ++block) {
        const float absmax = q.double_quant ? dequantize_absmax(*q.double_quant, block) : q.scales[block];
        const int64_t begin = block * q.block_size;
        float* y = out + (begin - row_begin * q.cols);
        for (int64_t i = 0; i < q.block_size; ++i)
            y[i] = table[unpack_nibble(q.packed.data(), begin + i, kOrder)] * absmax;
    }
}

}  // namespace axl
