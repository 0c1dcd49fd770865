// Packed batches (axl_batch.segment_ids): sequences packed into one row must give the logits
// and the loss they give when run on their own. Public API only, no Python.
//
// Metrics: logits max|packed - separate| / max|separate| < 1e-5; losses compared as
// token-weighted sums, |packed*n - sum(loss_i*n_i)| <= 1e-5 * sum(loss_i*n_i); token counts exact.
#include <cmath>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "axl.h"
#include "axl_test_util.hpp"
#include "tiny_checkpoint.hpp"

using namespace axl_test;

namespace {

constexpr double kLogitsTolerance = 1e-5;
constexpr double kLossTolerance = 1e-5;

const TinyCheckpointOptions kTiny{};

struct Segment {
    int32_t row;
    int32_t begin;
    int32_t length;
};

class Packed : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir("packed");
        write_tiny_checkpoint(dir_->path(), kTiny);
    }
    static void TearDownTestSuite() {
        delete dir_;
        dir_ = nullptr;
    }

    void SetUp() override {
        ctx_ = make_context();
        ASSERT_NE(ctx_, nullptr) << axl_last_error();
        axl_model* model = nullptr;
        AXL_ASSERT_OK(axl_model_load(ctx_.get(), dir_->path().c_str(), nullptr, &model));
        model_.reset(model);
        axl_lora_options opts;
        AXL_ASSERT_OK(axl_lora_options_init(&opts, sizeof opts));
        opts.rank = 4;
        opts.init = AXL_LORA_INIT_RANDOM_B;  // B != 0, so the adapter changes the logits
        opts.seed = 11;
        axl_lora* lora = nullptr;
        AXL_ASSERT_OK(axl_lora_create(model, &opts, &lora));
        lora_.reset(lora);

        // Row 0: two sequences (7 + 9); row 1: three (5 + 4 + 7). Labels are the tokens with a
        // few -100s, one of them at a segment's second token.
        for (int32_t i = 0; i < kRows * kSeq; ++i)
            tokens_.push_back(static_cast<int32_t>((static_cast<uint32_t>(i) * 2654435761u >> 7) % kTiny.vocab_size));
        labels_ = tokens_;
        for (int32_t i : {2, 8, 13, kSeq + 6, kSeq + 12}) labels_[i] = AXL_IGNORE_INDEX;
        segments_ = {{0, 0, 7}, {0, 7, 9}, {1, 0, 5}, {1, 5, 4}, {1, 9, 7}};
        segment_ids_.assign(tokens_.size(), 0);
        for (size_t s = 0; s < segments_.size(); ++s)
            for (int32_t t = 0; t < segments_[s].length; ++t)
                segment_ids_[segments_[s].row * kSeq + segments_[s].begin + t] = static_cast<int32_t>(s % 3);
    }

    axl_batch packed_batch() const {
        return make_batch(kRows, kSeq, tokens_.data(), labels_.data(), segment_ids_.data());
    }

    // The segment's tokens and labels as a batch of its own.
    std::vector<int32_t> segment_slice(const std::vector<int32_t>& v, const Segment& s) const {
        const auto begin = v.begin() + s.row * kSeq + s.begin;
        return {begin, begin + s.length};
    }

    std::vector<float> forward(const axl_batch& batch, const axl_lora* lora) {
        std::vector<float> logits(static_cast<size_t>(batch.batch_size) * batch.seq_len * kTiny.vocab_size);
        const axl_status status =
            axl_model_forward(model_.get(), lora, &batch, nullptr, 0, logits.data(), logits.size());
        EXPECT_EQ(status, AXL_OK) << describe_failure(status);
        return logits;
    }

    axl_eval_result evaluate(const axl_batch& batch, const axl_lora* lora) {
        axl_eval_result result;
        axl_eval_result_init(&result, sizeof result);
        const axl_status status = axl_model_evaluate(model_.get(), lora, &batch, &result);
        EXPECT_EQ(status, AXL_OK) << describe_failure(status);
        return result;
    }

    // Sum over segments of loss*tokens and the token count, each segment run on its own.
    std::pair<double, int64_t> separate_loss(const axl_lora* lora) {
        double weighted = 0;
        int64_t tokens = 0;
        for (const Segment& s : segments_) {
            const std::vector<int32_t> t = segment_slice(tokens_, s), l = segment_slice(labels_, s);
            const axl_eval_result r = evaluate(make_batch(1, s.length, t.data(), l.data()), lora);
            weighted += r.loss * static_cast<double>(r.num_tokens);
            tokens += r.num_tokens;
        }
        return {weighted, tokens};
    }

    static constexpr int32_t kRows = 2;
    static constexpr int32_t kSeq = 16;
    static TempDir* dir_;
    ContextPtr ctx_;
    ModelPtr model_;
    LoraPtr lora_;
    std::vector<int32_t> tokens_, labels_, segment_ids_;
    std::vector<Segment> segments_;
};
TempDir* Packed::dir_ = nullptr;

