// The CUDA training step against the CPU step (the reference that matches PEFT), on a small
// random Llama-shaped model (hidden 256, 2 layers, 4 heads / 2 kv heads of 64, MLP 768, vocab
// 1000, B=2, T=128, LoRA r=16 on every linear with B initialised at random so that A and B
// both get gradients):
//   1. loss and LoRA gradients of one micro-batch, bf16 and NF4 bases, with checkpointing;
//   2. LoRA weights after one Trainer step (AdamW, clipping) on each backend;
//   3. 200 steps on a learnable task (tokens counting up modulo 16): the loss falls on CUDA as
//      on the CPU;
//   4. the device memory budget: a step under a budget too small fails with
//      AXL_ERR_OUT_OF_MEMORY (at the model upload, then at the activations), and the next step
//      under a larger budget succeeds;
//   5. activation offload (AXL_CHECKPOINT_LAYERS_OFFLOAD) against plain checkpointing on a
//      deeper model with more tokens (24 layers, intermediate 512, B=8, T=512), where the layer
//      inputs dominate the activations: bit-identical loss (the same kernels on the same data)
//      and LoRA gradients equal to rounding (the attention backward's dQ sums in f32 in no fixed
//      order), a lower device peak (both printed), and Trainer steps that match (step 0's
//      loss bit for bit), through a step that fails part-way under a budget (copies in flight).
// Tolerances: the CUDA step keeps activations in bf16 (unit roundoff u = 2^-8) where the CPU
// keeps f32, so the comparisons are at bf16 level: loss |diff| <= 0.01 * loss; gradients
// ||g_cuda - g_cpu|| / ||g_cpu|| <= 0.05 per LoRA tensor; grad norm 0.05 relative; weights
// after a step rms(w_cuda - w_cpu) <= 0.5 lr (AdamW's first step is lr * sign(g) per element).
// Exit: 0 all passed, 1 a check failed, 77 no CUDA device (ctest: skipped).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "backend/cuda/device.hpp"
#include "backend/cuda/device_trainer.hpp"
#include "core/error.hpp"
#include "cuda/synthetic_model.hpp"
#include "lora/lora.hpp"
#include "train/decoder_pass.hpp"
#include "train/trainer.hpp"

using namespace axl;

namespace {

constexpr int kSkipExitCode = 77;
constexpr int kBatch = 2;
constexpr int kSeq = 128;
int failures = 0;

void check(bool ok, const char* what, double value, double tolerance) {
    std::printf("%-58s %12.4g  (tolerance %.3g)  %s\n", what, value, tolerance, ok ? "ok" : "FAILED");
    if (!ok) ++failures;
}

std::shared_ptr<Context> make_context(int32_t backend) {
    axl_context_options options{};
    options.struct_size = sizeof options;
    options.backend = backend;
    options.log_level = AXL_LOG_WARN;
    return std::make_shared<Context>(options);
}

LoraConfig lora_config() {
    LoraConfig config;
    config.rank = 16;
    config.alpha = 32.0;
    config.seed = 7;
    config.init = LoraInit::RandomB;
    return config;
}

std::vector<int32_t> random_tokens(int vocab, uint64_t seed, int count = kBatch * kSeq) {
    std::vector<int32_t> tokens(count);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(counter_random(seed, i) % vocab);
    return tokens;
}

// Every row counts up modulo 16 from its own start: learnable by the adapter.
std::vector<int32_t> counting_tokens(int row_offset) {
    std::vector<int32_t> tokens(kBatch * kSeq);
    for (int b = 0; b < kBatch; ++b)
        for (int t = 0; t < kSeq; ++t) tokens[b * kSeq + t] = (b * 5 + row_offset + t) % 16;
    return tokens;
}

axl_batch make_batch(const std::vector<int32_t>& tokens, int batch_size = kBatch, int seq = kSeq) {
    axl_batch batch{};
    batch.struct_size = sizeof batch;
    batch.batch_size = batch_size;
    batch.seq_len = seq;
    batch.tokens = tokens.data();
    return batch;
}

double relative_error(const float* a, const float* b, int64_t n) {
    double diff = 0.0, ref = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        ref += double(b[i]) * b[i];
    }
    return ref > 0.0 ? std::sqrt(diff / ref) : std::sqrt(diff);
}

