// Benchmark (not a test): quantize-on-load and the quantized-model cache for an 8B-shaped model.
//
//   quant_load_bench [--dir DIR] [--layers N] [--format nf4|fp4|int4|...] [--no-double-quant]
//                    [--keep]
//
// 1. writes a random bf16 Llama checkpoint of the Llama-3-8B shape (hidden 4096, 32 layers,
//    MLP 14336, vocab 128256, 32 query / 8 key-value heads; --layers scales it down) in 5 GB
//    shards into DIR (default /tmp/axl_quant_bench), unless one of that shape is already there;
// 2. axl_model_load with the quant config (default nf4 with double quantization): time, the
//    context's host peak (axl_context_memory_stats) and the process peak RSS (VmHWM);
// 3. axl_model_save_cache: time and file size;
// 4. axl_model_load_cache, cold (the file dropped from the page cache first) and warm, against
//    the time a plain sequential read of the file takes cold: the cache load is limited by the
//    disk when the two are close.
// Every phase resets VmHWM (/proc/self/clear_refs) so each peak is the phase's own; the cache
// loads run in a fresh process (--cache-load-only), so memory the quantizing process has freed
// but not returned to the system does not count against them.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "axl.h"
#include "core/dtype.hpp"
#include "io/safetensors.hpp"

namespace fs = std::filesystem;

namespace {

struct Shape8B {
    int64_t hidden = 4096, intermediate = 14336, vocab = 128256, heads = 32, kv_heads = 8, layers = 32;
    int64_t head_dim() const { return hidden / heads; }
};

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double gib(uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

// VmHWM / VmRSS of this process in bytes.
uint64_t proc_status_bytes(const char* field) {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind(field, 0) == 0) return std::strtoull(line.c_str() + std::strlen(field) + 1, nullptr, 10) * 1024;
    }
    return 0;
}

void reset_peak_rss() {
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";
}

// Evicts a file's clean pages from the page cache, so the next read comes from the disk.
void drop_from_page_cache(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) return;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
}

double sequential_read_seconds(const fs::path& path) {
    const auto start = std::chrono::steady_clock::now();
    const int fd = ::open(path.c_str(), O_RDONLY);
    std::vector<char> buffer(16 << 20);
    while (::read(fd, buffer.data(), buffer.size()) > 0) {
    }
    ::close(fd);
    return seconds_since(start);
}

void check(axl_status status, const char* what) {
    if (status == AXL_OK) return;
    std::fprintf(stderr, "%s failed: %s: %s\n", what, axl_status_string(status), axl_last_error());
    std::exit(1);
}

std::string config_json(const Shape8B& s) {
    char text[1024];
    std::snprintf(text, sizeof text,
                  "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": %lld, "
                  "\"hidden_size\": %lld, \"intermediate_size\": %lld, \"num_hidden_layers\": %lld, "
                  "\"num_attention_heads\": %lld, \"num_key_value_heads\": %lld, \"max_position_embeddings\": 8192, "
                  "\"hidden_act\": \"silu\", \"rms_norm_eps\": 1e-05, \"rope_theta\": 500000.0, "
                  "\"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\"}\n",
                  (long long)s.vocab, (long long)s.hidden, (long long)s.intermediate, (long long)s.layers,
                  (long long)s.heads, (long long)s.kv_heads);
    return text;
}

// Random bf16 values ~ U(-a, a), a = sqrt(3) / sqrt(fan_in) (unit-variance activations), from a
// counter-based generator so every shard is the same on every run.
void fill_random_bf16(uint16_t* out, int64_t count, uint64_t stream, float amplitude) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; ++i) {
        uint64_t z = stream * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
        out[i] = axl::f32_to_bf16(u * amplitude);
    }
}

struct Spec {
    std::string name;
    std::vector<int64_t> shape;
};

