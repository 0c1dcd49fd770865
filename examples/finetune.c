/*
 * finetune: fine-tune a LoRA adapter on a Hugging Face model directory from a C program.
 *
 *   finetune MODEL_DIR TOKENS_FILE OUT_ADAPTER_DIR [options]
 *   finetune                      (no arguments: the built-in demo, no download needed)
 *
 * TOKENS_FILE is a flat file of little-endian int32 token ids; it is cut into windows of
 * --seq-len tokens, taken in order (wrapping around), --batch windows per step.
 * The demo writes a small random Llama model and a learnable dataset (arithmetic sequences
 * modulo the vocabulary) into ./axl-demo, trains on it, shows the loss falling, and saves the
 * adapter in PEFT's format into ./axl-demo/adapter.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "axl.h"
#include "demo_checkpoint.h"
#include "example_util.h"

typedef struct options {
    const char *model_dir;
    const char *tokens_file;
    const char *out_dir;
    int32_t steps, seq_len, batch, rank, accum, threads;
    double lr, alpha;
    const char *targets;
} options;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- Training ----------------------------------------------------------------------------- */

static int32_t *read_tokens(const char *path, int64_t *count) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "error: cannot open %s: %s\n", path, strerror(errno)); return NULL; }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (bytes <= 0 || bytes % 4 != 0) {
        fprintf(stderr, "error: %s is not a file of int32 token ids (%ld bytes)\n", path, bytes);
        fclose(f);
        return NULL;
    }
    int32_t *tokens = malloc((size_t)bytes);
    if (!tokens || fread(tokens, 1, (size_t)bytes, f) != (size_t)bytes) {
        fprintf(stderr, "error: cannot read %s\n", path);
        free(tokens);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *count = bytes / 4;
    return tokens;
}

static int32_t print_load_progress(void *user_data, const axl_progress *p) {
    (void)user_data;
    if (p->stage == AXL_STAGE_LOAD && (p->done == p->total || p->done % 16 == 0))
        fprintf(stderr, "\rloading tensors %lld/%lld", (long long)p->done, (long long)p->total);
    if (p->stage == AXL_STAGE_LOAD && p->done == p->total) fprintf(stderr, "\n");
    return 0;
}

static int train(const options *o) {
    int rc = 1;
    axl_context *ctx = NULL;
    axl_model *model = NULL;
    axl_lora *lora = NULL;
    axl_optimizer *opt = NULL;
    axl_trainer *trainer = NULL;
    int32_t *tokens = NULL, *window = NULL;
    int64_t n_tokens = 0;

    axl_context_options copts;
    axl_context_options_init(&copts, sizeof copts);
    copts.num_threads = o->threads;
    if (check(axl_context_create(&copts, &ctx), "axl_context_create")) goto done;

    axl_model_options mopts;
    axl_model_options_init(&mopts, sizeof mopts);
    mopts.progress_fn = print_load_progress;
    if (check(axl_model_load(ctx, o->model_dir, &mopts, &model), "axl_model_load")) goto done;
    axl_model_info info;
    info.struct_size = sizeof info;
    axl_model_get_info(model, &info);
    printf("model: %s, %d layers, hidden %d, vocab %d, %lld parameters\n",
           axl_model_architecture(model), info.num_layers, info.hidden_size, info.vocab_size,
           (long long)info.num_parameters);

    axl_lora_options lopts;
    axl_lora_options_init(&lopts, sizeof lopts);
    lopts.rank = o->rank;
    lopts.alpha = o->alpha;
    lopts.target_modules = o->targets;
    if (check(axl_lora_create(model, &lopts, &lora), "axl_lora_create")) goto done;
    int64_t trainable = 0;
    axl_lora_num_parameters(lora, &trainable);
    printf("adapter: rank %d, alpha %g, targets %s, %lld trainable parameters\n", o->rank, o->alpha,
           o->targets, (long long)trainable);

    axl_optimizer_options oopts;
    axl_optimizer_options_init(&oopts, sizeof oopts);
    oopts.lr = o->lr;
    oopts.schedule = AXL_SCHEDULE_COSINE;
    oopts.warmup_steps = o->steps / 10;
    oopts.total_steps = o->steps;
    oopts.min_lr_ratio = 0.1;
    if (check(axl_optimizer_create(lora, &oopts, &opt), "axl_optimizer_create")) goto done;

    axl_trainer_options topts;
    axl_trainer_options_init(&topts, sizeof topts);
    topts.grad_accum_steps = o->accum;
    if (check(axl_trainer_create(opt, &topts, &trainer), "axl_trainer_create")) goto done;

    tokens = read_tokens(o->tokens_file, &n_tokens);
    if (!tokens) goto done;
    if (n_tokens < o->seq_len) {
        fprintf(stderr, "error: %s holds %lld tokens, fewer than one window of %d\n", o->tokens_file,
                (long long)n_tokens, o->seq_len);
        goto done;
    }
    int64_t n_windows = n_tokens / o->seq_len;
    window = malloc(sizeof(int32_t) * (size_t)o->batch * (size_t)o->seq_len);
    if (!window) goto done;

    double start = now_seconds();
    int64_t trained_tokens = 0, next_window = 0;
    for (int32_t step = 0; step < o->steps; ++step) {
        for (int32_t micro = 0; micro < o->accum; ++micro) {
            for (int32_t b = 0; b < o->batch; ++b) {
                memcpy(window + (size_t)b * o->seq_len, tokens + next_window * o->seq_len,
                       sizeof(int32_t) * (size_t)o->seq_len);
                next_window = (next_window + 1) % n_windows;
            }
            axl_batch batch;
            axl_batch_init(&batch, sizeof batch);
            batch.batch_size = o->batch;
            batch.seq_len = o->seq_len;
            batch.tokens = window;
            axl_step_result result;
            axl_step_result_init(&result, sizeof result);
            if (check(axl_trainer_step(trainer, &batch, &result), "axl_trainer_step")) goto done;
            trained_tokens += (int64_t)o->batch * o->seq_len;
            if (result.updated && (step % 10 == 0 || step == o->steps - 1)) {
                double elapsed = now_seconds() - start;
                double tps = trained_tokens / elapsed;
                double eta = elapsed / (step + 1) * (o->steps - step - 1);
                printf("step %4d/%d  loss %.4f  grad_norm %.3f  lr %.2e  %.0f tokens/s  ETA %.1fs\n",
                       step + 1, o->steps, result.loss, result.grad_norm, result.lr, tps, eta);
                fflush(stdout);
            }
        }
    }
    if (check(axl_lora_save(lora, o->out_dir), "axl_lora_save")) goto done;
    printf("saved the adapter (PEFT format) to %s\n", o->out_dir);
    rc = 0;
done:
    free(window);
    free(tokens);
    axl_trainer_destroy(trainer);
    axl_optimizer_destroy(opt);
    axl_lora_destroy(lora);
    axl_model_destroy(model);
    axl_context_destroy(ctx);
    return rc;
}

