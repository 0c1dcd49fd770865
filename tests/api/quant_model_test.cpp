// QLoRA through the C API: training over each 4-bit base lowers the loss and the saved adapter
// reproduces its logits; the quantized-model cache round-trips; bad configs, quant states and
// cache files are clear errors that write nothing; merge-and-export loads back.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "axl.h"
#include "axl_test_util.hpp"
#include "tiny_checkpoint.hpp"

namespace axl_test {
namespace {

TinyCheckpointOptions tiny_options() {
    TinyCheckpointOptions o;
    o.vocab_size = 96;
    o.hidden_size = 128;
    o.intermediate_size = 256;
    o.num_layers = 2;
    o.num_heads = 4;
    o.num_kv_heads = 2;
    return o;
}

QuantConfigPtr make_quant(int32_t format, int32_t block_size = 0, bool double_quant = false) {
    axl_quant_config* config = nullptr;
    if (axl_quant_config_create(&config) != AXL_OK) return nullptr;
    QuantConfigPtr owned(config);
    if (axl_quant_config_set_format(config, format) != AXL_OK ||
        axl_quant_config_set_block_size(config, block_size) != AXL_OK ||
        axl_quant_config_set_double_quant(config, double_quant ? 1 : 0) != AXL_OK)
        return nullptr;
    return owned;
}

class QuantModelApi : public ::testing::Test {
protected:
    void SetUp() override {
        write_tiny_checkpoint(dir_.path(), tiny_options());
        ctx_ = make_context();
        ASSERT_TRUE(ctx_);
        for (size_t i = 0; i < tokens_.size(); ++i) tokens_[i] = static_cast<int32_t>((i * 29 + 5) % 96);
    }

    ModelPtr load(const axl_quant_config* quant, const std::filesystem::path& dir) {
        axl_model_options opts;
        axl_model_options_init(&opts, sizeof opts);
        opts.quant = quant;
        axl_model* model = nullptr;
        const axl_status status = axl_model_load(ctx_.get(), dir.c_str(), &opts, &model);
        EXPECT_EQ(status, AXL_OK) << describe_failure(status);
        return ModelPtr(model);
    }
    ModelPtr load(const axl_quant_config* quant) { return load(quant, dir_.path()); }

    axl_batch batch() const { return make_batch(2, 16, tokens_.data()); }

    std::vector<float> logits(axl_model* model, const axl_lora* lora) {
        std::vector<float> out(tokens_.size() * 96);
        const axl_batch b = batch();
        const axl_status status = axl_model_forward(model, lora, &b, nullptr, 0, out.data(), out.size());
        EXPECT_EQ(status, AXL_OK) << describe_failure(status);
        return out;
    }

