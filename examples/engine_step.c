/*
 * engine_step: training inside a game/app engine's frame loop.
 *
 *   engine_step [MODEL_DIR] [--frames N] [--budget-ms X] [--threads N]
 *
 * Each frame gives training a time budget (default 20 ms). The frame runs training steps while
 * budget is left; the trainer's progress callback, called between layers, returns nonzero once
 * the deadline has passed, so the step running at that moment stops with AXL_ERR_CANCELLED
 * instead of stalling the frame. A cancelled step leaves the adapter exactly as it was: the
 * program checks this after every cancellation by comparing the adapter's logits with those
 * of a copy taken before the step. When not even one step fits a frame, the micro-batch is
 * halved. Training uses one thread unless --threads says otherwise (0: every core), leaving
 * the other cores to the rest of the engine. With no MODEL_DIR a tiny random Llama model is
 * written into ./axl-engine-demo.
 * Exits 0 when every cancellation left the adapter unchanged and the held-out loss fell.
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

enum { MAX_ROWS = 8, SEQ_LEN = 32, PROBE_LEN = 16, HELD_OUT_ROWS = 8, EVAL_EVERY = 10 };

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* What the progress callback sees: the frame's deadline, and where the step was stopped. */
typedef struct frame_clock {
    double deadline_ms;
    axl_progress stopped_at;
} frame_clock;

/* Called by axl on this thread between layers of the running step. */
static int32_t stop_at_deadline(void *user_data, const axl_progress *progress) {
    frame_clock *timer = user_data;
    if (now_ms() < timer->deadline_ms) return 0;
    timer->stopped_at = *progress;
    return 1;
}

/* Logits of a fixed probe sequence: a fingerprint of an adapter's values. */
static int probe_logits(axl_model *model, const axl_lora *lora, const int32_t *probe, float *logits,
                        size_t len) {
    axl_batch batch = token_batch(probe, 1, PROBE_LEN);
    return check(axl_model_forward(model, lora, &batch, NULL, 0, logits, len), "axl_model_forward");
}

typedef struct options {
    const char *model_dir;
    int32_t frames, threads;
    double budget_ms;
} options;