// The same model on a CUDA context: a copy of the Model sharing its host tensors.
std::shared_ptr<Model> on_context(const Model& model, const std::shared_ptr<Context>& context) {
    auto twin = std::make_shared<Model>(model);
    twin->context = context;
    if (model.lm_head.weight.data() == model.embed_tokens.data()) twin->lm_head.weight = twin->embed_tokens;
    return twin;
}

// One micro-batch of batch_size x seq tokens on both backends: loss and LoRA gradients.
void check_one_micro_batch(test::BaseStorage storage, const char* name, const std::shared_ptr<Context>& cpu,
                           const std::shared_ptr<Context>& gpu, QuantFormat format = QuantFormat::NF4,
                           int batch_size = kBatch, int seq = kSeq) {
    test::SyntheticModelOptions options;
    options.storage = storage;
    options.quant_format = format;
    options.std = 0.05f;
    auto model_cpu = test::make_synthetic_model(cpu, options);
    auto model_gpu = on_context(*model_cpu, gpu);
    auto lora_cpu = create_lora(model_cpu, lora_config());
    auto lora_gpu = create_lora(model_gpu, lora_config());

    std::vector<int32_t> tokens = random_tokens(options.vocab, 11, batch_size * seq);
    PreparedBatch batch = prepare_batch(make_batch(tokens, batch_size, seq), model_cpu->config);
    PassOptions pass;
    pass.gradient_checkpointing = true;
    lora_cpu->zero_gradients();
    const double loss_cpu = train_loss_sum_and_backward(*model_cpu, *lora_cpu, batch, pass) / batch.num_targets;
    cuda::DeviceTrainer device(*lora_gpu);
    const double loss_gpu = device.train_loss_sum_and_backward(*lora_gpu, batch, pass) / batch.num_targets;
    std::printf("[%s] loss cpu %.6f cuda %.6f\n", name, loss_cpu, loss_gpu);
    char what[128];
    std::snprintf(what, sizeof what, "[%s] loss |cuda - cpu| / cpu", name);
    check(std::fabs(loss_gpu - loss_cpu) <= 0.01 * std::fabs(loss_cpu), what,
          std::fabs(loss_gpu - loss_cpu) / std::fabs(loss_cpu), 0.01);

    std::vector<float> grads_gpu = device.gradients();
    double worst_a = 0.0, worst_b = 0.0;
    int64_t offset = 0, index = 0;
    for (const Tensor& g : lora_cpu->gradients()) {
        const double err = relative_error(grads_gpu.data() + offset, g.f32(), g.numel());
        (index % 2 == 0 ? worst_a : worst_b) = std::max(index % 2 == 0 ? worst_a : worst_b, err);
        offset += g.numel();
        ++index;
    }
    std::snprintf(what, sizeof what, "[%s] worst LoRA A gradient relative error", name);
    check(worst_a <= 0.05, what, worst_a, 0.05);
    std::snprintf(what, sizeof what, "[%s] worst LoRA B gradient relative error", name);
    check(worst_b <= 0.05, what, worst_b, 0.05);
}

OptimizerSettings optimizer_settings(double lr) {
    OptimizerSettings settings;
    settings.schedule.lr = lr;
    settings.adamw.weight_decay = 0.01;
    settings.max_grad_norm = 1.0;
    return settings;
}

