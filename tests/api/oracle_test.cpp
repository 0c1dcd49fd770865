// ctest oracle_axl: axl against PyTorch/transformers/PEFT on the tiny checkpoints of
// tests/oracle (generate.py). Public API only.
//
// Usage: axl_oracle_test --data=DIR --out=DIR   (or env AXL_ORACLE_DIR / AXL_ORACLE_OUT);
// exits with 77 (ctest: skipped) when DIR holds no generated data.
// DIR/<arch>/ holds what make_models.py and peft_reference.py wrote; this test writes
// OUT/<arch>/adapter_trained/ and OUT/<arch>/trained_logits.safetensors for verify_axl_adapter.py.
//
// Metrics and tolerances (never loosened to make a failure pass; a failure is an engine bug):
//  - logits: max|axl - ref| / max|ref| < 1e-5 over the whole [B,T,V] tensor;
//  - losses: |axl - peft| < 1e-4 per step (absolute; the losses are about 5 to 13);
//  - pre-clip gradient norm: |axl - peft| <= 1e-4 * peft;
//  - trained adapter tensors: max|axl - peft| <= 1e-5 per tensor (absolute; values are O(0.1)).
//    Tighter than the 1e-4 first planned: leaving out weight decay moves the result by only
//    ~2.5e-5, and peft_reference.py fails if a tested feature's effect drops below 2x this.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "axl.h"
#include "axl_test_util.hpp"
#include "test_safetensors.hpp"

namespace fs = std::filesystem;
using namespace axl_test;

namespace {

constexpr double kLogitsTolerance = 1e-5;
constexpr double kLossTolerance = 1e-4;
constexpr double kGradNormTolerance = 1e-4;
constexpr int kSkipExitCode = 77;  // tests/oracle.cmake AXL_ORACLE_SKIP_CODE
constexpr double kAdapterTolerance = 1e-5;  // = tests/oracle/common.py ADAPTER_TOLERANCE

fs::path g_data_dir;
fs::path g_out_dir;

std::vector<float> slice(const std::vector<float>& v, size_t begin, size_t count) {
    return {v.begin() + static_cast<ptrdiff_t>(begin), v.begin() + static_cast<ptrdiff_t>(begin + count)};
}

class Oracle : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        arch_ = GetParam();
        arch_dir_ = g_data_dir / arch_;
        if (g_data_dir.empty() || !fs::exists(arch_dir_ / "oracle.json"))
            GTEST_SKIP() << "no oracle data in '" << arch_dir_.string()
                         << "': run tests/oracle/generate.py (ctest oracle_generate) first";
        std::ifstream in(arch_dir_ / "oracle.json");
        oracle_ = nlohmann::json::parse(in);
        const StFile ref = read_safetensors(arch_dir_ / "ref.safetensors");
        ref_tokens_ = to_i32(ref.at("tokens"));
        ref_logits_ = to_f32(ref.at("logits"));
        batch_size_ = static_cast<int32_t>(ref.at("tokens").shape.at(0));
        seq_len_ = static_cast<int32_t>(ref.at("tokens").shape.at(1));
        vocab_ = static_cast<int32_t>(ref.at("logits").shape.at(2));

