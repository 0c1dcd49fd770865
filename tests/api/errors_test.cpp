// The C API's error contract (include/axl.h "Conventions"): every fallible entry point checks
// its arguments, returns the documented status, leaves out-parameters untouched, and explains
// the failure through axl_last_error(). Public API only; models come from tiny_checkpoint.hpp.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "axl.h"
#include "axl_test_util.hpp"
#include "tiny_checkpoint.hpp"

namespace fs = std::filesystem;
using namespace axl_test;

namespace {

// Checks `call` fails with `code`, sets a message and the thread's error code.
#define EXPECT_AXL_ERROR(call, code)                                                         \
    do {                                                                                     \
        const axl_status axl_status_ = (call);                                               \
        EXPECT_EQ(axl_status_, code) << #call << ": " << describe_failure(axl_status_);     \
        if (axl_status_ != AXL_OK) {                                                         \
            EXPECT_STRNE(axl_last_error(), "") << #call << " gave no message";               \
            EXPECT_EQ(axl_last_error_code(), axl_status_) << #call;                          \
        }                                                                                    \
    } while (0)

// As EXPECT_AXL_ERROR, and the message mentions `needle` (a file, tensor or module name).
#define EXPECT_AXL_ERROR_NAMING(call, code, needle)                                          \
    do {                                                                                     \
        EXPECT_AXL_ERROR(call, code);                                                        \
        EXPECT_NE(std::string(axl_last_error()).find(needle), std::string::npos)             \
            << #call << ": message does not name '" << (needle) << "': " << axl_last_error(); \
    } while (0)

template <typename T>
T* sentinel() {
    return reinterpret_cast<T*>(uintptr_t{0x5e47});
}

const TinyCheckpointOptions kTiny{};  // vocab 64, hidden 32, 2 layers, 4 heads, 2 kv heads

// A context, the tiny llama, an adapter, an optimizer and a trainer, shared by the tests that
// need valid handles to check their other arguments.
class ApiErrors : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir("errors");
        write_tiny_checkpoint(dir_->path() / "model", kTiny);
    }
    static void TearDownTestSuite() {
        delete dir_;
        dir_ = nullptr;
    }

    void SetUp() override {
        ctx_ = make_context();
        ASSERT_NE(ctx_, nullptr) << axl_last_error();
        axl_model* model = nullptr;
        AXL_ASSERT_OK(axl_model_load(ctx_.get(), model_dir().c_str(), nullptr, &model));
        model_.reset(model);
        axl_lora_options lora_opts;
        AXL_ASSERT_OK(axl_lora_options_init(&lora_opts, sizeof lora_opts));
        lora_opts.rank = 2;
        lora_opts.init = AXL_LORA_INIT_RANDOM_B;
        axl_lora* lora = nullptr;
        AXL_ASSERT_OK(axl_lora_create(model, &lora_opts, &lora));
        lora_.reset(lora);
        axl_optimizer* optimizer = nullptr;
        AXL_ASSERT_OK(axl_optimizer_create(lora, nullptr, &optimizer));
        optimizer_.reset(optimizer);
        axl_trainer* trainer = nullptr;
        AXL_ASSERT_OK(axl_trainer_create(optimizer, nullptr, &trainer));
        trainer_.reset(trainer);
        tokens_.resize(2 * 8);
        for (size_t i = 0; i < tokens_.size(); ++i) tokens_[i] = static_cast<int32_t>((i * 7 + 3) % kTiny.vocab_size);
    }

    static fs::path model_dir() { return dir_->path() / "model"; }
    axl_batch batch() const { return make_batch(2, 8, tokens_.data()); }
    std::vector<float> logits_buffer() const { return std::vector<float>(tokens_.size() * kTiny.vocab_size); }

    static TempDir* dir_;
    ContextPtr ctx_;
    ModelPtr model_;
    LoraPtr lora_;
    OptimizerPtr optimizer_;
    TrainerPtr trainer_;
    std::vector<int32_t> tokens_;
};
TempDir* ApiErrors::dir_ = nullptr;

TEST(ApiBasics, VersionAndStatusStrings) {
    EXPECT_EQ(axl_version(), static_cast<uint32_t>(AXL_VERSION_NUMBER));
    const std::string expected = std::to_string(AXL_VERSION_MAJOR) + "." + std::to_string(AXL_VERSION_MINOR) + "." +
                                 std::to_string(AXL_VERSION_PATCH);
    EXPECT_EQ(std::string(axl_version_string()), expected);
    for (axl_status s = AXL_OK; s <= AXL_ERR_INTERNAL; ++s) {
        ASSERT_NE(axl_status_string(s), nullptr) << s;
        EXPECT_STRNE(axl_status_string(s), "") << s;
    }
    ASSERT_NE(axl_status_string(12345), nullptr);
    ASSERT_NE(axl_status_string(-1), nullptr);
}

TEST(ApiBasics, DestroyingNullIsANoOp) {
    axl_context_destroy(nullptr);
    axl_quant_config_destroy(nullptr);
    axl_model_destroy(nullptr);
    axl_lora_destroy(nullptr);
    axl_optimizer_destroy(nullptr);
    axl_trainer_destroy(nullptr);
}