    TempDir dir_{"quant_model_api"};
    ContextPtr ctx_;
    std::vector<int32_t> tokens_ = std::vector<int32_t>(32);
};

TEST_F(QuantModelApi, TrainingOverEach4BitBaseLowersTheLossAndTheAdapterReproducesItsLogits) {
    for (int32_t format : {AXL_QUANT_NF4, AXL_QUANT_FP4, AXL_QUANT_INT4_GROUP}) {
        SCOPED_TRACE(format);
        QuantConfigPtr quant = make_quant(format, 0, format == AXL_QUANT_NF4);
        ASSERT_TRUE(quant);
        ModelPtr model = load(quant.get());
        ASSERT_TRUE(model);

        TrainingStack stack = make_training_stack(model.get(), 8, 16, 5e-3);
        ASSERT_TRUE(stack.failure.empty()) << stack.failure;
        const LoraPtr& lora = stack.lora;
        const TrainerPtr& trainer = stack.trainer;

        const axl_batch b = batch();
        axl_eval_result before;
        axl_eval_result_init(&before, sizeof before);
        AXL_ASSERT_OK(axl_model_evaluate(model.get(), lora.get(), &b, &before));
        for (int step = 0; step < 20; ++step) {
            axl_step_result result;
            axl_step_result_init(&result, sizeof result);
            AXL_ASSERT_OK(axl_trainer_step(trainer.get(), &b, &result));
            ASSERT_TRUE(std::isfinite(result.loss));
        }
        axl_eval_result after;
        axl_eval_result_init(&after, sizeof after);
        AXL_ASSERT_OK(axl_model_evaluate(model.get(), lora.get(), &b, &after));
        EXPECT_LT(after.loss, 0.8 * before.loss) << "loss " << before.loss << " -> " << after.loss;

        const std::filesystem::path adapter_dir = dir_ / ("adapter_" + std::to_string(format));
        AXL_ASSERT_OK(axl_lora_save(lora.get(), adapter_dir.c_str()));
        const std::vector<float> trained = logits(model.get(), lora.get());
        // A fresh load of the same base with the same config, and the saved adapter on it.
        ModelPtr reloaded = load(quant.get());
        axl_lora* loaded_raw = nullptr;
        AXL_ASSERT_OK(axl_lora_load(reloaded.get(), adapter_dir.c_str(), &loaded_raw));
        LoraPtr loaded(loaded_raw);
        const std::vector<float> again = logits(reloaded.get(), loaded.get());
        ASSERT_EQ(trained.size(), again.size());
        EXPECT_EQ(std::memcmp(trained.data(), again.data(), trained.size() * sizeof(float)), 0);
    }
}

TEST_F(QuantModelApi, WeightBytesPerFormatAddUpAndShrink) {
    ModelPtr plain = load(nullptr);
    QuantConfigPtr quant = make_quant(AXL_QUANT_NF4);
    ModelPtr model = load(quant.get());
    axl_model_info info;
    info.struct_size = sizeof info;
    AXL_ASSERT_OK(axl_model_get_info(model.get(), &info));
    uint64_t sum = 0;
    for (int32_t format = AXL_QUANT_NONE; format <= AXL_QUANT_MXFP4; ++format) {
        uint64_t bytes = 0;
        AXL_ASSERT_OK(axl_model_weight_bytes(model.get(), format, &bytes));
        if (format != AXL_QUANT_NONE && format != AXL_QUANT_NF4) EXPECT_EQ(bytes, 0u) << format;
        sum += bytes;
    }
    EXPECT_EQ(sum, info.weight_bytes);
    uint64_t nf4 = 0, plain_linear = 0;
    AXL_ASSERT_OK(axl_model_weight_bytes(model.get(), AXL_QUANT_NF4, &nf4));
    AXL_ASSERT_OK(axl_model_weight_bytes(plain.get(), AXL_QUANT_NONE, &plain_linear));
    // 2 layers x (q,k,v,o 128x128 + 64x128 x2 ... ) in f32 against 4 bits + an f32 absmax per 64.
    EXPECT_GT(nf4, 0u);
    uint64_t none = 0;
    AXL_ASSERT_OK(axl_model_weight_bytes(model.get(), AXL_QUANT_NONE, &none));
    EXPECT_NEAR(static_cast<double>(plain_linear - none) / static_cast<double>(nf4), 32.0 / 4.5, 0.01);
    uint64_t out = 0;
    EXPECT_EQ(axl_model_weight_bytes(model.get(), 99, &out), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(axl_model_weight_bytes(model.get(), AXL_QUANT_NF4, nullptr), AXL_ERR_INVALID_ARGUMENT);
}

TEST_F(QuantModelApi, CacheRoundTripsAndRejectsCorruption) {
    QuantConfigPtr quant = make_quant(AXL_QUANT_INT4_GROUP, 64);
    ModelPtr model = load(quant.get());
    const std::filesystem::path cache = dir_ / "model.axlc";
    AXL_ASSERT_OK(axl_model_save_cache(model.get(), cache.c_str()));
    axl_model* cached_raw = nullptr;
    AXL_ASSERT_OK(axl_model_load_cache(ctx_.get(), cache.c_str(), nullptr, &cached_raw));
    ModelPtr cached(cached_raw);
    const std::vector<float> want = logits(model.get(), nullptr), got = logits(cached.get(), nullptr);
    EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0);
    uint64_t a = 0, b = 0;
    AXL_ASSERT_OK(axl_model_weight_bytes(model.get(), AXL_QUANT_INT4_GROUP, &a));
    AXL_ASSERT_OK(axl_model_weight_bytes(cached.get(), AXL_QUANT_INT4_GROUP, &b));
    EXPECT_EQ(a, b);
    EXPECT_STREQ(axl_model_architecture(cached.get()), "llama");

    {  // One flipped byte in the middle of the file.
        std::fstream file(cache, std::ios::in | std::ios::out | std::ios::binary);
        file.seekg(0, std::ios::end);
        const std::streamoff size = file.tellg();
        file.seekg(size / 2);
        char byte = 0;
        file.read(&byte, 1);
        byte ^= 0x04;
        file.seekp(size / 2);
        file.write(&byte, 1);
    }
    axl_model* bad = nullptr;
    EXPECT_EQ(axl_model_load_cache(ctx_.get(), cache.c_str(), nullptr, &bad), AXL_ERR_FORMAT);
    EXPECT_EQ(bad, nullptr);
    EXPECT_NE(std::string(axl_last_error()).find("checksum mismatch in tensor"), std::string::npos)
        << axl_last_error();
    EXPECT_NE(std::string(axl_context_last_error(ctx_.get())).find("checksum"), std::string::npos);

    const std::filesystem::path nowhere = dir_ / "no_such_dir" / "model.axlc";
    EXPECT_EQ(axl_model_save_cache(model.get(), nowhere.c_str()), AXL_ERR_IO);
    EXPECT_FALSE(std::filesystem::exists(nowhere.parent_path()));
    EXPECT_EQ(axl_model_save_cache(nullptr, cache.c_str()), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(axl_model_load_cache(ctx_.get(), nullptr, nullptr, &bad), AXL_ERR_INVALID_ARGUMENT);
}

TEST_F(QuantModelApi, ImpossibleConfigsAreClearErrors) {
    axl_quant_config* raw = nullptr;
    AXL_ASSERT_OK(axl_quant_config_create(&raw));
    QuantConfigPtr config(raw);
    AXL_ASSERT_OK(axl_quant_config_set_format(raw, AXL_QUANT_NF4));
    EXPECT_EQ(axl_quant_config_set_block_size(raw, 100), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(axl_quant_config_last_error(raw)).find("block size 100"), std::string::npos);
    AXL_ASSERT_OK(axl_quant_config_set_double_quant(raw, 1));
    EXPECT_EQ(axl_quant_config_set_format(raw, AXL_QUANT_INT4_GROUP), AXL_ERR_INVALID_ARGUMENT)
        << "double quantization set: int4 cannot take it";
    EXPECT_NE(std::string(axl_last_error()).find("double quantization"), std::string::npos);
    AXL_ASSERT_OK(axl_quant_config_set_double_quant(raw, 0));
    AXL_ASSERT_OK(axl_quant_config_set_format(raw, AXL_QUANT_INT4_GROUP));
    EXPECT_EQ(axl_quant_config_set_format(raw, 17), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(axl_quant_config_set_weight_dtype(raw, 9), AXL_ERR_INVALID_ARGUMENT);
    AXL_ASSERT_OK(axl_quant_config_set_weight_dtype(raw, AXL_WEIGHT_DTYPE_BF16));

    // Rows of 128 do not split into groups of 256: the load fails at once naming the weight.
    AXL_ASSERT_OK(axl_quant_config_set_block_size(raw, 256));
    axl_model_options opts;
    axl_model_options_init(&opts, sizeof opts);
    opts.quant = raw;
    axl_model* model = nullptr;
    EXPECT_EQ(axl_model_load(ctx_.get(), dir_.path().c_str(), &opts, &model), AXL_ERR_SHAPE);
    EXPECT_EQ(model, nullptr);
    EXPECT_NE(std::string(axl_last_error()).find("model.layers.0.self_attn.q_proj.weight"), std::string::npos)
        << axl_last_error();

    AXL_ASSERT_OK(axl_quant_config_set_block_size(raw, 0));
    AXL_ASSERT_OK(axl_quant_config_set_format(raw, AXL_QUANT_MXFP4));
    EXPECT_EQ(axl_model_load(ctx_.get(), dir_.path().c_str(), &opts, &model), AXL_ERR_UNSUPPORTED);
}

TEST_F(QuantModelApi, MergeAndExportWritesAModelAxlAndTransformersLoad) {
    QuantConfigPtr quant = make_quant(AXL_QUANT_NF4);
    ModelPtr model = load(quant.get());
    axl_lora_options lora_opts;
    axl_lora_options_init(&lora_opts, sizeof lora_opts);
    lora_opts.init = AXL_LORA_INIT_RANDOM_B;
    axl_lora* lora_raw = nullptr;
    AXL_ASSERT_OK(axl_lora_create(model.get(), &lora_opts, &lora_raw));
    LoraPtr lora(lora_raw);
    const std::filesystem::path out = dir_ / "merged";
    AXL_ASSERT_OK(axl_lora_merge_and_export(lora.get(), out.c_str()));
    EXPECT_TRUE(std::filesystem::exists(out / "config.json"));
    ModelPtr merged = load(nullptr, out);
    const Deviation d = deviation(logits(merged.get(), nullptr), logits(model.get(), lora.get()));
    EXPECT_LT(d.relative(), 2e-2);
    EXPECT_EQ(axl_lora_merge_and_export(nullptr, out.c_str()), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(axl_lora_merge_and_export(lora.get(), nullptr), AXL_ERR_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace axl_test