        ctx_ = make_context();
        ASSERT_NE(ctx_, nullptr) << axl_last_error();
        static bool backend_reported = false;
        int32_t backend = 0;
        if (!backend_reported && axl_context_backend(ctx_.get(), &backend) == AXL_OK) {
            std::cout << "oracle: running on the " << (backend == AXL_BACKEND_CUDA ? "CUDA" : "CPU")
                      << " backend (AXL_TEST_BACKEND=cpu|cuda picks one)\n";
            backend_reported = true;
        }
        axl_model* model = nullptr;
        AXL_ASSERT_OK(axl_model_load(ctx_.get(), arch_dir_.c_str(), nullptr, &model));
        model_.reset(model);
    }

    axl_batch ref_batch() const { return make_batch(batch_size_, seq_len_, ref_tokens_.data()); }

    std::vector<float> forward(const axl_lora* lora) {
        std::vector<float> logits(ref_logits_.size());
        const axl_batch batch = ref_batch();
        const axl_status status =
            axl_model_forward(model_.get(), lora, &batch, nullptr, 0, logits.data(), logits.size());
        EXPECT_EQ(status, AXL_OK) << "axl_model_forward: " << describe_failure(status);
        return logits;
    }

    void expect_logits_match(const std::vector<float>& got, const std::vector<float>& ref, const char* what) {
        const Deviation d = deviation(got, ref);
        std::cout << arch_ << ": " << what << ": max|axl-ref|/max|ref| = " << d.relative() << "\n";
        EXPECT_LT(d.relative(), kLogitsTolerance) << arch_ << ": " << what << ": " << describe(d, got, ref);
    }

    LoraPtr load_adapter(const fs::path& dir) {
        axl_lora* lora = nullptr;
        const axl_status status = axl_lora_load(model_.get(), dir.c_str(), &lora);
        EXPECT_EQ(status, AXL_OK) << "axl_lora_load(" << dir.string() << "): " << describe_failure(status);
        return LoraPtr(lora);
    }

    // Every tensor of `expected_dir`'s adapter is in `got_dir`'s with the same shape and within
    // `tolerance` (absolute, inclusive so 0 means bit-equal), and `got_dir` has no other tensors.
    void expect_adapters_match(const fs::path& got_dir, const fs::path& expected_dir, double tolerance) {
        double worst = 0;
        const StFile got = read_safetensors(got_dir / "adapter_model.safetensors");
        const StFile expected = read_safetensors(expected_dir / "adapter_model.safetensors");
        for (const auto& [name, tensor] : expected) {
            auto it = got.find(name);
            if (it == got.end()) {
                ADD_FAILURE() << arch_ << ": tensor " << name << " missing from " << got_dir.string();
                continue;
            }
            EXPECT_EQ(it->second.shape, tensor.shape) << arch_ << ": shape of " << name;
            if (it->second.shape != tensor.shape) continue;
            const std::vector<float> got_values = to_f32(it->second), expected_values = to_f32(tensor);
            const Deviation d = deviation(got_values, expected_values);
            worst = std::max(worst, d.max_abs);
            EXPECT_LE(d.max_abs, tolerance) << arch_ << ": " << name << ": " << describe(d, got_values, expected_values);
        }
        std::cout << arch_ << ": " << got_dir.filename().string() << " vs " << expected_dir.filename().string()
                  << ": max|axl-peft| over " << expected.size() << " tensors = " << worst << "\n";
        for (const auto& [name, tensor] : got)
            EXPECT_TRUE(expected.count(name)) << arch_ << ": unexpected tensor " << name << " in " << got_dir.string();
    }

    std::string arch_;
    fs::path arch_dir_;
    nlohmann::json oracle_;
    std::vector<int32_t> ref_tokens_;
    std::vector<float> ref_logits_;
    int32_t batch_size_ = 0, seq_len_ = 0, vocab_ = 0;
    ContextPtr ctx_;
    ModelPtr model_;
};

TEST_P(Oracle, ModelInfoMatchesConfig) {
    std::ifstream in(arch_dir_ / "config.json");
    const nlohmann::json config = nlohmann::json::parse(in);
    axl_model_info info{};
    info.struct_size = sizeof info;
    AXL_ASSERT_OK(axl_model_get_info(model_.get(), &info));
    EXPECT_EQ(info.vocab_size, config.at("vocab_size").get<int>());
    EXPECT_EQ(info.hidden_size, config.at("hidden_size").get<int>());
    EXPECT_EQ(info.intermediate_size, config.at("intermediate_size").get<int>());
    EXPECT_EQ(info.num_layers, config.at("num_hidden_layers").get<int>());
    EXPECT_EQ(info.num_heads, config.at("num_attention_heads").get<int>());
    EXPECT_EQ(info.num_kv_heads, config.at("num_key_value_heads").get<int>());
    const int default_head_dim = config.at("hidden_size").get<int>() / config.at("num_attention_heads").get<int>();
    EXPECT_EQ(info.head_dim, config.value("head_dim", default_head_dim));
    EXPECT_EQ(info.max_position_embeddings, config.at("max_position_embeddings").get<int>());
    EXPECT_STREQ(axl_model_architecture(model_.get()), arch_.c_str());
}

TEST_P(Oracle, BaseLogitsMatchTransformers) {
    expect_logits_match(forward(nullptr), ref_logits_, "base logits vs transformers");
}

