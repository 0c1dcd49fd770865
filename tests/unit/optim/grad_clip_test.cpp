// Global-norm clipping against torch.nn.utils.clip_grad_norm_ (tests/oracle/optim_oracle.py).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "optim/grad_clip.hpp"

namespace axl {
namespace {

struct Grads {
    std::shared_ptr<HostAllocator> allocator = std::make_shared<HostAllocator>(nullptr);
    std::vector<Tensor> tensors;
    Grads() {
        tensors.push_back(Tensor::empty(allocator, DType::F32, {2}));
        tensors.push_back(Tensor::empty(allocator, DType::F32, {1, 1}));
        tensors[0].f32()[0] = 3.0f;
        tensors[0].f32()[1] = -4.0f;
        tensors[1].f32()[0] = 12.0f;  // global norm 13
    }
    float at(int i) const { return i < 2 ? tensors[0].f32()[i] : tensors[1].f32()[0]; }
};

TEST(Clip, ScalesAllGradientsByMaxNormOverTheGlobalNorm) {
    Grads g;
    EXPECT_DOUBLE_EQ(clip_grad_norm(g.tensors, 1.0), 13.0);  // the norm before clipping
    // torch: 0.230769217, -0.307692289, 0.923076868
    EXPECT_FLOAT_EQ(g.at(0), 0.230769217f);
    EXPECT_FLOAT_EQ(g.at(1), -0.307692289f);
    EXPECT_FLOAT_EQ(g.at(2), 0.923076868f);
}

TEST(Clip, LeavesGradientsBelowTheLimitAlone) {
    Grads g;
    EXPECT_DOUBLE_EQ(clip_grad_norm(g.tensors, 13.5), 13.0);
    EXPECT_EQ(g.at(0), 3.0f);
    EXPECT_EQ(g.at(2), 12.0f);
}

TEST(Clip, ZeroMaxNormOnlyMeasures) {
    Grads g;
    EXPECT_DOUBLE_EQ(clip_grad_norm(g.tensors, 0.0), 13.0);
    EXPECT_EQ(g.at(1), -4.0f);
}

TEST(Clip, NonFiniteNormIsReturnedAndNothingIsScaled) {
    Grads g;
    g.tensors[0].f32()[0] = std::numeric_limits<float>::infinity();
    EXPECT_TRUE(std::isinf(clip_grad_norm(g.tensors, 1.0)));
    EXPECT_EQ(g.at(2), 12.0f);
    g.tensors[0].f32()[0] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_TRUE(std::isnan(clip_grad_norm(g.tensors, 1.0)));
    EXPECT_EQ(g.at(1), -4.0f);
}

TEST(Clip, EmptyListHasNormZero) {
    EXPECT_EQ(clip_grad_norm({}, 1.0), 0.0);
}

}  // namespace
}  // namespace axl