void check_steps(const std::shared_ptr<Context>& cpu, const std::shared_ptr<Context>& gpu) {
    test::SyntheticModelOptions options;
    options.std = 0.05f;
    auto model_cpu = test::make_synthetic_model(cpu, options);
    auto model_gpu = on_context(*model_cpu, gpu);

    // One step: updated weights.
    {
        auto lora_cpu = create_lora(model_cpu, lora_config());
        auto lora_gpu = create_lora(model_gpu, lora_config());
        Trainer trainer_cpu(std::make_shared<Optimizer>(lora_cpu, optimizer_settings(1e-3)), TrainerSettings{});
        Trainer trainer_gpu(std::make_shared<Optimizer>(lora_gpu, optimizer_settings(1e-3)), TrainerSettings{});
        std::vector<int32_t> tokens = random_tokens(options.vocab, 12);
        StepOutcome a = trainer_cpu.step(make_batch(tokens));
        StepOutcome b = trainer_gpu.step(make_batch(tokens));
        std::printf("[step] loss cpu %.6f cuda %.6f, grad norm cpu %.6f cuda %.6f, step %lld/%lld\n", a.loss, b.loss,
                    a.grad_norm, b.grad_norm, static_cast<long long>(a.optimizer_step),
                    static_cast<long long>(b.optimizer_step));
        check(std::fabs(a.grad_norm - b.grad_norm) <= 0.05 * a.grad_norm, "[step] grad norm |cuda - cpu| / cpu",
              std::fabs(a.grad_norm - b.grad_norm) / a.grad_norm, 0.05);
        // AdamW's first step moves each weight by about lr * sign(g) (m / sqrt(v) = g / |g|), so an
        // element whose gradient is within bf16 noise of 0 may step the other way: the weights
        // are compared in learning-rate units, rms(w_cuda - w_cpu) / lr <= 0.5.
        std::vector<Tensor> pa = lora_cpu->parameters(), pb = lora_gpu->parameters();
        double worst = 0.0, sum_sq = 0.0;
        int64_t count = 0;
        for (size_t i = 0; i < pa.size(); ++i) {
            worst = std::max(worst, relative_error(pb[i].f32(), pa[i].f32(), pa[i].numel()));
            for (int64_t j = 0; j < pa[i].numel(); ++j) {
                const double d = double(pb[i].f32()[j]) - pa[i].f32()[j];
                sum_sq += d * d;
            }
            count += pa[i].numel();
        }
        std::printf("[step] worst relative error of the updated LoRA weights %.3g\n", worst);
        const double rms_in_lr = std::sqrt(sum_sq / count) / 1e-3;
        check(rms_in_lr <= 0.5, "[step] rms(updated w_cuda - w_cpu) / lr", rms_in_lr, 0.5);
    }

    // 200 steps of learning.
    auto lora_cpu = create_lora(model_cpu, lora_config());
    auto lora_gpu = create_lora(model_gpu, lora_config());
    Trainer trainer_cpu(std::make_shared<Optimizer>(lora_cpu, optimizer_settings(2e-3)), TrainerSettings{});
    Trainer trainer_gpu(std::make_shared<Optimizer>(lora_gpu, optimizer_settings(2e-3)), TrainerSettings{});
    double first_cpu = 0, first_gpu = 0, last_cpu = 0, last_gpu = 0;
    double seconds_cpu = 0, seconds_gpu = 0;
    constexpr int kSteps = 200;
    for (int step = 0; step < kSteps; ++step) {
        std::vector<int32_t> tokens = counting_tokens(step);
        auto t0 = std::chrono::steady_clock::now();
        const double loss_cpu = trainer_cpu.step(make_batch(tokens)).loss;
        auto t1 = std::chrono::steady_clock::now();
        const double loss_gpu = trainer_gpu.step(make_batch(tokens)).loss;
        auto t2 = std::chrono::steady_clock::now();
        seconds_cpu += std::chrono::duration<double>(t1 - t0).count();
        seconds_gpu += std::chrono::duration<double>(t2 - t1).count();
        if (step == 0) first_cpu = loss_cpu, first_gpu = loss_gpu;
        if (step >= kSteps - 10) last_cpu += loss_cpu / 10, last_gpu += loss_gpu / 10;
        if (step % 40 == 0 || step == kSteps - 1)
            std::printf("[learn] step %3d loss cpu %.4f cuda %.4f\n", step, loss_cpu, loss_gpu);
    }
    std::printf("[learn] first %.4f / %.4f, mean of last 10: cpu %.4f cuda %.4f; %.1f ms/step cpu, %.1f ms/step cuda\n",
                first_cpu, first_gpu, last_cpu, last_gpu, 1e3 * seconds_cpu / kSteps, 1e3 * seconds_gpu / kSteps);
    check(last_gpu < 0.5 * first_gpu, "[learn] cuda final / first loss", last_gpu / first_gpu, 0.5);
    check(std::fabs(last_gpu - last_cpu) <= 0.1 * first_cpu, "[learn] |final cuda - final cpu| / first cpu",
          std::fabs(last_gpu - last_cpu) / first_cpu, 0.1);
}