TEST_P(Oracle, SelectedPositionsMatchTransformers) {
    // Every third position, in reverse order, through the `positions` argument.
    std::vector<int64_t> positions;
    for (int64_t p = int64_t{batch_size_} * seq_len_ - 1; p >= 0; p -= 3) positions.push_back(p);
    std::vector<float> logits(positions.size() * static_cast<size_t>(vocab_)), expected;
    for (int64_t p : positions) {
        const auto row = slice(ref_logits_, static_cast<size_t>(p) * static_cast<size_t>(vocab_), static_cast<size_t>(vocab_));
        expected.insert(expected.end(), row.begin(), row.end());
    }
    const axl_batch batch = ref_batch();
    AXL_ASSERT_OK(axl_model_forward(model_.get(), nullptr, &batch, positions.data(),
                                    static_cast<int64_t>(positions.size()), logits.data(), logits.size()));
    expect_logits_match(logits, expected, "selected positions vs transformers");
}

TEST_P(Oracle, InitAdapterLogitsMatchPeft) {
    LoraPtr lora = load_adapter(arch_dir_ / "adapter_init");
    ASSERT_NE(lora, nullptr);
    const StFile peft = read_safetensors(arch_dir_ / "peft_ref.safetensors");
    expect_logits_match(forward(lora.get()), to_f32(peft.at("init_logits")), "logits with adapter_init vs PEFT");
}

TEST_P(Oracle, AdapterSurvivesLoadAndSave) {
    LoraPtr lora = load_adapter(arch_dir_ / "adapter_init");
    ASSERT_NE(lora, nullptr);
    const fs::path resaved = g_out_dir / arch_ / "adapter_init_resaved";
    fs::remove_all(resaved);
    AXL_ASSERT_OK(axl_lora_save(lora.get(), resaved.c_str()));
    expect_adapters_match(resaved, arch_dir_ / "adapter_init", 0.0);
}

TEST_P(Oracle, TrainingMatchesPeft) {
    const fs::path out = g_out_dir / arch_;
    fs::remove_all(out / "adapter_trained");
    fs::remove(out / "trained_logits.safetensors");
    fs::create_directories(out);

    LoraPtr lora = load_adapter(arch_dir_ / "adapter_init");
    ASSERT_NE(lora, nullptr);

    const nlohmann::json& o = oracle_.at("optimizer");
    axl_optimizer_options opt_opts;
    AXL_ASSERT_OK(axl_optimizer_options_init(&opt_opts, sizeof opt_opts));
    opt_opts.type = AXL_OPTIMIZER_ADAMW;
    opt_opts.lr = o.at("lr").get<double>();
    opt_opts.beta1 = o.at("beta1").get<double>();
    opt_opts.beta2 = o.at("beta2").get<double>();
    opt_opts.eps = o.at("eps").get<double>();
    opt_opts.weight_decay = o.at("weight_decay").get<double>();
    opt_opts.schedule = AXL_SCHEDULE_CONSTANT;
    opt_opts.warmup_steps = 0;
    opt_opts.max_grad_norm = o.at("max_grad_norm").get<double>();
    axl_optimizer* optimizer = nullptr;
    AXL_ASSERT_OK(axl_optimizer_create(lora.get(), &opt_opts, &optimizer));
    OptimizerPtr optimizer_owner(optimizer);

    axl_trainer_options trainer_opts;
    AXL_ASSERT_OK(axl_trainer_options_init(&trainer_opts, sizeof trainer_opts));
    // Both backward paths are covered: recomputation everywhere but mistral.
    trainer_opts.gradient_checkpointing = arch_ == "mistral" ? 0 : 1;
    axl_trainer* trainer = nullptr;
    AXL_ASSERT_OK(axl_trainer_create(optimizer, &trainer_opts, &trainer));
    TrainerPtr trainer_owner(trainer);

    const StFile batches = read_safetensors(arch_dir_ / "train_batches.safetensors");
    const std::vector<int32_t> tokens = to_i32(batches.at("tokens")), labels = to_i32(batches.at("labels"));
    const auto& shape = batches.at("tokens").shape;
    const size_t per_step = static_cast<size_t>(shape.at(1) * shape.at(2));
    const nlohmann::json& steps = oracle_.at("steps");
    ASSERT_EQ(static_cast<int64_t>(steps.size()), shape.at(0));

    for (size_t s = 0; s < steps.size(); ++s) {
        const axl_batch batch = make_batch(static_cast<int32_t>(shape.at(1)), static_cast<int32_t>(shape.at(2)),
                                           tokens.data() + s * per_step, labels.data() + s * per_step);
        axl_step_result result;
        AXL_ASSERT_OK(axl_step_result_init(&result, sizeof result));
        AXL_ASSERT_OK(axl_trainer_step(trainer, &batch, &result));
        const double peft_loss = steps[s].at("loss").get<double>();
        const double peft_norm = steps[s].at("grad_norm").get<double>();
        EXPECT_NEAR(result.loss, peft_loss, kLossTolerance) << arch_ << " step " << s << ": loss";
        EXPECT_NEAR(result.grad_norm, peft_norm, kGradNormTolerance * peft_norm)
            << arch_ << " step " << s << ": gradient norm before clipping";
        EXPECT_EQ(result.num_tokens, steps[s].at("num_tokens").get<int64_t>()) << arch_ << " step " << s;
        EXPECT_EQ(result.updated, 1) << arch_ << " step " << s;
        EXPECT_EQ(result.optimizer_step, static_cast<int64_t>(s + 1)) << arch_ << " step " << s;
        EXPECT_DOUBLE_EQ(result.lr, opt_opts.lr) << arch_ << " step " << s;
        std::cout << arch_ << " step " << s << ": loss axl " << result.loss << " peft " << peft_loss << " (diff "
                  << result.loss - peft_loss << "), grad norm axl " << result.grad_norm << " peft " << peft_norm << "\n";
    }

    AXL_ASSERT_OK(axl_lora_save(lora.get(), (out / "adapter_trained").c_str()));
    expect_adapters_match(out / "adapter_trained", arch_dir_ / "adapter_final", kAdapterTolerance);

    const std::vector<float> logits = forward(lora.get());
    write_safetensors(out / "trained_logits.safetensors",
                      {{"logits", make_f32({batch_size_, seq_len_, vocab_}, logits)}});
}

