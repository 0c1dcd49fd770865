// Adapter creation: target selection, validation, PEFT's initialisation, parameter lists.
#include <gtest/gtest.h>

#include <cmath>

#include "unit/expect_error.hpp"
#include "lora/lora.hpp"
#include "tiny_model.hpp"

namespace axl {
namespace {

using test::expect_error;

LoraConfig config_for(const std::string& targets, LoraInit init = LoraInit::Default) {
    LoraConfig config;
    config.rank = 4;
    config.alpha = 8.0;
    config.init = init;
    parse_target_modules(targets, &config);
    return config;
}

std::vector<float> values(const Tensor& t) { return std::vector<float>(t.f32(), t.f32() + t.numel()); }

double max_abs(const Tensor& t) {
    double m = 0.0;
    for (float v : values(t)) m = std::max(m, std::fabs(static_cast<double>(v)));
    return m;
}

TEST(LoraConfigTest, ScalingIsAlphaOverRankOrOverItsRoot) {
    LoraConfig config;
    config.rank = 8;
    config.alpha = 16.0;
    EXPECT_FLOAT_EQ(config.scaling(), 2.0f);
    config.use_rslora = true;
    config.rank = 4;
    EXPECT_FLOAT_EQ(config.scaling(), 8.0f);
}

TEST(LoraTargets, ParsesAllLinearAndTrimmedLists) {
    LoraConfig config;
    parse_target_modules(" all-linear ", &config);
    EXPECT_TRUE(config.all_linear);
    parse_target_modules(" q_proj , v_proj,,q_proj ", &config);
    EXPECT_FALSE(config.all_linear);
    EXPECT_EQ(config.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
    expect_error([&] { parse_target_modules(" , ", &config); }, AXL_ERR_INVALID_ARGUMENT, "names no module");
    expect_error([&] { parse_target_modules("all-linear,q_proj", &config); }, AXL_ERR_INVALID_ARGUMENT,
                 "all-linear");
}

TEST(LoraCreate, AllLinearAdaptsEveryDecoderLinearInOrder) {
    auto model = test::make_tiny_model();
    auto adapter = create_lora(model, config_for("all-linear"));
    const auto linears = model->decoder_linears();
    ASSERT_EQ(adapter->modules.size(), linears.size());
    for (size_t i = 0; i < linears.size(); ++i) {
        const LoraModule& module = adapter->modules[i];
        EXPECT_EQ(module.base, linears[i]);
        EXPECT_EQ(adapter->find(linears[i]), &module);
        EXPECT_EQ(module.a.shape(), (Shape{4, linears[i]->in_features}));
        EXPECT_EQ(module.b.shape(), (Shape{linears[i]->out_features, 4}));
        EXPECT_EQ(module.grad_a.shape(), module.a.shape());
        EXPECT_EQ(module.grad_b.shape(), module.b.shape());
        EXPECT_FALSE(module.magnitude.defined());
    }
    EXPECT_EQ(adapter->find(&model->lm_head), nullptr);
}

TEST(LoraCreate, NamesSelectByShortNameOrDottedSuffix) {
    auto model = test::make_tiny_model();
    auto adapter = create_lora(model, config_for("v_proj, q_proj"));
    ASSERT_EQ(adapter->modules.size(), 4u);
    EXPECT_EQ(adapter->modules[0].base, &model->layers[0].q_proj);  // model order, not list order
    EXPECT_EQ(adapter->modules[1].base, &model->layers[0].v_proj);
    EXPECT_EQ(adapter->find(&model->layers[1].k_proj), nullptr);

    auto one = create_lora(model, config_for("model.layers.1.mlp.down_proj"));
    ASSERT_EQ(one->modules.size(), 1u);
    EXPECT_EQ(one->modules[0].base, &model->layers[1].down_proj);
    EXPECT_EQ(create_lora(model, config_for("self_attn.o_proj"))->modules.size(), 2u);
}

TEST(LoraCreate, RejectsUnknownTargetsAndBadHyperparameters) {
    auto model = test::make_tiny_model();
    expect_error([&] { create_lora(model, config_for("q_proj,qkv_proj")); }, AXL_ERR_NOT_FOUND, "qkv_proj");
    expect_error([&] { create_lora(model, config_for("lm_head")); }, AXL_ERR_NOT_FOUND, "lm_head");
    LoraConfig config = config_for("all-linear");
    config.rank = 0;
    expect_error([&] { create_lora(model, config); }, AXL_ERR_INVALID_ARGUMENT, "rank");
    config = config_for("all-linear");
    config.alpha = 0.0;
    expect_error([&] { create_lora(model, config); }, AXL_ERR_INVALID_ARGUMENT, "alpha");
    for (double dropout : {1.0, -0.1, std::nan("")}) {
        config = config_for("all-linear");
        config.dropout = dropout;
        expect_error([&] { create_lora(model, config); }, AXL_ERR_INVALID_ARGUMENT, "dropout");
    }
}

TEST(LoraCreate, DefaultInitIsKaimingUniformAAndZeroB) {
    test::TinyModelOptions options;
    options.hidden = 64;
    options.intermediate = 96;
    auto model = test::make_tiny_model(options);
    auto adapter = create_lora(model, config_for("all-linear"));
    for (const LoraModule& module : adapter->modules) {
        const double bound = 1.0 / std::sqrt(static_cast<double>(module.base->in_features));
        EXPECT_LE(max_abs(module.a), bound);
        EXPECT_GT(max_abs(module.a), 0.9 * bound);
        EXPECT_EQ(max_abs(module.b), 0.0);
        // U(-b, b) has variance b^2 / 3.
        double sum_sq = 0.0;
        for (float v : values(module.a)) sum_sq += static_cast<double>(v) * v;
        EXPECT_NEAR(sum_sq / module.a.numel(), bound * bound / 3.0, 0.25 * bound * bound / 3.0);
    }
    EXPECT_NE(values(adapter->modules[0].a), values(adapter->modules[7].a));  // same shape, own stream
}

TEST(LoraCreate, GaussianInitHasStandardDeviationOneOverRank) {
    test::TinyModelOptions options;
    options.hidden = 64;
    auto adapter = create_lora(test::make_tiny_model(options), config_for("all-linear", LoraInit::Gaussian));
    double sum = 0.0, sum_sq = 0.0;
    int64_t n = 0;
    for (const LoraModule& module : adapter->modules) {
        for (float v : values(module.a)) {
            sum += v;
            sum_sq += static_cast<double>(v) * v;
            ++n;
        }
        EXPECT_EQ(max_abs(module.b), 0.0);
    }
    // ~3300 draws: the bounds are about 4.5 standard errors.
    EXPECT_NEAR(sum / n, 0.0, 0.02);
    EXPECT_NEAR(std::sqrt(sum_sq / n), 0.25, 0.015);  // r = 4
}

TEST(LoraCreate, RandomBInitFillsBWithinOneOverRootRank) {
    auto adapter = create_lora(test::make_tiny_model(), config_for("all-linear", LoraInit::RandomB));
    for (const LoraModule& module : adapter->modules) {
        EXPECT_GT(max_abs(module.b), 0.0);
        EXPECT_LE(max_abs(module.b), 0.5);  // 1/sqrt(4)
    }
}

TEST(LoraCreate, InitIsAFunctionOfTheSeed) {
    auto model = test::make_tiny_model();
    LoraConfig config = config_for("all-linear", LoraInit::RandomB);
    config.seed = 5;
    auto first = create_lora(model, config);
    auto again = create_lora(model, config);
    config.seed = 6;
    auto other = create_lora(model, config);
    for (size_t i = 0; i < first->modules.size(); ++i) {
        EXPECT_EQ(values(first->modules[i].a), values(again->modules[i].a));
        EXPECT_EQ(values(first->modules[i].b), values(again->modules[i].b));
        EXPECT_NE(values(first->modules[i].a), values(other->modules[i].a));
    }
}

// ||W + s B A||_row in double, W read from the (possibly 16-bit) base weight.
std::vector<double> weight_norms(const LoraModule& module, float scaling) {
    const Linear& base = *module.base;
    std::vector<float> w(base.weight.numel());
    convert_to_f32(base.weight.data(), base.weight.dtype(), w.data(), w.size());
    const int64_t in = base.in_features, r = module.a.dim(0);
    std::vector<double> norms(base.out_features);
    for (int64_t o = 0; o < base.out_features; ++o) {
        double sum = 0.0;
        for (int64_t j = 0; j < in; ++j) {
            double v = w[o * in + j];
            for (int64_t k = 0; k < r; ++k) v += scaling * module.b.f32()[o * r + k] * module.a.f32()[k * in + j];
            sum += v * v;
        }
        norms[o] = std::sqrt(sum);
    }
    return norms;
}

TEST(LoraCreate, DoraMagnitudeIsTheRowNormOfTheAdaptedWeight) {
    test::TinyModelOptions options;
    options.dtype = DType::BF16;
    auto model = test::make_tiny_model(options);
    for (LoraInit init : {LoraInit::Default, LoraInit::RandomB}) {
        LoraConfig config = config_for("q_proj,down_proj", init);
        config.use_dora = true;
        auto adapter = create_lora(model, config);
        for (const LoraModule& module : adapter->modules) {
            ASSERT_EQ(module.magnitude.shape(), (Shape{module.base->out_features}));
            ASSERT_EQ(module.grad_magnitude.shape(), module.magnitude.shape());
            const std::vector<double> norms = weight_norms(module, config.scaling());
            for (size_t o = 0; o < norms.size(); ++o)
                EXPECT_NEAR(module.magnitude.f32()[o], norms[o], 1e-5 * norms[o]);
        }
    }
}

TEST(LoraCreate, ParametersAndGradientsArePairedInModuleOrder) {
    auto model = test::make_tiny_model();
    LoraConfig config = config_for("q_proj,up_proj", LoraInit::RandomB);
    config.use_dora = true;
    auto adapter = create_lora(model, config);
    const std::vector<Tensor> params = adapter->parameters(), grads = adapter->gradients();
    ASSERT_EQ(params.size(), 3 * adapter->modules.size());
    ASSERT_EQ(grads.size(), params.size());
    int64_t total = 0;
    for (size_t i = 0; i < params.size(); ++i) {
        EXPECT_EQ(params[i].shape(), grads[i].shape());
        total += params[i].numel();
    }
    EXPECT_EQ(params[0].data(), adapter->modules[0].a.data());
    EXPECT_EQ(params[2].data(), adapter->modules[0].magnitude.data());
    EXPECT_EQ(grads[4].data(), adapter->modules[1].grad_b.data());
    EXPECT_EQ(adapter->num_parameters(), total);
    // q_proj: 4*16 + 16*4 + 16; up_proj: 4*16 + 24*4 + 24; two layers.
    EXPECT_EQ(total, 2 * ((64 + 64 + 16) + (64 + 96 + 24)));

    for (const Tensor& g : grads) g.f32()[0] = 1.0f;
    adapter->zero_gradients();
    for (const Tensor& g : grads) EXPECT_EQ(max_abs(g), 0.0);
}

}  // namespace
}  // namespace axl