std::vector<Spec> checkpoint_specs(const Shape8B& s) {
    std::vector<Spec> specs;
    const int64_t q = s.heads * s.head_dim(), kv = s.kv_heads * s.head_dim();
    specs.push_back({"model.embed_tokens.weight", {s.vocab, s.hidden}});
    for (int64_t l = 0; l < s.layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        specs.push_back({p + "input_layernorm.weight", {s.hidden}});
        specs.push_back({p + "self_attn.q_proj.weight", {q, s.hidden}});
        specs.push_back({p + "self_attn.k_proj.weight", {kv, s.hidden}});
        specs.push_back({p + "self_attn.v_proj.weight", {kv, s.hidden}});
        specs.push_back({p + "self_attn.o_proj.weight", {s.hidden, q}});
        specs.push_back({p + "post_attention_layernorm.weight", {s.hidden}});
        specs.push_back({p + "mlp.gate_proj.weight", {s.intermediate, s.hidden}});
        specs.push_back({p + "mlp.up_proj.weight", {s.intermediate, s.hidden}});
        specs.push_back({p + "mlp.down_proj.weight", {s.hidden, s.intermediate}});
    }
    specs.push_back({"model.norm.weight", {s.hidden}});
    specs.push_back({"lm_head.weight", {s.vocab, s.hidden}});
    return specs;
}

void write_checkpoint(const fs::path& dir, const Shape8B& s) {
    fs::create_directories(dir);
    const std::vector<Spec> specs = checkpoint_specs(s);
    constexpr uint64_t kShardBytes = 5'000'000'000ull;
    std::vector<std::vector<size_t>> shards(1);
    uint64_t shard_size = 0, total = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
        uint64_t bytes = 2;
        for (int64_t d : specs[i].shape) bytes *= static_cast<uint64_t>(d);
        if (shard_size > 0 && shard_size + bytes > kShardBytes) {
            shards.emplace_back();
            shard_size = 0;
        }
        shards.back().push_back(i);
        shard_size += bytes;
        total += bytes;
    }
    std::string weight_map;
    std::vector<uint16_t> scratch;
    for (size_t shard = 0; shard < shards.size(); ++shard) {
        char name[64];
        std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", shard + 1, shards.size());
        std::vector<axl::StreamedTensor> tensors;
        for (size_t index : shards[shard]) {
            const Spec& spec = specs[index];
            const bool norm = spec.shape.size() == 1;
            const float amplitude = norm ? 0.0f : std::sqrt(3.0f / static_cast<float>(spec.shape[1]));
            tensors.push_back({spec.name, axl::DType::BF16, spec.shape, [&scratch, spec, index, amplitude, norm] {
                                   int64_t count = 1;
                                   for (int64_t d : spec.shape) count *= d;
                                   scratch.resize(static_cast<size_t>(count));
                                   if (norm)
                                       std::fill(scratch.begin(), scratch.end(), axl::f32_to_bf16(1.0f));
                                   else
                                       fill_random_bf16(scratch.data(), count, index + 1, amplitude);
                                   return static_cast<const void*>(scratch.data());
                               }});
            weight_map += std::string(weight_map.empty() ? "" : ",\n") + "    \"" + spec.name + "\": \"" + name + "\"";
        }
        axl::write_safetensors_streamed((dir / name).string(), tensors, {{"format", "pt"}});
        std::printf("  wrote %s\n", name);
        std::fflush(stdout);
    }
    std::ofstream(dir / "model.safetensors.index.json")
        << "{\n  \"metadata\": {\"total_size\": " << total << "},\n  \"weight_map\": {\n" << weight_map << "\n  }\n}\n";
    std::ofstream(dir / "config.json") << config_json(s);
}

struct Memory {
    uint64_t context_peak = 0, context_current = 0, vm_hwm = 0, vm_rss = 0;
};

Memory memory(axl_context* ctx) {
    axl_memory_stats stats;
    stats.struct_size = sizeof stats;
    check(axl_context_memory_stats(ctx, &stats), "axl_context_memory_stats");
    return {stats.host_peak_bytes, stats.host_current_bytes, proc_status_bytes("VmHWM:"), proc_status_bytes("VmRSS:")};
}

