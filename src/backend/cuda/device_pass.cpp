#include "backend/cuda/device_pass.hpp"

#include <algorithm>
#include <optional>
#include <vector>

#include "backend/cuda/check.hpp"
#include "backend/cuda/device_layer.hpp"
#include "backend/cuda/device_projection.hpp"
#include "backend/cuda/ops.hpp"
#include "core/error.hpp"
#include "model/rope_frequencies.hpp"

namespace axl::cuda {

namespace {

// Rows of logits materialised at a time: about 256 MiB of bf16 logits (their gradient is
// written over them), a multiple of 64 rows for the GEMMs when the vocabulary allows. (Chunks
// sized for two waves of the input-gradient GEMM, 2112 rows on the 1B shape, measured no faster.)
int64_t head_chunk_rows(int64_t vocab, int64_t rows) {
    int64_t chunk = std::max<int64_t>(1, (int64_t{128} << 20) / vocab);
    if (chunk >= 64) chunk -= chunk % 64;
    return std::min(chunk, std::max<int64_t>(rows, 1));
}

// The batch's ids, targets, positions and segments in one upload.
struct UploadedBatch {
    DeviceBuffer storage;
    DeviceBatch batch;
};

UploadedBatch upload_batch(Runtime& runtime, const PreparedBatch& host) {
    const int64_t n = host.num_tokens();
    const bool packed = !host.segments.empty();
    std::vector<int32_t> staging;
    staging.reserve((packed ? 4 : 3) * n);
    for (const std::vector<int32_t>* part : {&host.tokens, &host.targets, &host.positions, &host.segments})
        staging.insert(staging.end(), part->begin(), part->end());
    UploadedBatch up;
    up.storage = DeviceBuffer(runtime.allocator(), sizeof(int32_t) * staging.size(), "batch");
    AXL_CUDA_CHECK(cudaMemcpyAsync(up.storage.data(), staging.data(), sizeof(int32_t) * staging.size(),
                                   cudaMemcpyHostToDevice, runtime.device().stream()));
    const int32_t* base = up.storage.as<int32_t>();
    up.batch = DeviceBatch{host.batch_size, host.seq_len, base, base + n, base + 2 * n, packed ? base + 3 * n : nullptr};
    return up;
}

struct RopeTables {
    DeviceBuffer cos, sin;
};

RopeTables make_rope_tables(Runtime& runtime, const ModelConfig& c, const PreparedBatch& batch) {
    const int64_t max_pos = 1 + *std::max_element(batch.positions.begin(), batch.positions.end());
    const int64_t half = c.head_dim / 2;
    std::vector<float> inv_freq = rope_inv_freq(c.rope, c.head_dim);
    DeviceBuffer inv(runtime.allocator(), sizeof(float) * inv_freq.size(), "rope inverse frequencies");
    cudaStream_t stream = runtime.device().stream();
    AXL_CUDA_CHECK(cudaMemcpyAsync(inv.data(), inv_freq.data(), sizeof(float) * inv_freq.size(),
                                   cudaMemcpyHostToDevice, stream));
    RopeTables tables;
    tables.cos = DeviceBuffer(runtime.allocator(), sizeof(float) * max_pos * half, "rope cos");
    tables.sin = DeviceBuffer(runtime.allocator(), sizeof(float) * max_pos * half, "rope sin");
    rope_tables(tables.cos.as<float>(), tables.sin.as<float>(), inv.as<float>(), max_pos, half, stream);
    return tables;
}

void report(const PassOptions& options, int32_t stage, int64_t done, int64_t total) {
    if (options.progress_fn == nullptr) return;
    axl_progress progress{sizeof(axl_progress), stage, done, total, "decoder layer"};
    if (options.progress_fn(options.progress_user_data, &progress) != 0)
        fail(AXL_ERR_CANCELLED, "training step cancelled by the progress callback");
}

// The hidden states after the last layer and the final norm, plus what backward needs.
struct Trunk {
    std::vector<DeviceBuffer> layer_inputs;       // bf16 [N, hidden]; [num_layers] is the last output;
                                                  // empty where offloaded (held by OffloadedCheckpoints)
    std::vector<DeviceLayerSaved> layer_saved;    // [l] filled where layer l keeps its activations
    DeviceBuffer final_rstd;                      // f32 [N]
    DeviceBuffer normed;                          // bf16 [N, hidden]
};

// Whether layer l keeps what its backward reads from the forward, instead of recomputing it:
// every layer without checkpointing; with it, the last one, whose backward comes right after the
// head (its activations live through the head's chunks, which need less than its backward, so
// the peak does not grow; the step saves one layer's recomputed forward).
bool keeps_activations(bool checkpointing, int layer, int num_layers) {
    return !checkpointing || layer == num_layers - 1;
}

Trunk run_trunk(const DevicePass& pass, bool checkpointing, OffloadedCheckpoints* offloaded,
                const PassOptions& options) {
    const ModelConfig& c = pass.config;
    const int64_t n = pass.batch.num_tokens();
    const int64_t hidden = c.hidden_size;
    const int num_layers = c.num_layers;
    cudaStream_t stream = pass.stream();
    Trunk trunk;

    trunk.layer_inputs.push_back(device_bf16(pass, n, hidden, "hidden states"));
    {
        ProfileScope timed = pass.timed("embedding");
        embedding_forward(trunk.layer_inputs[0].as<bf16>(), pass.batch.tokens, pass.model.embed_tokens, n, hidden,
                          stream);
    }
    trunk.layer_saved.resize(num_layers);
    for (int l = 0; l < num_layers; ++l) {
        report(options, AXL_STAGE_FORWARD, l, num_layers);
        DeviceBuffer y = device_bf16(pass, n, hidden, "hidden states");
        DeviceLayerSaved* saved = keeps_activations(checkpointing, l, num_layers) ? &trunk.layer_saved[l] : nullptr;
        if (offloaded != nullptr && l < offloaded->count()) {
            const bf16* x = offloaded->store(l, std::move(trunk.layer_inputs[l]));
            device_layer_forward(pass, l, x, y.as<bf16>(), saved);
            offloaded->release(l);
        } else {
            device_layer_forward(pass, l, trunk.layer_inputs[l].as<bf16>(), y.as<bf16>(), saved);
        }
        trunk.layer_inputs.push_back(std::move(y));
    }
    report(options, AXL_STAGE_FORWARD, num_layers, num_layers);
    trunk.final_rstd = device_f32(pass, n, 1, "final norm rstd");
    trunk.normed = device_bf16(pass, n, hidden, "final norm");
    ProfileScope timed = pass.timed("rmsnorm forward");
    rmsnorm_forward(trunk.normed.as<bf16>(), trunk.final_rstd.as<float>(), trunk.layer_inputs[num_layers].as<bf16>(),
                    pass.model.final_norm, n, hidden, static_cast<float>(c.rms_norm_eps), stream);
    return trunk;
}

// Per-row token losses into row_loss (on the device) and the gradient of their sum with
// respect to the final normed hidden states into d_normed.
void head_loss(const DevicePass& pass, const Trunk& trunk, float* row_loss, bf16* d_normed) {
    const int64_t n = pass.batch.num_tokens();
    const int64_t hidden = pass.config.hidden_size;
    const int64_t vocab = pass.config.vocab_size;
    const int64_t chunk = head_chunk_rows(vocab, n);
    DeviceBuffer logits = device_bf16(pass, chunk, vocab, "logits chunk (then their gradient)");
    ProfileScope timed = pass.timed("LM head + cross-entropy");
    linear_cross_entropy(pass.runtime.blas(), row_loss, d_normed, trunk.normed.as<bf16>(), pass.model.lm_head.weight,
                         pass.batch.targets, n, hidden, vocab, 1.0f, logits.as<bf16>(), chunk);
}

}  // namespace

double train_loss_sum_and_backward(Runtime& runtime, const ModelConfig& config, const DeviceModel& model,
                                   const DeviceLora& lora, const PreparedBatch& batch, const PassOptions& options,
                                   ActivationOffload* offload) {
    runtime.device().make_current();
    cudaStream_t stream = runtime.device().stream();
    const int64_t n = batch.num_tokens();
    const int64_t hidden = config.hidden_size;
    const int num_layers = config.num_layers;
    UploadedBatch uploaded = upload_batch(runtime, batch);
    RopeTables rope = make_rope_tables(runtime, config, batch);
    DevicePass pass{runtime, config, model, &lora, uploaded.batch, rope.cos.as<float>(), rope.sin.as<float>(), nullptr};
    DeviceBuffer weight_scratch;
    if (const int64_t elements = weight_scratch_elements(pass); elements > 0) {
        weight_scratch = DeviceBuffer(runtime.allocator(), sizeof(bf16) * elements, "dequantized base weight");
        pass.weight_scratch = weight_scratch.as<bf16>();
    }

    // The last layer's input is needed again right after the head: it stays on the device.
    std::optional<OffloadedCheckpoints> offloaded;
    if (options.gradient_checkpointing && options.offload_activations) {
        require(offload != nullptr, AXL_ERR_INTERNAL, "activation offload requested without its state");
        offloaded.emplace(*offload, num_layers - 1, sizeof(bf16) * n * hidden);
    }
    OffloadedCheckpoints* offloaded_inputs = offloaded ? &*offloaded : nullptr;
    Trunk trunk = run_trunk(pass, options.gradient_checkpointing, offloaded_inputs, options);
    DeviceBuffer row_loss = device_f32(pass, n, 1, "token losses");
    DeviceBuffer d_normed = device_bf16(pass, n, hidden, "final norm gradient");
    head_loss(pass, trunk, row_loss.as<float>(), d_normed.as<bf16>());

    DeviceBuffer dy = device_bf16(pass, n, hidden, "hidden state gradient");
    {
        ProfileScope timed = pass.timed("rmsnorm backward");
        rmsnorm_backward(dy.as<bf16>(), nullptr, d_normed.as<bf16>(), trunk.layer_inputs[num_layers].as<bf16>(),
                         model.final_norm, trunk.final_rstd.as<float>(), n, hidden, stream);
    }
    trunk.normed = DeviceBuffer();
    trunk.layer_inputs[num_layers] = DeviceBuffer();
    d_normed = DeviceBuffer();
    DeviceBuffer dx = device_bf16(pass, n, hidden, "hidden state gradient");
    for (int l = num_layers - 1; l >= 0; --l) {
        report(options, AXL_STAGE_BACKWARD, num_layers - 1 - l, num_layers);
        if (offloaded_inputs != nullptr) {
            if (l < offloaded_inputs->count()) trunk.layer_inputs[l] = offloaded_inputs->fetch(l);
            if (l > 0) offloaded_inputs->prefetch(l - 1);  // copied back while this layer runs
        }
        const bf16* x = trunk.layer_inputs[l].as<bf16>();
        if (keeps_activations(options.gradient_checkpointing, l, num_layers)) {
            device_layer_backward(pass, l, x, trunk.layer_saved[l], dy.as<bf16>(), dx.as<bf16>());
            trunk.layer_saved[l] = DeviceLayerSaved();
        } else {
            // The recomputed forward needs only what backward reads: no layer output (y null).
            DeviceLayerSaved saved;
            device_layer_forward(pass, l, x, nullptr, &saved);
            device_layer_backward(pass, l, x, saved, dy.as<bf16>(), dx.as<bf16>());
        }
        trunk.layer_inputs[l] = DeviceBuffer();
        std::swap(dx, dy);
    }

    // The one wait of the pass: the token losses, summed in double as the CPU pass does.
    std::vector<float> losses(n);
    AXL_CUDA_CHECK(cudaMemcpyAsync(losses.data(), row_loss.data(), sizeof(float) * n, cudaMemcpyDeviceToHost, stream));
    runtime.device().synchronize();
    double loss_sum = 0.0;
    for (float loss : losses) loss_sum += loss;

    // The step is complete: the last report informs but can no longer cancel.
    if (options.progress_fn != nullptr) {
        axl_progress done{sizeof(axl_progress), AXL_STAGE_BACKWARD, num_layers, num_layers, "decoder layer"};
        options.progress_fn(options.progress_user_data, &done);
    }
    return loss_sum;
}

}  // namespace axl::cuda