TEST(ApiBasics, LastErrorOfNullHandleIsAString) {
    EXPECT_NE(axl_context_last_error(nullptr), nullptr);
    EXPECT_NE(axl_quant_config_last_error(nullptr), nullptr);
    EXPECT_NE(axl_model_last_error(nullptr), nullptr);
    EXPECT_NE(axl_lora_last_error(nullptr), nullptr);
    EXPECT_NE(axl_optimizer_last_error(nullptr), nullptr);
    EXPECT_NE(axl_trainer_last_error(nullptr), nullptr);
}

TEST(ApiBasics, InitFunctionsRejectNull) {
    EXPECT_AXL_ERROR(axl_context_options_init(nullptr, sizeof(axl_context_options)), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_model_options_init(nullptr, sizeof(axl_model_options)), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_batch_init(nullptr, sizeof(axl_batch)), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_lora_options_init(nullptr, sizeof(axl_lora_options)), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_optimizer_options_init(nullptr, sizeof(axl_optimizer_options)), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_trainer_options_init(nullptr, sizeof(axl_trainer_options)), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_step_result_init(nullptr, sizeof(axl_step_result)), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_eval_result_init(nullptr, sizeof(axl_eval_result)), AXL_ERR_INVALID_ARGUMENT);
}

TEST(ApiBasics, InitFunctionsRejectStructSizeTooSmallForTheSizeField) {
    axl_context_options c;
    axl_model_options m;
    axl_batch b;
    axl_lora_options l;
    axl_optimizer_options o;
    axl_trainer_options t;
    axl_step_result s;
    axl_eval_result e;
    for (size_t size : {size_t{0}, size_t{3}}) {
        EXPECT_AXL_ERROR(axl_context_options_init(&c, size), AXL_ERR_INVALID_ARGUMENT);
        EXPECT_AXL_ERROR(axl_model_options_init(&m, size), AXL_ERR_INVALID_ARGUMENT);
        EXPECT_AXL_ERROR(axl_batch_init(&b, size), AXL_ERR_INVALID_ARGUMENT);
        EXPECT_AXL_ERROR(axl_lora_options_init(&l, size), AXL_ERR_INVALID_ARGUMENT);
        EXPECT_AXL_ERROR(axl_optimizer_options_init(&o, size), AXL_ERR_INVALID_ARGUMENT);
        EXPECT_AXL_ERROR(axl_trainer_options_init(&t, size), AXL_ERR_INVALID_ARGUMENT);
        EXPECT_AXL_ERROR(axl_step_result_init(&s, size), AXL_ERR_INVALID_ARGUMENT);
        EXPECT_AXL_ERROR(axl_eval_result_init(&e, size), AXL_ERR_INVALID_ARGUMENT);
    }
}

TEST(ApiBasics, InitWritesOnlyTheCallersPrefix) {
    // An older caller's struct ends after `device`: the bytes beyond must stay untouched.
    const size_t prefix = offsetof(axl_context_options, device) + sizeof(int32_t);
    axl_context_options opts;
    std::memset(&opts, 0xAB, sizeof opts);
    AXL_ASSERT_OK(axl_context_options_init(&opts, prefix));
    EXPECT_EQ(opts.struct_size, prefix);
    EXPECT_EQ(opts.backend, AXL_BACKEND_AUTO);
    EXPECT_EQ(opts.device, 0);
    const auto* bytes = reinterpret_cast<const unsigned char*>(&opts);
    for (size_t i = prefix; i < sizeof opts; ++i) ASSERT_EQ(bytes[i], 0xAB) << "byte " << i << " written";

    // ...and such a struct is accepted, the rest defaulted.
    opts.backend = test_backend();
    axl_context* ctx = nullptr;
    AXL_ASSERT_OK(axl_context_create(&opts, &ctx));
    axl_context_destroy(ctx);
}