axl_status status_of_step(Trainer& trainer, const axl_batch& batch) {
    try {
        trainer.step(batch);
        return AXL_OK;
    } catch (const Error& e) {
        std::printf("  step failed as expected: %s\n", e.what());
        return e.code();
    }
}

void check_budget() {
    auto gpu = make_context(AXL_BACKEND_CUDA);
    test::SyntheticModelOptions options;
    auto model = test::make_synthetic_model(gpu, options);
    auto lora = create_lora(model, lora_config());
    Trainer trainer(std::make_shared<Optimizer>(lora, optimizer_settings(1e-3)), TrainerSettings{});
    std::vector<int32_t> tokens = random_tokens(options.vocab, 13);
    const axl_batch batch = make_batch(tokens);

    gpu->set_device_memory_budget(uint64_t{1} << 20);
    check(status_of_step(trainer, batch) == AXL_ERR_OUT_OF_MEMORY, "[budget] 1 MiB: OUT_OF_MEMORY (1 = yes)", 1, 1);
    gpu->set_device_memory_budget(uint64_t{4} << 30);
    check(status_of_step(trainer, batch) == AXL_OK, "[budget] 4 GiB: the step succeeds (1 = yes)", 1, 1);
    const uint64_t resident = gpu->device_current_bytes();
    const uint64_t peak = gpu->device_peak_bytes();
    std::printf("[budget] resident after a step %.1f MiB, peak %.1f MiB\n", resident / 1048576.0, peak / 1048576.0);
    gpu->set_device_memory_budget(resident + (uint64_t{1} << 20));
    check(status_of_step(trainer, batch) == AXL_ERR_OUT_OF_MEMORY,
          "[budget] resident + 1 MiB: OUT_OF_MEMORY in the pass (1 = yes)", 1, 1);
    gpu->set_device_memory_budget(0);
    const bool ok = status_of_step(trainer, batch) == AXL_OK;
    check(ok && trainer.step(batch).optimizer_step == 3, "[budget] no limit: the next steps succeed (1 = yes)", 1, 1);
}