static int run(const options *o) {
    int rc = 1;
    axl_context *ctx = NULL;
    axl_model *model = NULL;
    axl_lora *lora = NULL, *before_step = NULL;
    axl_optimizer *opt = NULL;
    axl_trainer *trainer = NULL;
    float *logits_now = NULL, *logits_before = NULL;
    frame_clock timer;
    memset(&timer, 0, sizeof timer);

    axl_context_options copts;
    axl_context_options_init(&copts, sizeof copts);
    copts.num_threads = o->threads;
    if (check(axl_context_create(&copts, &ctx), "axl_context_create")) goto done;
    if (check(axl_model_load(ctx, o->model_dir, NULL, &model), "axl_model_load")) goto done;
    axl_model_info info;
    info.struct_size = sizeof info;
    if (check(axl_model_get_info(model, &info), "axl_model_get_info")) goto done;
    const int32_t vocab = info.vocab_size;

    axl_lora_options lopts;
    axl_lora_options_init(&lopts, sizeof lopts);
    lopts.rank = 8;
    lopts.alpha = 16;
    if (check(axl_lora_create(model, &lopts, &lora), "axl_lora_create")) goto done;
    /* Same options: a second adapter of the same layout to hold the values before each step. */
    if (check(axl_lora_create(model, &lopts, &before_step), "axl_lora_create")) goto done;

    axl_optimizer_options oopts;
    axl_optimizer_options_init(&oopts, sizeof oopts);
    oopts.lr = 3e-3;
    if (check(axl_optimizer_create(lora, &oopts, &opt), "axl_optimizer_create")) goto done;
    axl_trainer_options topts;
    axl_trainer_options_init(&topts, sizeof topts);
    topts.progress_fn = stop_at_deadline;
    topts.progress_user_data = &timer;
    if (check(axl_trainer_create(opt, &topts, &trainer), "axl_trainer_create")) goto done;

    const size_t probe_len = (size_t)PROBE_LEN * (size_t)vocab;
    logits_now = malloc(sizeof(float) * probe_len);
    logits_before = malloc(sizeof(float) * probe_len);
    if (!logits_now || !logits_before) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }
    int32_t tokens[MAX_ROWS * SEQ_LEN], held_out_tokens[HELD_OUT_ROWS * SEQ_LEN], probe[PROBE_LEN];
    demo_rng train_rng = {21}, held_out_rng = {22}, probe_rng = {23};
    arithmetic_rows(held_out_tokens, HELD_OUT_ROWS, SEQ_LEN, vocab, &held_out_rng);
    arithmetic_rows(probe, 1, PROBE_LEN, vocab, &probe_rng);
    axl_batch held_out = token_batch(held_out_tokens, HELD_OUT_ROWS, SEQ_LEN);
    axl_eval_result eval;
    axl_eval_result_init(&eval, sizeof eval);
    if (check(axl_model_evaluate(model, lora, &held_out, &eval), "axl_model_evaluate")) goto done;
    const double first_loss = eval.loss;
    printf("model: %s, %d layers; frame budget %.1f ms; held-out loss %.4f\n",
           axl_model_architecture(model), info.num_layers, o->budget_ms, first_loss);

    int32_t rows = MAX_ROWS;
    int64_t total_steps = 0, total_cancelled = 0;
    for (int32_t frame = 1; frame <= o->frames; ++frame) {
        const double start = now_ms();
        timer.deadline_ms = start + o->budget_ms;
        int32_t steps = 0, cancelled = 0;
        double loss_sum = 0;
        while (now_ms() < timer.deadline_ms) {
            if (check(axl_lora_copy_from(before_step, lora), "axl_lora_copy_from")) goto done;
            arithmetic_rows(tokens, rows, SEQ_LEN, vocab, &train_rng);
            axl_batch batch = token_batch(tokens, rows, SEQ_LEN);
            axl_step_result result;
            axl_step_result_init(&result, sizeof result);
            axl_status status = axl_trainer_step(trainer, &batch, &result);
            if (status == AXL_OK) {
                ++steps;
                loss_sum += result.loss;
                continue;
            }
            if (status != AXL_ERR_CANCELLED) {
                check(status, "axl_trainer_step");
                goto done;
            }
            ++cancelled;
            break;
        }
        const double used = now_ms() - start;
        printf("frame %3d: %d step%s of %d rows", frame, steps, steps == 1 ? " " : "s", rows);
        if (steps) printf(", mean loss %.4f", loss_sum / steps);
        else printf(",     no loss");
        printf(", %.1f ms", used);
        if (cancelled)
            printf("; stopped a step at %s layer %lld/%lld",
                   timer.stopped_at.stage == AXL_STAGE_BACKWARD ? "backward" : "forward",
                   (long long)timer.stopped_at.done, (long long)timer.stopped_at.total);
        printf("\n");
        fflush(stdout);

        /* Outside the frame budget: prove the cancelled step left no trace in the adapter. */
        if (cancelled) {
            if (probe_logits(model, lora, probe, logits_now, probe_len) ||
                probe_logits(model, before_step, probe, logits_before, probe_len))
                goto done;
            if (memcmp(logits_now, logits_before, sizeof(float) * probe_len) != 0) {
                fprintf(stderr, "error: the cancelled step in frame %d changed the adapter\n", frame);
                goto done;
            }
        }
        if (steps == 0 && rows > 1) {
            rows /= 2;
            printf("           no step fits the budget: micro-batch halved to %d rows\n", rows);
        }
        total_steps += steps;
        total_cancelled += cancelled;
        if (frame % EVAL_EVERY == 0 || frame == o->frames) {
            if (check(axl_model_evaluate(model, lora, &held_out, &eval), "axl_model_evaluate")) goto done;
            printf("           held-out loss %.4f after %lld steps\n", eval.loss, (long long)total_steps);
        }
    }
    printf("%lld steps completed, %lld cancelled at the frame deadline (each verified: adapter "
           "unchanged); held-out loss %.4f -> %.4f\n",
           (long long)total_steps, (long long)total_cancelled, first_loss, eval.loss);
    if (!(eval.loss < first_loss)) {
        fprintf(stderr, "error: the held-out loss did not fall\n");
        goto done;
    }
    rc = 0;
done:
    free(logits_before);
    free(logits_now);
    axl_trainer_destroy(trainer);
    axl_optimizer_destroy(opt);
    axl_lora_destroy(before_step);
    axl_lora_destroy(lora);
    axl_model_destroy(model);
    axl_context_destroy(ctx);
    return rc;
}

static int parse_number(const char *text, double *out) {
    char *end;
    double v = strtod(text, &end);
    if (*end != '\0' || !(v >= 0) || v > 1e9) return 1;
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    options o = {NULL, 40, 1, 20.0};
    int i = 1;
    if (i < argc && argv[i][0] != '-') o.model_dir = argv[i++];
    for (; i < argc; i += 2) {
        double value = 0;
        int bad = i + 1 >= argc || parse_number(argv[i + 1], &value);
        if (!bad && !strcmp(argv[i], "--frames")) o.frames = (int32_t)value;
        else if (!bad && !strcmp(argv[i], "--budget-ms")) o.budget_ms = value;
        else if (!bad && !strcmp(argv[i], "--threads")) o.threads = (int32_t)value;
        else bad = 1;
        if (bad || o.frames < 1 || !(o.budget_ms > 0)) {
            fprintf(stderr, "usage: engine_step [MODEL_DIR] [--frames N] [--budget-ms X] [--threads N]\n");
            return 2;
        }
    }
    printf("axl %s\n", axl_version_string());
    if (o.model_dir == NULL) {
        o.model_dir = "axl-engine-demo";
        if (mkdir(o.model_dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "error: cannot create %s: %s\n", o.model_dir, strerror(errno));
            return 1;
        }
        printf("demo: writing a small random Llama model to %s/\n", o.model_dir);
        demo_rng rng = {DEMO_RNG_SEED};
        if (demo_write_model(o.model_dir, &rng)) return 1;
    }
    return run(&o);
}
