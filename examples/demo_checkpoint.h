/*
 * demo_checkpoint.h: what the examples need to run with no download: a tiny random Llama
 * checkpoint in the Hugging Face layout (config.json + model.safetensors, f32) and learnable
 * token data (arithmetic sequences modulo the vocabulary).
 *
 * Header-only and independent of axl.h (it only writes files), so any example or test can
 * include it. Every random number comes from the caller's demo_rng, so a program that makes the
 * same calls in the same order writes the same bytes.
 */
#ifndef AXL_DEMO_CHECKPOINT_H
#define AXL_DEMO_CHECKPOINT_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The tiny model: 2 layers, hidden 96, 4 query heads over 2 key/value heads, tied embeddings. */
enum { DEMO_VOCAB = 64, DEMO_HIDDEN = 96, DEMO_LAYERS = 2, DEMO_HEADS = 4, DEMO_KV_HEADS = 2,
       DEMO_INTER = 192 };

/* xorshift64: tiny, deterministic, good enough for random weights. */
typedef struct demo_rng {
    uint64_t state;
} demo_rng;

#define DEMO_RNG_SEED 0x9e3779b97f4a7c15ull

/* Uniform in [-1, 1). */
static inline float demo_uniform_pm1(demo_rng *rng) {
    rng->state ^= rng->state << 13;
    rng->state ^= rng->state >> 7;
    rng->state ^= rng->state << 17;
    return (float)((rng->state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

typedef struct demo_tensor {
    char name[96];
    int64_t rows, cols; /* cols == 0: a vector of `rows` */
    float init_scale;   /* 0: ones (norm weights) */
} demo_tensor;

static inline void demo_add_tensor(demo_tensor *tensors, int *count, const char *name, int64_t rows,
                                   int64_t cols, float init_scale) {
    demo_tensor *t = &tensors[(*count)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = rows;
    t->cols = cols;
    t->init_scale = init_scale;
}

enum { DEMO_INIT_ONES, DEMO_INIT_BY_HIDDEN, DEMO_INIT_BY_INTER };

/* The tensor list of the tiny model, in file order. Returns the count (at most 64). */
static inline int demo_model_tensors(demo_tensor tensors[64]) {
    enum { HEAD_DIM = DEMO_HIDDEN / DEMO_HEADS };
    static const struct {
        const char *suffix;
        int rows, cols, init;
    } layer[] = {
        {"input_layernorm.weight", DEMO_HIDDEN, 0, DEMO_INIT_ONES},
        {"post_attention_layernorm.weight", DEMO_HIDDEN, 0, DEMO_INIT_ONES},
        {"self_attn.q_proj.weight", DEMO_HEADS * HEAD_DIM, DEMO_HIDDEN, DEMO_INIT_BY_HIDDEN},
        {"self_attn.k_proj.weight", DEMO_KV_HEADS * HEAD_DIM, DEMO_HIDDEN, DEMO_INIT_BY_HIDDEN},
        {"self_attn.v_proj.weight", DEMO_KV_HEADS * HEAD_DIM, DEMO_HIDDEN, DEMO_INIT_BY_HIDDEN},
        {"self_attn.o_proj.weight", DEMO_HIDDEN, DEMO_HEADS * HEAD_DIM, DEMO_INIT_BY_HIDDEN},
        {"mlp.gate_proj.weight", DEMO_INTER, DEMO_HIDDEN, DEMO_INIT_BY_HIDDEN},
        {"mlp.up_proj.weight", DEMO_INTER, DEMO_HIDDEN, DEMO_INIT_BY_HIDDEN},
        {"mlp.down_proj.weight", DEMO_HIDDEN, DEMO_INTER, DEMO_INIT_BY_INTER},
    };
    /* Uniform in +-1/sqrt(fan_in) keeps activations of order one through the layers. */
    const float scale[] = {0.0f, 1.0f / sqrtf((float)DEMO_HIDDEN), 1.0f / sqrtf((float)DEMO_INTER)};
    int count = 0;
    demo_add_tensor(tensors, &count, "model.embed_tokens.weight", DEMO_VOCAB, DEMO_HIDDEN, 0.1f);
    demo_add_tensor(tensors, &count, "model.norm.weight", DEMO_HIDDEN, 0, 0.0f);
    for (int l = 0; l < DEMO_LAYERS; ++l) {
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; ++i) {
            char name[96];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, layer[i].suffix);
            demo_add_tensor(tensors, &count, name, layer[i].rows, layer[i].cols, scale[layer[i].init]);
        }
    }
    return count;
}

static inline int demo_cannot_write(const char *path) {
    fprintf(stderr, "error: cannot write %s: %s\n", path, strerror(errno));
    return 1;
}

/* Writes config.json and model.safetensors (random f32 weights drawn from `rng`) into the
 * existing directory `dir`. Returns 0 on success, 1 after printing why it failed. */
static inline int demo_write_model(const char *dir, demo_rng *rng) {
    demo_tensor tensors[64];
    const int count = demo_model_tensors(tensors);

    /* safetensors: u64 header length, JSON header, then the f32 data back to back. */
    char header[16384];
    size_t len = 0;
    uint64_t offset = 0;
    len += (size_t)snprintf(header + len, sizeof header - len, "{");
    for (int i = 0; i < count; ++i) {
        const demo_tensor *t = &tensors[i];
        uint64_t elems = (uint64_t)t->rows * (uint64_t)(t->cols ? t->cols : 1);
        char shape[48];
        if (t->cols)
            snprintf(shape, sizeof shape, "%lld,%lld", (long long)t->rows, (long long)t->cols);
        else
            snprintf(shape, sizeof shape, "%lld", (long long)t->rows);
        len += (size_t)snprintf(header + len, sizeof header - len,
                                "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%llu,%llu]}",
                                i ? "," : "", t->name, shape, (unsigned long long)offset,
                                (unsigned long long)(offset + elems * 4));
        offset += elems * 4;
    }
    len += (size_t)snprintf(header + len, sizeof header - len, "}");
    while (len % 8) header[len++] = ' ';

    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return demo_cannot_write(path);
    uint64_t header_len = len;
    fwrite(&header_len, 8, 1, f);
    fwrite(header, 1, len, f);
    for (int i = 0; i < count; ++i) {
        int64_t elems = tensors[i].rows * (tensors[i].cols ? tensors[i].cols : 1);
        for (int64_t e = 0; e < elems; ++e) {
            float v = tensors[i].init_scale == 0.0f ? 1.0f : tensors[i].init_scale * demo_uniform_pm1(rng);
            fwrite(&v, 4, 1, f);
        }
    }
    if (fclose(f) != 0) return demo_cannot_write(path);

    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "w");
    if (!f) return demo_cannot_write(path);
    fprintf(f, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
               "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
               "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
               "  \"num_key_value_heads\": %d,\n  \"max_position_embeddings\": 256,\n"
               "  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n"
               "  \"tie_word_embeddings\": true,\n  \"hidden_act\": \"silu\",\n"
               "  \"torch_dtype\": \"float32\"\n}\n",
            DEMO_VOCAB, DEMO_HIDDEN, DEMO_INTER, DEMO_LAYERS, DEMO_HEADS, DEMO_KV_HEADS);
    return fclose(f) != 0 ? demo_cannot_write(path) : 0;
}

/* One window of an arithmetic sequence modulo `vocab`: a random start, then steps of
 * 1 + window_index % 3, so after two tokens the rest is predictable from context. */
static inline void demo_arithmetic_window(int32_t *tokens, int32_t window_len, int32_t window_index,
                                          int32_t vocab, demo_rng *rng) {
    int32_t token = (int32_t)((demo_uniform_pm1(rng) + 1.0f) * 0.5f * (float)vocab) % vocab;
    int32_t step = 1 + window_index % 3;
    for (int32_t t = 0; t < window_len; ++t) {
        tokens[t] = token;
        token = (token + step) % vocab;
    }
}

/* Writes `windows` arithmetic windows of `window_len` (at most 4096) tokens over the tiny
 * model's vocabulary as a flat file of little-endian int32 token ids. */
static inline int demo_write_tokens(const char *path, int32_t windows, int32_t window_len,
                                    demo_rng *rng) {
    int32_t window[4096];
    if (window_len > 4096) {
        fprintf(stderr, "error: demo windows hold at most 4096 tokens (asked for %d)\n", window_len);
        return 1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) return demo_cannot_write(path);
    for (int32_t w = 0; w < windows; ++w) {
        demo_arithmetic_window(window, window_len, w, DEMO_VOCAB, rng);
        fwrite(window, 4, (size_t)window_len, f);
    }
    return fclose(f) != 0 ? demo_cannot_write(path) : 0;
}

#endif /* AXL_DEMO_CHECKPOINT_H */
