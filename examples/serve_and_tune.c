/*
 * serve_and_tune: an inference server that improves its adapter while it runs.
 *
 *   serve_and_tune [MODEL_DIR] [--rounds N] [--steps-per-round N] [--threads N]
 *
 * The loop of a server that fine-tunes in-process:
 *   1. serve "requests" (axl_model_forward at the last position of each prompt, argmax = the
 *      answer) with the adapter being served;
 *   2. between requests, train a NEW adapter on the same model handle (the base is loaded
 *      once and shared; serving is not disturbed: the served answers stay bit-identical);
 *   3. when the new adapter scores better on held-out data, hot-swap it into the served adapter
 *      with axl_lora_copy_from, and serve the next requests with it.
 * The task is arithmetic sequences modulo the vocabulary ("3 5 7 9 ..."), which a model can
 * learn from context. With no MODEL_DIR the program writes a tiny random Llama model into
 * ./axl-serve-demo first. Exits 0 when the served held-out loss went down.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "axl.h"
#include "demo_checkpoint.h"
#include "example_util.h"

enum { PROMPTS = 4, PROMPT_LEN = 12, TRAIN_BATCH = 8, SEQ_LEN = 32, HELD_OUT_ROWS = 16 };

/* The server's side: what a request handler would do with the adapter it serves. */
typedef struct server {
    axl_model *model;
    axl_lora *served;
    int32_t vocab;
    int32_t prompts[PROMPTS * PROMPT_LEN];
    int32_t answers[PROMPTS];
    float *logits; /* [PROMPTS, vocab] */
} server;

/* One batch of requests: the next token of each prompt. Prints and remembers the answers. */
static int serve_requests(server *s, int *correct, int *changed) {
    int64_t positions[PROMPTS];
    for (int32_t p = 0; p < PROMPTS; ++p) positions[p] = (int64_t)p * PROMPT_LEN + PROMPT_LEN - 1;
    axl_batch batch = token_batch(s->prompts, PROMPTS, PROMPT_LEN);
    if (check(axl_model_forward(s->model, s->served, &batch, positions, PROMPTS, s->logits,
                                (size_t)PROMPTS * (size_t)s->vocab),
              "axl_model_forward"))
        return 1;
    *correct = 0;
    *changed = 0;
    for (int32_t p = 0; p < PROMPTS; ++p) {
        const float *row = s->logits + (size_t)p * (size_t)s->vocab;
        int32_t best = 0;
        for (int32_t v = 1; v < s->vocab; ++v)
            if (row[v] > row[best]) best = v;
        const int32_t *prompt = s->prompts + (size_t)p * PROMPT_LEN;
        int32_t step = (prompt[1] - prompt[0] + s->vocab) % s->vocab;
        int32_t expected = (prompt[PROMPT_LEN - 1] + step) % s->vocab;
        printf("    request %d: %d %d %d ... %d -> %d (%s)\n", p, prompt[0], prompt[1], prompt[2],
               prompt[PROMPT_LEN - 1], best, best == expected ? "right" : "wrong");
        *correct += best == expected;
        *changed += best != s->answers[p];
        s->answers[p] = best;
    }
    return 0;
}

static int held_out_loss(axl_model *model, const axl_lora *lora, const axl_batch *held_out,
                         double *loss) {
    axl_eval_result result;
    axl_eval_result_init(&result, sizeof result);
    if (check(axl_model_evaluate(model, lora, held_out, &result), "axl_model_evaluate")) return 1;
    *loss = result.loss;
    return 0;
}

typedef struct options {
    const char *model_dir;
    int32_t rounds, steps_per_round, threads;
} options;

