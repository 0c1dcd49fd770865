// axl-bench: LoRA training steps on the CUDA backend over synthetic Llama shapes (random
// weights built in memory, no checkpoint files), the numbers of docs/benchmarks.md.
//   axl_bench [--models 1b,8b] [--bases bf16,nf4,int4,fp8] [--batches 1,4] [--seq 2048] [--steps 5]
//             [--warmup 2] [--profile 1] [--checkpointing 1]
// --checkpointing: 0 none, 1 per layer (default), 2 per layer with the layer inputs offloaded to
// pinned host memory (AXL_CHECKPOINT_LAYERS_OFFLOAD).
// Bases (default bf16,nf4): bf16 weights, or random codes of NF4 (blocks of 64), int4 grouped
// (groups of 128) or fp8 e4m3 (a scale per row), dequantized to bf16 before each GEMM.
// --profile 1 adds one more step per case with per-op device timing (StepProfile) and prints
// where its time went.
// Shapes: 1b = hidden 2048, 16 layers, MLP 8192, 32/8 heads of 64, vocab 128256 (tied
// embeddings, as Llama 3.2 1B); 8b = hidden 4096, 32 layers, MLP 14336, 32/8 heads of 128, vocab
// 128256 (as Llama 3.1 8B). LoRA r=16, alpha 32 on every decoder linear, AdamW, clipping at 1,
// gradient checkpointing. One line per case: step time (mean of the timed steps, each ending
// with the loss and gradient norm on the host), tokens/s, peak device memory, model FLOPs rate
// and MFU against the bf16 GEMM ceiling measured first through the same cuBLASLt wrapper.
//
// FLOPs of a step, as executed (per token; L layers, P = base linear parameters per layer,
// R = LoRA parameters per layer, T = sequence length, H*d = attention width, V*h = LM head,
// I = MLP width):
//   linears   4 P L  (forward, input gradient; the frozen base has no weight gradient)
//             + (2 P - 2 h I) (L - 1) with checkpointing (the recomputed forward skips the down
//               projection's base GEMM: nobody reads the layer's output there; the last layer
//               keeps its activations and is not recomputed)
//   LoRA      6 R L  (forward 2, backward 4: dB, du, dA, dx) + (2 R - 2 r h) (L - 1) recomputed
//             (model FLOPs: where the LoRA product rides the base GEMM as extra K columns, the
//             zeros of the other projections' columns are not counted)
//   attention causal: QK^T and PV are 2 T H d per token forward, halved by the mask; forward
//             and a backward of twice the forward: 3 T H d L (+ T H d (L - 1) recomputed)
//   LM head   4 V h  (logits and the input gradient)
// PyTorch (bench/peft_bench.py) recomputes whole layers and counts 6 P, 8 R and 4 T H d.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cuda/check.hpp"
#include "backend/cuda/device_allocator.hpp"
#include "backend/cuda/ops.hpp"
#include "backend/cuda/runtime.hpp"
#include "core/error.hpp"
#include "lora/lora.hpp"
#include "train/trainer.hpp"
#include "../tests/cuda/synthetic_model.hpp"

using namespace axl;

