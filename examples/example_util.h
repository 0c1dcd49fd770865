/*
 * example_util.h: the few lines every example program repeats around the C API: report a
 * failed call with its message, and wrap token rows in an axl_batch.
 */
#ifndef AXL_EXAMPLE_UTIL_H
#define AXL_EXAMPLE_UTIL_H

#include <stdint.h>
#include <stdio.h>

#include "axl.h"
#include "demo_checkpoint.h"

/* 0 when the call succeeded; otherwise prints what failed, the status and the library's
 * message, and returns 1. */
static inline int check(axl_status status, const char *what) {
    if (status == AXL_OK) return 0;
    fprintf(stderr, "error: %s failed (%s): %s\n", what, axl_status_string(status), axl_last_error());
    return 1;
}

/* A batch over `rows` x `seq_len` token ids (no labels: every next token is a target). */
static inline axl_batch token_batch(const int32_t *tokens, int32_t rows, int32_t seq_len) {
    axl_batch batch;
    axl_batch_init(&batch, sizeof batch);
    batch.batch_size = rows;
    batch.seq_len = seq_len;
    batch.tokens = tokens;
    return batch;
}

/* Fills `rows` rows of arithmetic sequences (the demo's learnable data). */
static inline void arithmetic_rows(int32_t *tokens, int32_t rows, int32_t seq_len, int32_t vocab,
                                   demo_rng *rng) {
    for (int32_t r = 0; r < rows; ++r)
        demo_arithmetic_window(tokens + (size_t)r * seq_len, seq_len, r, vocab, rng);
}

#endif /* AXL_EXAMPLE_UTIL_H */
