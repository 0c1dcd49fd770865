#include <gtest/gtest.h>

#include <vector>

#include "lora/dropout.hpp"

namespace axl {
namespace {

TEST(LoraDropout, KeepsAboutOneMinusPAndScalesByItsInverse) {
    const int64_t n = 200000;
    const float p = 0.3f;
    std::vector<float> x(n, 2.0f), out(n);
    dropout_forward(out.data(), x.data(), n, p, 42);
    int64_t kept = 0;
    for (float v : out) {
        if (v != 0.0f) {
            EXPECT_EQ(v, 2.0f * (1.0f / (1.0f - p)));
            ++kept;
        }
    }
    // Binomial(n, 0.7): standard deviation ~205; allow 5 of them.
    EXPECT_NEAR(static_cast<double>(kept), 0.7 * n, 1025.0);
}

TEST(LoraDropout, MaskIsAFunctionOfSeedAndIndex) {
    const int64_t n = 1000;
    std::vector<float> x(n, 1.0f), first(n), again(n), other_seed(n);
    dropout_forward(first.data(), x.data(), n, 0.5f, 7);
    dropout_forward(again.data(), x.data(), n, 0.5f, 7);
    dropout_forward(other_seed.data(), x.data(), n, 0.5f, 8);
    EXPECT_EQ(first, again);
    EXPECT_NE(first, other_seed);
    const uint32_t threshold = dropout_threshold(0.5f);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(first[i] != 0.0f, dropout_keep(7, i, threshold));
}

TEST(LoraDropout, BackwardIsTheTransposeOfForward) {
    const int64_t n = 4096;
    std::vector<float> ones(n, 1.0f), mask(n), dx(n, 0.5f);
    dropout_forward(mask.data(), ones.data(), n, 0.25f, 99);
    dropout_backward_accumulate(dx.data(), ones.data(), n, 0.25f, 99);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(dx[i], 0.5f + mask[i]);
}

TEST(LoraDropout, ZeroProbabilityKeepsEverything) {
    EXPECT_EQ(dropout_threshold(0.0f), 0u);
    std::vector<float> x = {1.0f, -2.0f, 3.0f}, out(3);
    dropout_forward(out.data(), x.data(), 3, 0.0f, 1);
    EXPECT_EQ(out, x);
}

TEST(LoraDropout, SeedsDifferPerSiteAndMicroBatch) {
    EXPECT_NE(dropout_seed(0, 0, 0), dropout_seed(0, 0, 1));
    EXPECT_NE(dropout_seed(0, 0, 0), dropout_seed(0, 1, 0));
    EXPECT_NE(dropout_seed(0, 0, 0), dropout_seed(1, 0, 0));
    EXPECT_EQ(dropout_seed(5, 6, 7), dropout_seed(5, 6, 7));
}

}  // namespace
}  // namespace axl