namespace {

struct BenchShape {
    const char* name;
    int hidden, layers, intermediate, heads, kv_heads, head_dim, vocab;
    bool tied;
};

const BenchShape kShapes[] = {
    {"1b", 2048, 16, 8192, 32, 8, 64, 128256, true},
    {"8b", 4096, 32, 14336, 32, 8, 128, 128256, false},
};

std::vector<std::string> split(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream in(text);
    for (std::string item; std::getline(in, item, ',');) out.push_back(item);
    return out;
}

// The storage of a --bases name; false for an unknown name.
bool base_storage(const std::string& name, test::BaseStorage* out) {
    if (name == "bf16") *out = test::BaseStorage::BF16;
    else if (name == "nf4") *out = test::BaseStorage::NF4RandomCodes;
    else if (name == "int4") *out = test::BaseStorage::Int4RandomCodes;
    else if (name == "fp8") *out = test::BaseStorage::Fp8RandomCodes;
    else return false;
    return true;
}

std::shared_ptr<Context> cuda_context() {
    axl_context_options options{};
    options.struct_size = sizeof options;
    options.backend = AXL_BACKEND_CUDA;
    options.log_level = AXL_LOG_WARN;
    return std::make_shared<Context>(options);
}

// TFLOP/s of an 8192^3 bf16 GEMM through BlasLt (median of 10 after 3 warm-ups).
double gemm_ceiling_tflops(cuda::Runtime& runtime) {
    constexpr int64_t n = 8192;
    cuda::DeviceAllocator& allocator = runtime.allocator();
    cuda::DeviceBuffer a(allocator, sizeof(cuda::bf16) * n * n, "ceiling A");
    cuda::DeviceBuffer b(allocator, sizeof(cuda::bf16) * n * n, "ceiling B");
    cuda::DeviceBuffer c(allocator, sizeof(cuda::bf16) * n * n, "ceiling C");
    std::vector<float> ones(n * n);
    for (int64_t i = 0; i < n * n; ++i) ones[i] = static_cast<float>((i * 2654435761u % 1000) / 1000.0 - 0.5);
    cuda::DeviceBuffer f(allocator, sizeof(float) * n * n, "ceiling f32");
    cudaStream_t stream = runtime.device().stream();
    AXL_CUDA_CHECK(cudaMemcpyAsync(f.data(), ones.data(), sizeof(float) * n * n, cudaMemcpyHostToDevice, stream));
    cuda::convert(a.as<cuda::bf16>(), f.as<float>(), n * n, stream);
    cuda::convert(b.as<cuda::bf16>(), f.as<float>(), n * n, stream);
    cudaEvent_t start, stop;
    AXL_CUDA_CHECK(cudaEventCreate(&start));
    AXL_CUDA_CHECK(cudaEventCreate(&stop));
    std::vector<float> ms;
    for (int i = 0; i < 13; ++i) {
        AXL_CUDA_CHECK(cudaEventRecord(start, stream));
        cuda::matmul(runtime.blas(), c.as<cuda::bf16>(), a.as<cuda::bf16>(), b.as<cuda::bf16>(), n, n, n, false, true,
                     1.0f, 0.0f);
        AXL_CUDA_CHECK(cudaEventRecord(stop, stream));
        AXL_CUDA_CHECK(cudaEventSynchronize(stop));
        float t = 0;
        AXL_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
        if (i >= 3) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return 2.0 * n * n * n / (ms[ms.size() / 2] * 1e-3) / 1e12;
}

double step_flops(const BenchShape& s, int rank, int64_t batch, int64_t seq, bool checkpointing) {
    const double q = double(s.heads) * s.head_dim, kv = double(s.kv_heads) * s.head_dim;
    const double h = s.hidden, im = s.intermediate;
    const double base = h * q + 2 * h * kv + q * h + 3 * h * im;
    const double lora = rank * ((h + q) + 2 * (h + kv) + (q + h) + 2 * (h + im) + (im + h));
    const double per_layer = 4 * base + 6 * lora + 3.0 * seq * q;
    const double recomputed = 2 * (base - h * im) + 2 * (lora - rank * h) + seq * q;
    const int recomputed_layers = checkpointing ? s.layers - 1 : 0;
    return (s.layers * per_layer + recomputed_layers * recomputed + 4.0 * s.vocab * h) * batch * seq;
}

// One more step with per-op device timing: a table of op, ms, share of the step, calls.
void print_profile(cuda::Runtime& runtime, Trainer& trainer, const axl_batch& batch) {
    cuda::StepProfile& profile = runtime.profile();
    profile.set_enabled(true);
    const auto t0 = std::chrono::steady_clock::now();
    trainer.step(batch);
    const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::vector<cuda::StepProfile::Entry> entries = profile.take_summary(runtime.device().stream());
    profile.set_enabled(false);
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.ms > b.ms; });
    double timed = 0;
    for (const auto& e : entries) timed += e.ms;
    std::printf("  profile of one step: %.1f ms wall, %.1f ms in timed device work\n", wall_ms, timed);
    for (const auto& e : entries)
        std::printf("    %-34s %9.2f ms %5.1f%% %6lld calls\n", e.name.c_str(), e.ms, 100.0 * e.ms / wall_ms,
                    static_cast<long long>(e.calls));
    std::printf("    %-34s %9.2f ms %5.1f%%\n", "(host work and gaps)", wall_ms - timed,
                100.0 * (wall_ms - timed) / wall_ms);
}

}  // namespace

