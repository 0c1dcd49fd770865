#include "quant/double_quant.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "quant/quant_format.hpp"

namespace axl {

namespace {

// torch.linspace(0.1, 1, count, dtype=float32) on the CPU. torch's kernel computes
// start + step * i for the first half and end - step * (count - 1 - i) for the second, and
// the compiler fuses each into one FMA on the AVX2/AVX512 builds; std::fma reproduces that
// single rounding on any machine.
std::vector<float> linspace_tenth_to_one(int count) {
    const float start = 0.1f;
    const float end = 1.0f;
    const float step = (end - start) / static_cast<float>(count - 1);
    const int halfway = count / 2;
    std::vector<float> values(count);
    for (int i = 0; i < count; ++i) {
        values[i] = i < halfway ? std::fma(step, static_cast<float>(i), start)
                                : std::fma(-step, static_cast<float>(count - 1 - i), end);
    }
    return values;
}

std::vector<float> build_dynamic_code_map() {
    // Signed map, 7 exponent bits: for exponent i, 2^i fractions between consecutive points of
    // linspace(0.1, 1, 2^i + 1), times 10^(i - 6), and their negatives; then 0 and 1.
    constexpr double kPowersOfTen[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
    std::vector<float> map;
    map.reserve(256);
    for (int i = 0; i < 7; ++i) {
        const std::vector<float> boundaries = linspace_tenth_to_one((1 << i) + 1);
        const float power = static_cast<float>(kPowersOfTen[i]);
        for (size_t j = 0; j + 1 < boundaries.size(); ++j) {
            const float mean = (boundaries[j] + boundaries[j + 1]) / 2.0f;
            const float value = power * mean;
            map.push_back(value);
            map.push_back(-value);
        }
    }
    map.push_back(0.0f);
    map.push_back(1.0f);
    std::sort(map.begin(), map.end());
    return map;
}

}  // namespace

const std::vector<float>& dynamic_code_map() {
    static const std::vector<float> map = build_dynamic_code_map();
    return map;
}

float absmax_mean(std::span<const float> absmax) {
    require(!absmax.empty(), AXL_ERR_INTERNAL, "mean of an empty absmax vector");
    double sum = 0.0;
    for (float value : absmax) sum += value;
    return static_cast<float>(sum / static_cast<double>(absmax.size()));
}

namespace {

constexpr int kGridPoints = 65536;

// Grid point i stands for (2i / 65535) - 1; its entry is the number of map midpoints below it.
std::vector<uint8_t> build_grid_table(const std::vector<float>& map) {
    std::vector<uint8_t> table(kGridPoints);
    int code = 0;
    for (int i = 0; i < kGridPoints; ++i) {
        const float point = (static_cast<float>(i) + static_cast<float>(i)) / 65535.0f - 1.0f;
        while (code < 255 && point > (map[code] + map[code + 1]) * 0.5f) ++code;
        table[i] = static_cast<uint8_t>(code);
    }
    return table;
}

}  // namespace

uint8_t dynamic_code_of(float normalized) {
    static const std::vector<uint8_t> table = build_grid_table(dynamic_code_map());
    const float clamped = std::clamp(normalized, -1.0f, 1.0f);
    // bitsandbytes computes the grid index with one fused multiply-add and truncates it.
    const float position = std::fma((clamped + 1.0f) * 0.5f, 65535.0f, 0.5f);
    return table[static_cast<int>(position) & 0xffff];
}

DoubleQuantStats double_quantize_absmax(std::span<const float> absmax, float offset) {
    DoubleQuantStats stats;
    stats.code_map = dynamic_code_map();
    stats.offset = offset;
    const int64_t count = static_cast<int64_t>(absmax.size());
    const int64_t nested_blocks = (count + kDoubleQuantBlockSize - 1) / kDoubleQuantBlockSize;
    stats.codes.resize(count);
    stats.absmax.resize(nested_blocks);
    for (int64_t block = 0; block < nested_blocks; ++block) {
        const int64_t begin = block * kDoubleQuantBlockSize;
        const int64_t end = std::min(count, begin + kDoubleQuantBlockSize);
        float block_absmax = 0.0f;
        for (int64_t i = begin; i < end; ++i)
            block_absmax = std::max(block_absmax, std::fabs(absmax[i] - offset));
        stats.absmax[block] = block_absmax;
        // A block whose values all equal the mean gets code 0, as in bitsandbytes; times a
        // zero nested absmax it restores the mean exactly.
        if (block_absmax == 0.0f) continue;
        const float inverse = 1.0f / block_absmax;
        for (int64_t i = begin; i < end; ++i) stats.codes[i] = dynamic_code_of((absmax[i] - offset) * inverse);
    }
    return stats;
}

float dequantize_absmax(const DoubleQuantStats& stats, int64_t block) {
    // Two statements, two roundings: bitsandbytes dequantizes, then adds the offset.
    const float scaled = stats.code_map[stats.codes[block]] * stats.absmax[block / kDoubleQuantBlockSize];
    return scaled + stats.offset;
}

}  // namespace axl
