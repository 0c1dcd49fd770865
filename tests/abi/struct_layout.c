/*
 * struct_layout: the layout of every public struct, frozen at compile time, and the growth rule
 * checked at run time.
 *
 * Compile time (LP64: Linux/macOS on x86-64 and arm64): each field's offset as published. A
 * field may be appended to a struct (the struct grows, sizeof only increases); an existing
 * field never moves, changes size or disappears. When a field is appended, add its line here;
 * when one of these lines fails, the change breaks every compiled client.
 *
 * Run time: a client compiled when a struct was shorter passes a smaller struct_size. The
 * *_init functions must write only that many bytes, and creation must accept the short struct
 * and default the rest.
 */
#include "axl.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define FIELD(type, member, offset, size)                                                   \
    _Static_assert(offsetof(type, member) == (offset), #type "." #member " moved");         \
    _Static_assert(sizeof(((type *)0)->member) == (size), #type "." #member " changed size")
#define AT_LEAST(type, size) _Static_assert(sizeof(type) >= (size), #type " shrank")

_Static_assert(sizeof(axl_status) == 4, "axl_status is 32-bit");

#if defined(__LP64__) || defined(_LP64)
FIELD(axl_progress, struct_size, 0, 4);
FIELD(axl_progress, stage, 4, 4);
FIELD(axl_progress, done, 8, 8);
FIELD(axl_progress, total, 16, 8);
FIELD(axl_progress, what, 24, 8);
AT_LEAST(axl_progress, 32);

FIELD(axl_host_allocator, struct_size, 0, 4);
FIELD(axl_host_allocator, user_data, 8, 8);
FIELD(axl_host_allocator, allocate, 16, 8);
FIELD(axl_host_allocator, deallocate, 24, 8);
AT_LEAST(axl_host_allocator, 32);

FIELD(axl_context_options, struct_size, 0, 4);
FIELD(axl_context_options, backend, 4, 4);
FIELD(axl_context_options, device, 8, 4);
FIELD(axl_context_options, cuda_stream, 16, 8);
FIELD(axl_context_options, num_threads, 24, 4);
FIELD(axl_context_options, log_level, 28, 4);
FIELD(axl_context_options, log_fn, 32, 8);
FIELD(axl_context_options, log_user_data, 40, 8);
FIELD(axl_context_options, host_allocator, 48, 8);
FIELD(axl_context_options, device_memory_budget, 56, 8);
AT_LEAST(axl_context_options, 64);

FIELD(axl_memory_stats, struct_size, 0, 4);
FIELD(axl_memory_stats, host_current_bytes, 8, 8);
FIELD(axl_memory_stats, host_peak_bytes, 16, 8);
FIELD(axl_memory_stats, device_current_bytes, 24, 8);
FIELD(axl_memory_stats, device_peak_bytes, 32, 8);
AT_LEAST(axl_memory_stats, 40);

FIELD(axl_model_options, struct_size, 0, 4);
FIELD(axl_model_options, quant, 8, 8);
FIELD(axl_model_options, progress_fn, 16, 8);
FIELD(axl_model_options, progress_user_data, 24, 8);
AT_LEAST(axl_model_options, 32);

FIELD(axl_model_info, struct_size, 0, 4);
FIELD(axl_model_info, vocab_size, 4, 4);
FIELD(axl_model_info, hidden_size, 8, 4);
FIELD(axl_model_info, intermediate_size, 12, 4);
FIELD(axl_model_info, num_layers, 16, 4);
FIELD(axl_model_info, num_heads, 20, 4);
FIELD(axl_model_info, num_kv_heads, 24, 4);
FIELD(axl_model_info, head_dim, 28, 4);
FIELD(axl_model_info, max_position_embeddings, 32, 4);
FIELD(axl_model_info, num_parameters, 40, 8);
FIELD(axl_model_info, weight_bytes, 48, 8);
AT_LEAST(axl_model_info, 56);

FIELD(axl_batch, struct_size, 0, 4);
FIELD(axl_batch, batch_size, 4, 4);
FIELD(axl_batch, seq_len, 8, 4);
FIELD(axl_batch, tokens, 16, 8);
FIELD(axl_batch, labels, 24, 8);
FIELD(axl_batch, loss_mask, 32, 8);
FIELD(axl_batch, segment_ids, 40, 8);
AT_LEAST(axl_batch, 48);

FIELD(axl_lora_options, struct_size, 0, 4);
FIELD(axl_lora_options, rank, 4, 4);
FIELD(axl_lora_options, alpha, 8, 8);
FIELD(axl_lora_options, dropout, 16, 8);
FIELD(axl_lora_options, use_rslora, 24, 4);
FIELD(axl_lora_options, use_dora, 28, 4);
FIELD(axl_lora_options, target_modules, 32, 8);
FIELD(axl_lora_options, seed, 40, 8);
FIELD(axl_lora_options, init, 48, 4);
AT_LEAST(axl_lora_options, 56);

FIELD(axl_eval_result, struct_size, 0, 4);
FIELD(axl_eval_result, loss, 8, 8);
FIELD(axl_eval_result, num_tokens, 16, 8);
AT_LEAST(axl_eval_result, 24);

FIELD(axl_optimizer_options, struct_size, 0, 4);
FIELD(axl_optimizer_options, type, 4, 4);
FIELD(axl_optimizer_options, lr, 8, 8);
FIELD(axl_optimizer_options, beta1, 16, 8);
FIELD(axl_optimizer_options, beta2, 24, 8);
FIELD(axl_optimizer_options, eps, 32, 8);
FIELD(axl_optimizer_options, weight_decay, 40, 8);
FIELD(axl_optimizer_options, schedule, 48, 4);
FIELD(axl_optimizer_options, warmup_steps, 56, 8);
FIELD(axl_optimizer_options, total_steps, 64, 8);
FIELD(axl_optimizer_options, min_lr_ratio, 72, 8);
FIELD(axl_optimizer_options, max_grad_norm, 80, 8);
AT_LEAST(axl_optimizer_options, 88);

FIELD(axl_trainer_options, struct_size, 0, 4);
FIELD(axl_trainer_options, grad_accum_steps, 4, 4);
FIELD(axl_trainer_options, gradient_checkpointing, 8, 4);
FIELD(axl_trainer_options, progress_fn, 16, 8);
FIELD(axl_trainer_options, progress_user_data, 24, 8);
AT_LEAST(axl_trainer_options, 32);

FIELD(axl_step_result, struct_size, 0, 4);
FIELD(axl_step_result, loss, 8, 8);
FIELD(axl_step_result, grad_norm, 16, 8);
FIELD(axl_step_result, lr, 24, 8);
FIELD(axl_step_result, num_tokens, 32, 8);
FIELD(axl_step_result, optimizer_step, 40, 8);
FIELD(axl_step_result, updated, 48, 4);
AT_LEAST(axl_step_result, 56);
#endif

enum { GUARD = 0xA5, MAX_STRUCT = 512 };

static int failures = 0;

static void expect(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "struct_layout: %s (last error: %s)\n", what, axl_last_error());
        ++failures;
    }
}