int main(int argc, char** argv) {
    std::string models = "1b,8b", bases = "bf16,nf4", batches = "1,4";
    int64_t seq = 2048;
    int steps = 5, warmup = 2;
    bool profile = false;
    int checkpointing = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string flag = argv[i], value = argv[i + 1];
        if (flag == "--models") models = value;
        else if (flag == "--bases") bases = value;
        else if (flag == "--batches") batches = value;
        else if (flag == "--seq") seq = std::stoll(value);
        else if (flag == "--steps") steps = std::stoi(value);
        else if (flag == "--warmup") warmup = std::stoi(value);
        else if (flag == "--profile") profile = value != "0";
        else if (flag == "--checkpointing") checkpointing = std::stoi(value);
        else {
            std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
            return 2;
        }
    }
    for (const std::string& base : split(bases)) {
        test::BaseStorage storage;
        if (!base_storage(base, &storage)) {
            std::fprintf(stderr, "unknown base %s (bf16, nf4, int4 or fp8)\n", base.c_str());
            return 2;
        }
    }
    if (cuda::device_count() == 0) {
        std::printf("no CUDA device\n");
        return 77;
    }
    constexpr int kRank = 16;
    double ceiling = 0;
    {
        auto context = cuda_context();
        ceiling = gemm_ceiling_tflops(*context->cuda());
        std::printf("device: %s\nbf16 GEMM ceiling (8192^3, cuBLASLt wrapper): %.0f TFLOP/s\n",
                    context->cuda()->device().name().c_str(), ceiling);
    }
    std::printf("gradient checkpointing: %d (0 none, 1 per layer, 2 per layer + offload)\n", checkpointing);
    std::printf("%-6s %-5s %5s %5s %10s %10s %9s %8s %6s %8s\n", "model", "base", "batch", "seq", "step_ms", "tokens/s",
                "peak_GiB", "TFLOP/s", "MFU", "loss");
    for (const std::string& model_name : split(models)) {
        const BenchShape* shape = nullptr;
        for (const BenchShape& s : kShapes)
            if (model_name == s.name) shape = &s;
        if (shape == nullptr) {
            std::fprintf(stderr, "unknown model %s\n", model_name.c_str());
            return 2;
        }
        for (const std::string& base : split(bases)) {
            auto context = cuda_context();
            test::SyntheticModelOptions o;
            o.hidden = shape->hidden;
            o.layers = shape->layers;
            o.intermediate = shape->intermediate;
            o.heads = shape->heads;
            o.kv_heads = shape->kv_heads;
            o.head_dim = shape->head_dim;
            o.vocab = shape->vocab;
            o.tie_embeddings = shape->tied;
            o.embedding_dtype = DType::BF16;
            base_storage(base, &o.storage);
            auto model = test::make_synthetic_model(context, o);
            LoraConfig lora;
            lora.rank = kRank;
            lora.alpha = 32.0;
            for (const std::string& batch_text : split(batches)) {
                const int64_t batch = std::stoll(batch_text);
                auto adapter = create_lora(model, lora);
                OptimizerSettings settings;
                settings.schedule.lr = 1e-4;
                TrainerSettings trainer_settings;
                trainer_settings.gradient_checkpointing = checkpointing != 0;
                trainer_settings.offload_activations = checkpointing == 2;
                Trainer trainer(std::make_shared<Optimizer>(adapter, settings), trainer_settings);
                std::vector<int32_t> tokens(batch * seq);
                for (size_t i = 0; i < tokens.size(); ++i)
                    tokens[i] = static_cast<int32_t>(counter_random(3, i) % shape->vocab);
                axl_batch b{};
                b.struct_size = sizeof b;
                b.batch_size = static_cast<int32_t>(batch);
                b.seq_len = static_cast<int32_t>(seq);
                b.tokens = tokens.data();
                try {
                    for (int i = 0; i < warmup; ++i) trainer.step(b);
                    context->reset_device_peak();
                    double loss = 0;
                    auto t0 = std::chrono::steady_clock::now();
                    for (int i = 0; i < steps; ++i) loss = trainer.step(b).loss;
                    const double seconds =
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
                    const double tflops = step_flops(*shape, kRank, batch, seq, checkpointing != 0) / seconds / 1e12;
                    std::printf("%-6s %-5s %5lld %5lld %10.1f %10.0f %9.2f %8.0f %5.1f%% %8.4f\n", shape->name,
                                base.c_str(), static_cast<long long>(batch), static_cast<long long>(seq),
                                seconds * 1e3, batch * seq / seconds, context->device_peak_bytes() / 1073741824.0,
                                tflops, 100.0 * tflops / ceiling, loss);
                    if (profile) print_profile(*context->cuda(), trainer, b);
                } catch (const Error& e) {
                    std::printf("%-6s %-5s %5lld %5lld failed: %s\n", shape->name, base.c_str(),
                                static_cast<long long>(batch), static_cast<long long>(seq), e.what());
                }
                std::fflush(stdout);
            }
        }
    }
    return 0;
}
