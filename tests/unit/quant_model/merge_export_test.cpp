// Merging an adapter into a (quantized) base and exporting bf16 safetensors: the merged weight
// is W + s B A over the dequantized W (DoRA: rescaled rows), and the export loads back as a
// plain model whose logits are the adapted model's up to bf16 rounding.
#include "lora/merge_export.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "io/atomic_file.hpp"
#include "io/safetensors.hpp"
#include "lora/lora_linear.hpp"
#include "quant_model_support.hpp"

namespace axl {
namespace {

using namespace quant_model_test;

LoraConfig adapter_config(bool dora) {
    LoraConfig config;
    config.rank = 4;
    config.alpha = 8.0;
    config.use_dora = dora;
    config.seed = 3;
    config.init = LoraInit::RandomB;  // a nonzero update to merge
    return config;
}

class MergeExportTest : public ::testing::Test {
protected:
    void SetUp() override { axl_test::write_tiny_checkpoint(dir_.path(), tiny_options()); }
    axl_test::TempDir dir_{"merge_export"};
};

TEST_F(MergeExportTest, MergedWeightIsTheDequantizedBasePlusTheScaledUpdate) {
    const auto model = load(dir_.path(), quant_config(AXL_QUANT_NF4));
    const auto adapter = create_lora(model, adapter_config(false));
    const Linear& linear = model->layers[1].v_proj;
    const LoraModule& module = *adapter->find(&linear);
    const Tensor merged = merged_linear_weight(*adapter, linear);
    const Tensor base = linear_weight_f32(linear, model->context->host_allocator());
    const int64_t out = linear.out_features, in = linear.in_features, rank = 4;
    const float scaling = adapter->config.scaling();
    for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) {
            double delta = 0;
            for (int64_t r = 0; r < rank; ++r) delta += double(module.b.f32()[o * rank + r]) * module.a.f32()[r * in + i];
            ASSERT_NEAR(merged.f32()[o * in + i], base.f32()[o * in + i] + scaling * delta, 1e-5) << o << ", " << i;
        }
}

TEST_F(MergeExportTest, ExportLoadsBackWithTheAdaptedLogits) {
    for (bool dora : {false, true}) {
        SCOPED_TRACE(dora ? "DoRA" : "LoRA");
        const auto model = load(dir_.path(), quant_config(AXL_QUANT_NF4, 64, true));
        const auto adapter = create_lora(model, adapter_config(dora));
        const std::filesystem::path out = dir_ / (dora ? "export_dora" : "export_lora");
        merge_and_export(*adapter, out.string());

        const nlohmann::json config = nlohmann::json::parse(read_text_file((out / "config.json").string()));
        EXPECT_FALSE(config.contains("quantization_config"));
        EXPECT_EQ(config["torch_dtype"], "bfloat16");
        Checkpoint checkpoint(out.string());
        for (const std::string& name : checkpoint.names()) EXPECT_EQ(checkpoint.get(name).dtype, DType::BF16) << name;

        const auto exported = load(out);
        for (const Linear* linear : exported->decoder_linears()) EXPECT_EQ(linear->weight.dtype(), DType::BF16);
        const std::vector<float> want = logits_of(*model, adapter.get());
        const std::vector<float> got = logits_of(*exported);
        const std::vector<float> base = logits_of(*model);
        double worst = 0, scale = 0, adapter_effect = 0;
        for (size_t i = 0; i < want.size(); ++i) {
            worst = std::max(worst, double(std::fabs(got[i] - want[i])));
            scale = std::max(scale, double(std::fabs(want[i])));
            adapter_effect = std::max(adapter_effect, double(std::fabs(want[i] - base[i])));
        }
        // bf16 keeps 8 bits of mantissa: a few parts in a thousand after two layers.
        EXPECT_LT(worst, 2e-2 * scale);
        EXPECT_GT(adapter_effect, 10 * worst) << "the export must carry the adapter, not just the base";
    }
}

TEST_F(MergeExportTest, LargeModelsAreShardedWithAnIndex) {
    const auto model = load(dir_.path());
    const auto adapter = create_lora(model, adapter_config(false));
    const std::filesystem::path out = dir_ / "sharded";
    merge_and_export(*adapter, out.string(), 100'000);
    EXPECT_FALSE(std::filesystem::exists(out / "model.safetensors"));
    const nlohmann::json index =
        nlohmann::json::parse(read_text_file((out / "model.safetensors.index.json").string()));
    EXPECT_GT(index["weight_map"].size(), 10u);
    const std::vector<float> want = logits_of(*model, adapter.get());
    const std::vector<float> got = logits_of(*load(out));
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 2e-2 * (1 + std::fabs(want[i])));
}

}  // namespace
}  // namespace axl