/* Room for any public struct, aligned for any of them, with a guard zone after it. */
typedef union struct_buffer {
    long double align_long_double;
    void *align_pointer;
    uint64_t align_u64;
    unsigned char bytes[MAX_STRUCT];
} struct_buffer;

/* An init function given `size` bytes must write those bytes only and record `size`. */
static void check_short_init(const char *name, const struct_buffer *buffer, size_t size,
                             axl_status status) {
    int ok = status == AXL_OK;
    for (size_t i = size; ok && i < sizeof buffer->bytes; ++i) ok = buffer->bytes[i] == GUARD;
    uint32_t recorded;
    memcpy(&recorded, buffer->bytes, sizeof recorded);
    char what[160];
    snprintf(what, sizeof what, "%s(%zu bytes) failed or wrote past the struct", name, size);
    expect(ok && recorded == size, what);
}

#define INIT_WITH_SIZE(fn, type, size)                                                  \
    do {                                                                                \
        struct_buffer buffer;                                                           \
        memset(&buffer, GUARD, sizeof buffer);                                          \
        check_short_init(#fn, &buffer, (size), fn((type *)(void *)&buffer, (size)));    \
    } while (0)

/* As if compiled when `last_field` was appended (the struct ended before it), and today. */
#define SHORT_INIT(fn, type, last_field)                         \
    do {                                                         \
        INIT_WITH_SIZE(fn, type, offsetof(type, last_field));    \
        INIT_WITH_SIZE(fn, type, sizeof(type));                  \
    } while (0)

int main(void) {
    SHORT_INIT(axl_context_options_init, axl_context_options, device_memory_budget);
    SHORT_INIT(axl_model_options_init, axl_model_options, progress_user_data);
    SHORT_INIT(axl_batch_init, axl_batch, segment_ids);
    SHORT_INIT(axl_lora_options_init, axl_lora_options, init);
    SHORT_INIT(axl_optimizer_options_init, axl_optimizer_options, max_grad_norm);
    SHORT_INIT(axl_trainer_options_init, axl_trainer_options, progress_user_data);
    SHORT_INIT(axl_step_result_init, axl_step_result, updated);
    SHORT_INIT(axl_eval_result_init, axl_eval_result, num_tokens);

    /* A context created from the oldest possible options struct: only struct_size and backend. */
    axl_context_options opts;
    memset(&opts, 0xFF, sizeof opts); /* garbage beyond struct_size must not be read */
    axl_context_options_init(&opts, offsetof(axl_context_options, device));
    opts.backend = AXL_BACKEND_CPU;
    axl_context *ctx = NULL;
    expect(axl_context_create(&opts, &ctx) == AXL_OK, "a short axl_context_options was refused");
    int32_t backend = -1;
    expect(ctx && axl_context_backend(ctx, &backend) == AXL_OK && backend == AXL_BACKEND_CPU,
           "the context from a short options struct has the wrong backend");
    axl_context_destroy(ctx);

    /* A result struct of an old client: the library fills only what it covers. */
    axl_memory_stats stats;
    memset(&stats, GUARD, sizeof stats);
    stats.struct_size = (uint32_t)offsetof(axl_memory_stats, host_peak_bytes);
    axl_context_create(NULL, &ctx);
    expect(ctx && axl_context_memory_stats(ctx, &stats) == AXL_OK, "axl_context_memory_stats failed");
    const unsigned char *tail = (const unsigned char *)&stats.host_peak_bytes;
    int untouched = 1;
    for (size_t i = 0; i < sizeof stats - offsetof(axl_memory_stats, host_peak_bytes); ++i)
        untouched &= tail[i] == GUARD;
    expect(untouched, "axl_context_memory_stats wrote past a short struct_size");
    axl_context_destroy(ctx);

    if (failures) return 1;
    printf("struct_layout: public struct layouts as published; short structs handled\n");
    return 0;
}