TEST_F(Packed, LogitsMatchSeparateSequences) {
    for (const axl_lora* lora : {static_cast<const axl_lora*>(nullptr), static_cast<const axl_lora*>(lora_.get())}) {
        const std::vector<float> packed = forward(packed_batch(), lora);
        for (const Segment& s : segments_) {
            const std::vector<int32_t> t = segment_slice(tokens_, s);
            const std::vector<float> alone = forward(make_batch(1, s.length, t.data()), lora);
            const auto first = packed.begin() + static_cast<ptrdiff_t>((s.row * kSeq + s.begin) * kTiny.vocab_size);
            const std::vector<float> in_pack(first, first + static_cast<ptrdiff_t>(alone.size()));
            const Deviation d = deviation(in_pack, alone);
            EXPECT_LT(d.relative(), kLogitsTolerance) << (lora ? "with adapter" : "base") << ", segment at row "
                                                      << s.row << " offset " << s.begin << ": "
                                                      << describe(d, in_pack, alone);
        }
    }
}

TEST_F(Packed, EvaluateLossIsTokenWeightedMeanOfSeparateLosses) {
    for (const axl_lora* lora : {static_cast<const axl_lora*>(nullptr), static_cast<const axl_lora*>(lora_.get())}) {
        const auto [weighted, tokens] = separate_loss(lora);
        const axl_eval_result packed = evaluate(packed_batch(), lora);
        EXPECT_EQ(packed.num_tokens, tokens) << "a token predicting the next segment's first token was counted";
        EXPECT_NEAR(packed.loss * static_cast<double>(packed.num_tokens), weighted, kLossTolerance * weighted)
            << (lora ? "with adapter" : "base") << ": packed loss " << packed.loss << ", separate mean "
            << weighted / static_cast<double>(tokens);
    }
}

TEST_F(Packed, TrainerStepLossMatchesSeparateSequences) {
    // The loss a training step reports is computed before its update, so it must equal the
    // separate sequences' loss under the same adapter.
    const auto [weighted, tokens] = separate_loss(lora_.get());
    axl_optimizer* optimizer = nullptr;
    AXL_ASSERT_OK(axl_optimizer_create(lora_.get(), nullptr, &optimizer));
    OptimizerPtr optimizer_owner(optimizer);
    axl_trainer* trainer = nullptr;
    AXL_ASSERT_OK(axl_trainer_create(optimizer, nullptr, &trainer));
    TrainerPtr trainer_owner(trainer);
    const axl_batch batch = packed_batch();
    axl_step_result result;
    AXL_ASSERT_OK(axl_step_result_init(&result, sizeof result));
    AXL_ASSERT_OK(axl_trainer_step(trainer, &batch, &result));
    EXPECT_EQ(result.num_tokens, tokens);
    EXPECT_NEAR(result.loss * static_cast<double>(result.num_tokens), weighted, kLossTolerance * weighted)
        << "packed training loss " << result.loss << ", separate mean " << weighted / static_cast<double>(tokens);
}

TEST_F(Packed, LossMaskMatchesEquivalentLabels) {
    // loss_mask[t] marks token t as a target, which is labels[t] = tokens[t] in the other form.
    std::vector<int32_t> mask(tokens_.size());
    for (size_t i = 0; i < mask.size(); ++i) mask[i] = labels_[i] != AXL_IGNORE_INDEX;
    axl_batch masked = make_batch(kRows, kSeq, tokens_.data(), nullptr, segment_ids_.data());
    masked.loss_mask = mask.data();
    const axl_eval_result by_mask = evaluate(masked, lora_.get());
    const axl_eval_result by_labels = evaluate(packed_batch(), lora_.get());
    EXPECT_EQ(by_mask.num_tokens, by_labels.num_tokens);
    EXPECT_NEAR(by_mask.loss, by_labels.loss, kLossTolerance * by_labels.loss);
}

}  // namespace
