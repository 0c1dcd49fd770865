#include "train/decoder_pass.hpp"

#include <algorithm>
#include <cstring>

#include "backend/cpu/ops.hpp"
#include "core/error.hpp"
#include "lora/lora_linear.hpp"
#include "model/rope_frequencies.hpp"
#include "train/decoder_layer.hpp"

namespace axl {

namespace {

// Rows of logits materialised at a time: about 16 MiB of f32, at least one row.
int64_t head_chunk_rows(int64_t vocab) { return std::max<int64_t>(1, (int64_t{4} << 20) / vocab); }

struct RopeTables {
    Tensor cos, sin;
};

RopeTables make_rope_tables(const Model& model, const PreparedBatch& batch,
                            const std::shared_ptr<HostAllocator>& allocator) {
    const ModelConfig& c = model.config;
    int64_t max_pos = 1 + *std::max_element(batch.positions.begin(), batch.positions.end());
    std::vector<float> inv_freq = rope_inv_freq(c.rope, c.head_dim);
    RopeTables tables;
    int64_t half = c.head_dim / 2;
    tables.cos = Tensor::empty(allocator, DType::F32, {max_pos, half}, "rope cos");
    tables.sin = Tensor::empty(allocator, DType::F32, {max_pos, half}, "rope sin");
    cpu::rope_tables(tables.cos.f32(), tables.sin.f32(), inv_freq.data(), max_pos, half);
    return tables;
}

void report(const PassOptions* options, int32_t stage, int64_t done, int64_t total) {
    if (options == nullptr || options->progress_fn == nullptr) return;
    axl_progress progress{sizeof(axl_progress), stage, done, total, "decoder layer"};
    if (options->progress_fn(options->progress_user_data, &progress) != 0)
        fail(AXL_ERR_CANCELLED, "training step cancelled by the progress callback");
}

// The hidden states after the last layer and the final norm, plus what backward needs.
struct Trunk {
    Tensor final_input;  // [N, hidden] input of the final norm
    Tensor final_rstd;   // [N]
    Tensor normed;       // [N, hidden]
    std::vector<Tensor> layer_inputs;        // with checkpointing
    std::vector<LayerSaved> layer_saved;     // without checkpointing
};

Trunk run_trunk(const PassContext& pass, bool keep, bool checkpointing, const PassOptions* options) {
    const Model& model = pass.model;
    const int64_t n = pass.batch.num_tokens();
    const int64_t hidden = model.config.hidden_size;
    const int num_layers = model.config.num_layers;
    Trunk trunk;

    Tensor x = Tensor::empty(pass.allocator, DType::F32, {n, hidden}, "hidden states");
    cpu::embedding_forward(x.f32(), pass.batch.tokens.data(), model.embed_tokens.f32(), n, hidden);
    if (keep && !checkpointing) trunk.layer_saved.resize(num_layers);
    for (int l = 0; l < num_layers; ++l) {
        report(options, AXL_STAGE_FORWARD, l, num_layers);
        Tensor y = Tensor::empty(pass.allocator, DType::F32, {n, hidden}, "hidden states");
        if (keep && checkpointing) trunk.layer_inputs.push_back(x);
        LayerSaved* saved = keep && !checkpointing ? &trunk.layer_saved[l] : nullptr;
        decoder_layer_forward(pass, l, x.f32(), y.f32(), saved);
        x = y;
    }
    report(options, AXL_STAGE_FORWARD, num_layers, num_layers);
    trunk.final_input = x;
    trunk.final_rstd = Tensor::empty(pass.allocator, DType::F32, {n}, "final norm rstd");
    trunk.normed = Tensor::empty(pass.allocator, DType::F32, {n, hidden}, "final norm");
    cpu::rmsnorm_forward(trunk.normed.f32(), trunk.final_rstd.f32(), x.f32(), model.final_norm.f32(),
                         n, hidden, static_cast<float>(model.config.rms_norm_eps));
    return trunk;
}

// Sum of token losses over all rows; when `d_normed` is given, also writes the gradient of that
// sum with respect to the final normed hidden states.
double head_loss(const PassContext& pass, const Trunk& trunk, float* d_normed) {
    const Model& model = pass.model;
    const int64_t n = pass.batch.num_tokens();
    const int64_t hidden = model.config.hidden_size;
    const int64_t vocab = model.config.vocab_size;
    Tensor weight = linear_weight_f32(model.lm_head, pass.allocator);
    const int64_t chunk = head_chunk_rows(vocab);
    Tensor logits = Tensor::empty(pass.allocator, DType::F32, {chunk, vocab}, "logits chunk");
    double loss_sum = 0.0;
    for (int64_t row = 0; row < n; row += chunk) {
        const int64_t rows = std::min(chunk, n - row);
        cpu::matmul(logits.f32(), trunk.normed.f32() + row * hidden, weight.f32(), rows, vocab,
                    hidden, false, true, 1.0f, 0.0f);
        float* dlogits = d_normed != nullptr ? logits.f32() : nullptr;
        loss_sum += cpu::cross_entropy_forward_backward(dlogits, logits.f32(),
                                                        pass.batch.targets.data() + row, rows,
                                                        vocab, 1.0f);
        if (d_normed != nullptr)
            cpu::matmul(d_normed + row * hidden, logits.f32(), weight.f32(), rows, hidden, vocab,
                        false, false, 1.0f, 0.0f);
    }
    return loss_sum;
}

}  // namespace

double evaluate_loss_sum(const Model& model, const LoraAdapter* lora, const PreparedBatch& batch) {
    const auto& allocator = model.context->host_allocator();
    RopeTables rope = make_rope_tables(model, batch, allocator);
    PassContext pass{model, lora, nullptr, batch, allocator, rope.cos.f32(), rope.sin.f32(), false, 0};
    Trunk trunk = run_trunk(pass, false, false, nullptr);
    return head_loss(pass, trunk, nullptr);
}

void forward_logits(const Model& model, const LoraAdapter* lora, const PreparedBatch& batch,
                    const std::vector<int64_t>& positions, float* logits) {
    const auto& allocator = model.context->host_allocator();
    RopeTables rope = make_rope_tables(model, batch, allocator);
    PassContext pass{model, lora, nullptr, batch, allocator, rope.cos.f32(), rope.sin.f32(), false, 0};
    Trunk trunk = run_trunk(pass, false, false, nullptr);
    const int64_t hidden = model.config.hidden_size;
    const int64_t count = static_cast<int64_t>(positions.size());
    Tensor selected = Tensor::empty(allocator, DType::F32, {count, hidden}, "selected hidden states");
    for (int64_t i = 0; i < count; ++i)
        std::memcpy(selected.f32() + i * hidden, trunk.normed.f32() + positions[i] * hidden,
                    sizeof(float) * hidden);
    Tensor weight = linear_weight_f32(model.lm_head, allocator);
    cpu::matmul(logits, selected.f32(), weight.f32(), count, model.config.vocab_size, hidden, false,
                true, 1.0f, 0.0f);
}

double train_loss_sum_and_backward(const Model& model, LoraAdapter& lora,
                                   const PreparedBatch& batch, const PassOptions& options) {
    const auto& allocator = model.context->host_allocator();
    const int64_t n = batch.num_tokens();
    const int64_t hidden = model.config.hidden_size;
    const int num_layers = model.config.num_layers;
    RopeTables rope = make_rope_tables(model, batch, allocator);
    PassContext pass{model, &lora, &lora, batch, allocator, rope.cos.f32(), rope.sin.f32(), true,
                     options.dropout_seed};

    Trunk trunk = run_trunk(pass, true, options.gradient_checkpointing, &options);
    Tensor d_normed = Tensor::empty(allocator, DType::F32, {n, hidden}, "final norm gradient");
    double loss_sum = head_loss(pass, trunk, d_normed.f32());

    Tensor dy = Tensor::empty(allocator, DType::F32, {n, hidden}, "hidden state gradient");
    cpu::rmsnorm_backward(dy.f32(), nullptr, d_normed.f32(), trunk.final_input.f32(),
                          model.final_norm.f32(), trunk.final_rstd.f32(), n, hidden);
    trunk.normed = Tensor();
    d_normed = Tensor();
    Tensor dx = Tensor::empty(allocator, DType::F32, {n, hidden}, "hidden state gradient");
    for (int l = num_layers - 1; l >= 0; --l) {
        report(&options, AXL_STAGE_BACKWARD, num_layers - 1 - l, num_layers);
        if (options.gradient_checkpointing) {
            LayerSaved saved;
            Tensor scratch = Tensor::empty(allocator, DType::F32, {n, hidden}, "recomputed output");
            decoder_layer_forward(pass, l, trunk.layer_inputs[l].f32(), scratch.f32(), &saved);
            trunk.layer_inputs[l] = Tensor();
            decoder_layer_backward(pass, l, saved, dy.f32(), dx.f32());
        } else {
            decoder_layer_backward(pass, l, trunk.layer_saved[l], dy.f32(), dx.f32());
            trunk.layer_saved[l] = LayerSaved();
        }
        std::swap(dx, dy);
    }
    // The step is complete: the last report informs but can no longer cancel.
    if (options.progress_fn != nullptr) {
        axl_progress done{sizeof(axl_progress), AXL_STAGE_BACKWARD, num_layers, num_layers,
                          "decoder layer"};
        options.progress_fn(options.progress_user_data, &done);
    }
    return loss_sum;
}

}  // namespace axl