static int parse_int(const char *text, int32_t *out) {
    char *end;
    long v = strtol(text, &end, 10);
    if (*end != '\0' || v <= 0 || v > 1 << 30) return 1;
    *out = (int32_t)v;
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: finetune                                    (built-in demo)\n"
            "       finetune MODEL_DIR TOKENS_FILE OUT_ADAPTER_DIR [--steps N] [--seq-len T]\n"
            "                [--batch B] [--accum K] [--lr X] [--rank R] [--alpha A]\n"
            "                [--targets all-linear|q_proj,v_proj,...] [--threads N]\n");
}

int main(int argc, char **argv) {
    options o = {0};
    o.steps = 100;
    o.seq_len = 256;
    o.batch = 4;
    o.rank = 16;
    o.alpha = 32;
    o.accum = 1;
    o.lr = 2e-4;
    o.targets = "all-linear";
    printf("axl %s\n", axl_version_string());

    if (argc == 1) {
        const char *dir = "axl-demo";
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "error: cannot create %s: %s\n", dir, strerror(errno));
            return 1;
        }
        printf("demo: writing a small random Llama model and arithmetic-sequence data to %s/\n", dir);
        demo_rng rng = {DEMO_RNG_SEED};
        if (demo_write_model(dir, &rng) || demo_write_tokens("axl-demo/tokens.bin", 512, 32, &rng))
            return 1;
        o.model_dir = dir;
        o.tokens_file = "axl-demo/tokens.bin";
        o.out_dir = "axl-demo/adapter";
        o.steps = 120;
        o.seq_len = 32;
        o.batch = 8;
        o.rank = 8;
        o.alpha = 16;
        o.lr = 3e-3;
        return train(&o);
    }
    if (argc < 4) {
        usage();
        return 2;
    }
    o.model_dir = argv[1];
    o.tokens_file = argv[2];
    o.out_dir = argv[3];
    for (int i = 4; i < argc; ++i) {
        const char *flag = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = value == NULL;
        if (!bad && !strcmp(flag, "--steps")) bad = parse_int(value, &o.steps);
        else if (!bad && !strcmp(flag, "--seq-len")) bad = parse_int(value, &o.seq_len);
        else if (!bad && !strcmp(flag, "--batch")) bad = parse_int(value, &o.batch);
        else if (!bad && !strcmp(flag, "--accum")) bad = parse_int(value, &o.accum);
        else if (!bad && !strcmp(flag, "--rank")) bad = parse_int(value, &o.rank);
        else if (!bad && !strcmp(flag, "--threads")) bad = parse_int(value, &o.threads);
        else if (!bad && !strcmp(flag, "--lr")) o.lr = atof(value), bad = !(o.lr > 0);
        else if (!bad && !strcmp(flag, "--alpha")) o.alpha = atof(value), bad = !(o.alpha > 0);
        else if (!bad && !strcmp(flag, "--targets")) o.targets = value;
        else bad = 1;
        if (bad) {
            fprintf(stderr, "error: bad option %s\n", flag);
            usage();
            return 2;
        }
        ++i;
    }
    return train(&o);
}
