// Cross-entropy: the loss against a double-precision log-sum-exp, ignored targets, large
// logits, in-place gradients, and the gradient against finite differences of the loss.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/cpu/ops.hpp"
#include "unit/backend/cpu/op_test_support.hpp"

namespace axl::cpu_test {
namespace {

// Sum over rows with target >= 0 of logsumexp(row) - row[target], in double.
double reference_loss(const std::vector<float>& logits, const std::vector<int32_t>& targets, int64_t vocab) {
    double total = 0.0;
    for (std::size_t r = 0; r < targets.size(); ++r) {
        if (targets[r] < 0) continue;
        const float* row = logits.data() + r * vocab;
        double max_logit = row[0];
        for (int64_t i = 0; i < vocab; ++i) max_logit = std::max(max_logit, static_cast<double>(row[i]));
        double sum = 0.0;
        for (int64_t i = 0; i < vocab; ++i) sum += std::exp(row[i] - max_logit);
        total += max_logit + std::log(sum) - row[targets[r]];
    }
    return total;
}

TEST(CpuCrossEntropy, LossMatchesReferenceAndSkipsIgnoredRows) {
    const int64_t vocab = 1000;
    const std::vector<int32_t> targets = {3, -100, 999, 0, -1, 500};
    const int64_t rows = static_cast<int64_t>(targets.size());
    const std::vector<float> logits = random_values(rows * vocab, 1, 0.01f, 6.0f);
    const double loss = axl::cpu::cross_entropy_forward_backward(nullptr, logits.data(), targets.data(), rows, vocab, 1.0f);
    const double expected = reference_loss(logits, targets, vocab);
    EXPECT_NEAR(loss, expected, 1e-6 * std::fabs(expected));
}

TEST(CpuCrossEntropy, StableForLargeLogits) {
    const int64_t vocab = 4;
    const std::vector<float> logits = {1.0e4f, 1.0e4f - 1.0f, -1.0e4f, 1.0e4f - 2.0f};
    const std::vector<int32_t> targets = {1};
    std::vector<float> dlogits = poisoned(vocab);
    const double loss = axl::cpu::cross_entropy_forward_backward(dlogits.data(), logits.data(), targets.data(), 1, vocab, 1.0f);
    // Shifted by the max, the row is {0, -1, -2e4, -2}.
    const double sum = 1.0 + std::exp(-1.0) + std::exp(-2.0);
    EXPECT_NEAR(loss, std::log(sum) + 1.0, 1e-6);
    expect_close(dlogits, std::vector<double>{1.0 / sum, std::exp(-1.0) / sum - 1.0, 0.0, std::exp(-2.0) / sum},
                 1e-7, 1e-6, "dlogits");
}

TEST(CpuCrossEntropy, GradientMatchesFiniteDifferences) {
    const int64_t vocab = 13;
    const std::vector<int32_t> targets = {2, -100, 12, 0};
    const int64_t rows = static_cast<int64_t>(targets.size());
    const float grad_scale = 0.25f;  // e.g. 1 / number of counted tokens
    std::vector<float> logits = random_values(rows * vocab, 2, 0.1f, 3.0f);
    auto loss = [&] {
        return grad_scale *
               axl::cpu::cross_entropy_forward_backward(nullptr, logits.data(), targets.data(), rows, vocab, grad_scale);
    };
    std::vector<float> dlogits = poisoned(rows * vocab);
    axl::cpu::cross_entropy_forward_backward(dlogits.data(), logits.data(), targets.data(), rows, vocab, grad_scale);
    expect_close(dlogits, numeric_gradient(logits, 1e-2f, loss), 5e-5, 1e-3, "dlogits");
    // The ignored row's gradient is exactly zero, not just small.
    for (int64_t i = 0; i < vocab; ++i) EXPECT_EQ(dlogits[1 * vocab + i], 0.0f);
}

TEST(CpuCrossEntropy, InPlaceGradientEqualsSeparateBuffer) {
    const int64_t vocab = 257;
    const std::vector<int32_t> targets = {5, -100, 256};
    const int64_t rows = static_cast<int64_t>(targets.size());
    std::vector<float> logits = random_values(rows * vocab, 3, 0.1f, 5.0f);
    std::vector<float> dlogits = poisoned(rows * vocab);
    const double separate = axl::cpu::cross_entropy_forward_backward(dlogits.data(), logits.data(), targets.data(), rows,
                                                                     vocab, 0.5f);
    const double in_place = axl::cpu::cross_entropy_forward_backward(logits.data(), logits.data(), targets.data(), rows,
                                                                     vocab, 0.5f);
    EXPECT_EQ(separate, in_place);
    EXPECT_EQ(logits, dlogits);
}

}  // namespace
}  // namespace axl::cpu_test