TEST_P(Oracle, EvaluateMatchesPeftFirstLoss) {
    // The loss of the first training batch under adapter_init is PEFT's step-0 loss.
    LoraPtr lora = load_adapter(arch_dir_ / "adapter_init");
    ASSERT_NE(lora, nullptr);
    const StFile batches = read_safetensors(arch_dir_ / "train_batches.safetensors");
    const std::vector<int32_t> tokens = to_i32(batches.at("tokens")), labels = to_i32(batches.at("labels"));
    const auto& shape = batches.at("tokens").shape;
    const axl_batch batch = make_batch(static_cast<int32_t>(shape.at(1)), static_cast<int32_t>(shape.at(2)),
                                       tokens.data(), labels.data());
    axl_eval_result result;
    AXL_ASSERT_OK(axl_eval_result_init(&result, sizeof result));
    AXL_ASSERT_OK(axl_model_evaluate(model_.get(), lora.get(), &batch, &result));
    EXPECT_NEAR(result.loss, oracle_.at("steps")[0].at("loss").get<double>(), kLossTolerance) << arch_;
    EXPECT_EQ(result.num_tokens, oracle_.at("steps")[0].at("num_tokens").get<int64_t>()) << arch_;
}

INSTANTIATE_TEST_SUITE_P(Arch, Oracle, ::testing::Values("llama", "mistral", "qwen2", "qwen3"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (const char* env = std::getenv("AXL_ORACLE_DIR")) g_data_dir = env;
    if (const char* env = std::getenv("AXL_ORACLE_OUT")) g_out_dir = env;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg.rfind("--data=", 0) == 0) g_data_dir = arg.substr(7);
        else if (arg.rfind("--out=", 0) == 0) g_out_dir = arg.substr(6);
    }
    if (g_out_dir.empty()) g_out_dir = fs::current_path() / "oracle_axl_out";
    if (g_data_dir.empty() || !fs::exists(g_data_dir / "stamp")) {
        // No data at all: say so and let ctest report the test as skipped (not passed).
        std::cout << "axl_oracle_test SKIPPED: no oracle data in '" << g_data_dir.string()
                  << "' (run tests/oracle/generate.py --out DIR, or ctest oracle_generate)\n";
        return kSkipExitCode;
    }
    return RUN_ALL_TESTS();
}
