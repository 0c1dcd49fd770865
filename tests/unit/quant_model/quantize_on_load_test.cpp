// Quantize-on-load: each decoder linear of a float checkpoint is quantized as quantize() would,
// the rest stays in full precision, and the graph computes with the dequantized weights.
#include <gtest/gtest.h>

#include <cstring>

#include "lora/lora_linear.hpp"
#include "quant/quantize.hpp"
#include "quant_model_support.hpp"

namespace axl {
namespace {

using namespace quant_model_test;

class QuantizeOnLoad : public ::testing::Test {
protected:
    void SetUp() override { axl_test::write_tiny_checkpoint(dir_.path(), tiny_options()); }
    axl_test::TempDir dir_{"quantize_on_load"};
};

TEST_F(QuantizeOnLoad, DecoderLinearsAreQuantizedAsQuantizeDoesAndTheRestStaysFloat) {
    const auto plain = load(dir_.path());
    for (int32_t format : {AXL_QUANT_NF4, AXL_QUANT_FP4, AXL_QUANT_INT4_GROUP, AXL_QUANT_INT8_ROW,
                           AXL_QUANT_INT8_CHAN, AXL_QUANT_FP8_E4M3, AXL_QUANT_NVFP4}) {
        SCOPED_TRACE(format);
        const auto model = load(dir_.path(), quant_config(format, 0, format == AXL_QUANT_NF4));
        EXPECT_FALSE(model->lm_head.is_quantized());
        EXPECT_EQ(model->num_parameters, plain->num_parameters);
        const auto linears = model->decoder_linears();
        const auto plain_linears = plain->decoder_linears();
        for (size_t i = 0; i < linears.size(); ++i) {
            ASSERT_TRUE(linears[i]->is_quantized()) << linears[i]->name;
            EXPECT_FALSE(linears[i]->weight.defined());
            const Tensor& w = plain_linears[i]->weight;
            QuantConfig config;
            config.format = static_cast<QuantFormat>(format);
            config.double_quant = format == AXL_QUANT_NF4;
            config.weight_dtype = DType::F32;
            const QuantizedTensor expected = quantize(w.f32(), w.dim(0), w.dim(1), config);
            EXPECT_EQ(linears[i]->quantized->packed, expected.packed);
            EXPECT_EQ(linears[i]->quantized->scales, expected.scales);
            EXPECT_EQ(linears[i]->quantized->scale_codes, expected.scale_codes);
        }
        uint64_t quantized_bytes = 0;
        for (const Linear* linear : linears) quantized_bytes += quantized_storage_bytes(*linear->quantized);
        EXPECT_EQ(model->weight_bytes_by_format[format], quantized_bytes);
        EXPECT_EQ(model->weight_bytes_by_format[AXL_QUANT_NONE] + quantized_bytes, model->weight_bytes);
        EXPECT_LT(model->weight_bytes, plain->weight_bytes);
    }
}

TEST_F(QuantizeOnLoad, LogitsAreThoseOfTheDequantizedWeights) {
    const auto quantized = load(dir_.path(), quant_config(AXL_QUANT_NF4, 64, true));
    // The same model with every linear replaced by its dequantized f32 weight.
    auto reference = load(dir_.path());
    const auto source = quantized->decoder_linears();
    const auto targets = reference->decoder_linears();
    for (size_t i = 0; i < targets.size(); ++i) {
        Linear& target = const_cast<Linear&>(*targets[i]);
        target.weight = linear_weight_f32(*source[i], reference->context->host_allocator());
    }
    const std::vector<float> got = logits_of(*quantized);
    const std::vector<float> want = logits_of(*reference);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
    EXPECT_NE(logits_of(*load(dir_.path())), got) << "quantization changed nothing?";
}

TEST_F(QuantizeOnLoad, SkipModulesStayInFullPrecision) {
    ModelQuantConfig config = quant_config(AXL_QUANT_INT4_GROUP);
    config.skip_modules = {"down_proj", "layers.1.self_attn"};
    const auto model = load(dir_.path(), config);
    for (const Linear* linear : model->decoder_linears()) {
        const bool skipped = linear->name.find("down_proj") != std::string::npos ||
                             linear->name.find("layers.1.self_attn") != std::string::npos;
        EXPECT_EQ(linear->is_quantized(), !skipped) << linear->name;
        EXPECT_EQ(linear->weight.defined(), skipped) << linear->name;
    }
}

TEST_F(QuantizeOnLoad, ImpossibleConfigsFailBeforeAnyWorkNamingTheTensor) {
    // hidden 128 splits into groups of 256 nowhere: the first weight checked is q_proj.
    expect_error([&] { load(dir_.path(), quant_config(AXL_QUANT_INT4_GROUP, 256)); }, AXL_ERR_SHAPE,
                 "model.layers.0.self_attn.q_proj.weight");
    expect_error([&] { load(dir_.path(), quant_config(AXL_QUANT_NF4, 100)); }, AXL_ERR_INVALID_ARGUMENT,
                 "block size 100");
    expect_error([&] { load(dir_.path(), quant_config(AXL_QUANT_MXFP4)); }, AXL_ERR_UNSUPPORTED,
                 "MoE expert");
    expect_error([&] { load(dir_.path(), quant_config(AXL_QUANT_FP8_E4M3, 0, true)); },
                 AXL_ERR_INVALID_ARGUMENT, "double quantization");
}

TEST_F(QuantizeOnLoad, HostPeakStaysNearTheQuantizedModelPlusOneLayer) {
    auto context = test_context();
    const auto model = load(dir_.path(), quant_config(AXL_QUANT_NF4), context);
    const auto& allocator = context->host_allocator();
    uint64_t largest_f32 = 0;
    for (const Linear* linear : model->decoder_linears())
        largest_f32 = std::max<uint64_t>(largest_f32, 4ull * linear->in_features * linear->out_features);
    // The f32 scratch and the quantizer's working copy of one weight, at most.
    EXPECT_LE(allocator->peak_bytes(), allocator->current_bytes() + 3 * largest_f32);
    EXPECT_EQ(allocator->current_bytes(), model->weight_bytes)
        << "every weight byte is held through the context's allocator";
}

}  // namespace
}  // namespace axl