void print_memory(const char* phase, const Memory& m) {
    std::printf("  %-22s context host peak %.2f GiB (now %.2f GiB), VmHWM %.2f GiB, VmRSS %.2f GiB\n", phase,
                gib(m.context_peak), gib(m.context_current), gib(m.vm_hwm), gib(m.vm_rss));
}

int32_t format_named(const std::string& name) {
    const std::pair<const char*, int32_t> formats[] = {
        {"nf4", AXL_QUANT_NF4}, {"fp4", AXL_QUANT_FP4}, {"int8_row", AXL_QUANT_INT8_ROW},
        {"int4", AXL_QUANT_INT4_GROUP}, {"int8_chan", AXL_QUANT_INT8_CHAN}, {"fp8", AXL_QUANT_FP8_E4M3},
        {"nvfp4", AXL_QUANT_NVFP4}};
    for (const auto& [text, value] : formats)
        if (name == text) return value;
    std::fprintf(stderr, "unknown format %s\n", name.c_str());
    std::exit(2);
}

}  // namespace

// Cold and warm loads of the cache at `cache`, in this (fresh) process.
int load_cache_only(const fs::path& cache) {
    axl_context_options ctx_opts;
    axl_context_options_init(&ctx_opts, sizeof ctx_opts);
    ctx_opts.backend = AXL_BACKEND_CPU;
    axl_context* ctx = nullptr;
    check(axl_context_create(&ctx_opts, &ctx), "axl_context_create");
    const uint64_t cache_bytes = fs::file_size(cache);
    std::printf("process before loading: VmRSS %.2f GiB\n", gib(proc_status_bytes("VmRSS:")));
    for (const char* temperature : {"cold", "warm"}) {
        if (std::strcmp(temperature, "cold") == 0) drop_from_page_cache(cache);
        check(axl_context_reset_peak_memory(ctx), "axl_context_reset_peak_memory");
        reset_peak_rss();
        const auto start = std::chrono::steady_clock::now();
        axl_model* cached = nullptr;
        check(axl_model_load_cache(ctx, cache.c_str(), nullptr, &cached), "axl_model_load_cache");
        const double load_seconds = seconds_since(start);
        std::printf("cache load, %s page cache: %.2f s (%.2f GB/s)\n", temperature, load_seconds,
                    cache_bytes / load_seconds / 1e9);
        print_memory("after cache load", memory(ctx));
        axl_model_destroy(cached);
    }
    axl_context_destroy(ctx);
    return 0;
}

