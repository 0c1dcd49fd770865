#include "lora/lora_linear.hpp"

#include <algorithm>

#include "backend/cpu/ops.hpp"
#include "core/error.hpp"
#include "lora/dora.hpp"
#include "lora/dropout.hpp"
#include "quant/quantize.hpp"

namespace axl {

namespace {

// Below this many elements a loop is cheaper than waking the thread team.
constexpr int64_t kParallelElements = 32768;

Tensor as_f32(const Tensor& tensor, const std::shared_ptr<HostAllocator>& allocator,
              const char* what) {
    if (tensor.dtype() == DType::F32) return tensor;
    Tensor copy = Tensor::empty(allocator, DType::F32, tensor.shape(), what);
    convert_to_f32(tensor.data(), tensor.dtype(), copy.f32(), static_cast<size_t>(tensor.numel()));
    return copy;
}

bool dropout_active(const LoraModule* lora, float dropout, const LoraLinearContext& ctx) {
    return lora != nullptr && ctx.training && dropout > 0.0f;
}

struct LoraShapes {
    int64_t in, out, rank;
};

LoraShapes shapes_of(const Linear& base, const LoraModule* lora) {
    LoraShapes s{base.in_features, base.out_features, 0};
    if (lora != nullptr) {
        s.rank = lora->a.dim(0);
        require(lora->a.dim(1) == s.in && lora->b.dim(0) == s.out && lora->b.dim(1) == s.rank,
                AXL_ERR_INTERNAL, "LoRA module of ", base.name, " has shapes A ",
                shape_string(lora->a.shape()), " B ", shape_string(lora->b.shape()));
    }
    return s;
}

}  // namespace

Tensor linear_weight_f32(const Linear& linear, const std::shared_ptr<HostAllocator>& allocator) {
    if (!linear.is_quantized()) return as_f32(linear.weight, allocator, "f32 copy of a base weight");
    const QuantizedTensor& q = *linear.quantized;
    Tensor weight = Tensor::empty(allocator, DType::F32, {q.rows, q.cols}, "dequantized base weight");
    dequantize(q, weight.f32());
    return weight;
}

void lora_linear_forward(float* y, const float* x, int64_t m, const Linear& base,
                         const LoraModule* lora, float scaling, float dropout,
                         const LoraLinearContext& ctx, LoraLinearSaved* saved) {
    const LoraShapes s = shapes_of(base, lora);
    const Tensor weight = linear_weight_f32(base, ctx.allocator);
    const bool use_dora = lora != nullptr && lora->magnitude.defined();
    const bool use_dropout = dropout_active(lora, dropout, ctx);

    cpu::matmul(y, x, weight.f32(), m, s.out, s.in, false, true, 1.0f, 0.0f);
    if (lora == nullptr) {
        if (base.bias.defined())
            cpu::add_bias_forward(y, as_f32(base.bias, ctx.allocator, "f32 bias").f32(), m, s.out);
        return;
    }

    LoraLinearSaved local;
    LoraLinearSaved& keep = saved != nullptr ? *saved : local;
    keep = LoraLinearSaved{};

    const float* lora_x = x;
    if (use_dropout) {
        keep.dropped_x = Tensor::empty(ctx.allocator, DType::F32, {m, s.in}, "LoRA dropout(x)");
        dropout_forward(keep.dropped_x.f32(), x, m * s.in, dropout, ctx.dropout_seed);
        lora_x = keep.dropped_x.f32();
    }
    keep.u = Tensor::empty(ctx.allocator, DType::F32, {m, s.rank}, "LoRA x A^T");
    cpu::matmul(keep.u.f32(), lora_x, lora->a.f32(), m, s.rank, s.in, false, true, 1.0f, 0.0f);

    if (use_dora) {
        // DoRA needs dropout(x) W^T without bias; without dropout that is the base output itself.
        keep.base_out = Tensor::empty(ctx.allocator, DType::F32, {m, s.out}, "DoRA base output");
        if (use_dropout)
            cpu::matmul(keep.base_out.f32(), lora_x, weight.f32(), m, s.out, s.in, false, true, 1.0f,
                        0.0f);
        else
            std::copy(y, y + m * s.out, keep.base_out.f32());
        keep.weight_norm = Tensor::empty(ctx.allocator, DType::F32, {s.out}, "DoRA weight norm");
        dora_weight_norm(keep.weight_norm.f32(), weight.f32(), lora->a.f32(), lora->b.f32(), s.out,
                         s.in, s.rank, scaling, ctx.allocator);
    }
    if (base.bias.defined())
        cpu::add_bias_forward(y, as_f32(base.bias, ctx.allocator, "f32 bias").f32(), m, s.out);

    if (!use_dora) {
        cpu::matmul(y, keep.u.f32(), lora->b.f32(), m, s.out, s.rank, false, true, scaling, 1.0f);
        return;
    }
    // y += (g - 1) * base_out + g * s * (u B^T), g = magnitude / weight_norm per output row.
    Tensor lora_out = Tensor::empty(ctx.allocator, DType::F32, {m, s.out}, "DoRA LoRA output");
    cpu::matmul(lora_out.f32(), keep.u.f32(), lora->b.f32(), m, s.out, s.rank, false, true, 1.0f,
                0.0f);
    const float* magnitude = lora->magnitude.f32();
    const float* norm = keep.weight_norm.f32();
    const float* base_out = keep.base_out.f32();
    const float* delta = lora_out.f32();
#pragma omp parallel for schedule(static) if (m * s.out > kParallelElements)
    for (int64_t i = 0; i < m; ++i) {
        for (int64_t o = 0; o < s.out; ++o) {
            const float g = magnitude[o] / norm[o];
            const int64_t k = i * s.out + o;
            y[k] += (g - 1.0f) * base_out[k] + g * (delta[k] * scaling);
        }
    }
}

void lora_linear_backward(float* dx, const float* dy, const float* x, int64_t m,
                          const Linear& base, LoraModule* lora, float scaling, float dropout,
                          const LoraLinearContext& ctx, const LoraLinearSaved& saved) {
    const LoraShapes s = shapes_of(base, lora);
    const Tensor weight = linear_weight_f32(base, ctx.allocator);
    if (lora == nullptr) {
        if (dx != nullptr) cpu::matmul(dx, dy, weight.f32(), m, s.in, s.out, false, false, 1.0f, 0.0f);
        return;
    }
    const bool use_dora = lora->magnitude.defined();
    const bool use_dropout = dropout_active(lora, dropout, ctx);
    require(saved.u.defined() && (!use_dropout || saved.dropped_x.defined()) &&
                (!use_dora || (saved.weight_norm.defined() && saved.base_out.defined())),
            AXL_ERR_INTERNAL, "backward of ", base.name, " without the tensors forward saves");
    const float* lora_x = use_dropout ? saved.dropped_x.f32() : x;

    // The gradient reaching the LoRA branch: dy itself, or with DoRA dy * g per output row,
    // after accumulating the magnitude's gradient sum_i dy * (base_out + s u B^T) / ||.||.
    const float* dy_lora = dy;
    Tensor scaled_dy;
    if (use_dora) {
        Tensor lora_out = Tensor::empty(ctx.allocator, DType::F32, {m, s.out}, "DoRA LoRA output");
        cpu::matmul(lora_out.f32(), saved.u.f32(), lora->b.f32(), m, s.out, s.rank, false, true,
                    1.0f, 0.0f);
        scaled_dy = Tensor::empty(ctx.allocator, DType::F32, {m, s.out}, "DoRA scaled dy");
        const float* magnitude = lora->magnitude.f32();
        const float* norm = saved.weight_norm.f32();
        const float* base_out = saved.base_out.f32();
        const float* delta = lora_out.f32();
        float* grad_magnitude = lora->grad_magnitude.f32();
        // Column sums over the rows, a block of columns per thread so rows are read in runs.
        constexpr int64_t kColumns = 256;
#pragma omp parallel for schedule(static) if (m * s.out > kParallelElements)
        for (int64_t o0 = 0; o0 < s.out; o0 += kColumns) {
            const int64_t width = std::min(kColumns, s.out - o0);
            double sums[kColumns] = {};
            for (int64_t i = 0; i < m; ++i) {
                const int64_t row = i * s.out + o0;
                for (int64_t o = 0; o < width; ++o)
                    sums[o] += static_cast<double>(dy[row + o]) * (base_out[row + o] + scaling * delta[row + o]);
            }
            for (int64_t o = 0; o < width; ++o)
                grad_magnitude[o0 + o] += static_cast<float>(sums[o] / norm[o0 + o]);
        }
        float* scaled = scaled_dy.f32();
#pragma omp parallel for schedule(static) if (m * s.out > kParallelElements)
        for (int64_t i = 0; i < m; ++i)
            for (int64_t o = 0; o < s.out; ++o)
                scaled[i * s.out + o] = dy[i * s.out + o] * (magnitude[o] / norm[o]);
        dy_lora = scaled;
    }

    // grad_B += s * dy_lora^T u ; du = s * dy_lora B ; grad_A += du^T dropout(x)
    cpu::matmul(lora->grad_b.f32(), dy_lora, saved.u.f32(), s.out, s.rank, m, true, false, scaling,
                1.0f);
    Tensor du = Tensor::empty(ctx.allocator, DType::F32, {m, s.rank}, "LoRA du");
    cpu::matmul(du.f32(), dy_lora, lora->b.f32(), m, s.rank, s.out, false, false, scaling, 0.0f);
    cpu::matmul(lora->grad_a.f32(), du.f32(), lora_x, s.rank, s.in, m, true, false, 1.0f, 1.0f);
    if (dx == nullptr) return;

    if (!use_dropout) {
        // Base and DoRA's (g-1) term share the input x, so they fold into dy_lora W.
        cpu::matmul(dx, dy_lora, weight.f32(), m, s.in, s.out, false, false, 1.0f, 0.0f);
        cpu::matmul(dx, du.f32(), lora->a.f32(), m, s.in, s.rank, false, false, 1.0f, 1.0f);
        return;
    }
    // dx = dy W + dropout^T( d dropout(x) ), d dropout(x) = du A (+ ((g-1) dy) W with DoRA).
    cpu::matmul(dx, dy, weight.f32(), m, s.in, s.out, false, false, 1.0f, 0.0f);
    Tensor d_dropped = Tensor::empty(ctx.allocator, DType::F32, {m, s.in}, "LoRA d dropout(x)");
    cpu::matmul(d_dropped.f32(), du.f32(), lora->a.f32(), m, s.in, s.rank, false, false, 1.0f, 0.0f);
    if (use_dora) {
        // (g - 1) dy, written over the scaled copy that is no longer needed.
        const float* magnitude = lora->magnitude.f32();
        const float* norm = saved.weight_norm.f32();
        float* g_minus_one_dy = scaled_dy.f32();
#pragma omp parallel for schedule(static) if (m * s.out > kParallelElements)
        for (int64_t i = 0; i < m; ++i)
            for (int64_t o = 0; o < s.out; ++o)
                g_minus_one_dy[i * s.out + o] = dy[i * s.out + o] * (magnitude[o] / norm[o] - 1.0f);
        cpu::matmul(d_dropped.f32(), g_minus_one_dy, weight.f32(), m, s.in, s.out, false, false, 1.0f,
                    1.0f);
    }
    dropout_backward_accumulate(dx, d_dropped.f32(), m * s.in, dropout, ctx.dropout_seed);
}

}  // namespace axl
