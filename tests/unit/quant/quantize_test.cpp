#include "quant/quantize.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "quant/minifloat.hpp"
#include "quant_test_support.hpp"

namespace axl {
namespace {

using quant_test::expect_error;

std::vector<QuantConfig> every_format() {
    std::vector<QuantConfig> configs;
    for (int value = AXL_QUANT_NF4; value <= AXL_QUANT_MXFP4; ++value) {
        QuantConfig config;
        quant_format_from_int(value, &config.format);
        config.expert_tensor = true;
        configs.push_back(config);
    }
    QuantConfig nested;
    nested.format = QuantFormat::NF4;
    nested.double_quant = true;
    configs.push_back(nested);
    return configs;
}

TEST(QuantQuantize, RowRangesDequantizeLikeTheWhole) {
    const int64_t rows = 12, cols = 256;
    const std::vector<float> w = quant_test::random_weight(rows, cols, 37);
    for (const QuantConfig& config : every_format()) {
        SCOPED_TRACE(quant_format_name(config.format));
        const QuantizedTensor q = quantize(w.data(), rows, cols, config);
        std::vector<float> whole(rows * cols);
        dequantize(q, whole.data());
        for (auto [begin, end] : {std::pair<int64_t, int64_t>{0, 1}, {3, 7}, {11, 12}, {5, 5}}) {
            std::vector<float> part((end - begin) * cols + 1, -7.0f);
            dequantize_rows(q, begin, end, part.data());
            EXPECT_EQ(std::memcmp(part.data(), whole.data() + begin * cols, (end - begin) * cols * sizeof(float)), 0)
                << "rows " << begin << ".." << end;
            EXPECT_EQ(part.back(), -7.0f) << "wrote past the range";
        }
    }
}

TEST(QuantQuantize, PackedSizes) {
    EXPECT_EQ(packed_size_bytes(QuantFormat::NF4, 4, 64), 128);
    EXPECT_EQ(packed_size_bytes(QuantFormat::Int4Group, 4, 128), 256);
    EXPECT_EQ(packed_size_bytes(QuantFormat::NVFP4, 2, 16), 16);
    EXPECT_EQ(packed_size_bytes(QuantFormat::MXFP4, 2, 32), 32);
    EXPECT_EQ(packed_size_bytes(QuantFormat::Int8Row, 3, 10), 30);
    EXPECT_EQ(packed_size_bytes(QuantFormat::Int8Channel, 3, 10), 30);
    EXPECT_EQ(packed_size_bytes(QuantFormat::Fp8E4M3, 3, 10), 30);
    const std::vector<float> w = quant_test::random_weight(8, 256, 41);
    for (const QuantConfig& config : every_format()) {
        const QuantizedTensor q = quantize(w.data(), 8, 256, config);
        EXPECT_EQ(static_cast<int64_t>(q.packed.size()), packed_size_bytes(config.format, 8, 256))
            << quant_format_name(config.format);
    }
}

TEST(QuantQuantize, RoundsTheWeightThroughItsCheckpointDtype) {
    const std::vector<float> w = quant_test::random_weight(4, 256, 43);
    std::vector<float> as_bf16(w.size());
    for (size_t i = 0; i < w.size(); ++i) as_bf16[i] = round_through_dtype(w[i], DType::BF16);
    for (QuantConfig config : every_format()) {
        config.weight_dtype = DType::BF16;
        const QuantizedTensor from_f32 = quantize(w.data(), 4, 256, config);
        const QuantizedTensor from_bf16 = quantize(as_bf16.data(), 4, 256, config);
        EXPECT_EQ(from_f32.packed, from_bf16.packed) << quant_format_name(config.format);
        EXPECT_EQ(from_f32.scales, from_bf16.scales) << quant_format_name(config.format);
    }
}

TEST(QuantQuantize, RejectsBadArguments) {
    const std::vector<float> w(64, 1.0f);
    QuantConfig config;
    expect_error([&] { quantize(nullptr, 1, 64, config); }, AXL_ERR_INVALID_ARGUMENT, "weight is null");
    expect_error([&] { quantize(w.data(), 1, 48, config); }, AXL_ERR_SHAPE, "not a multiple");
    config.format = QuantFormat::MXFP4;
    expect_error([&] { quantize(w.data(), 1, 64, config); }, AXL_ERR_UNSUPPORTED, "MoE expert");

    const QuantizedTensor q = quantize(w.data(), 1, 64, QuantConfig{});
    std::vector<float> out(64);
    expect_error([&] { dequantize_rows(q, 0, 2, out.data()); }, AXL_ERR_INVALID_ARGUMENT, "outside [0, 1)");
    QuantizedTensor truncated = q;
    truncated.packed.pop_back();
    expect_error([&] { dequantize(truncated, out.data()); }, AXL_ERR_SHAPE, "packed data has 31 entries, expected 32");
    QuantizedTensor no_scales = q;
    no_scales.scales.clear();
    expect_error([&] { dequantize(no_scales, out.data()); }, AXL_ERR_SHAPE, "absmax");
}

}  // namespace
}  // namespace axl
