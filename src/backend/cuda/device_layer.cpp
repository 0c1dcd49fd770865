#include "backend/cuda/device_layer.hpp"

#include <cmath>

#include "backend/cuda/check.hpp"
#include "backend/cuda/dequant_gemm.hpp"
#include "backend/cuda/ops.hpp"
#include "core/error.hpp"

namespace axl::cuda {

DeviceBuffer device_bf16(const DevicePass& pass, int64_t rows, int64_t cols, const char* what) {
    return DeviceBuffer(pass.runtime.allocator(), sizeof(bf16) * rows * cols, what);
}

DeviceBuffer device_f32(const DevicePass& pass, int64_t rows, int64_t cols, const char* what) {
    return DeviceBuffer(pass.runtime.allocator(), sizeof(float) * rows * cols, what);
}

namespace {

// The base weight as bf16: held so, or dequantized into the pass's one scratch (stream order
// makes the reuse safe: the previous GEMM has read it). A checkpointed layer's recomputed
// forward keeps its dequantized weights (saved->keep_dequantized_weights) for the backward that
// follows at once: one layer of bf16 weights more in memory, a third fewer dequantizations.
const bf16* weight_of(const DevicePass& pass, const DeviceLinear& linear, DeviceLayerSaved* saved, int slot) {
    if (!linear.is_packed()) return linear.weight;
    ProfileScope timed = pass.timed("dequantize base weight");
    if (saved != nullptr && saved->keep_dequantized_weights) {
        saved->weights[slot] = device_bf16(pass, linear.out, linear.in, "dequantized base weight kept for backward");
        dequantize_weight(linear, saved->weights[slot].as<bf16>(), pass.stream());
        return saved->weights[slot].as<bf16>();
    }
    dequantize_weight(linear, pass.weight_scratch, pass.stream());
    return pass.weight_scratch;
}

// Whether a linear's base product runs as the fused dequantize + GEMM (few tokens, 4-bit codes
// read once, no bf16 weight written) rather than dequantize, then cuBLASLt.
bool fused_small_product(const DeviceLinear& linear, int64_t tokens) {
    return linear.is_packed() && fused_dequant_gemm_supported(linear.packed, tokens);
}

// y = x W^T (+ bias) + s (x A^T) B^T (+ residual). The LoRA product is written first and the
// base GEMM adds onto it in its epilogue (beta = 1), and the residual rides the first GEMM's
// epilogue the same way: y is written twice and read once, with no pass of its own for the
// LoRA sum or the residual.
void project(const DevicePass& pass, int layer_index, int slot, const bf16* x, bf16* y,
             DeviceLayerSaved* saved, const bf16* residual = nullptr) {
    const DeviceLinear& linear = pass.model.layers[layer_index].linears[slot];
    const DeviceLoraModule* module = pass.lora != nullptr ? pass.lora->module(layer_index, slot) : nullptr;
    BlasLt& blas = pass.runtime.blas();
    const int64_t n = pass.batch.num_tokens();
    const bool fused = fused_small_product(linear, n);
    const bf16* weight = fused ? nullptr : weight_of(pass, linear, saved, slot);
    const bf16* base_addend = residual;  // what the base GEMM adds to its product
    if (module != nullptr) {
        DeviceBuffer u = device_bf16(pass, n, module->rank, "LoRA x A^T");
        {
            ProfileScope timed = pass.timed("LoRA forward: u = x A^T");
            matmul(blas, u.as<bf16>(), x, module->a, n, module->rank, linear.in, false, true, 1.0f, 0.0f);
        }
        ProfileScope timed = pass.timed("LoRA forward: y = s u B^T (+ residual)");
        matmul_add(blas, y, u.as<bf16>(), module->b, residual, n, linear.out, module->rank, false, true,
                   pass.lora->scaling(), residual != nullptr ? 1.0f : 0.0f);
        base_addend = y;
        if (saved != nullptr) saved->lora_u[slot] = std::move(u);
    }
    ProfileScope timed = pass.timed("base GEMM forward");
    if (fused) {
        // The fused kernel adds onto y itself: a residual without LoRA is copied there first.
        if (base_addend != nullptr && base_addend != y)
            AXL_CUDA_CHECK(cudaMemcpyAsync(y, base_addend, sizeof(bf16) * n * linear.out, cudaMemcpyDeviceToDevice,
                                           pass.stream()));
        fused_dequant_gemm_forward(y, x, linear.packed, n, linear.out, linear.in, base_addend != nullptr ? 1.0f : 0.0f,
                                   pass.stream());
    } else {
        matmul_add(blas, y, x, weight, base_addend, n, linear.out, linear.in, false, true, 1.0f,
                   base_addend != nullptr ? 1.0f : 0.0f);
    }
    if (linear.bias != nullptr) add_bias_forward(y, linear.bias, n, linear.out, pass.stream());
}

// dx (+)= the gradient through one projection; the LoRA gradients accumulate (beta = 1). The
// LoRA input gradient goes first, so that the base GEMM accumulates onto it in its epilogue.
void project_backward(const DevicePass& pass, int layer_index, int slot, const DeviceLayerSaved& saved,
                      const bf16* x, const bf16* dy, bf16* dx, bool accumulate) {
    const DeviceLinear& linear = pass.model.layers[layer_index].linears[slot];
    const DeviceLoraModule* module = pass.lora != nullptr ? pass.lora->module(layer_index, slot) : nullptr;
    BlasLt& blas = pass.runtime.blas();
    const int64_t n = pass.batch.num_tokens();
    const bool fused = fused_small_product(linear, n);
    const bf16* weight = fused                                   ? nullptr
                         : saved.weights[slot].data() != nullptr ? saved.weights[slot].as<bf16>()
                                                                 : weight_of(pass, linear, nullptr, slot);
    if (module != nullptr) {
        const float s = pass.lora->scaling();
        const bf16* u = saved.lora_u[slot].as<bf16>();
        // dB += s dy^T u;  du = s dy B;  dA += du^T x;  dx (+)= du A.
        DeviceBuffer du = device_bf16(pass, n, module->rank, "LoRA u gradient");
        {
            ProfileScope timed = pass.timed("LoRA backward: dB += s dy^T u");
            matmul(blas, module->grad_b, dy, u, linear.out, module->rank, n, true, false, s, 1.0f);
        }
        {
            ProfileScope timed = pass.timed("LoRA backward: du = s dy B");
            matmul(blas, du.as<bf16>(), dy, module->b, n, module->rank, linear.out, false, false, s, 0.0f);
        }
        {
            ProfileScope timed = pass.timed("LoRA backward: dA += du^T x");
            matmul(blas, module->grad_a, du.as<bf16>(), x, module->rank, linear.in, n, true, false, 1.0f, 1.0f);
        }
        ProfileScope timed = pass.timed("LoRA backward: dx (+)= du A");
        matmul(blas, dx, du.as<bf16>(), module->a, n, linear.in, module->rank, false, false, 1.0f,
               accumulate ? 1.0f : 0.0f);
        accumulate = true;
    }
    ProfileScope timed = pass.timed("base GEMM backward (dx)");
    if (fused) {
        DeviceBuffer scratch = device_f32(
            pass, static_cast<int64_t>(fused_dequant_gemm_backward_scratch_floats(n, linear.out, linear.in)), 1,
            "fused dequantize + GEMM partial sums");
        fused_dequant_gemm_backward(dx, dy, linear.packed, n, linear.out, linear.in, accumulate ? 1.0f : 0.0f,
                                    scratch.as<float>(), pass.stream());
    } else {
        matmul(blas, dx, dy, weight, n, linear.in, linear.out, false, false, 1.0f, accumulate ? 1.0f : 0.0f);
    }
}

}  // namespace

void device_layer_forward(const DevicePass& pass, int layer_index, const bf16* x, bf16* y,
                          DeviceLayerSaved* saved) {
    const ModelConfig& c = pass.config;
    const DeviceLayer& layer = pass.model.layers[layer_index];
    const int64_t n = pass.batch.num_tokens();
    const int64_t hidden = c.hidden_size;
    const int64_t q_width = int64_t{c.num_heads} * c.head_dim;
    const int64_t kv_width = int64_t{c.num_kv_heads} * c.head_dim;
    const float eps = static_cast<float>(c.rms_norm_eps);
    cudaStream_t stream = pass.stream();

    DeviceLayerSaved local;
    DeviceLayerSaved& s = saved != nullptr ? *saved : local;
    DeviceLayerSaved* keep = saved;  // projections save for backward only when training

    // Attention block.
    s.norm1 = device_bf16(pass, n, hidden, "input norm");
    s.rstd1 = device_f32(pass, n, 1, "input norm rstd");
    {
        ProfileScope timed = pass.timed("rmsnorm forward");
        rmsnorm_forward(s.norm1.as<bf16>(), s.rstd1.as<float>(), x, layer.input_norm, n, hidden, eps, stream);
    }

    s.q = device_bf16(pass, n, q_width, "q");
    s.k = device_bf16(pass, n, kv_width, "k");
    s.v = device_bf16(pass, n, kv_width, "v");
    if (c.qk_norm) {
        s.q_raw = device_bf16(pass, n, q_width, "q before norm");
        s.k_raw = device_bf16(pass, n, kv_width, "k before norm");
        project(pass, layer_index, kSlotQ, s.norm1.as<bf16>(), s.q_raw.as<bf16>(), keep);
        project(pass, layer_index, kSlotK, s.norm1.as<bf16>(), s.k_raw.as<bf16>(), keep);
        s.rstd_q = device_f32(pass, n * c.num_heads, 1, "q norm rstd");
        s.rstd_k = device_f32(pass, n * c.num_kv_heads, 1, "k norm rstd");
        {
            ProfileScope timed = pass.timed("rmsnorm forward");
            rmsnorm_forward(s.q.as<bf16>(), s.rstd_q.as<float>(), s.q_raw.as<bf16>(), layer.q_norm,
                            n * c.num_heads, c.head_dim, eps, stream);
        }
        {
            ProfileScope timed = pass.timed("rmsnorm forward");
            rmsnorm_forward(s.k.as<bf16>(), s.rstd_k.as<float>(), s.k_raw.as<bf16>(), layer.k_norm,
                            n * c.num_kv_heads, c.head_dim, eps, stream);
        }
    } else {
        project(pass, layer_index, kSlotQ, s.norm1.as<bf16>(), s.q.as<bf16>(), keep);
        project(pass, layer_index, kSlotK, s.norm1.as<bf16>(), s.k.as<bf16>(), keep);
    }
    project(pass, layer_index, kSlotV, s.norm1.as<bf16>(), s.v.as<bf16>(), keep);
    const int32_t* positions = pass.batch.positions;
    {
        ProfileScope timed = pass.timed("rope forward");
        rope_forward(s.q.as<bf16>(), positions, pass.rope_cos, pass.rope_sin, n, c.num_heads, c.head_dim, stream);
    }
    {
        ProfileScope timed = pass.timed("rope forward");
        rope_forward(s.k.as<bf16>(), positions, pass.rope_cos, pass.rope_sin, n, c.num_kv_heads, c.head_dim, stream);
    }

    s.attn = device_bf16(pass, n, q_width, "attention output");
    s.lse = device_f32(pass, n, c.num_heads, "attention lse");
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    {
        ProfileScope timed = pass.timed("attention forward");
        attention_forward(s.attn.as<bf16>(), s.lse.as<float>(), s.q.as<bf16>(), s.k.as<bf16>(), s.v.as<bf16>(),
                          pass.batch.segments, pass.batch.batch_size, pass.batch.seq_len, c.num_heads,
                          c.num_kv_heads, c.head_dim, scale, stream);
    }

    s.h = device_bf16(pass, n, hidden, "attention residual");
    project(pass, layer_index, kSlotO, s.attn.as<bf16>(), s.h.as<bf16>(), keep, /*residual=*/x);

    // MLP block.
    s.norm2 = device_bf16(pass, n, hidden, "post-attention norm");
    s.rstd2 = device_f32(pass, n, 1, "post-attention norm rstd");
    {
        ProfileScope timed = pass.timed("rmsnorm forward");
        rmsnorm_forward(s.norm2.as<bf16>(), s.rstd2.as<float>(), s.h.as<bf16>(), layer.post_attention_norm, n,
                        hidden, eps, stream);
    }
    const int64_t inter = c.intermediate_size;
    s.gate = device_bf16(pass, n, inter, "mlp gate");
    s.up = device_bf16(pass, n, inter, "mlp up");
    s.act = device_bf16(pass, n, inter, "mlp activation");
    project(pass, layer_index, kSlotGate, s.norm2.as<bf16>(), s.gate.as<bf16>(), keep);
    project(pass, layer_index, kSlotUp, s.norm2.as<bf16>(), s.up.as<bf16>(), keep);
    {
        ProfileScope timed = pass.timed("swiglu forward");
        swiglu_forward(s.act.as<bf16>(), s.gate.as<bf16>(), s.up.as<bf16>(), n * inter, stream);
    }
    project(pass, layer_index, kSlotDown, s.act.as<bf16>(), y, keep, /*residual=*/s.h.as<bf16>());
}

void device_layer_backward(const DevicePass& pass, int layer_index, const bf16* x,
                           const DeviceLayerSaved& s, const bf16* dy, bf16* dx) {
    const ModelConfig& c = pass.config;
    const DeviceLayer& layer = pass.model.layers[layer_index];
    const int64_t n = pass.batch.num_tokens();
    const int64_t hidden = c.hidden_size;
    const int64_t inter = c.intermediate_size;
    const int64_t q_width = int64_t{c.num_heads} * c.head_dim;
    const int64_t kv_width = int64_t{c.num_kv_heads} * c.head_dim;
    cudaStream_t stream = pass.stream();

    // MLP block: y = h + down(act), act = silu(gate) * up, gate/up = proj(norm2(h)).
    DeviceBuffer d_act = device_bf16(pass, n, inter, "mlp activation gradient");
    project_backward(pass, layer_index, kSlotDown, s, s.act.as<bf16>(), dy, d_act.as<bf16>(), false);
    DeviceBuffer d_gate = device_bf16(pass, n, inter, "mlp gate gradient");
    DeviceBuffer d_up = device_bf16(pass, n, inter, "mlp up gradient");
    {
        ProfileScope timed = pass.timed("swiglu backward");
        swiglu_backward(d_gate.as<bf16>(), d_up.as<bf16>(), d_act.as<bf16>(), s.gate.as<bf16>(), s.up.as<bf16>(),
                        n * inter, stream);
    }
    d_act = DeviceBuffer();
    DeviceBuffer d_norm2 = device_bf16(pass, n, hidden, "post-attention norm gradient");
    project_backward(pass, layer_index, kSlotGate, s, s.norm2.as<bf16>(), d_gate.as<bf16>(), d_norm2.as<bf16>(),
                     false);
    project_backward(pass, layer_index, kSlotUp, s, s.norm2.as<bf16>(), d_up.as<bf16>(), d_norm2.as<bf16>(), true);
    d_gate = DeviceBuffer();
    d_up = DeviceBuffer();
    DeviceBuffer d_h = device_bf16(pass, n, hidden, "attention residual gradient");
    {
        // d_h = the gradient through the norm + dy (the residual), in one pass.
        ProfileScope timed = pass.timed("rmsnorm backward");
        rmsnorm_backward_add(d_h.as<bf16>(), d_norm2.as<bf16>(), s.h.as<bf16>(), layer.post_attention_norm,
                             s.rstd2.as<float>(), dy, n, hidden, stream);
    }

    // Attention block: h = x + o(attn(q, k, v)).
    DeviceBuffer d_attn = device_bf16(pass, n, q_width, "attention output gradient");
    project_backward(pass, layer_index, kSlotO, s, s.attn.as<bf16>(), d_h.as<bf16>(), d_attn.as<bf16>(), false);
    DeviceBuffer dq = device_bf16(pass, n, q_width, "q gradient");
    DeviceBuffer dk = device_bf16(pass, n, kv_width, "k gradient");
    DeviceBuffer dv = device_bf16(pass, n, kv_width, "v gradient");
    DeviceBuffer delta(pass.runtime.allocator(),
                       sizeof(float) * attention_backward_scratch_floats(pass.batch.batch_size, pass.batch.seq_len,
                                                                         c.num_heads),
                       "attention backward scratch");
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    {
        ProfileScope timed = pass.timed("attention backward");
        attention_backward(dq.as<bf16>(), dk.as<bf16>(), dv.as<bf16>(), d_attn.as<bf16>(), s.attn.as<bf16>(),
                           s.q.as<bf16>(), s.k.as<bf16>(), s.v.as<bf16>(), s.lse.as<float>(), delta.as<float>(),
                           pass.batch.segments, pass.batch.batch_size, pass.batch.seq_len, c.num_heads, c.num_kv_heads,
                           c.head_dim, scale, stream);
    }
    const int32_t* positions = pass.batch.positions;
    {
        ProfileScope timed = pass.timed("rope backward");
        rope_backward(dq.as<bf16>(), positions, pass.rope_cos, pass.rope_sin, n, c.num_heads, c.head_dim, stream);
    }
    {
        ProfileScope timed = pass.timed("rope backward");
        rope_backward(dk.as<bf16>(), positions, pass.rope_cos, pass.rope_sin, n, c.num_kv_heads, c.head_dim, stream);
    }
    if (c.qk_norm) {
        DeviceBuffer dq_raw = device_bf16(pass, n, q_width, "q before norm gradient");
        DeviceBuffer dk_raw = device_bf16(pass, n, kv_width, "k before norm gradient");
        {
            ProfileScope timed = pass.timed("rmsnorm backward");
            rmsnorm_backward(dq_raw.as<bf16>(), nullptr, dq.as<bf16>(), s.q_raw.as<bf16>(), layer.q_norm,
                             s.rstd_q.as<float>(), n * c.num_heads, c.head_dim, stream);
        }
        {
            ProfileScope timed = pass.timed("rmsnorm backward");
            rmsnorm_backward(dk_raw.as<bf16>(), nullptr, dk.as<bf16>(), s.k_raw.as<bf16>(), layer.k_norm,
                             s.rstd_k.as<float>(), n * c.num_kv_heads, c.head_dim, stream);
        }
        dq = std::move(dq_raw);
        dk = std::move(dk_raw);
    }
    DeviceBuffer d_norm1 = device_bf16(pass, n, hidden, "input norm gradient");
    project_backward(pass, layer_index, kSlotQ, s, s.norm1.as<bf16>(), dq.as<bf16>(), d_norm1.as<bf16>(), false);
    project_backward(pass, layer_index, kSlotK, s, s.norm1.as<bf16>(), dk.as<bf16>(), d_norm1.as<bf16>(), true);
    project_backward(pass, layer_index, kSlotV, s, s.norm1.as<bf16>(), dv.as<bf16>(), d_norm1.as<bf16>(), true);
    {
        ProfileScope timed = pass.timed("rmsnorm backward");
        rmsnorm_backward_add(dx, d_norm1.as<bf16>(), x, layer.input_norm, s.rstd1.as<float>(), d_h.as<bf16>(), n,
                             hidden, stream);
    }
}

}  // namespace axl::cuda
