// A Llama-shaped Model built in memory with random weights (no checkpoint files), for the CUDA
// step check and axl-bench: base linears in f32/bf16, or as NF4 (bitsandbytes layout, blocks
// of 64) either quantized from the random weights or drawn directly as random codes, or as
// random int4 grouped (groups of 128, quantize-on-load's default) or fp8 e4m3 codes (the
// random-code kinds are fast enough for 8B shapes); norms at 1, embeddings and linears
// uniform with the given std.
#pragma once

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/context.hpp"
#include "lora/counter_rng.hpp"
#include "model/model.hpp"
#include "quant/minifloat.hpp"
#include "quant/quantize.hpp"

namespace axl::test {

// Quantized: random f32 weights quantized by src/quant in SyntheticModelOptions::quant_format.
enum class BaseStorage { F32, BF16, NF4Quantized, NF4RandomCodes, Int4RandomCodes, Fp8RandomCodes, Quantized };

struct SyntheticModelOptions {
    int hidden = 256;
    int layers = 2;
    int intermediate = 768;
    int heads = 4;
    int kv_heads = 2;
    int head_dim = 64;
    int vocab = 1000;
    bool tie_embeddings = false;
    BaseStorage storage = BaseStorage::BF16;
    QuantFormat quant_format = QuantFormat::NF4;  // for BaseStorage::Quantized (default block size)
    DType embedding_dtype = DType::F32;  // the CPU pass reads embeddings as f32
    float std = 0.02f;
    uint64_t seed = 1;
};

// Uniform values of standard deviation `std`, parallel and deterministic in (seed, index).
inline Tensor synthetic_tensor(const std::shared_ptr<HostAllocator>& allocator, DType dtype, Shape shape,
                               uint64_t seed, float std) {
    const int64_t n = shape_numel(shape);
    Tensor out = Tensor::empty(allocator, dtype, std::move(shape), "synthetic tensor");
    const float amplitude = std * std::sqrt(3.0f);
    constexpr int64_t kSlice = 1 << 16;
#pragma omp parallel for schedule(static)
    for (int64_t begin = 0; begin < n; begin += kSlice) {
        const int64_t count = std::min(kSlice, n - begin);
        std::vector<float> values(count);
        for (int64_t i = 0; i < count; ++i)
            values[i] = static_cast<float>((2.0 * counter_uniform(seed, begin + i) - 1.0) * amplitude);
        convert_from_f32(values.data(), static_cast<char*>(out.data()) + begin * dtype_size(dtype), dtype, count);
    }
    return out;
}

inline Tensor filled_tensor(const std::shared_ptr<HostAllocator>& allocator, Shape shape, float value) {
    Tensor out = Tensor::empty(allocator, DType::F32, std::move(shape), "synthetic norm");
    for (int64_t i = 0; i < out.numel(); ++i) out.f32()[i] = value;
    return out;
}

// `bytes` random bytes (all 8 bits of each), parallel and deterministic in (seed, index).
inline std::vector<uint8_t> random_bytes(size_t bytes, uint64_t seed) {
    std::vector<uint8_t> out(bytes);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < static_cast<int64_t>(bytes); i += 8) {
        const uint64_t bits = counter_random(seed, static_cast<uint64_t>(i));
        for (int64_t j = 0; j < 8 && i + j < static_cast<int64_t>(bytes); ++j)
            out[i + j] = static_cast<uint8_t>(bits >> (8 * j));
    }
    return out;
}

// A [rows, cols] weight of random codes in `format` with blocks of `block_size` (the row for
// whole-row formats): the bytes and the compute of a real model, not its values.
inline std::shared_ptr<QuantizedTensor> random_codes_tensor(QuantFormat format, int64_t rows, int64_t cols,
                                                           int64_t block_size, uint64_t seed) {
    auto q = std::make_shared<QuantizedTensor>();
    q->format = format;
    q->rows = rows;
    q->cols = cols;
    q->block_size = block_size;
    q->weight_dtype = DType::BF16;
    q->packed = QuantArray<uint8_t>(random_bytes(static_cast<size_t>(packed_size_bytes(format, rows, cols)), seed));
    return q;
}

// NF4 codes drawn at random (both nibbles of each byte) with absmax ~ 2.5 std.
inline std::shared_ptr<QuantizedTensor> random_nf4(int64_t rows, int64_t cols, uint64_t seed, float std) {
    auto q = random_codes_tensor(QuantFormat::NF4, rows, cols, 64, seed);
    std::vector<float> absmax(static_cast<size_t>(rows * cols / 64));
    for (size_t b = 0; b < absmax.size(); ++b)
        absmax[b] = std * static_cast<float>(2.0 + counter_uniform(seed + 1, b));
    q->scales = QuantArray<float>(std::move(absmax));
    return q;
}

// int4 grouped codes drawn at random, groups of 128: scale ~ the range of a uniform weight
// over 15 steps, zero ~ half a step (levels run -8..7), both rounded through bf16.
inline std::shared_ptr<QuantizedTensor> random_int4(int64_t rows, int64_t cols, uint64_t seed, float std) {
    auto q = random_codes_tensor(QuantFormat::Int4Group, rows, cols, kInt4DefaultGroupSize, seed);
    const size_t groups = static_cast<size_t>(rows * cols / kInt4DefaultGroupSize);
    std::vector<float> scales(groups), zeros(groups);
    const double step = 2.0 * std * std::sqrt(3.0) / 15.0;
    for (size_t g = 0; g < groups; ++g) {
        const float scale = static_cast<float>(step * (0.9 + 0.2 * counter_uniform(seed + 1, g)));
        scales[g] = round_through_dtype(scale, DType::BF16);
        zeros[g] = round_through_dtype(0.5f * scale, DType::BF16);
    }
    q->scales = QuantArray<float>(std::move(scales));
    q->zeros = QuantArray<float>(std::move(zeros));
    return q;
}

