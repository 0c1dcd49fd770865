// axl's side of tests/oracle/bnb_model_oracle.py: models that transformers + bitsandbytes
// quantized and saved load in axl with the logits of axl's own quantize-on-load of the plain
// checkpoint and of transformers' quantized model; an adapter trained over the nf4 base is
// merged and exported for the script's verify step.
//
// Usage: axl_bnb_oracle_test --data=DIR --out=DIR  (DIR from bnb_model_oracle.py generate)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "axl.h"
#include "axl_test_util.hpp"
#include "test_safetensors.hpp"

namespace fs = std::filesystem;
using namespace axl_test;

namespace {

constexpr int kSkipExitCode = 77;
fs::path g_data_dir;
fs::path g_out_dir;

struct Variant {
    const char* dir;
    int32_t format;
    bool double_quant;
};
const Variant kVariants[] = {{"bnb_nf4_dq", AXL_QUANT_NF4, true},
                             {"bnb_fp4", AXL_QUANT_FP4, false},
                             {"bnb_int8", AXL_QUANT_INT8_ROW, false}};

class BnbOracle : public ::testing::Test {
protected:
    void SetUp() override {
        ctx_ = make_context();
        ASSERT_TRUE(ctx_);
        reference_ = read_safetensors(g_data_dir / "reference.safetensors");
        const StTensor& t = reference_.at("tokens");
        tokens_ = to_i32(t);
        batch_size_ = static_cast<int32_t>(t.shape[0]);
        seq_len_ = static_cast<int32_t>(t.shape[1]);
    }

    ModelPtr load(const fs::path& dir, const axl_quant_config* quant) {
        axl_model_options opts;
        axl_model_options_init(&opts, sizeof opts);
        opts.quant = quant;
        axl_model* model = nullptr;
        const axl_status status = axl_model_load(ctx_.get(), dir.c_str(), &opts, &model);
        EXPECT_EQ(status, AXL_OK) << dir << ": " << describe_failure(status);
        return ModelPtr(model);
    }

    std::vector<float> logits(axl_model* model, const axl_lora* lora) {
        axl_model_info info;
        info.struct_size = sizeof info;
        axl_model_get_info(model, &info);
        std::vector<float> out(tokens_.size() * static_cast<size_t>(info.vocab_size));
        const axl_batch batch = make_batch(batch_size_, seq_len_, tokens_.data());
        const axl_status status = axl_model_forward(model, lora, &batch, nullptr, 0, out.data(), out.size());
        EXPECT_EQ(status, AXL_OK) << describe_failure(status);
        return out;
    }

