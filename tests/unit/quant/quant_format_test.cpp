#include "quant/quant_format.hpp"

#include <gtest/gtest.h>

#include "quant_test_support.hpp"

namespace axl {
namespace {

using quant_test::expect_error;

TEST(QuantFormat, EnumValuesMatchThePublicHeader) {
    EXPECT_EQ(static_cast<int>(QuantFormat::NF4), AXL_QUANT_NF4);
    EXPECT_EQ(static_cast<int>(QuantFormat::FP4), AXL_QUANT_FP4);
    EXPECT_EQ(static_cast<int>(QuantFormat::Int8Row), AXL_QUANT_INT8_ROW);
    EXPECT_EQ(static_cast<int>(QuantFormat::Int4Group), AXL_QUANT_INT4_GROUP);
    EXPECT_EQ(static_cast<int>(QuantFormat::Int8Channel), AXL_QUANT_INT8_CHAN);
    EXPECT_EQ(static_cast<int>(QuantFormat::Fp8E4M3), AXL_QUANT_FP8_E4M3);
    EXPECT_EQ(static_cast<int>(QuantFormat::NVFP4), AXL_QUANT_NVFP4);
    EXPECT_EQ(static_cast<int>(QuantFormat::MXFP4), AXL_QUANT_MXFP4);
    QuantFormat format;
    EXPECT_TRUE(quant_format_from_int(AXL_QUANT_INT4_GROUP, &format));
    EXPECT_EQ(format, QuantFormat::Int4Group);
    EXPECT_FALSE(quant_format_from_int(AXL_QUANT_NONE, &format));
    EXPECT_FALSE(quant_format_from_int(9, &format));
}

TEST(QuantFormat, DefaultBlockSizesAreTheReferences) {
    EXPECT_EQ(default_block_size(QuantFormat::NF4), 64);
    EXPECT_EQ(default_block_size(QuantFormat::FP4), 64);
    EXPECT_EQ(default_block_size(QuantFormat::Int4Group), 128);
    EXPECT_EQ(default_block_size(QuantFormat::NVFP4), 16);
    EXPECT_EQ(default_block_size(QuantFormat::MXFP4), 32);
    for (QuantFormat whole_row : {QuantFormat::Int8Row, QuantFormat::Int8Channel, QuantFormat::Fp8E4M3}) {
        EXPECT_TRUE(is_whole_row_format(whole_row));
        EXPECT_EQ(resolve_block_size(whole_row, 0, 300), 300);
    }
    EXPECT_EQ(resolve_block_size(QuantFormat::NF4, 0, 300), 64);
    EXPECT_EQ(resolve_block_size(QuantFormat::NF4, 128, 300), 128);
}

TEST(QuantFormat, AcceptsEveryDefault) {
    for (int value = AXL_QUANT_NF4; value <= AXL_QUANT_MXFP4; ++value) {
        QuantFormat format;
        ASSERT_TRUE(quant_format_from_int(value, &format));
        EXPECT_NO_THROW(validate_quant_shape(format, 8, 256, 0, /*expert_tensor=*/true)) << quant_format_name(format);
    }
}

TEST(QuantFormat, RejectsBlockSizesTheReferenceDoesNotTake) {
    expect_error([] { validate_quant_shape(QuantFormat::NF4, 4, 96, 48, false); }, AXL_ERR_INVALID_ARGUMENT,
                 "block size 48 is not one bitsandbytes takes");
    expect_error([] { validate_quant_shape(QuantFormat::Int4Group, 4, 1024, 512, false); },
                 AXL_ERR_INVALID_ARGUMENT, "group size 512");
    expect_error([] { validate_quant_shape(QuantFormat::NVFP4, 4, 64, 32, false); }, AXL_ERR_INVALID_ARGUMENT,
                 "fixed at 16");
    expect_error([] { validate_quant_shape(QuantFormat::MXFP4, 4, 64, 16, true); }, AXL_ERR_INVALID_ARGUMENT,
                 "fixed at 32");
    expect_error([] { validate_quant_shape(QuantFormat::Int8Row, 4, 64, 32, false); }, AXL_ERR_INVALID_ARGUMENT,
                 "one scale per row");
    expect_error([] { validate_quant_shape(QuantFormat::NF4, 4, 64, -64, false); }, AXL_ERR_INVALID_ARGUMENT,
                 "negative");
    EXPECT_NO_THROW(validate_quant_shape(QuantFormat::Fp8E4M3, 4, 64, 64, false));
}

TEST(QuantFormat, RejectsRowsThatDoNotSplitIntoBlocks) {
    expect_error([] { validate_quant_shape(QuantFormat::NF4, 4, 96, 64, false); }, AXL_ERR_SHAPE,
                 "row length 96 is not a multiple of the block size 64");
    expect_error([] { validate_quant_shape(QuantFormat::Int4Group, 2, 200, 0, false); }, AXL_ERR_SHAPE,
                 "not a multiple of the block size 128");
    expect_error([] { validate_quant_shape(QuantFormat::NVFP4, 2, 40, 0, false); }, AXL_ERR_SHAPE, "[2, 40]");
    expect_error([] { validate_quant_shape(QuantFormat::Fp8E4M3, 0, 64, 0, false); }, AXL_ERR_SHAPE,
                 "must be positive");
}

TEST(QuantFormat, Mxfp4IsOnlyForExpertTensors) {
    expect_error([] { validate_quant_shape(QuantFormat::MXFP4, 4, 64, 0, false); }, AXL_ERR_UNSUPPORTED,
                 "only for MoE expert tensors");
    EXPECT_NO_THROW(validate_quant_shape(QuantFormat::MXFP4, 4, 64, 0, true));
}

TEST(QuantFormat, ConfigOptionsMustFitTheFormat) {
    QuantConfig config;
    config.format = QuantFormat::Int4Group;
    config.double_quant = true;
    expect_error([&] { validate_quant_config(config, 4, 128); }, AXL_ERR_INVALID_ARGUMENT,
                 "double quantization applies to nf4/fp4 only");
    config = QuantConfig{};
    config.weight_dtype = DType::I8;
    expect_error([&] { validate_quant_config(config, 4, 128); }, AXL_ERR_INVALID_ARGUMENT, "weight dtype");
}

}  // namespace
}  // namespace axl