// fp8 e4m3 codes drawn at random (never the NaN codes 0x7f/0xff), one scale per row with the
// row's amax ~ 2.5 std, as torchao's amax / 448.
inline std::shared_ptr<QuantizedTensor> random_fp8(int64_t rows, int64_t cols, uint64_t seed, float std) {
    auto q = random_codes_tensor(QuantFormat::Fp8E4M3, rows, cols, cols, seed);
    uint8_t* codes = q->packed.data();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows * cols; ++i)
        if ((codes[i] & 0x7f) == 0x7f) codes[i] = static_cast<uint8_t>(codes[i] - 1);
    std::vector<float> scales(static_cast<size_t>(rows));
    for (size_t r = 0; r < scales.size(); ++r)
        scales[r] = round_through_dtype(std * static_cast<float>(2.0 + counter_uniform(seed + 1, r)) / kE4M3Max,
                                        DType::BF16);
    q->scales = QuantArray<float>(std::move(scales));
    return q;
}

inline Linear synthetic_linear(const std::shared_ptr<HostAllocator>& allocator, const std::string& name, int in,
                               int out, const SyntheticModelOptions& o, uint64_t seed) {
    Linear linear;
    linear.name = name;
    linear.short_name = name.substr(name.rfind('.') + 1);
    linear.in_features = in;
    linear.out_features = out;
    switch (o.storage) {
        case BaseStorage::F32:
        case BaseStorage::BF16:
            linear.weight = synthetic_tensor(allocator, o.storage == BaseStorage::F32 ? DType::F32 : DType::BF16,
                                             {out, in}, seed, o.std);
            break;
        case BaseStorage::NF4Quantized: {
            Tensor f32 = synthetic_tensor(allocator, DType::F32, {out, in}, seed, o.std);
            QuantConfig config;
            config.format = QuantFormat::NF4;
            config.block_size = 64;
            config.weight_dtype = DType::BF16;
            linear.quantized = std::make_shared<QuantizedTensor>(quantize(f32.f32(), out, in, config));
            break;
        }
        case BaseStorage::Quantized: {
            Tensor f32 = synthetic_tensor(allocator, DType::F32, {out, in}, seed, o.std);
            QuantConfig config;
            config.format = o.quant_format;
            linear.quantized = std::make_shared<QuantizedTensor>(quantize(f32.f32(), out, in, config));
            break;
        }
        case BaseStorage::NF4RandomCodes:
            linear.quantized = random_nf4(out, in, seed, o.std);
            break;
        case BaseStorage::Int4RandomCodes:
            linear.quantized = random_int4(out, in, seed, o.std);
            break;
        case BaseStorage::Fp8RandomCodes:
            linear.quantized = random_fp8(out, in, seed, o.std);
            break;
    }
    return linear;
}

inline std::shared_ptr<Model> make_synthetic_model(const std::shared_ptr<Context>& context,
                                                   const SyntheticModelOptions& o) {
    auto model = std::make_shared<Model>();
    model->context = context;
    const auto& allocator = context->host_allocator();
    ModelConfig& c = model->config;
    c.model_type = "llama";
    c.vocab_size = o.vocab;
    c.hidden_size = o.hidden;
    c.intermediate_size = o.intermediate;
    c.num_layers = o.layers;
    c.num_heads = o.heads;
    c.num_kv_heads = o.kv_heads;
    c.head_dim = o.head_dim;
    c.max_position_embeddings = 8192;
    c.rms_norm_eps = 1e-5;
    c.rope.theta = 500000.0;
    c.tie_word_embeddings = o.tie_embeddings;

    uint64_t seed = combine_seeds(o.seed, 0x5eed);
    model->embed_tokens = synthetic_tensor(allocator, o.embedding_dtype, {o.vocab, o.hidden}, ++seed, o.std);
    const int q = o.heads * o.head_dim, kv = o.kv_heads * o.head_dim, h = o.hidden, im = o.intermediate;
    for (int i = 0; i < o.layers; ++i) {
        auto linear = [&](const char* group, const char* name, int in, int out) {
            const std::string path = "model.layers." + std::to_string(i) + "." + group + "." + name;
            return synthetic_linear(allocator, path, in, out, o, seed += 16);
        };
        DecoderLayer layer;
        layer.input_norm = filled_tensor(allocator, {h}, 1.0f);
        layer.post_attention_norm = filled_tensor(allocator, {h}, 1.0f);
        layer.q_proj = linear("self_attn", "q_proj", h, q);
        layer.k_proj = linear("self_attn", "k_proj", h, kv);
        layer.v_proj = linear("self_attn", "v_proj", h, kv);
        layer.o_proj = linear("self_attn", "o_proj", q, h);
        layer.gate_proj = linear("mlp", "gate_proj", h, im);
        layer.up_proj = linear("mlp", "up_proj", h, im);
        layer.down_proj = linear("mlp", "down_proj", im, h);
        model->layers.push_back(std::move(layer));
    }
    model->final_norm = filled_tensor(allocator, {h}, 1.0f);
    model->lm_head.name = "lm_head";
    model->lm_head.short_name = "lm_head";
    model->lm_head.in_features = h;
    model->lm_head.out_features = o.vocab;
    model->lm_head.weight = o.tie_embeddings
                                ? model->embed_tokens
                                : synthetic_tensor(allocator, o.embedding_dtype, {o.vocab, h}, ++seed, o.std);
    return model;
}

}  // namespace axl::test