    ContextPtr ctx_;
    StFile reference_;
    std::vector<int32_t> tokens_;
    int32_t batch_size_ = 0, seq_len_ = 0;
};

TEST_F(BnbOracle, SavedBitsandbytesModelsGiveTheLogitsOfAxlsOwnQuantizeOnLoad) {
    for (const Variant& v : kVariants) {
        SCOPED_TRACE(v.dir);
        ModelPtr saved = load(g_data_dir / v.dir, nullptr);
        ASSERT_TRUE(saved);
        uint64_t saved_bytes = 0;
        ASSERT_EQ(axl_model_weight_bytes(saved.get(), v.format, &saved_bytes), AXL_OK);
        EXPECT_GT(saved_bytes, 0u) << "the linears load in the checkpoint's format";

        axl_quant_config* raw = nullptr;
        ASSERT_EQ(axl_quant_config_create(&raw), AXL_OK);
        QuantConfigPtr quant(raw);
        AXL_ASSERT_OK(axl_quant_config_set_format(raw, v.format));
        AXL_ASSERT_OK(axl_quant_config_set_double_quant(raw, v.double_quant));
        ModelPtr ours = load(g_data_dir / "plain", raw);
        ASSERT_TRUE(ours);
        uint64_t our_bytes = 0;
        ASSERT_EQ(axl_model_weight_bytes(ours.get(), v.format, &our_bytes), AXL_OK);
        EXPECT_EQ(our_bytes, saved_bytes);

        const std::vector<float> from_bnb = logits(saved.get(), nullptr);
        const std::vector<float> from_axl = logits(ours.get(), nullptr);
        const Deviation d = deviation(from_bnb, from_axl);
        const bool identical =
            std::memcmp(from_bnb.data(), from_axl.data(), from_bnb.size() * sizeof(float)) == 0;
        std::cout << v.dir << ": bitsandbytes checkpoint vs axl quantize-on-load: "
                  << (identical ? "bit-identical logits" : describe(d, from_bnb, from_axl)) << "\n";
        // Double quantization's offset is torch's f32 mean, which may differ from axl's in the
        // last bit (docs/quantization.md): then the logits differ by f32 rounding only.
        EXPECT_LT(d.relative(), 1e-5) << describe(d, from_bnb, from_axl);
        if (!v.double_quant) EXPECT_TRUE(identical) << describe(d, from_bnb, from_axl);

        const std::string key = std::string("logits_") + v.dir;
        if (reference_.count(key) == 0) continue;
        const std::vector<float> transformers = to_f32(reference_.at(key));
        const Deviation t = deviation(from_bnb, transformers);
        std::cout << v.dir << ": axl vs transformers (float32, bitsandbytes' dequantized weights): " << describe(t, from_bnb, transformers) << "\n";
        EXPECT_LT(t.relative(), 1e-5) << describe(t, from_bnb, transformers);
    }
}

TEST_F(BnbOracle, AdapterTrainedOverTheSavedNf4BaseIsExportedMerged) {
    ModelPtr model = load(g_data_dir / "bnb_nf4_dq", nullptr);
    ASSERT_TRUE(model);
    TrainingStack stack = make_training_stack(model.get(), 8, 16, 5e-3);
    ASSERT_TRUE(stack.failure.empty()) << stack.failure;
    const LoraPtr& lora = stack.lora;
    const TrainerPtr& trainer = stack.trainer;
    const axl_batch batch = make_batch(batch_size_, seq_len_, tokens_.data());
    double first = 0, last = 0;
    for (int step = 0; step < 20; ++step) {
        axl_step_result result;
        axl_step_result_init(&result, sizeof result);
        AXL_ASSERT_OK(axl_trainer_step(trainer.get(), &batch, &result));
        (step == 0 ? first : last) = result.loss;
    }
    std::cout << "training over the bitsandbytes nf4 base: loss " << first << " -> " << last << "\n";
    EXPECT_LT(last, 0.8 * first);

    fs::create_directories(g_out_dir);
    AXL_ASSERT_OK(axl_lora_save(lora.get(), (g_out_dir / "adapter").c_str()));
    AXL_ASSERT_OK(axl_lora_merge_and_export(lora.get(), (g_out_dir / "merged").c_str()));
    const std::vector<float> adapted = logits(model.get(), lora.get());
    const std::vector<float> base = logits(model.get(), nullptr);
    const int64_t vocab = static_cast<int64_t>(adapted.size() / tokens_.size());
    const std::vector<int64_t> shape = {batch_size_, seq_len_, vocab};
    StTensor token_tensor = reference_.at("tokens");
    write_safetensors(g_out_dir / "axl_logits.safetensors",
                      {{"tokens", token_tensor}, {"logits", make_f32(shape, adapted)}, {"base_logits", make_f32(shape, base)}},
                      {});

    // The cache of this model maps back to the same logits.
    const fs::path cache = g_out_dir / "bnb_nf4_dq.axlc";
    AXL_ASSERT_OK(axl_model_save_cache(model.get(), cache.c_str()));
    axl_model* cached_raw = nullptr;
    AXL_ASSERT_OK(axl_model_load_cache(ctx_.get(), cache.c_str(), nullptr, &cached_raw));
    ModelPtr cached(cached_raw);
    const std::vector<float> again = logits(cached.get(), nullptr);
    EXPECT_EQ(std::memcmp(again.data(), base.data(), base.size() * sizeof(float)), 0);
}

}  // namespace

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg.rfind("--data=", 0) == 0) g_data_dir = arg.substr(7);
        else if (arg.rfind("--out=", 0) == 0) g_out_dir = arg.substr(6);
    }
    if (g_out_dir.empty()) g_out_dir = fs::current_path() / "bnb_oracle_out";
    if (g_data_dir.empty() || !fs::exists(g_data_dir / "reference.safetensors")) {
        std::cout << "axl_bnb_oracle_test SKIPPED: no data in '" << g_data_dir.string()
                  << "' (run tests/oracle/bnb_model_oracle.py generate --out DIR)\n";
        return kSkipExitCode;
    }
    return RUN_ALL_TESTS();
}
