#include "model/model_quant.hpp"

#include <gtest/gtest.h>

#include "quant_model_support.hpp"

namespace axl {
namespace {

using quant_model_test::expect_error;
using quant_model_test::quant_config;

TEST(QuantModelConfig, AcceptsEachFormatWithItsDefaultAndAllowedBlockSizes) {
    for (int32_t format = AXL_QUANT_NONE; format <= AXL_QUANT_MXFP4; ++format)
        EXPECT_NO_THROW(validate_model_quant_config(quant_config(format))) << format;
    EXPECT_NO_THROW(validate_model_quant_config(quant_config(AXL_QUANT_NF4, 128, true)));
    EXPECT_NO_THROW(validate_model_quant_config(quant_config(AXL_QUANT_INT4_GROUP, 32)));
    EXPECT_NO_THROW(validate_model_quant_config(quant_config(AXL_QUANT_NVFP4, 16)));
}

TEST(QuantModelConfig, RejectsContradictions) {
    expect_error([] { validate_model_quant_config(quant_config(AXL_QUANT_NF4, 48)); },
                 AXL_ERR_INVALID_ARGUMENT, "block size 48");
    expect_error([] { validate_model_quant_config(quant_config(AXL_QUANT_INT4_GROUP, 512)); },
                 AXL_ERR_INVALID_ARGUMENT, "group size 512");
    expect_error([] { validate_model_quant_config(quant_config(AXL_QUANT_NVFP4, 32)); },
                 AXL_ERR_INVALID_ARGUMENT, "fixed at 16");
    expect_error([] { validate_model_quant_config(quant_config(AXL_QUANT_INT8_ROW, 128)); },
                 AXL_ERR_INVALID_ARGUMENT, "one scale per row");
    expect_error([] { validate_model_quant_config(quant_config(AXL_QUANT_INT4_GROUP, 0, true)); },
                 AXL_ERR_INVALID_ARGUMENT, "double quantization");
    expect_error([] { validate_model_quant_config(quant_config(42)); }, AXL_ERR_INVALID_ARGUMENT,
                 "not one of AXL_QUANT_*");
}

TEST(QuantModelConfig, SkipModulesMatchAnyPartOfTheName) {
    ModelQuantConfig config = quant_config(AXL_QUANT_NF4);
    config.skip_modules = {"down_proj", "layers.1."};
    EXPECT_TRUE(keeps_full_precision(config, "model.layers.0.mlp.down_proj"));
    EXPECT_TRUE(keeps_full_precision(config, "model.layers.1.self_attn.q_proj"));
    EXPECT_FALSE(keeps_full_precision(config, "model.layers.0.self_attn.q_proj"));
}

TEST(QuantModelConfig, TensorConfigTakesTheCheckpointDtypeUnlessOneIsSet) {
    ModelQuantConfig config = quant_config(AXL_QUANT_INT4_GROUP, 64);
    EXPECT_EQ(tensor_quant_config(config, DType::BF16).weight_dtype, DType::BF16);
    config.weight_dtype = DType::F16;
    const QuantConfig q = tensor_quant_config(config, DType::BF16);
    EXPECT_EQ(q.weight_dtype, DType::F16);
    EXPECT_EQ(q.format, QuantFormat::Int4Group);
    EXPECT_EQ(q.block_size, 64);
}

}  // namespace
}  // namespace axl
