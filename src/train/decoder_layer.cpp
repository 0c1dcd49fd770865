#include "train/decoder_layer.hpp"

#include <cmath>
#include <cstring>

#include "backend/cpu/ops.hpp"
#include "core/error.hpp"

namespace axl {

namespace {

const Linear& linear_of(const DecoderLayer& layer, int slot) {
    switch (slot) {
        case kQ: return layer.q_proj;
        case kK: return layer.k_proj;
        case kV: return layer.v_proj;
        case kO: return layer.o_proj;
        case kGate: return layer.gate_proj;
        case kUp: return layer.up_proj;
        default: return layer.down_proj;
    }
}

Tensor activation(const PassContext& pass, int64_t rows, int64_t cols, const char* what) {
    return Tensor::empty(pass.allocator, DType::F32, {rows, cols}, what);
}

// Each (micro-batch, layer, projection) gets its own dropout stream, identical when the layer
// is recomputed under gradient checkpointing.
uint64_t dropout_seed(const PassContext& pass, int layer_index, int slot) {
    return pass.dropout_seed ^ (static_cast<uint64_t>(layer_index * kNumSlots + slot + 1) *
                                0x9e3779b97f4a7c15ull);
}

// What forward and backward of one projection share: the frozen linear, the adapter's scaling
// and dropout, and the context of the call.
struct Projection {
    const Linear& linear;
    float scaling;
    float dropout;
    LoraLinearContext ctx;
};

Projection projection(const PassContext& pass, const DecoderLayer& layer, int layer_index, int slot) {
    const bool adapted = pass.lora != nullptr;
    return Projection{linear_of(layer, slot), adapted ? pass.lora->config.scaling() : 0.0f,
                      adapted ? static_cast<float>(pass.lora->config.dropout) : 0.0f,
                      LoraLinearContext{pass.allocator, pass.training,
                                        dropout_seed(pass, layer_index, slot)}};
}

void project(const PassContext& pass, const DecoderLayer& layer, int layer_index, int slot,
             const float* x, float* y, LayerSaved* saved) {
    Projection p = projection(pass, layer, layer_index, slot);
    const LoraModule* module = pass.lora != nullptr ? pass.lora->find(&p.linear) : nullptr;
    lora_linear_forward(y, x, pass.batch.num_tokens(), p.linear, module, p.scaling, p.dropout, p.ctx,
                        saved != nullptr ? &saved->linear[slot] : nullptr);
}

// dx (+)= the gradient through one projection. `accumulate` adds into dx instead of writing.
void project_backward(const PassContext& pass, const DecoderLayer& layer, int layer_index, int slot,
                      const LayerSaved& saved, const float* x, const float* dy, float* dx,
                      bool accumulate) {
    Projection p = projection(pass, layer, layer_index, slot);
    LoraModule* module = pass.trainable != nullptr ? pass.trainable->find(&p.linear) : nullptr;
    const int64_t n = pass.batch.num_tokens();
    Tensor part;
    if (accumulate) part = activation(pass, n, p.linear.in_features, "projection input gradient");
    float* out = accumulate ? part.f32() : dx;
    lora_linear_backward(out, dy, x, n, p.linear, module, p.scaling, p.dropout, p.ctx,
                         saved.linear[slot]);
    if (accumulate) cpu::add_inplace(dx, part.f32(), part.numel());
}

}  // namespace

void decoder_layer_forward(const PassContext& pass, int layer_index, const float* x, float* y,
                           LayerSaved* saved) {
    const ModelConfig& c = pass.model.config;
    const DecoderLayer& layer = pass.model.layers[layer_index];
    const int64_t n = pass.batch.num_tokens();
    const int64_t hidden = c.hidden_size;
    const int64_t q_width = int64_t{c.num_heads} * c.head_dim;
    const int64_t kv_width = int64_t{c.num_kv_heads} * c.head_dim;
    const float eps = static_cast<float>(c.rms_norm_eps);

    LayerSaved local;
    LayerSaved& s = saved != nullptr ? *saved : local;
    LayerSaved* keep = saved;  // projections save for backward only when training

    s.x = activation(pass, n, hidden, "layer input");
    std::memcpy(s.x.f32(), x, sizeof(float) * n * hidden);

    // Attention block.
    s.norm1 = activation(pass, n, hidden, "input norm");
    s.rstd1 = activation(pass, n, 1, "input norm rstd");
    cpu::rmsnorm_forward(s.norm1.f32(), s.rstd1.f32(), x, layer.input_norm.f32(), n, hidden, eps);

    s.q = activation(pass, n, q_width, "q");
    s.k = activation(pass, n, kv_width, "k");
    s.v = activation(pass, n, kv_width, "v");
    if (c.qk_norm) {
        s.q_raw = activation(pass, n, q_width, "q before norm");
        s.k_raw = activation(pass, n, kv_width, "k before norm");
        project(pass, layer, layer_index, kQ, s.norm1.f32(), s.q_raw.f32(), keep);
        project(pass, layer, layer_index, kK, s.norm1.f32(), s.k_raw.f32(), keep);
        s.rstd_q = activation(pass, n * c.num_heads, 1, "q norm rstd");
        s.rstd_k = activation(pass, n * c.num_kv_heads, 1, "k norm rstd");
        cpu::rmsnorm_forward(s.q.f32(), s.rstd_q.f32(), s.q_raw.f32(), layer.q_norm.f32(),
                             n * c.num_heads, c.head_dim, eps);
        cpu::rmsnorm_forward(s.k.f32(), s.rstd_k.f32(), s.k_raw.f32(), layer.k_norm.f32(),
                             n * c.num_kv_heads, c.head_dim, eps);
    } else {
        project(pass, layer, layer_index, kQ, s.norm1.f32(), s.q.f32(), keep);
        project(pass, layer, layer_index, kK, s.norm1.f32(), s.k.f32(), keep);
    }
    project(pass, layer, layer_index, kV, s.norm1.f32(), s.v.f32(), keep);
    const int32_t* positions = pass.batch.positions.data();
    cpu::rope_forward(s.q.f32(), positions, pass.rope_cos, pass.rope_sin, n, c.num_heads, c.head_dim);
    cpu::rope_forward(s.k.f32(), positions, pass.rope_cos, pass.rope_sin, n, c.num_kv_heads,
                      c.head_dim);

    s.attn = activation(pass, n, q_width, "attention output");
    s.lse = activation(pass, n, c.num_heads, "attention lse");
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    cpu::attention_forward(s.attn.f32(), s.lse.f32(), s.q.f32(), s.k.f32(), s.v.f32(),
                           pass.batch.segment_ids(), pass.batch.batch_size, pass.batch.seq_len,
                           c.num_heads, c.num_kv_heads, c.head_dim, scale);

    s.h = activation(pass, n, hidden, "attention residual");
    project(pass, layer, layer_index, kO, s.attn.f32(), s.h.f32(), keep);
    cpu::add_inplace(s.h.f32(), x, n * hidden);

    // MLP block.
    s.norm2 = activation(pass, n, hidden, "post-attention norm");
    s.rstd2 = activation(pass, n, 1, "post-attention norm rstd");
    cpu::rmsnorm_forward(s.norm2.f32(), s.rstd2.f32(), s.h.f32(), layer.post_attention_norm.f32(),
                         n, hidden, eps);
    const int64_t inter = c.intermediate_size;
    s.gate = activation(pass, n, inter, "mlp gate");
    s.up = activation(pass, n, inter, "mlp up");
    s.act = activation(pass, n, inter, "mlp activation");
    project(pass, layer, layer_index, kGate, s.norm2.f32(), s.gate.f32(), keep);
    project(pass, layer, layer_index, kUp, s.norm2.f32(), s.up.f32(), keep);
    cpu::swiglu_forward(s.act.f32(), s.gate.f32(), s.up.f32(), n * inter);
    project(pass, layer, layer_index, kDown, s.act.f32(), y, keep);
    cpu::add_inplace(y, s.h.f32(), n * hidden);
}

void decoder_layer_backward(const PassContext& pass, int layer_index, const LayerSaved& s,
                            const float* dy, float* dx) {
    const ModelConfig& c = pass.model.config;
    const DecoderLayer& layer = pass.model.layers[layer_index];
    const int64_t n = pass.batch.num_tokens();
    const int64_t hidden = c.hidden_size;
    const int64_t inter = c.intermediate_size;
    const int64_t q_width = int64_t{c.num_heads} * c.head_dim;
    const int64_t kv_width = int64_t{c.num_kv_heads} * c.head_dim;

    // MLP block: y = h + down(act), act = silu(gate) * up, gate/up = proj(norm2(h)).
    Tensor d_act = activation(pass, n, inter, "mlp activation gradient");
    project_backward(pass, layer, layer_index, kDown, s, s.act.f32(), dy, d_act.f32(), false);
    Tensor d_gate = activation(pass, n, inter, "mlp gate gradient");
    Tensor d_up = activation(pass, n, inter, "mlp up gradient");
    cpu::swiglu_backward(d_gate.f32(), d_up.f32(), d_act.f32(), s.gate.f32(), s.up.f32(), n * inter);
    d_act = Tensor();
    Tensor d_norm2 = activation(pass, n, hidden, "post-attention norm gradient");
    project_backward(pass, layer, layer_index, kGate, s, s.norm2.f32(), d_gate.f32(), d_norm2.f32(), false);
    project_backward(pass, layer, layer_index, kUp, s, s.norm2.f32(), d_up.f32(), d_norm2.f32(), true);
    Tensor d_h = activation(pass, n, hidden, "attention residual gradient");
    cpu::rmsnorm_backward(d_h.f32(), nullptr, d_norm2.f32(), s.h.f32(),
                          layer.post_attention_norm.f32(), s.rstd2.f32(), n, hidden);
    cpu::add_inplace(d_h.f32(), dy, n * hidden);

    // Attention block: h = x + o(attn(q, k, v)).
    Tensor d_attn = activation(pass, n, q_width, "attention output gradient");
    project_backward(pass, layer, layer_index, kO, s, s.attn.f32(), d_h.f32(), d_attn.f32(), false);
    Tensor dq = activation(pass, n, q_width, "q gradient");
    Tensor dk = activation(pass, n, kv_width, "k gradient");
    Tensor dv = activation(pass, n, kv_width, "v gradient");
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    cpu::attention_backward(dq.f32(), dk.f32(), dv.f32(), d_attn.f32(), s.attn.f32(), s.q.f32(),
                            s.k.f32(), s.v.f32(), s.lse.f32(), pass.batch.segment_ids(),
                            pass.batch.batch_size, pass.batch.seq_len, c.num_heads,
                            c.num_kv_heads, c.head_dim, scale);
    const int32_t* positions = pass.batch.positions.data();
    cpu::rope_backward(dq.f32(), positions, pass.rope_cos, pass.rope_sin, n, c.num_heads, c.head_dim);
    cpu::rope_backward(dk.f32(), positions, pass.rope_cos, pass.rope_sin, n, c.num_kv_heads,
                       c.head_dim);
    if (c.qk_norm) {
        Tensor dq_raw = activation(pass, n, q_width, "q before norm gradient");
        Tensor dk_raw = activation(pass, n, kv_width, "k before norm gradient");
        cpu::rmsnorm_backward(dq_raw.f32(), nullptr, dq.f32(), s.q_raw.f32(), layer.q_norm.f32(),
                              s.rstd_q.f32(), n * c.num_heads, c.head_dim);
        cpu::rmsnorm_backward(dk_raw.f32(), nullptr, dk.f32(), s.k_raw.f32(), layer.k_norm.f32(),
                              s.rstd_k.f32(), n * c.num_kv_heads, c.head_dim);
        dq = dq_raw;
        dk = dk_raw;
    }
    Tensor d_norm1 = activation(pass, n, hidden, "input norm gradient");
    project_backward(pass, layer, layer_index, kQ, s, s.norm1.f32(), dq.f32(), d_norm1.f32(), false);
    project_backward(pass, layer, layer_index, kK, s, s.norm1.f32(), dk.f32(), d_norm1.f32(), true);
    project_backward(pass, layer, layer_index, kV, s, s.norm1.f32(), dv.f32(), d_norm1.f32(), true);
    cpu::rmsnorm_backward(dx, nullptr, d_norm1.f32(), s.x.f32(), layer.input_norm.f32(),
                          s.rstd1.f32(), n, hidden);
    cpu::add_inplace(dx, d_h.f32(), n * hidden);
}

}  // namespace axl
