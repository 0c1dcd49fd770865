#include "backend/cuda/device_layer.hpp"

#include <cmath>

#include "backend/cuda/device_projection.hpp"
#include "backend/cuda/ops.hpp"
#include "core/error.hpp"

namespace axl::cuda {

DeviceBuffer device_bf16(const DevicePass& pass, int64_t rows, int64_t cols, const char* what) {
    return DeviceBuffer(pass.runtime.allocator(), sizeof(bf16) * rows * cols, what);
}

DeviceBuffer device_f32(const DevicePass& pass, int64_t rows, int64_t cols, const char* what) {
    return DeviceBuffer(pass.runtime.allocator(), sizeof(float) * rows * cols, what);
}

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
    require(y != nullptr || saved != nullptr, AXL_ERR_INTERNAL, "a layer forward that keeps and returns nothing");
    // A recomputed forward (no output) is followed at once by this layer's backward.
    s.keep_dequantized_weights = y == nullptr;
    DeviceLayerSaved* keep = saved;  // projections save for backward only when training

    // Attention block. A norm's rows leave room for the LoRA inputs of the projections that
    // read it where their LoRA path folds into the base GEMMs (device_projection.hpp).
    const int64_t qkv_fold = lora_fold_width(pass, layer_index, kSlotQ, 3);
    s.norm1 = device_bf16(pass, n, hidden + qkv_fold, "input norm");
    s.rstd1 = device_f32(pass, n, 1, "input norm rstd");
    {
        ProfileScope timed = pass.timed("rmsnorm forward");
        rmsnorm_forward_strided(s.norm1.as<bf16>(), hidden + qkv_fold, s.rstd1.as<float>(), x, layer.input_norm, n,
                                hidden, eps, stream);
    }

