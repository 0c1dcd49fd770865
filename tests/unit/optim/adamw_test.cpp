// AdamW against torch.optim.AdamW (values from tests/oracle/optim_oracle.py) and against the
// update written out by hand in double precision.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/allocator.hpp"
#include "optim/adamw.hpp"
#include "unit/expect_error.hpp"

namespace axl {
namespace {

// Inputs shared with tests/oracle/optim_oracle.py (ADAMW_*).
const std::vector<float> kParams0 = {1.0f, -2.0f, 0.5f, 0.0f};
const std::vector<float> kParams1 = {0.3f, -0.7f, 0.05f, 4.0f};  // [2, 2]
const std::vector<std::vector<float>> kGrads0 = {
    {0.5f, -0.25f, 1e-3f, 2.0f}, {-0.4f, 0.3f, 1e-3f, -1.0f}, {0.6f, 0.6f, -2e-3f, 0.5f}};
const std::vector<std::vector<float>> kGrads1 = {
    {-1.5f, 0.0f, 0.2f, 3.0f}, {-1.0f, 0.1f, 0.2f, -3.0f}, {0.5f, 0.0f, -0.2f, 1.0f}};
const double kLr = 1e-2;
const AdamWConfig kConfig{0.9, 0.95, 1e-8, 0.1};

// torch 2.x, torch.optim.AdamW(foreach=False, fused=False): parameters after steps 1, 2, 3.
// axl reproduces them bit for bit on x86-64; the tolerance leaves room for FMA contraction.
const float kTorch[3][8] = {
    {0.989000022f, -1.98800004f, 0.489500105f, -0.0100000007f, 0.309700012f, -0.699299991f,
     0.0399499983f, 3.98600006f},
    {0.987428188f, -1.98743832f, 0.479010701f, -0.0126736956f, 0.31914109f, -0.70595032f,
     0.0299100485f, 3.98254061f},
    {0.981760323f, -1.99132288f, 0.479278773f, -0.0161278378f, 0.324421763f, -0.710999072f,
     0.0272602122f, 3.97747588f},
};

struct TwoTensors {
    std::shared_ptr<HostAllocator> allocator = std::make_shared<HostAllocator>(nullptr);
    std::vector<Tensor> params, grads;
    TwoTensors() {
        for (const Shape& shape : {Shape{4}, Shape{2, 2}}) {
            params.push_back(Tensor::empty(allocator, DType::F32, shape));
            grads.push_back(Tensor::empty(allocator, DType::F32, shape));
        }
        std::copy(kParams0.begin(), kParams0.end(), params[0].f32());
        std::copy(kParams1.begin(), kParams1.end(), params[1].f32());
    }
    void set_grads(int step) {
        std::copy(kGrads0[step].begin(), kGrads0[step].end(), grads[0].f32());
        std::copy(kGrads1[step].begin(), kGrads1[step].end(), grads[1].f32());
    }
    float value(int flat) const { return flat < 4 ? params[0].f32()[flat] : params[1].f32()[flat - 4]; }
};

TEST(AdamW, MatchesTorchOverThreeSteps) {
    TwoTensors s;
    AdamW adamw(s.params, kConfig, s.allocator);
    for (int step = 0; step < 3; ++step) {
        s.set_grads(step);
        adamw.step(s.params, s.grads, kLr);
        EXPECT_EQ(adamw.steps(), step + 1);
        for (int i = 0; i < 8; ++i)
            EXPECT_NEAR(s.value(i), kTorch[step][i], 4e-7 * std::fabs(kTorch[step][i]) + 1e-9)
                << "step " << step + 1 << " element " << i;
    }
}

TEST(AdamW, MatchesTheUpdateWrittenOutByHand) {
    TwoTensors s;
    AdamW adamw(s.params, kConfig, s.allocator);
    std::vector<double> p(8), m(8, 0.0), v(8, 0.0);
    for (int i = 0; i < 8; ++i) p[i] = s.value(i);
    const double b1 = kConfig.beta1, b2 = kConfig.beta2, eps = kConfig.eps, wd = kConfig.weight_decay;
    for (int t = 1; t <= 3; ++t) {
        s.set_grads(t - 1);
        adamw.step(s.params, s.grads, kLr);
        for (int i = 0; i < 8; ++i) {
            const double g = i < 4 ? kGrads0[t - 1][i] : kGrads1[t - 1][i - 4];
            p[i] -= kLr * wd * p[i];
            m[i] = b1 * m[i] + (1 - b1) * g;
            v[i] = b2 * v[i] + (1 - b2) * g * g;
            const double m_hat = m[i] / (1 - std::pow(b1, t));
            const double v_hat_sqrt = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, t));
            p[i] -= kLr * m_hat / (v_hat_sqrt + eps);
            EXPECT_NEAR(s.value(i), p[i], 1e-6 * std::fabs(p[i]) + 1e-8) << "step " << t << " element " << i;
            const float m_got = i < 4 ? adamw.exp_avg()[0].f32()[i] : adamw.exp_avg()[1].f32()[i - 4];
            EXPECT_NEAR(m_got, m[i], 1e-6 * std::fabs(m[i]) + 1e-9);
        }
    }
}

TEST(AdamW, FirstStepMovesEachParameterByAboutLr) {
    // With m_hat = g and v_hat = g^2 the first update is lr * sign(g) (eps aside).
    TwoTensors s;
    AdamW adamw(s.params, AdamWConfig{}, s.allocator);
    s.set_grads(0);
    adamw.step(s.params, s.grads, 0.5);
    EXPECT_NEAR(s.value(0), 1.0 - 0.5, 1e-6);
    EXPECT_NEAR(s.value(1), -2.0 + 0.5, 1e-6);
    EXPECT_NEAR(s.value(4), 0.3 + 0.5, 1e-6);
    EXPECT_EQ(s.value(5), -0.7f);  // zero gradient: no move without weight decay
}

TEST(AdamW, WeightDecayCanChangeBetweenSteps) {
    TwoTensors s;
    AdamW adamw(s.params, AdamWConfig{}, s.allocator);
    for (Tensor& g : s.grads) g.fill_zero();
    adamw.config().weight_decay = 0.5;
    adamw.step(s.params, s.grads, 0.1);
    EXPECT_FLOAT_EQ(s.value(7), 4.0f * (1.0f - 0.05f));  // only the decay acts on a zero gradient
}

TEST(AdamW, RejectsBadHyperparametersAndMismatchedTensors) {
    TwoTensors s;
    for (AdamWConfig bad : {AdamWConfig{1.0, 0.999, 1e-8, 0}, AdamWConfig{0.9, -0.1, 1e-8, 0},
                            AdamWConfig{0.9, 0.999, -1.0, 0}, AdamWConfig{0.9, 0.999, 1e-8, -0.1}})
        EXPECT_THROW(AdamW(s.params, bad, s.allocator), Error);
    AdamW adamw(s.params, AdamWConfig{}, s.allocator);
    test::expect_error([&] { adamw.step({s.params[0]}, {s.grads[0]}, 0.1); }, AXL_ERR_INTERNAL,
                            "2 tensors");
}

}  // namespace
}  // namespace axl