// Loss and gradients of one micro-batch with and without offload, and the device peak of each.
void check_offload_pass(const std::shared_ptr<Context>& gpu, const std::shared_ptr<Model>& model,
                        const axl_batch& input) {
    auto lora_plain = create_lora(model, lora_config());
    auto lora_offload = create_lora(model, lora_config());
    const PreparedBatch batch = prepare_batch(input, model->config);
    PassOptions plain;
    plain.gradient_checkpointing = true;
    PassOptions offload = plain;
    offload.offload_activations = true;
    cuda::DeviceTrainer device_plain(*lora_plain);
    cuda::DeviceTrainer device_offload(*lora_offload);
    // The first pass of each uploads the model and its adapter and grows the pinned buffers;
    // the second is measured.
    device_plain.train_loss_sum_and_backward(*lora_plain, batch, plain);
    device_offload.train_loss_sum_and_backward(*lora_offload, batch, offload);
    device_plain.zero_gradients();
    device_offload.zero_gradients();

    const uint64_t resident = gpu->device_current_bytes();
    gpu->reset_device_peak();
    const double loss_plain = device_plain.train_loss_sum_and_backward(*lora_plain, batch, plain);
    const uint64_t peak_plain = gpu->device_peak_bytes();
    gpu->reset_device_peak();
    const double loss_offload = device_offload.train_loss_sum_and_backward(*lora_offload, batch, offload);
    const uint64_t peak_offload = gpu->device_peak_bytes();
    const double layer_inputs = double(model->config.num_layers + 1) * batch.num_tokens() *
                                model->config.hidden_size * sizeof(uint16_t);
    std::printf("[offload] loss sum plain %.17g offload %.17g\n", loss_plain, loss_offload);
    std::printf("[offload] device peak plain %.1f MiB, offload %.1f MiB (resident %.1f MiB, layer inputs "
                "%.1f MiB)\n", peak_plain / 1048576.0, peak_offload / 1048576.0, resident / 1048576.0,
                layer_inputs / 1048576.0);
    check(loss_plain == loss_offload, "[offload] loss bit-identical (1 = yes)", loss_plain == loss_offload, 1);

    // The attention backward adds dQ in f32 in whatever order its blocks finish, so gradients
    // repeat to rounding, not to the bit; offloading the wrong data would move them by O(1).
    const std::vector<float> grads_plain = device_plain.gradients();
    const std::vector<float> grads_offload = device_offload.gradients();
    double diff_squares = grads_plain.size() == grads_offload.size() ? 0.0 : INFINITY, plain_squares = 0.0;
    for (size_t i = 0; std::isfinite(diff_squares) && i < grads_plain.size(); ++i) {
        const double d = double(grads_offload[i]) - grads_plain[i];
        diff_squares += d * d;
        plain_squares += double(grads_plain[i]) * grads_plain[i];
    }
    check(diff_squares <= 1e-6 * plain_squares, "[offload] LoRA gradients ||offload - plain|| / ||plain||",
          std::sqrt(diff_squares / plain_squares), 1e-3);
    check(peak_offload < peak_plain, "[offload] device peak offload / plain", double(peak_offload) / peak_plain, 1);
}

// Trainer steps with and without offload; the offloading one also fails a step part-way.
void check_offload_steps(const std::shared_ptr<Context>& gpu, const std::shared_ptr<Model>& model,
                         const std::vector<std::vector<int32_t>>& steps, int rows, int len) {
    auto lora_plain = create_lora(model, lora_config());
    auto lora_offload = create_lora(model, lora_config());
    TrainerSettings plain;
    TrainerSettings offload;
    offload.offload_activations = true;
    Trainer trainer_plain(std::make_shared<Optimizer>(lora_plain, optimizer_settings(1e-3)), plain);
    Trainer trainer_offload(std::make_shared<Optimizer>(lora_offload, optimizer_settings(1e-3)), offload);
    auto batch_of = [&](const std::vector<int32_t>& tokens) {
        axl_batch batch = make_batch(tokens);
        batch.batch_size = rows;
        batch.seq_len = len;
        return batch;
    };
    int matching = 0;
    uint64_t working = 0;  // device bytes of an offloading step beyond what stays resident
    for (size_t s = 0; s < steps.size(); ++s) {
        const axl_batch batch = batch_of(steps[s]);
        const StepOutcome a = trainer_plain.step(batch);
        if (s == 1) {
            // Half the working set: the step fails in the middle of the pass, with transfers
            // between host and device queued; it must leave nothing behind.
            gpu->set_device_memory_budget(gpu->device_current_bytes() + working / 2);
            const axl_status status = status_of_step(trainer_offload, batch);
            gpu->set_device_memory_budget(0);
            check(status == AXL_ERR_OUT_OF_MEMORY, "[offload] half the working set: OUT_OF_MEMORY (1 = yes)",
                  status == AXL_ERR_OUT_OF_MEMORY, 1);
        }
        gpu->reset_device_peak();
        const StepOutcome b = trainer_offload.step(batch);
        if (s == 0) working = gpu->device_peak_bytes() - gpu->device_current_bytes();
        std::printf("[offload] step %zu loss plain %.9f offload %.9f, grad norm %.9f / %.9f\n", s, a.loss, b.loss,
                    a.grad_norm, b.grad_norm);
        // Step 0's loss comes before any update: bit for bit. Later steps start from weights
        // that AdamW moved by lr * sign(g) where g is tiny, so rounding differences in g show.
        const bool same_loss = s == 0 ? a.loss == b.loss : std::fabs(a.loss - b.loss) <= 1e-3 * std::fabs(a.loss);
        matching += same_loss && std::fabs(a.grad_norm - b.grad_norm) <= 1e-2 * a.grad_norm;
    }
    check(matching == static_cast<int>(steps.size()), "[offload] Trainer steps matching (step 0's loss exactly)",
          matching, static_cast<double>(steps.size()));
}

