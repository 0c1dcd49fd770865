// lora_linear_forward/backward against a plain double-precision model of the same math (PEFT's
// LoRA and DoRA formulas), and its gradients against central finite differences of that model.
// DoRA's weight norm is held fixed in the differences, as PEFT detaches it from the graph.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "lora/dropout.hpp"
#include "lora/lora_linear.hpp"
#include "tiny_model.hpp"

namespace axl {
namespace {

using Vec = std::vector<double>;

struct Case {
    const char* name;
    bool bias;
    bool dora;
    bool rslora;
    float dropout;
    DType dtype = DType::F32;
    int64_t out = 4;  // wide enough to cross a column block of the magnitude gradient when large
};

// One linear with its LoRA module and an input, small enough for exhaustive differences.
struct Problem {
    int64_t m = 3, in = 5, out, rank = 2;
    std::shared_ptr<Context> context = test::make_test_context();
    Linear base;
    LoraModule lora;
    float scaling = 0.0f;
    float dropout = 0.0f;
    uint64_t dropout_seed = 1234;
    std::vector<float> x, probe;  // probe: dL/dy of the scalar loss L = sum(y * probe)

    explicit Problem(const Case& c) : out(c.out) {
        const auto& allocator = context->host_allocator();
        base = test::make_linear(allocator, "model.layers.0.self_attn.q_proj", in, out, c.dtype,
                                 c.bias, 11);
        lora.base = &base;
        lora.a = test::random_tensor(allocator, DType::F32, {rank, in}, 21);
        lora.b = test::random_tensor(allocator, DType::F32, {out, rank}, 22);
        // Gradients start non-zero: backward must accumulate into them.
        lora.grad_a = test::random_tensor(allocator, DType::F32, {rank, in}, 23);
        lora.grad_b = test::random_tensor(allocator, DType::F32, {out, rank}, 24);
        if (c.dora) {
            lora.magnitude = test::random_tensor(allocator, DType::F32, {out}, 25);
            for (int64_t o = 0; o < out; ++o) lora.magnitude.f32()[o] += 1.5f;  // positive, ~||W||
            lora.grad_magnitude = test::random_tensor(allocator, DType::F32, {out}, 26);
        }
        const double r = rank, alpha = 3.0;
        scaling = static_cast<float>(c.rslora ? alpha / std::sqrt(r) : alpha / r);
        dropout = c.dropout;
        x = to_vector(test::random_tensor(allocator, DType::F32, {m, in}, 31, 1.0f));
        probe = to_vector(test::random_tensor(allocator, DType::F32, {m, out}, 32, 1.0f));
    }

    LoraLinearContext context_for(bool training) const {
        return LoraLinearContext{context->host_allocator(), training, dropout_seed};
    }