static int run(const options *o) {
    int rc = 1;
    axl_context *ctx = NULL;
    axl_model *model = NULL;
    axl_lora *served = NULL, *candidate = NULL;
    axl_optimizer *opt = NULL;
    axl_trainer *trainer = NULL;
    int32_t *train_tokens = NULL, *held_out_tokens = NULL;
    server s;
    memset(&s, 0, sizeof s);

    axl_context_options copts;
    axl_context_options_init(&copts, sizeof copts);
    copts.num_threads = o->threads;
    if (check(axl_context_create(&copts, &ctx), "axl_context_create")) goto done;
    if (check(axl_model_load(ctx, o->model_dir, NULL, &model), "axl_model_load")) goto done;
    axl_model_info info;
    info.struct_size = sizeof info;
    if (check(axl_model_get_info(model, &info), "axl_model_get_info")) goto done;
    printf("loaded the base model once: %s, %d layers, vocab %d\n", axl_model_architecture(model),
           info.num_layers, info.vocab_size);

    /* The served adapter starts fresh (LoRA's B = 0, so it answers like the base). */
    axl_lora_options lopts;
    axl_lora_options_init(&lopts, sizeof lopts);
    lopts.rank = 8;
    lopts.alpha = 16;
    lopts.seed = 1;
    if (check(axl_lora_create(model, &lopts, &served), "axl_lora_create (served)")) goto done;

    /* The candidate: a new adapter over the same model handle, trained between requests. */
    lopts.seed = 2;
    if (check(axl_lora_create(model, &lopts, &candidate), "axl_lora_create (candidate)")) goto done;
    axl_optimizer_options oopts;
    axl_optimizer_options_init(&oopts, sizeof oopts);
    oopts.lr = 3e-3;
    if (check(axl_optimizer_create(candidate, &oopts, &opt), "axl_optimizer_create")) goto done;
    if (check(axl_trainer_create(opt, NULL, &trainer), "axl_trainer_create")) goto done;

    s.model = model;
    s.served = served;
    s.vocab = info.vocab_size;
    s.logits = malloc(sizeof(float) * PROMPTS * (size_t)info.vocab_size);
    train_tokens = malloc(sizeof(int32_t) * TRAIN_BATCH * SEQ_LEN);
    held_out_tokens = malloc(sizeof(int32_t) * HELD_OUT_ROWS * SEQ_LEN);
    if (!s.logits || !train_tokens || !held_out_tokens) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }
    /* Separate streams: requests and held-out data are never trained on. */
    demo_rng request_rng = {11}, held_out_rng = {12}, train_rng = {13};
    arithmetic_rows(s.prompts, PROMPTS, PROMPT_LEN, s.vocab, &request_rng);
    arithmetic_rows(held_out_tokens, HELD_OUT_ROWS, SEQ_LEN, s.vocab, &held_out_rng);
    for (int32_t p = 0; p < PROMPTS; ++p) s.answers[p] = -1;
    axl_batch held_out = token_batch(held_out_tokens, HELD_OUT_ROWS, SEQ_LEN);

    double first_loss = 0, served_loss = 0, swapped_in_loss = -1;
    int first_correct = 0, correct = 0, changed = 0;
    for (int32_t round = 0; round <= o->rounds; ++round) {
        printf("round %d: serving %d requests with the served adapter\n", round, PROMPTS);
        if (serve_requests(&s, &correct, &changed)) goto done;
        if (held_out_loss(model, served, &held_out, &served_loss)) goto done;
        printf("  served: %d/%d right, %d answers changed since last round, held-out loss %.4f\n",
               correct, PROMPTS, round ? changed : 0, served_loss);
        if (swapped_in_loss >= 0 && served_loss != swapped_in_loss) {
            fprintf(stderr, "error: the served adapter does not score what the candidate scored "
                            "(%.6f vs %.6f) after the hot-swap\n", served_loss, swapped_in_loss);
            goto done;
        }
        if (round == 0) {
            first_loss = served_loss;
            first_correct = correct;
        }
        if (round == o->rounds) break;

        printf("  between requests: training the candidate adapter for %d steps\n", o->steps_per_round);
        axl_step_result step;
        axl_step_result_init(&step, sizeof step);
        for (int32_t i = 0; i < o->steps_per_round; ++i) {
            arithmetic_rows(train_tokens, TRAIN_BATCH, SEQ_LEN, s.vocab, &train_rng);
            axl_batch batch = token_batch(train_tokens, TRAIN_BATCH, SEQ_LEN);
            if (check(axl_trainer_step(trainer, &batch, &step), "axl_trainer_step")) goto done;
        }
        double still_served = 0, candidate_loss = 0;
        if (held_out_loss(model, served, &held_out, &still_served)) goto done;
        if (held_out_loss(model, candidate, &held_out, &candidate_loss)) goto done;
        printf("  trained: last step loss %.4f; held-out loss candidate %.4f, served %.4f%s\n",
               step.loss, candidate_loss, still_served,
               still_served == served_loss ? " (unchanged by the training)" : "");
        if (still_served != served_loss) {
            fprintf(stderr, "error: training the candidate changed what the server serves\n");
            goto done;
        }
        if (candidate_loss < served_loss) {
            if (check(axl_lora_copy_from(served, candidate), "axl_lora_copy_from")) goto done;
            swapped_in_loss = candidate_loss;
            printf("  hot-swapped the candidate into the served adapter (no reload of the base)\n");
        } else {
            printf("  kept the served adapter: the candidate is not better yet\n");
        }
    }

    printf("served held-out loss %.4f -> %.4f, right answers %d/%d -> %d/%d\n", first_loss,
           served_loss, first_correct, PROMPTS, correct, PROMPTS);
    if (!(served_loss < first_loss)) {
        fprintf(stderr, "error: the served loss did not go down\n");
        goto done;
    }
    rc = 0;
done:
    free(held_out_tokens);
    free(train_tokens);
    free(s.logits);
    axl_trainer_destroy(trainer);
    axl_optimizer_destroy(opt);
    axl_lora_destroy(candidate);
    axl_lora_destroy(served);
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

int main(int argc, char **argv) {
    options o = {NULL, 2, 30, 0};
    int i = 1;
    if (i < argc && argv[i][0] != '-') o.model_dir = argv[i++];
    for (; i < argc; i += 2) {
        int bad = i + 1 >= argc;
        if (!bad && !strcmp(argv[i], "--rounds")) bad = parse_int(argv[i + 1], &o.rounds);
        else if (!bad && !strcmp(argv[i], "--steps-per-round")) bad = parse_int(argv[i + 1], &o.steps_per_round);
        else if (!bad && !strcmp(argv[i], "--threads")) bad = parse_int(argv[i + 1], &o.threads);
        else bad = 1;
        if (bad) {
            fprintf(stderr, "usage: serve_and_tune [MODEL_DIR] [--rounds N] [--steps-per-round N] "
                            "[--threads N]\n");
            return 2;
        }
    }
    printf("axl %s\n", axl_version_string());
    if (o.model_dir == NULL) {
        o.model_dir = "axl-serve-demo";
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