void check_offload() {
    auto gpu = make_context(AXL_BACKEND_CUDA);
    test::SyntheticModelOptions options;
    options.layers = 24;
    options.intermediate = 512;
    options.std = 0.05f;
    auto model = test::make_synthetic_model(gpu, options);
    constexpr int kRows = 8, kLen = 512;
    std::vector<std::vector<int32_t>> steps;
    for (uint64_t seed = 21; seed < 24; ++seed) {
        std::vector<int32_t> tokens(kRows * kLen);
        for (size_t i = 0; i < tokens.size(); ++i)
            tokens[i] = static_cast<int32_t>(counter_random(seed, i) % options.vocab);
        steps.push_back(std::move(tokens));
    }
    axl_batch batch = make_batch(steps[0]);
    batch.batch_size = kRows;
    batch.seq_len = kLen;
    check_offload_pass(gpu, model, batch);
    check_offload_steps(gpu, model, steps, kRows, kLen);
}

}  // namespace

int main() {
    if (cuda::device_count() == 0) {
        std::printf("no CUDA device: skipped\n");
        return kSkipExitCode;
    }
    try {
        auto cpu = make_context(AXL_BACKEND_CPU);
        auto gpu = make_context(AXL_BACKEND_CUDA);
        std::printf("device: %s\n", gpu->cuda()->device().name().c_str());
        check_one_micro_batch(test::BaseStorage::BF16, "bf16 base", cpu, gpu);
        check_one_micro_batch(test::BaseStorage::NF4Quantized, "nf4 base", cpu, gpu);
        // 12 tokens: the 4-bit linears take the fused dequantize + GEMM (kernels/dequant_gemm.cu).
        check_one_micro_batch(test::BaseStorage::NF4Quantized, "nf4 base, 12 tokens (fused dequant+GEMM)", cpu,
                              gpu, QuantFormat::NF4, 1, 12);
        // Every other format, dequantized on the device from its packed codes.
        for (QuantFormat format : {QuantFormat::FP4, QuantFormat::Int8Row, QuantFormat::Int4Group,
                                   QuantFormat::Int8Channel, QuantFormat::Fp8E4M3, QuantFormat::NVFP4}) {
            const std::string name = std::string(quant_format_name(format)) + " base";
            check_one_micro_batch(test::BaseStorage::Quantized, name.c_str(), cpu, gpu, format);
        }
        check_steps(cpu, gpu);
        check_budget();
        check_offload();
    } catch (const std::exception& e) {
        std::printf("FAILED with an exception: %s\n", e.what());
        return 1;
    }
    std::printf("%s: %d check(s) failed\n", failures == 0 ? "PASSED" : "FAILED", failures);
    return failures == 0 ? 0 : 1;
}