    static std::vector<float> to_vector(const Tensor& t) {
        std::vector<float> v(static_cast<size_t>(t.numel()));
        convert_to_f32(t.data(), t.dtype(), v.data(), v.size());
        return v;
    }
};

Vec widen(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// The double model's parameters; differences perturb these.
struct Params {
    int64_t m, in, out, rank;
    Vec x, w, bias, a, b, magnitude, mask, weight_norm;
};

Params params_of(const Problem& p, bool training) {
    Params q{p.m, p.in, p.out, p.rank};
    q.x = widen(p.x);
    q.w = widen(Problem::to_vector(p.base.weight));
    if (p.base.bias.defined()) q.bias = widen(Problem::to_vector(p.base.bias));
    q.a = widen(Problem::to_vector(p.lora.a));
    q.b = widen(Problem::to_vector(p.lora.b));
    if (p.lora.magnitude.defined()) q.magnitude = widen(Problem::to_vector(p.lora.magnitude));
    // The dropout mask is part of the specification: element i of x kept iff dropout_keep.
    q.mask.assign(q.x.size(), 1.0);
    if (training && p.dropout > 0.0f) {
        const uint32_t threshold = dropout_threshold(p.dropout);
        const double scale = 1.0f / (1.0f - p.dropout);
        for (size_t i = 0; i < q.mask.size(); ++i)
            q.mask[i] = dropout_keep(p.dropout_seed, i, threshold) ? scale : 0.0;
    }
    // ||W + s B A||_row at the unperturbed parameters (detached).
    const int64_t in = p.in, out = p.out, r = p.rank;
    q.weight_norm.assign(out, 0.0);
    for (int64_t o = 0; o < out; ++o) {
        double sum = 0.0;
        for (int64_t j = 0; j < in; ++j) {
            double v = q.w[o * in + j];
            for (int64_t k = 0; k < r; ++k) v += p.scaling * q.b[o * r + k] * q.a[k * in + j];
            sum += v * v;
        }
        q.weight_norm[o] = std::sqrt(sum);
    }
    return q;
}

// y = x W^T + b + s (xd A^T) B^T, or with DoRA
// y = x W^T + b + (g - 1) (xd W^T) + g s (xd A^T) B^T, g = magnitude / weight_norm; xd = x * mask.
Vec reference_forward(const Params& q, double s) {
    const int64_t m = q.m, in = q.in, out = q.out, r = q.rank;
    Vec y(m * out);
    for (int64_t i = 0; i < m; ++i) {
        Vec xd(in), u(r, 0.0);
        for (int64_t j = 0; j < in; ++j) xd[j] = q.x[i * in + j] * q.mask[i * in + j];
        for (int64_t k = 0; k < r; ++k)
            for (int64_t j = 0; j < in; ++j) u[k] += xd[j] * q.a[k * in + j];
        for (int64_t o = 0; o < out; ++o) {
            double base = 0.0, base_dropped = 0.0, lora = 0.0;
            for (int64_t j = 0; j < in; ++j) {
                base += q.x[i * in + j] * q.w[o * in + j];
                base_dropped += xd[j] * q.w[o * in + j];
            }
            for (int64_t k = 0; k < r; ++k) lora += u[k] * q.b[o * r + k];
            double v = base + (q.bias.empty() ? 0.0 : q.bias[o]);
            if (q.magnitude.empty()) {
                v += s * lora;
            } else {
                const double g = q.magnitude[o] / q.weight_norm[o];
                v += (g - 1.0) * base_dropped + g * s * lora;
            }
            y[i * out + o] = v;
        }
    }
    return y;
}

double loss(const Vec& y, const std::vector<float>& probe) {
    double sum = 0.0;
    for (size_t i = 0; i < y.size(); ++i) sum += y[i] * probe[i];
    return sum;
}

// dL/d(values) by central differences of the double model.
Vec finite_differences(Params q, Vec Params::*field, double s, const std::vector<float>& probe) {
    const double h = 1e-4;
    Vec grad((q.*field).size());
    for (size_t j = 0; j < grad.size(); ++j) {
        const double saved = (q.*field)[j];
        (q.*field)[j] = saved + h;
        const double up = loss(reference_forward(q, s), probe);
        (q.*field)[j] = saved - h;
        const double down = loss(reference_forward(q, s), probe);
        (q.*field)[j] = saved;
        grad[j] = (up - down) / (2 * h);
    }
    return grad;
}

// |got - want| <= 1e-4 * max|want| + 1e-5 elementwise (f32 results against a double model).
void expect_close(const std::vector<float>& got, const Vec& want, const char* what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    double scale = 0.0;
    for (double v : want) scale = std::max(scale, std::fabs(v));
    for (size_t i = 0; i < got.size(); ++i)
        EXPECT_NEAR(got[i], want[i], 1e-4 * scale + 1e-5) << what << "[" << i << "]";
}

std::vector<float> minus(const Tensor& after, const std::vector<float>& before) {
    std::vector<float> d = Problem::to_vector(after);
    for (size_t i = 0; i < d.size(); ++i) d[i] -= before[i];
    return d;
}

const float kNaN = std::numeric_limits<float>::quiet_NaN();

const Case kCases[] = {
    {"lora", false, false, false, 0.0f},
    {"lora+bias", true, false, false, 0.0f},
    {"rslora", false, false, true, 0.0f},
    {"dora", false, true, false, 0.0f},
    {"dora+bias+rslora", true, true, true, 0.0f},
    {"lora+dropout", true, false, false, 0.3f},
    {"dora+dropout", false, true, false, 0.3f},
    {"dora+dropout+bias+rslora", true, true, true, 0.45f},
    {"bf16 base+bias", true, false, false, 0.0f, DType::BF16},
    {"f16 base+dora", false, true, false, 0.2f, DType::F16},
    {"wide dora+dropout+bias", true, true, false, 0.2f, DType::F32, 300},
};

TEST(LoraLinear, ForwardAndGradientsMatchTheReferenceModel) {
    for (const Case& c : kCases) {
        SCOPED_TRACE(c.name);
        Problem p(c);
        const Params q = params_of(p, true);
        const LoraLinearContext ctx = p.context_for(true);

        std::vector<float> y(p.m * p.out, kNaN);
        LoraLinearSaved saved;
        lora_linear_forward(y.data(), p.x.data(), p.m, p.base, &p.lora, p.scaling, p.dropout,
                            ctx, &saved);
        expect_close(y, reference_forward(q, p.scaling), "y");

        const std::vector<float> grad_a0 = Problem::to_vector(p.lora.grad_a);
        const std::vector<float> grad_b0 = Problem::to_vector(p.lora.grad_b);
        std::vector<float> grad_m0;
        if (c.dora) grad_m0 = Problem::to_vector(p.lora.grad_magnitude);
        std::vector<float> dx(p.m * p.in, kNaN);
        lora_linear_backward(dx.data(), p.probe.data(), p.x.data(), p.m, p.base, &p.lora,
                             p.scaling, p.dropout, ctx, saved);

        expect_close(dx, finite_differences(q, &Params::x, p.scaling, p.probe), "dx");
        expect_close(minus(p.lora.grad_a, grad_a0), finite_differences(q, &Params::a, p.scaling, p.probe),
                     "grad_a");
        expect_close(minus(p.lora.grad_b, grad_b0), finite_differences(q, &Params::b, p.scaling, p.probe),
                     "grad_b");
        if (c.dora)
            expect_close(minus(p.lora.grad_magnitude, grad_m0),
                         finite_differences(q, &Params::magnitude, p.scaling, p.probe), "grad_magnitude");
    }
}

// Differences of the f32 forward itself: for x and the magnitude the weight norm is constant,
// so they need no model at all.
TEST(LoraLinear, GradientsMatchDifferencesOfTheForwardItself) {
    for (const Case& c : kCases) {
        SCOPED_TRACE(c.name);
        Problem p(c);
        const LoraLinearContext ctx = p.context_for(true);
        auto loss_at = [&](const std::vector<float>& x) {
            std::vector<float> y(p.m * p.out, kNaN);
            lora_linear_forward(y.data(), x.data(), p.m, p.base, &p.lora, p.scaling, p.dropout,
                                ctx, nullptr);
            return loss(widen(y), p.probe);
        };
        std::vector<float> y(p.m * p.out);
        LoraLinearSaved saved;
        lora_linear_forward(y.data(), p.x.data(), p.m, p.base, &p.lora, p.scaling, p.dropout,
                            ctx, &saved);
        std::vector<float> dx(p.m * p.in, kNaN);
        lora_linear_backward(dx.data(), p.probe.data(), p.x.data(), p.m, p.base, &p.lora,
                             p.scaling, p.dropout, ctx, saved);
        const float h = 1e-2f;  // the loss is linear in x: only rounding limits the step
        Vec fd(dx.size());
        for (size_t j = 0; j < dx.size(); ++j) {
            std::vector<float> x = p.x;
            x[j] = p.x[j] + h;
            const double up = loss_at(x);
            x[j] = p.x[j] - h;
            fd[j] = (up - loss_at(x)) / (2.0 * h);
        }
        double scale = 0.0;
        for (double v : fd) scale = std::max(scale, std::fabs(v));
        for (size_t j = 0; j < dx.size(); ++j) EXPECT_NEAR(dx[j], fd[j], 2e-3 * scale) << "dx[" << j << "]";
    }
}

TEST(LoraLinear, BackwardWithoutDxGivesTheSameParameterGradients) {
    Problem with_dx({"dora+dropout", true, true, false, 0.3f});
    Problem without_dx({"dora+dropout", true, true, false, 0.3f});
    for (Problem* p : {&with_dx, &without_dx}) {
        std::vector<float> y(p->m * p->out);
        LoraLinearSaved saved;
        const LoraLinearContext ctx = p->context_for(true);
        lora_linear_forward(y.data(), p->x.data(), p->m, p->base, &p->lora, p->scaling, p->dropout,
                            ctx, &saved);
        std::vector<float> dx(p->m * p->in);
        lora_linear_backward(p == &with_dx ? dx.data() : nullptr, p->probe.data(), p->x.data(),
                             p->m, p->base, &p->lora, p->scaling, p->dropout, ctx, saved);
    }
    EXPECT_EQ(Problem::to_vector(with_dx.lora.grad_a), Problem::to_vector(without_dx.lora.grad_a));
    EXPECT_EQ(Problem::to_vector(with_dx.lora.grad_b), Problem::to_vector(without_dx.lora.grad_b));
    EXPECT_EQ(Problem::to_vector(with_dx.lora.grad_magnitude),
              Problem::to_vector(without_dx.lora.grad_magnitude));
}

TEST(LoraLinear, DropoutIsOffOutsideTraining) {
    Problem p({"dora+dropout+bias", true, true, false, 0.5f});
    std::vector<float> y(p.m * p.out, kNaN);
    lora_linear_forward(y.data(), p.x.data(), p.m, p.base, &p.lora, p.scaling, p.dropout,
                        p.context_for(false), nullptr);
    expect_close(y, reference_forward(params_of(p, false), p.scaling), "y");
}

TEST(LoraLinear, BaseOnlyForwardAndBackward) {
    Problem p({"base", true, false, false, 0.0f, DType::BF16});
    Params q = params_of(p, false);
    q.b.assign(q.b.size(), 0.0);  // no LoRA module: the reference with B = 0
    std::vector<float> y(p.m * p.out, kNaN);
    lora_linear_forward(y.data(), p.x.data(), p.m, p.base, nullptr, p.scaling, 0.3f,
                        p.context_for(true), nullptr);
    expect_close(y, reference_forward(q, p.scaling), "y");
    std::vector<float> dx(p.m * p.in, kNaN);
    lora_linear_backward(dx.data(), p.probe.data(), p.x.data(), p.m, p.base, nullptr,
                         p.scaling, 0.3f, p.context_for(true), LoraLinearSaved{});
    expect_close(dx, finite_differences(q, &Params::x, p.scaling, p.probe), "dx");
}

// PEFT's DoRA starts as the base layer: B = 0 and magnitude = ||W||_row make g = 1.
TEST(LoraLinear, DoraAtInitialisationIsTheBaseLayer) {
    Problem p({"dora", true, true, false, 0.0f});
    p.lora.b.fill_zero();
    const Params q = params_of(p, false);
    for (int64_t o = 0; o < p.out; ++o)
        p.lora.magnitude.f32()[o] = static_cast<float>(q.weight_norm[o]);
    std::vector<float> with_dora(p.m * p.out), base(p.m * p.out);
    lora_linear_forward(with_dora.data(), p.x.data(), p.m, p.base, &p.lora, p.scaling, 0.0f,
                        p.context_for(false), nullptr);
    lora_linear_forward(base.data(), p.x.data(), p.m, p.base, nullptr, p.scaling, 0.0f,
                        p.context_for(false), nullptr);
    for (size_t i = 0; i < base.size(); ++i) EXPECT_NEAR(with_dora[i], base[i], 1e-5f);
}

TEST(LoraLinear, WeightF32SharesAnF32WeightAndConvertsOthers) {
    Problem f32({"f32", false, false, false, 0.0f});
    const Tensor shared = linear_weight_f32(f32.base, f32.context->host_allocator());
    EXPECT_EQ(shared.data(), f32.base.weight.data());
    Problem bf16({"bf16", false, false, false, 0.0f, DType::BF16});
    const Tensor converted = linear_weight_f32(bf16.base, bf16.context->host_allocator());
    EXPECT_NE(converted.data(), bf16.base.weight.data());
    EXPECT_EQ(converted.dtype(), DType::F32);
    EXPECT_EQ(Problem::to_vector(converted), Problem::to_vector(bf16.base.weight));
}

}  // namespace
}  // namespace axl