    s.q = device_bf16(pass, n, q_width, "q");
    s.k = device_bf16(pass, n, kv_width, "k");
    s.v = device_bf16(pass, n, kv_width, "v");
    if (c.qk_norm) {
        s.q_raw = device_bf16(pass, n, q_width, "q before norm");
        s.k_raw = device_bf16(pass, n, kv_width, "k before norm");
    }
    bf16* qkv[3] = {c.qk_norm ? s.q_raw.as<bf16>() : s.q.as<bf16>(), c.qk_norm ? s.k_raw.as<bf16>() : s.k.as<bf16>(),
                    s.v.as<bf16>()};
    if (qkv_fold > 0)
        project_forward_folded(pass, layer_index, kSlotQ, 3, s.norm1.as<bf16>(), qkv, keep);
    else
        project_forward(pass, layer_index, kSlotQ, 3, s.norm1.as<bf16>(), qkv, keep);
    if (c.qk_norm) {
        s.rstd_q = device_f32(pass, n * c.num_heads, 1, "q norm rstd");
        s.rstd_k = device_f32(pass, n * c.num_kv_heads, 1, "k norm rstd");
        {
            ProfileScope timed = pass.timed("rmsnorm forward");
            rmsnorm_forward(s.q.as<bf16>(), s.rstd_q.as<float>(), s.q_raw.as<bf16>(), layer.q_norm,
                            n * c.num_heads, c.head_dim, eps, stream);
            rmsnorm_forward(s.k.as<bf16>(), s.rstd_k.as<float>(), s.k_raw.as<bf16>(), layer.k_norm,
                            n * c.num_kv_heads, c.head_dim, eps, stream);
        }
    }
    const int32_t* positions = pass.batch.positions;
    {
        ProfileScope timed = pass.timed("rope forward");
        rope_forward(s.q.as<bf16>(), positions, pass.rope_cos, pass.rope_sin, n, c.num_heads, c.head_dim, stream);
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
    bf16* h[1] = {s.h.as<bf16>()};
    project_forward(pass, layer_index, kSlotO, 1, s.attn.as<bf16>(), h, keep, /*residual=*/x);

    // MLP block.
    const int64_t gate_up_fold = lora_fold_width(pass, layer_index, kSlotGate, 2);
    s.norm2 = device_bf16(pass, n, hidden + gate_up_fold, "post-attention norm");
    s.rstd2 = device_f32(pass, n, 1, "post-attention norm rstd");
    {
        ProfileScope timed = pass.timed("rmsnorm forward");
        rmsnorm_forward_strided(s.norm2.as<bf16>(), hidden + gate_up_fold, s.rstd2.as<float>(), s.h.as<bf16>(),
                                layer.post_attention_norm, n, hidden, eps, stream);
    }
    const int64_t inter = c.intermediate_size;
    s.gate = device_bf16(pass, n, inter, "mlp gate");
    s.up = device_bf16(pass, n, inter, "mlp up");
    s.act = device_bf16(pass, n, inter, "mlp activation");
    bf16* gate_up[2] = {s.gate.as<bf16>(), s.up.as<bf16>()};
    if (gate_up_fold > 0)
        project_forward_folded(pass, layer_index, kSlotGate, 2, s.norm2.as<bf16>(), gate_up, keep);
    else
        project_forward(pass, layer_index, kSlotGate, 2, s.norm2.as<bf16>(), gate_up, keep);
    {
        ProfileScope timed = pass.timed("swiglu forward");
        swiglu_forward(s.act.as<bf16>(), s.gate.as<bf16>(), s.up.as<bf16>(), n * inter, stream);
    }
    if (y != nullptr)
        project_forward(pass, layer_index, kSlotDown, 1, s.act.as<bf16>(), &y, keep, /*residual=*/s.h.as<bf16>());
    else
        lora_input_forward(pass, layer_index, kSlotDown, s.act.as<bf16>(), keep);
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
    project_backward(pass, layer_index, kSlotDown, 1, s, s.act.as<bf16>(), &dy, d_act.as<bf16>(), false);
    DeviceBuffer d_gate = device_bf16(pass, n, inter, "mlp gate gradient");
    DeviceBuffer d_up = device_bf16(pass, n, inter, "mlp up gradient");
    {
        ProfileScope timed = pass.timed("swiglu backward");
        swiglu_backward(d_gate.as<bf16>(), d_up.as<bf16>(), d_act.as<bf16>(), s.gate.as<bf16>(), s.up.as<bf16>(),
                        n * inter, stream);
    }
    d_act = DeviceBuffer();
    // Folded projections leave dy B in the extra columns of their input gradient's rows.
    const int64_t gate_up_fold = lora_fold_width(pass, layer_index, kSlotGate, 2);
    DeviceBuffer d_norm2 = device_bf16(pass, n, hidden + gate_up_fold, "post-attention norm gradient");
    const bf16* d_gate_up[2] = {d_gate.as<bf16>(), d_up.as<bf16>()};
    if (gate_up_fold > 0)
        project_backward_folded(pass, layer_index, kSlotGate, 2, s, s.norm2.as<bf16>(), d_gate_up, d_norm2.as<bf16>());
    else
        project_backward(pass, layer_index, kSlotGate, 2, s, s.norm2.as<bf16>(), d_gate_up, d_norm2.as<bf16>(), false);
    d_gate = DeviceBuffer();
    d_up = DeviceBuffer();
    DeviceBuffer d_h = device_bf16(pass, n, hidden, "attention residual gradient");
    {
        // d_h = the gradient through the norm + dy (the residual), in one pass.
        ProfileScope timed = pass.timed("rmsnorm backward");
        rmsnorm_backward_add_strided(d_h.as<bf16>(), d_norm2.as<bf16>(), hidden + gate_up_fold, s.h.as<bf16>(),
                                     layer.post_attention_norm, s.rstd2.as<float>(), dy, n, hidden, stream);
    }

    // Attention block: h = x + o(attn(q, k, v)).
    DeviceBuffer d_attn = device_bf16(pass, n, q_width, "attention output gradient");
    const bf16* d_h_view = d_h.as<bf16>();
    project_backward(pass, layer_index, kSlotO, 1, s, s.attn.as<bf16>(), &d_h_view, d_attn.as<bf16>(), false);
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
        rope_backward(dk.as<bf16>(), positions, pass.rope_cos, pass.rope_sin, n, c.num_kv_heads, c.head_dim, stream);
    }
    if (c.qk_norm) {
        DeviceBuffer dq_raw = device_bf16(pass, n, q_width, "q before norm gradient");
        DeviceBuffer dk_raw = device_bf16(pass, n, kv_width, "k before norm gradient");
        {
            ProfileScope timed = pass.timed("rmsnorm backward");
            rmsnorm_backward(dq_raw.as<bf16>(), nullptr, dq.as<bf16>(), s.q_raw.as<bf16>(), layer.q_norm,
                             s.rstd_q.as<float>(), n * c.num_heads, c.head_dim, stream);
            rmsnorm_backward(dk_raw.as<bf16>(), nullptr, dk.as<bf16>(), s.k_raw.as<bf16>(), layer.k_norm,
                             s.rstd_k.as<float>(), n * c.num_kv_heads, c.head_dim, stream);
        }
        dq = std::move(dq_raw);
        dk = std::move(dk_raw);
    }
    const int64_t qkv_fold = lora_fold_width(pass, layer_index, kSlotQ, 3);
    DeviceBuffer d_norm1 = device_bf16(pass, n, hidden + qkv_fold, "input norm gradient");
    const bf16* d_qkv[3] = {dq.as<bf16>(), dk.as<bf16>(), dv.as<bf16>()};
    if (qkv_fold > 0)
        project_backward_folded(pass, layer_index, kSlotQ, 3, s, s.norm1.as<bf16>(), d_qkv, d_norm1.as<bf16>());
    else
        project_backward(pass, layer_index, kSlotQ, 3, s, s.norm1.as<bf16>(), d_qkv, d_norm1.as<bf16>(), false);
    {
        ProfileScope timed = pass.timed("rmsnorm backward");
        rmsnorm_backward_add_strided(dx, d_norm1.as<bf16>(), hidden + qkv_fold, x, layer.input_norm,
                                     s.rstd1.as<float>(), d_h.as<bf16>(), n, hidden, stream);
    }
}

}  // namespace axl::cuda