TEST(ApiBasics, ContextEntryPointsRejectNull) {
    EXPECT_AXL_ERROR(axl_context_create(nullptr, nullptr), AXL_ERR_INVALID_ARGUMENT);
    int32_t backend = -1;
    EXPECT_AXL_ERROR(axl_context_backend(nullptr, &backend), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(backend, -1) << "out-parameter written on failure";
    axl_memory_stats stats{};
    stats.struct_size = sizeof stats;
    EXPECT_AXL_ERROR(axl_context_memory_stats(nullptr, &stats), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_context_reset_peak_memory(nullptr), AXL_ERR_INVALID_ARGUMENT);

    ContextPtr ctx = make_context();
    ASSERT_NE(ctx, nullptr) << axl_last_error();
    EXPECT_AXL_ERROR(axl_context_backend(ctx.get(), nullptr), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_context_memory_stats(ctx.get(), nullptr), AXL_ERR_INVALID_ARGUMENT);
    stats.struct_size = 0;
    EXPECT_AXL_ERROR(axl_context_memory_stats(ctx.get(), &stats), AXL_ERR_INVALID_ARGUMENT);
}

TEST(ApiBasics, ContextCreateRejectsBadStructSize) {
    axl_context_options opts;
    AXL_ASSERT_OK(axl_context_options_init(&opts, sizeof opts));
    opts.struct_size = 0;
    axl_context* ctx = sentinel<axl_context>();
    EXPECT_AXL_ERROR(axl_context_create(&opts, &ctx), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ctx, sentinel<axl_context>()) << "out-parameter written on failure";
}

TEST(ApiBasics, QuantConfigEntryPointsRejectNull) {
    EXPECT_AXL_ERROR(axl_quant_config_create(nullptr), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_quant_config_set_format(nullptr, AXL_QUANT_NONE), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_quant_config_set_block_size(nullptr, 0), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_quant_config_set_double_quant(nullptr, 0), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_quant_config_add_skip_module(nullptr, "lm_head"), AXL_ERR_INVALID_ARGUMENT);
    axl_quant_config* config = nullptr;
    AXL_ASSERT_OK(axl_quant_config_create(&config));
    QuantConfigPtr owner(config);
    EXPECT_AXL_ERROR(axl_quant_config_add_skip_module(config, nullptr), AXL_ERR_INVALID_ARGUMENT);
}

TEST_F(ApiErrors, ModelEntryPointsRejectNull) {
    axl_model* model = sentinel<axl_model>();
    EXPECT_AXL_ERROR(axl_model_load(nullptr, model_dir().c_str(), nullptr, &model), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_model_load(ctx_.get(), nullptr, nullptr, &model), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_model_load(ctx_.get(), model_dir().c_str(), nullptr, nullptr), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(model, sentinel<axl_model>()) << "out-parameter written on failure";

    axl_model_info info{};
    info.struct_size = sizeof info;
    EXPECT_AXL_ERROR(axl_model_get_info(nullptr, &info), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_model_get_info(model_.get(), nullptr), AXL_ERR_INVALID_ARGUMENT);
    info.struct_size = 0;
    EXPECT_AXL_ERROR(axl_model_get_info(model_.get(), &info), AXL_ERR_INVALID_ARGUMENT);
    // Must not crash; what it returns for NULL is not specified.
    (void)axl_model_architecture(nullptr);
}

TEST_F(ApiErrors, ModelLoadRejectsBadOptionsStructSize) {
    axl_model_options opts;
    AXL_ASSERT_OK(axl_model_options_init(&opts, sizeof opts));
    opts.struct_size = 0;
    axl_model* model = sentinel<axl_model>();
    EXPECT_AXL_ERROR(axl_model_load(ctx_.get(), model_dir().c_str(), &opts, &model), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(model, sentinel<axl_model>());
}

TEST_F(ApiErrors, ModelInfoFillsOnlyTheCallersPrefix) {
    const size_t prefix = offsetof(axl_model_info, num_layers) + sizeof(int32_t);
    axl_model_info info;
    std::memset(&info, 0xAB, sizeof info);
    info.struct_size = static_cast<uint32_t>(prefix);
    AXL_ASSERT_OK(axl_model_get_info(model_.get(), &info));
    EXPECT_EQ(info.vocab_size, kTiny.vocab_size);
    EXPECT_EQ(info.hidden_size, kTiny.hidden_size);
    EXPECT_EQ(info.num_layers, kTiny.num_layers);
    const auto* bytes = reinterpret_cast<const unsigned char*>(&info);
    for (size_t i = prefix; i < sizeof info; ++i) ASSERT_EQ(bytes[i], 0xAB) << "byte " << i << " written";
}

TEST_F(ApiErrors, LoraEntryPointsRejectNull) {
    axl_lora* lora = sentinel<axl_lora>();
    EXPECT_AXL_ERROR(axl_lora_create(nullptr, nullptr, &lora), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_lora_create(model_.get(), nullptr, nullptr), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_lora_load(nullptr, model_dir().c_str(), &lora), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_lora_load(model_.get(), nullptr, &lora), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_lora_load(model_.get(), model_dir().c_str(), nullptr), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(lora, sentinel<axl_lora>()) << "out-parameter written on failure";
    EXPECT_AXL_ERROR(axl_lora_save(nullptr, (dir_->path() / "unused").c_str()), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_lora_save(lora_.get(), nullptr), AXL_ERR_INVALID_ARGUMENT);
    int64_t n = -7;
    EXPECT_AXL_ERROR(axl_lora_num_parameters(nullptr, &n), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_lora_num_parameters(lora_.get(), nullptr), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(n, -7);
    EXPECT_AXL_ERROR(axl_lora_copy_from(nullptr, lora_.get()), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_lora_copy_from(lora_.get(), nullptr), AXL_ERR_INVALID_ARGUMENT);
}

TEST_F(ApiErrors, LoraCreateRejectsBadOptions) {
    axl_lora_options opts;
    AXL_ASSERT_OK(axl_lora_options_init(&opts, sizeof opts));
    axl_lora* lora = sentinel<axl_lora>();
    opts.struct_size = 0;
    EXPECT_AXL_ERROR(axl_lora_create(model_.get(), &opts, &lora), AXL_ERR_INVALID_ARGUMENT);
    AXL_ASSERT_OK(axl_lora_options_init(&opts, sizeof opts));
    opts.rank = 0;
    EXPECT_AXL_ERROR(axl_lora_create(model_.get(), &opts, &lora), AXL_ERR_INVALID_ARGUMENT);
    AXL_ASSERT_OK(axl_lora_options_init(&opts, sizeof opts));
    opts.dropout = 1.0;
    EXPECT_AXL_ERROR(axl_lora_create(model_.get(), &opts, &lora), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(lora, sentinel<axl_lora>());
}

TEST_F(ApiErrors, LoraTargetNamingNoModuleIsNotFound) {
    axl_lora_options opts;
    AXL_ASSERT_OK(axl_lora_options_init(&opts, sizeof opts));
    opts.target_modules = "q_proj,nonexistent_proj";
    axl_lora* lora = sentinel<axl_lora>();
    EXPECT_AXL_ERROR_NAMING(axl_lora_create(model_.get(), &opts, &lora), AXL_ERR_NOT_FOUND, "nonexistent_proj");
    EXPECT_EQ(lora, sentinel<axl_lora>());
}

TEST_F(ApiErrors, LoraLoadOfMissingDirectoryIsNotFound) {
    axl_lora* lora = sentinel<axl_lora>();
    const fs::path missing = dir_->path() / "no_such_adapter";
    EXPECT_AXL_ERROR_NAMING(axl_lora_load(model_.get(), missing.c_str(), &lora), AXL_ERR_NOT_FOUND, "no_such_adapter");
    EXPECT_EQ(lora, sentinel<axl_lora>());
}

TEST_F(ApiErrors, LoraLoadOfMalformedConfigIsFormat) {
    TempDir adapter("bad_adapter");
    AXL_ASSERT_OK(axl_lora_save(lora_.get(), adapter.path().c_str()));
    write_text_file(adapter / "adapter_config.json", "{\"r\": 2, \"lora_alpha\": ");
    axl_lora* lora = sentinel<axl_lora>();
    EXPECT_AXL_ERROR_NAMING(axl_lora_load(model_.get(), adapter.path().c_str(), &lora), AXL_ERR_FORMAT,
                            "adapter_config.json");
    EXPECT_EQ(lora, sentinel<axl_lora>());
}

TEST_F(ApiErrors, ForwardAndEvaluateRejectNull) {
    std::vector<float> logits = logits_buffer();
    const axl_batch b = batch();
    EXPECT_AXL_ERROR(axl_model_forward(nullptr, nullptr, &b, nullptr, 0, logits.data(), logits.size()),
                     AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_model_forward(model_.get(), nullptr, nullptr, nullptr, 0, logits.data(), logits.size()),
                     AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_model_forward(model_.get(), nullptr, &b, nullptr, 0, nullptr, logits.size()),
                     AXL_ERR_INVALID_ARGUMENT);
    axl_batch no_tokens = b;
    no_tokens.tokens = nullptr;
    EXPECT_AXL_ERROR(axl_model_forward(model_.get(), nullptr, &no_tokens, nullptr, 0, logits.data(), logits.size()),
                     AXL_ERR_INVALID_ARGUMENT);

    axl_eval_result result;
    AXL_ASSERT_OK(axl_eval_result_init(&result, sizeof result));
    EXPECT_AXL_ERROR(axl_model_evaluate(nullptr, nullptr, &b, &result), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_model_evaluate(model_.get(), nullptr, nullptr, &result), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_model_evaluate(model_.get(), nullptr, &b, nullptr), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_model_evaluate(model_.get(), nullptr, &no_tokens, &result), AXL_ERR_INVALID_ARGUMENT);
    result.struct_size = 0;
    EXPECT_AXL_ERROR(axl_model_evaluate(model_.get(), nullptr, &b, &result), AXL_ERR_INVALID_ARGUMENT);
}

TEST_F(ApiErrors, BatchWithBadStructSizeIsRejected) {
    std::vector<float> logits = logits_buffer();
    axl_batch b = batch();
    b.struct_size = 0;
    EXPECT_AXL_ERROR(axl_model_forward(model_.get(), nullptr, &b, nullptr, 0, logits.data(), logits.size()),
                     AXL_ERR_INVALID_ARGUMENT);
    axl_step_result result;
    AXL_ASSERT_OK(axl_step_result_init(&result, sizeof result));
    EXPECT_AXL_ERROR(axl_trainer_step(trainer_.get(), &b, &result), AXL_ERR_INVALID_ARGUMENT);
}

TEST_F(ApiErrors, TokensOutOfRangeAreInvalid) {
    std::vector<float> logits = logits_buffer();
    axl_eval_result eval;
    AXL_ASSERT_OK(axl_eval_result_init(&eval, sizeof eval));
    axl_step_result step;
    AXL_ASSERT_OK(axl_step_result_init(&step, sizeof step));
    for (int32_t bad : {kTiny.vocab_size, -1, 1 << 30}) {
        SCOPED_TRACE("token " + std::to_string(bad));
        std::vector<int32_t> tokens = tokens_;
        tokens[5] = bad;
        const axl_batch b = make_batch(2, 8, tokens.data());
        EXPECT_AXL_ERROR(axl_model_forward(model_.get(), nullptr, &b, nullptr, 0, logits.data(), logits.size()),
                         AXL_ERR_INVALID_ARGUMENT);
        EXPECT_AXL_ERROR(axl_model_evaluate(model_.get(), lora_.get(), &b, &eval), AXL_ERR_INVALID_ARGUMENT);
        EXPECT_AXL_ERROR(axl_trainer_step(trainer_.get(), &b, &step), AXL_ERR_INVALID_ARGUMENT);
    }
}

TEST_F(ApiErrors, LabelsOutOfRangeAreInvalid) {
    std::vector<int32_t> labels = tokens_;
    labels[3] = kTiny.vocab_size;
    const axl_batch b = make_batch(2, 8, tokens_.data(), labels.data());
    axl_eval_result eval;
    AXL_ASSERT_OK(axl_eval_result_init(&eval, sizeof eval));
    EXPECT_AXL_ERROR(axl_model_evaluate(model_.get(), nullptr, &b, &eval), AXL_ERR_INVALID_ARGUMENT);
    axl_step_result step;
    AXL_ASSERT_OK(axl_step_result_init(&step, sizeof step));
    EXPECT_AXL_ERROR(axl_trainer_step(trainer_.get(), &b, &step), AXL_ERR_INVALID_ARGUMENT);
}

TEST_F(ApiErrors, BadBatchShapesAreInvalid) {
    std::vector<float> logits = logits_buffer();
    axl_eval_result eval;
    AXL_ASSERT_OK(axl_eval_result_init(&eval, sizeof eval));
    for (auto [rows, cols] : {std::pair{0, 8}, std::pair{2, 0}, std::pair{-1, 8}, std::pair{2, -8}}) {
        SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
        const axl_batch b = make_batch(rows, cols, tokens_.data());
        EXPECT_AXL_ERROR(axl_model_forward(model_.get(), nullptr, &b, nullptr, 0, logits.data(), logits.size()),
                         AXL_ERR_INVALID_ARGUMENT);
        EXPECT_AXL_ERROR(axl_model_evaluate(model_.get(), nullptr, &b, &eval), AXL_ERR_INVALID_ARGUMENT);
    }
}

TEST_F(ApiErrors, LabelsAndLossMaskTogetherAreInvalid) {
    std::vector<int32_t> mask(tokens_.size(), 1);
    axl_batch b = make_batch(2, 8, tokens_.data(), tokens_.data());
    b.loss_mask = mask.data();
    axl_eval_result eval;
    AXL_ASSERT_OK(axl_eval_result_init(&eval, sizeof eval));
    EXPECT_AXL_ERROR(axl_model_evaluate(model_.get(), nullptr, &b, &eval), AXL_ERR_INVALID_ARGUMENT);
}

TEST_F(ApiErrors, NonContiguousSegmentsAreInvalid) {
    const std::vector<int32_t> segments = {0, 0, 1, 1, 0, 0, 2, 2, 0, 0, 0, 0, 1, 1, 1, 1};
    const axl_batch b = make_batch(2, 8, tokens_.data(), nullptr, segments.data());
    axl_eval_result eval;
    AXL_ASSERT_OK(axl_eval_result_init(&eval, sizeof eval));
    EXPECT_AXL_ERROR(axl_model_evaluate(model_.get(), nullptr, &b, &eval), AXL_ERR_INVALID_ARGUMENT);
}

TEST_F(ApiErrors, LogitsBufferTooSmallIsShape) {
    std::vector<float> logits = logits_buffer();
    const axl_batch b = batch();
    EXPECT_AXL_ERROR(axl_model_forward(model_.get(), nullptr, &b, nullptr, 0, logits.data(), logits.size() - 1),
                     AXL_ERR_SHAPE);
    const int64_t positions[] = {0, 9};
    EXPECT_AXL_ERROR(axl_model_forward(model_.get(), nullptr, &b, positions, 2, logits.data(),
                                       2 * static_cast<size_t>(kTiny.vocab_size) - 1),
                     AXL_ERR_SHAPE);
    AXL_EXPECT_OK(axl_model_forward(model_.get(), nullptr, &b, positions, 2, logits.data(),
                                    2 * static_cast<size_t>(kTiny.vocab_size)));
}

TEST_F(ApiErrors, PositionsOutOfRangeAreInvalid) {
    std::vector<float> logits = logits_buffer();
    const axl_batch b = batch();
    for (int64_t bad : {int64_t{16}, int64_t{-1}}) {
        SCOPED_TRACE("position " + std::to_string(bad));
        const int64_t positions[] = {0, bad};
        EXPECT_AXL_ERROR(axl_model_forward(model_.get(), nullptr, &b, positions, 2, logits.data(), logits.size()),
                         AXL_ERR_INVALID_ARGUMENT);
    }
    const int64_t positions[] = {0};
    EXPECT_AXL_ERROR(axl_model_forward(model_.get(), nullptr, &b, positions, -1, logits.data(), logits.size()),
                     AXL_ERR_INVALID_ARGUMENT);
}

TEST_F(ApiErrors, OptimizerEntryPointsRejectNull) {
    axl_optimizer* optimizer = sentinel<axl_optimizer>();
    EXPECT_AXL_ERROR(axl_optimizer_create(nullptr, nullptr, &optimizer), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_optimizer_create(lora_.get(), nullptr, nullptr), AXL_ERR_INVALID_ARGUMENT);
    axl_optimizer_options opts;
    AXL_ASSERT_OK(axl_optimizer_options_init(&opts, sizeof opts));
    opts.struct_size = 0;
    EXPECT_AXL_ERROR(axl_optimizer_create(lora_.get(), &opts, &optimizer), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(optimizer, sentinel<axl_optimizer>());

    double value = -3;
    EXPECT_AXL_ERROR(axl_optimizer_set_param(nullptr, AXL_OPTIMIZER_PARAM_LR, 1e-3), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_optimizer_get_param(nullptr, AXL_OPTIMIZER_PARAM_LR, &value), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_optimizer_get_param(optimizer_.get(), AXL_OPTIMIZER_PARAM_LR, nullptr),
                     AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_optimizer_lr_at(nullptr, 0, &value), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_optimizer_lr_at(optimizer_.get(), 0, nullptr), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(value, -3);
}

TEST_F(ApiErrors, OptimizerUnknownParamIsInvalid) {
    double value = -3;
    EXPECT_AXL_ERROR(axl_optimizer_set_param(optimizer_.get(), 9999, 1.0), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_optimizer_get_param(optimizer_.get(), 9999, &value), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_optimizer_get_param(optimizer_.get(), 0, &value), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(value, -3);
}

TEST_F(ApiErrors, TrainerEntryPointsRejectNull) {
    axl_trainer* trainer = sentinel<axl_trainer>();
    EXPECT_AXL_ERROR(axl_trainer_create(nullptr, nullptr, &trainer), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_trainer_create(optimizer_.get(), nullptr, nullptr), AXL_ERR_INVALID_ARGUMENT);
    axl_trainer_options opts;
    AXL_ASSERT_OK(axl_trainer_options_init(&opts, sizeof opts));
    opts.struct_size = 0;
    EXPECT_AXL_ERROR(axl_trainer_create(optimizer_.get(), &opts, &trainer), AXL_ERR_INVALID_ARGUMENT);
    AXL_ASSERT_OK(axl_trainer_options_init(&opts, sizeof opts));
    opts.grad_accum_steps = 0;
    EXPECT_AXL_ERROR(axl_trainer_create(optimizer_.get(), &opts, &trainer), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(trainer, sentinel<axl_trainer>());

    const axl_batch b = batch();
    axl_step_result result;
    AXL_ASSERT_OK(axl_step_result_init(&result, sizeof result));
    EXPECT_AXL_ERROR(axl_trainer_step(nullptr, &b, &result), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_trainer_step(trainer_.get(), nullptr, &result), AXL_ERR_INVALID_ARGUMENT);
    result.struct_size = 0;
    EXPECT_AXL_ERROR(axl_trainer_step(trainer_.get(), &b, &result), AXL_ERR_INVALID_ARGUMENT);
    EXPECT_AXL_ERROR(axl_trainer_discard_gradients(nullptr), AXL_ERR_INVALID_ARGUMENT);
}

// gradient_checkpointing takes the AXL_CHECKPOINT_* values only. LAYERS_OFFLOAD trains exactly
// as LAYERS: on the CPU backend it is the same pass; on CUDA the same kernels see the same data.
TEST_F(ApiErrors, TrainerCheckpointingValues) {
    axl_trainer_options opts;
    AXL_ASSERT_OK(axl_trainer_options_init(&opts, sizeof opts));
    EXPECT_EQ(opts.gradient_checkpointing, AXL_CHECKPOINT_LAYERS);
    for (int32_t bad : {3, -1}) {
        axl_trainer* trainer = sentinel<axl_trainer>();
        opts.gradient_checkpointing = bad;
        EXPECT_AXL_ERROR_NAMING(axl_trainer_create(optimizer_.get(), &opts, &trainer), AXL_ERR_INVALID_ARGUMENT,
                                "gradient_checkpointing");
        EXPECT_EQ(trainer, sentinel<axl_trainer>());
    }

    const axl_batch b = batch();
    const int32_t modes[] = {AXL_CHECKPOINT_NONE, AXL_CHECKPOINT_LAYERS, AXL_CHECKPOINT_LAYERS_OFFLOAD};
    axl_step_result last[3];
    std::vector<float> logits[3];
    for (int i = 0; i < 3; ++i) {
        // A fresh adapter per mode: same options and seed, so the same initial weights.
        axl_lora_options lora_opts;
        AXL_ASSERT_OK(axl_lora_options_init(&lora_opts, sizeof lora_opts));
        lora_opts.rank = 2;
        lora_opts.init = AXL_LORA_INIT_RANDOM_B;
        axl_lora* lora = nullptr;
        AXL_ASSERT_OK(axl_lora_create(model_.get(), &lora_opts, &lora));
        LoraPtr lora_owner(lora);
        axl_optimizer* optimizer = nullptr;
        AXL_ASSERT_OK(axl_optimizer_create(lora, nullptr, &optimizer));
        OptimizerPtr optimizer_owner(optimizer);
        opts.gradient_checkpointing = modes[i];
        axl_trainer* trainer = nullptr;
        AXL_ASSERT_OK(axl_trainer_create(optimizer, &opts, &trainer));
        TrainerPtr trainer_owner(trainer);
        for (int step = 0; step < 2; ++step) {
            AXL_ASSERT_OK(axl_step_result_init(&last[i], sizeof last[i]));
            AXL_ASSERT_OK(axl_trainer_step(trainer, &b, &last[i]));
        }
        logits[i] = logits_buffer();
        AXL_ASSERT_OK(axl_model_forward(model_.get(), lora, &b, nullptr, static_cast<int64_t>(tokens_.size()),
                                        logits[i].data(), logits[i].size()));
    }
    EXPECT_EQ(last[2].loss, last[1].loss);
    EXPECT_EQ(last[2].grad_norm, last[1].grad_norm);
    EXPECT_EQ(0, std::memcmp(logits[2].data(), logits[1].data(), sizeof(float) * logits[1].size()))
        << "the adapter trained with AXL_CHECKPOINT_LAYERS_OFFLOAD differs from AXL_CHECKPOINT_LAYERS";
    EXPECT_NEAR(last[0].loss, last[1].loss, 1e-5 * std::fabs(last[1].loss));
}

// ---- Model files -----------------------------------------------------------------------------

class ModelFiles : public ::testing::Test {
protected:
    void SetUp() override {
        ctx_ = make_context();
        ASSERT_NE(ctx_, nullptr) << axl_last_error();
    }
    // Loads `dir`, expecting failure with `code` and a message naming `needle`.
    void expect_load_error(const fs::path& dir, axl_status code, const std::string& needle) {
        axl_model* model = sentinel<axl_model>();
        EXPECT_AXL_ERROR_NAMING(axl_model_load(ctx_.get(), dir.c_str(), nullptr, &model), code, needle);
        EXPECT_EQ(model, sentinel<axl_model>()) << "out-parameter written on failure";
    }
    ContextPtr ctx_;
    TempDir dir_{"model_files"};
};

TEST_F(ModelFiles, TinyCheckpointLoads) {
    write_tiny_checkpoint(dir_.path());
    axl_model* model = nullptr;
    AXL_ASSERT_OK(axl_model_load(ctx_.get(), dir_.path().c_str(), nullptr, &model));
    axl_model_destroy(model);
}

TEST_F(ModelFiles, MissingDirectoryIsNotFound) {
    expect_load_error(dir_ / "no_such_model", AXL_ERR_NOT_FOUND, "no_such_model");
}

TEST_F(ModelFiles, MissingConfigIsNotFound) {
    write_tiny_checkpoint(dir_.path());
    fs::remove(dir_ / "config.json");
    expect_load_error(dir_.path(), AXL_ERR_NOT_FOUND, "config.json");
}

TEST_F(ModelFiles, MalformedConfigIsFormatNamingTheFile) {
    write_tiny_checkpoint(dir_.path());
    write_text_file(dir_ / "config.json", "{\"model_type\": \"llama\", \"hidden_size\": 32,,}");
    expect_load_error(dir_.path(), AXL_ERR_FORMAT, "config.json");
}

TEST_F(ModelFiles, ConfigFieldOfWrongTypeIsFormat) {
    write_tiny_checkpoint(dir_.path());
    nlohmann::json config = tiny_checkpoint_config(kTiny);
    config["hidden_size"] = "thirty-two";
    write_text_file(dir_ / "config.json", config.dump());
    expect_load_error(dir_.path(), AXL_ERR_FORMAT, "hidden_size");
}

TEST_F(ModelFiles, UnknownArchitectureIsUnsupported) {
    TinyCheckpointOptions o;
    o.model_type = "gpt_bigcode";
    write_tiny_checkpoint(dir_.path(), o);
    expect_load_error(dir_.path(), AXL_ERR_UNSUPPORTED, "gpt_bigcode");
}

TEST_F(ModelFiles, TruncatedWeightsAreFormat) {
    write_tiny_checkpoint(dir_.path());
    const fs::path weights = dir_ / "model.safetensors";
    fs::resize_file(weights, fs::file_size(weights) / 2);
    expect_load_error(dir_.path(), AXL_ERR_FORMAT, "model.safetensors");
}

TEST_F(ModelFiles, TruncatedHeaderIsFormat) {
    write_tiny_checkpoint(dir_.path());
    fs::resize_file(dir_ / "model.safetensors", 5);
    expect_load_error(dir_.path(), AXL_ERR_FORMAT, "model.safetensors");
}

TEST_F(ModelFiles, MissingTensorIsNotFoundNamingIt) {
    TinyCheckpointOptions o;
    o.omit_tensors = {"model.layers.1.mlp.up_proj.weight"};
    write_tiny_checkpoint(dir_.path(), o);
    expect_load_error(dir_.path(), AXL_ERR_NOT_FOUND, "model.layers.1.mlp.up_proj.weight");
}

TEST_F(ModelFiles, TensorOfWrongShapeIsShape) {
    write_tiny_checkpoint(dir_.path());
    StFile weights = read_safetensors(dir_ / "model.safetensors");
    StTensor& t = weights.at("model.layers.0.self_attn.k_proj.weight");
    std::swap(t.shape[0], t.shape[1]);
    write_safetensors(dir_ / "model.safetensors", weights);
    expect_load_error(dir_.path(), AXL_ERR_SHAPE, "model.layers.0.self_attn.k_proj.weight");
}

TEST_F(ModelFiles, ShardedCheckpointLoads) {
    TinyCheckpointOptions o;
    o.num_shards = 3;
    write_tiny_checkpoint(dir_.path(), o);
    axl_model* model = nullptr;
    AXL_ASSERT_OK(axl_model_load(ctx_.get(), dir_.path().c_str(), nullptr, &model));
    axl_model_destroy(model);
}

TEST_F(ModelFiles, MissingShardIsNotFoundNamingIt) {
    TinyCheckpointOptions o;
    o.num_shards = 3;
    write_tiny_checkpoint(dir_.path(), o);
    fs::remove(dir_ / shard_file_name(1, 3));
    expect_load_error(dir_.path(), AXL_ERR_NOT_FOUND, shard_file_name(1, 3));
}

TEST_F(ModelFiles, MalformedIndexIsFormat) {
    TinyCheckpointOptions o;
    o.num_shards = 2;
    write_tiny_checkpoint(dir_.path(), o);
    write_text_file(dir_ / "model.safetensors.index.json", "{\"weight_map\": [1, 2");
    expect_load_error(dir_.path(), AXL_ERR_FORMAT, "model.safetensors.index.json");
}

// ---- Saving ------------------------------------------------------------------------------------

TEST_F(ApiErrors, SaveUnderARegularFileFailsAndCreatesNothing) {
    TempDir parent("save_parent");
    write_text_file(parent / "plain_file", "not a directory");
    const fs::path target = parent / "plain_file" / "adapter";
    const axl_status status = axl_lora_save(lora_.get(), target.c_str());
    EXPECT_NE(status, AXL_OK);
    EXPECT_EQ(status, AXL_ERR_IO) << describe_failure(status);
    EXPECT_STRNE(axl_last_error(), "");
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(parent.path())) names.insert(entry.path().filename());
    EXPECT_EQ(names, std::set<std::string>{"plain_file"});
}

TEST_F(ApiErrors, FailedSaveLeavesNoPartialFiles) {
    // The weights file cannot be renamed into place because a directory holds its name: the
    // save must fail without leaving temporaries or a partial weights file behind.
    TempDir out("save_blocked");
    fs::create_directories(out / "adapter_model.safetensors");
    write_text_file(out / "adapter_model.safetensors" / "keep", "x");
    const axl_status status = axl_lora_save(lora_.get(), out.path().c_str());
    EXPECT_NE(status, AXL_OK) << "save over a directory succeeded";
    EXPECT_STRNE(axl_last_error(), "");
    for (const auto& entry : fs::directory_iterator(out.path())) {
        const std::string name = entry.path().filename();
        if (name == "adapter_model.safetensors") {
            EXPECT_TRUE(entry.is_directory());
            EXPECT_TRUE(fs::exists(entry.path() / "keep"));
        } else if (name == "adapter_config.json") {
            std::ifstream in(entry.path());  // written whole before the weights failed, if at all
            nlohmann::json config;
            EXPECT_NO_THROW(config = nlohmann::json::parse(in)) << "partial adapter_config.json";
        } else {
            ADD_FAILURE() << "failed save left " << name << " behind";
        }
    }
}

TEST_F(ApiErrors, SaveIntoReadOnlyDirectoryFailsAndCreatesNothing) {
    if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
    TempDir out("save_readonly");
    fs::permissions(out.path(), fs::perms::owner_read | fs::perms::owner_exec);
    const axl_status status = axl_lora_save(lora_.get(), out.path().c_str());
    fs::permissions(out.path(), fs::perms::owner_all);
    EXPECT_EQ(status, AXL_ERR_IO) << describe_failure(status);
    EXPECT_TRUE(fs::is_empty(out.path()));
}

// ---- Lifetimes ---------------------------------------------------------------------------------

TEST_F(ApiErrors, ChildrenKeepTheirParentsAlive) {
    // Drop every parent handle first; the trainer must still train and the adapter still save.
    axl_trainer* trainer = trainer_.release();
    axl_lora* lora = lora_.release();
    optimizer_.reset();
    model_.reset();
    ctx_.reset();
    const axl_batch b = batch();
    axl_step_result result;
    AXL_ASSERT_OK(axl_step_result_init(&result, sizeof result));
    AXL_EXPECT_OK(axl_trainer_step(trainer, &b, &result));
    EXPECT_TRUE(std::isfinite(result.loss));
    axl_trainer_destroy(trainer);
    TempDir out("orphan_save");
    AXL_EXPECT_OK(axl_lora_save(lora, (out / "adapter").c_str()));
    axl_lora_destroy(lora);
}

}  // namespace
