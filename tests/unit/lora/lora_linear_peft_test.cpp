// lora_linear_forward/backward against PEFT itself: data/lora_linear_peft.safetensors holds
// PEFT's outputs and gradients for LoRA and DoRA linears, with and without dropout (PEFT's
// dropout swapped for axl's mask), written by tests/oracle/lora_linear_oracle.py.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>

#include "io/safetensors.hpp"
#include "lora/lora_linear.hpp"
#include "tiny_model.hpp"

namespace axl {
namespace {

std::string fixture_path() {
    return (std::filesystem::path(__FILE__).parent_path() / "data" / "lora_linear_peft.safetensors").string();
}

// |got - want| <= 2e-6 * max|want| + 1e-6 elementwise: f32 against f32, summation orders differ.
void expect_close(const float* got, const Tensor& want, const std::string& what) {
    double scale = 0.0;
    for (int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::fabs(double(want.f32()[i])));
    for (int64_t i = 0; i < want.numel(); ++i)
        EXPECT_NEAR(got[i], want.f32()[i], 2e-6 * scale + 1e-6) << what << "[" << i << "]";
}

TEST(LoraLinearPeft, ForwardAndBackwardMatchPeft) {
    const SafetensorsFile file(fixture_path());
    auto allocator = std::make_shared<HostAllocator>(nullptr);
    auto get = [&](const std::string& name) -> Tensor {
        const TensorInfo* info = file.find(name);
        if (info == nullptr) return Tensor();
        return read_as_f32(*info, info->shape, allocator);
    };
    const int cases = std::stoi(file.metadata().at("cases"));
    ASSERT_GT(cases, 0);
    for (int c = 0; c < cases; ++c) {
        const std::string p = "case" + std::to_string(c) + ".";
        SCOPED_TRACE(p);
        const float scaling = std::stof(file.metadata().at(p + "scaling"));
        const float dropout = std::stof(file.metadata().at(p + "dropout"));
        const uint64_t seed = std::stoull(file.metadata().at(p + "seed"));
        const bool dora = file.metadata().at(p + "dora") == "1";

        const Tensor x = get(p + "x"), dy = get(p + "dy"), y_want = get(p + "y");
        Linear base;
        base.name = "proj";
        base.short_name = "proj";
        base.weight = get(p + "weight");
        base.bias = get(p + "bias");
        base.out_features = static_cast<int>(base.weight.dim(0));
        base.in_features = static_cast<int>(base.weight.dim(1));
        LoraModule lora;
        lora.base = &base;
        lora.a = get(p + "lora_A");
        lora.b = get(p + "lora_B");
        lora.grad_a = Tensor::zeros(allocator, DType::F32, lora.a.shape());
        lora.grad_b = Tensor::zeros(allocator, DType::F32, lora.b.shape());
        if (dora) {
            lora.magnitude = get(p + "magnitude");
            lora.grad_magnitude = Tensor::zeros(allocator, DType::F32, lora.magnitude.shape());
        }
        const int64_t m = x.dim(0);
        const LoraLinearContext ctx{allocator, true, seed};

        std::vector<float> y(m * base.out_features, std::numeric_limits<float>::quiet_NaN());
        LoraLinearSaved saved;
        lora_linear_forward(y.data(), x.f32(), m, base, &lora, scaling, dropout, ctx, &saved);
        expect_close(y.data(), y_want, "y");

        std::vector<float> dx(m * base.in_features, std::numeric_limits<float>::quiet_NaN());
        lora_linear_backward(dx.data(), dy.f32(), x.f32(), m, base, &lora, scaling, dropout, ctx, saved);
        expect_close(dx.data(), get(p + "dx"), "dx");
        expect_close(lora.grad_a.f32(), get(p + "grad_A"), "grad_A");
        expect_close(lora.grad_b.f32(), get(p + "grad_B"), "grad_B");
        if (dora) expect_close(lora.grad_magnitude.f32(), get(p + "grad_magnitude"), "grad_magnitude");
    }
}

}  // namespace
}  // namespace axl