int main(int argc, char** argv) {
    Shape8B shape;
    fs::path dir = "/tmp/axl_quant_bench";
    std::string format_name = "nf4";
    bool double_quant = true, keep = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--dir" && i + 1 < argc) dir = argv[++i];
        else if (arg == "--layers" && i + 1 < argc) shape.layers = std::atoi(argv[++i]);
        else if (arg == "--format" && i + 1 < argc) format_name = argv[++i];
        else if (arg == "--no-double-quant") double_quant = false;
        else if (arg == "--keep") keep = true;
        else if (arg == "--cache-load-only" && i + 1 < argc) return load_cache_only(argv[++i]);
        else {
            std::fprintf(stderr, "usage: %s [--dir DIR] [--layers N] [--format nf4|fp4|int4|...] "
                                 "[--no-double-quant] [--keep]\n", argv[0]);
            return 2;
        }
    }
    const int32_t format = format_named(format_name);
    if (format != AXL_QUANT_NF4 && format != AXL_QUANT_FP4) double_quant = false;
    const fs::path checkpoint = dir / "checkpoint";
    const fs::path cache = dir / "model.axlc";

    std::printf("axl %s, %d threads; model: hidden %lld, %lld layers, MLP %lld, vocab %lld, heads %lld/%lld\n",
                axl_version_string(), static_cast<int>(std::thread::hardware_concurrency()),
                (long long)shape.hidden, (long long)shape.layers, (long long)shape.intermediate,
                (long long)shape.vocab, (long long)shape.heads, (long long)shape.kv_heads);

    bool have_checkpoint = false;
    {
        std::ifstream existing(checkpoint / "config.json");
        std::string text((std::istreambuf_iterator<char>(existing)), {});
        have_checkpoint = text == config_json(shape);
    }
    if (!have_checkpoint) {
        fs::remove_all(checkpoint);
        const auto start = std::chrono::steady_clock::now();
        write_checkpoint(checkpoint, shape);
        std::printf("checkpoint written in %.1f s\n", seconds_since(start));
    }
    uint64_t checkpoint_bytes = 0;
    for (const auto& entry : fs::directory_iterator(checkpoint))
        if (entry.path().extension() == ".safetensors") {
            checkpoint_bytes += entry.file_size();
            drop_from_page_cache(entry.path());
        }
    std::printf("bf16 checkpoint: %.2f GiB\n", gib(checkpoint_bytes));

    axl_context_options ctx_opts;
    axl_context_options_init(&ctx_opts, sizeof ctx_opts);
    ctx_opts.backend = AXL_BACKEND_CPU;
    axl_context* ctx = nullptr;
    check(axl_context_create(&ctx_opts, &ctx), "axl_context_create");
    axl_quant_config* quant = nullptr;
    check(axl_quant_config_create(&quant), "axl_quant_config_create");
    check(axl_quant_config_set_format(quant, format), "axl_quant_config_set_format");
    check(axl_quant_config_set_double_quant(quant, double_quant), "axl_quant_config_set_double_quant");
    axl_model_options opts;
    axl_model_options_init(&opts, sizeof opts);
    opts.quant = quant;

    reset_peak_rss();
    auto start = std::chrono::steady_clock::now();
    axl_model* model = nullptr;
    check(axl_model_load(ctx, checkpoint.c_str(), &opts, &model), "axl_model_load");
    const double quantize_seconds = seconds_since(start);
    const Memory after_load = memory(ctx);
    uint64_t quantized_bytes = 0, float_bytes = 0;
    check(axl_model_weight_bytes(model, format, &quantized_bytes), "axl_model_weight_bytes");
    check(axl_model_weight_bytes(model, AXL_QUANT_NONE, &float_bytes), "axl_model_weight_bytes");
    std::printf("quantize on load (%s%s): %.1f s (%.2f GB/s of bf16 checkpoint)\n", format_name.c_str(),
                double_quant ? " + double quant" : "", quantize_seconds, checkpoint_bytes / quantize_seconds / 1e9);
    std::printf("  weights: %.2f GiB %s + %.2f GiB full precision (f32 embeddings and norms, bf16 LM head)\n",
                gib(quantized_bytes), format_name.c_str(), gib(float_bytes));
    print_memory("after quantize on load", after_load);

    reset_peak_rss();
    start = std::chrono::steady_clock::now();
    check(axl_model_save_cache(model, cache.c_str()), "axl_model_save_cache");
    const double save_seconds = seconds_since(start);
    const uint64_t cache_bytes = fs::file_size(cache);
    std::printf("cache save: %.1f s, %.2f GiB (%.2f GB/s)\n", save_seconds, gib(cache_bytes), cache_bytes / save_seconds / 1e9);
    axl_model_destroy(model);

    drop_from_page_cache(cache);
    const double read_seconds = sequential_read_seconds(cache);
    std::printf("plain sequential read of the cache file, cold: %.2f s (%.2f GB/s)\n", read_seconds,
                cache_bytes / read_seconds / 1e9);

    axl_quant_config_destroy(quant);
    axl_context_destroy(ctx);
    std::fflush(stdout);
    const std::string command = "'" + fs::read_symlink("/proc/self/exe").string() + "' --cache-load-only '" +
                                cache.string() + "'";
    if (std::system(command.c_str()) != 0) return 1;
    if (!keep) fs::remove(cache);
    return 0;
}
