/*
 * old_client: a program written and compiled against the frozen header abi/baseline/axl.h,
 * run against the library being built (scripts/check-abi.sh old-client). It must keep working,
 * unchanged and uncompiled, against every later libaxl.so of the same ABI major.
 *
 * It calls every function of the baseline (linked with -z now, so a missing one fails at
 * start-up), uses the structs at the baseline's sizes, and checks that the library writes no
 * byte past the struct_size it was given (a guard zone follows every result struct).
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "axl.h"
#include "demo_checkpoint.h"

enum { GUARD_BYTES = 64, GUARD_BYTE = 0xA5, ROWS = 2, SEQ = 16 };

static int failures = 0;

#define EXPECT(cond)                                                                      \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "old_client: %s:%d: expected %s (last error: %s)\n", __FILE__, \
                    __LINE__, #cond, axl_last_error());                                   \
            ++failures;                                                                   \
        }                                                                                 \
    } while (0)

static int guard_intact(const unsigned char *guard) {
    for (int i = 0; i < GUARD_BYTES; ++i)
        if (guard[i] != GUARD_BYTE) return 0;
    return 1;
}

static int32_t load_progress(void *user_data, const axl_progress *progress) {
    int64_t *tensors = user_data;
    if (progress->struct_size >= sizeof *progress && progress->stage == AXL_STAGE_LOAD) ++*tensors;
    return 0;
}

static int32_t step_progress(void *user_data, const axl_progress *progress) {
    int64_t *reports = user_data;
    if (progress->stage == AXL_STAGE_FORWARD || progress->stage == AXL_STAGE_BACKWARD) ++*reports;
    return 0;
}

int main(void) {
    /* Written against the baseline; any later library of the same ABI major must accept it. */
    EXPECT(axl_version() >= (uint32_t)AXL_VERSION_NUMBER);
    EXPECT(strlen(axl_version_string()) > 0);
    EXPECT(strcmp(axl_status_string(AXL_ERR_CANCELLED), "") != 0);

    if (mkdir("model", 0755) != 0) {
        perror("old_client: mkdir model");
        return 1;
    }
    demo_rng rng = {DEMO_RNG_SEED};
    if (demo_write_model("model", &rng)) return 1;

    axl_context_options copts;
    EXPECT(axl_context_options_init(&copts, sizeof copts) == AXL_OK);
    EXPECT(copts.struct_size == sizeof copts);
    copts.backend = AXL_BACKEND_CPU;
    copts.num_threads = 1;
    axl_context *ctx = NULL;
    if (axl_context_create(&copts, &ctx) != AXL_OK) {
        fprintf(stderr, "old_client: axl_context_create: %s\n", axl_last_error());
        return 1;
    }

    axl_model *missing = NULL;
    EXPECT(axl_model_load(ctx, "no-such-model-dir", NULL, &missing) != AXL_OK);
    EXPECT(missing == NULL);
    EXPECT(strlen(axl_last_error()) > 0);
    EXPECT(strlen(axl_context_last_error(ctx)) > 0);

    axl_quant_config *quant = NULL;
    EXPECT(axl_quant_config_create(&quant) == AXL_OK);
    EXPECT(axl_quant_config_set_format(quant, AXL_QUANT_NONE) == AXL_OK);
    EXPECT(axl_quant_config_set_block_size(quant, 0) == AXL_OK);
    EXPECT(axl_quant_config_set_double_quant(quant, 0) == AXL_OK);
    EXPECT(axl_quant_config_add_skip_module(quant, "lm_head") == AXL_OK);
    EXPECT(axl_quant_config_set_format(quant, -1) != AXL_OK);
    EXPECT(strlen(axl_quant_config_last_error(quant)) > 0);
    EXPECT(axl_quant_config_set_format(quant, AXL_QUANT_NONE) == AXL_OK);
    int32_t backend = -1;
    EXPECT(axl_context_backend(ctx, &backend) == AXL_OK && backend == AXL_BACKEND_CPU);

    int64_t tensors_loaded = 0;
    axl_model_options mopts;
    EXPECT(axl_model_options_init(&mopts, sizeof mopts) == AXL_OK);
    mopts.quant = quant;
    mopts.progress_fn = load_progress;
    mopts.progress_user_data = &tensors_loaded;
    axl_model *model = NULL;
    if (axl_model_load(ctx, "model", &mopts, &model) != AXL_OK) {
        fprintf(stderr, "old_client: axl_model_load: %s\n", axl_last_error());
        return 1;
    }
    EXPECT(tensors_loaded > 0);
    axl_quant_config_destroy(quant);
    EXPECT(axl_model_get_info(model, NULL) == AXL_ERR_INVALID_ARGUMENT);
    EXPECT(axl_last_error_code() == AXL_ERR_INVALID_ARGUMENT);
    EXPECT(strlen(axl_model_last_error(model)) > 0);

    struct {
        axl_model_info info;
        unsigned char guard[GUARD_BYTES];
    } info;
    memset(&info, GUARD_BYTE, sizeof info);
    info.info.struct_size = sizeof info.info;
    EXPECT(axl_model_get_info(model, &info.info) == AXL_OK);
    EXPECT(guard_intact(info.guard));
    EXPECT(info.info.struct_size == sizeof info.info);
    EXPECT(info.info.vocab_size == DEMO_VOCAB && info.info.num_layers == DEMO_LAYERS);
    EXPECT(strcmp(axl_model_architecture(model), "llama") == 0);

    axl_lora_options lopts;
    EXPECT(axl_lora_options_init(&lopts, sizeof lopts) == AXL_OK);
    lopts.rank = 4;
    lopts.alpha = 8;
    lopts.target_modules = "q_proj,v_proj";
    axl_lora *lora = NULL, *copy = NULL;
    EXPECT(axl_lora_create(model, &lopts, &lora) == AXL_OK);
    EXPECT(axl_lora_create(model, &lopts, &copy) == AXL_OK);
    int64_t params = 0;
    EXPECT(axl_lora_num_parameters(lora, &params) == AXL_OK && params > 0);

    axl_optimizer_options oopts;
    EXPECT(axl_optimizer_options_init(&oopts, sizeof oopts) == AXL_OK);
    oopts.lr = 1e-2;
    axl_optimizer *opt = NULL;
    EXPECT(axl_optimizer_create(lora, &oopts, &opt) == AXL_OK);
    double lr = 0;
    EXPECT(axl_optimizer_get_param(opt, AXL_OPTIMIZER_PARAM_LR, &lr) == AXL_OK && lr == 1e-2);
    EXPECT(axl_optimizer_set_param(opt, AXL_OPTIMIZER_PARAM_WEIGHT_DECAY, 0.0) == AXL_OK);
    EXPECT(axl_optimizer_lr_at(opt, 0, &lr) == AXL_OK && lr == 1e-2);
    EXPECT(axl_optimizer_set_param(opt, 999, 0.0) != AXL_OK);
    EXPECT(strlen(axl_optimizer_last_error(opt)) > 0);

    int64_t layer_reports = 0;
    axl_trainer_options topts;
    EXPECT(axl_trainer_options_init(&topts, sizeof topts) == AXL_OK);
    topts.progress_fn = step_progress;
    topts.progress_user_data = &layer_reports;
    axl_trainer *trainer = NULL;
    EXPECT(axl_trainer_create(opt, &topts, &trainer) == AXL_OK);
    if (!lora || !copy || !opt || !trainer) return 1;

    int32_t tokens[ROWS * SEQ];
    for (int32_t r = 0; r < ROWS; ++r) demo_arithmetic_window(tokens + r * SEQ, SEQ, r, DEMO_VOCAB, &rng);
    axl_batch batch;
    EXPECT(axl_batch_init(&batch, sizeof batch) == AXL_OK);
    batch.batch_size = ROWS;
    batch.seq_len = SEQ;
    batch.tokens = tokens;

    struct {
        axl_eval_result result;
        unsigned char guard[GUARD_BYTES];
    } before, after;
    memset(&before, GUARD_BYTE, sizeof before);
    memset(&after, GUARD_BYTE, sizeof after);
    EXPECT(axl_eval_result_init(&before.result, sizeof before.result) == AXL_OK);
    EXPECT(axl_eval_result_init(&after.result, sizeof after.result) == AXL_OK);
    EXPECT(axl_model_evaluate(model, lora, &batch, &before.result) == AXL_OK);

    struct {
        axl_step_result result;
        unsigned char guard[GUARD_BYTES];
    } step;
    memset(&step, GUARD_BYTE, sizeof step);
    EXPECT(axl_step_result_init(&step.result, sizeof step.result) == AXL_OK);
    for (int i = 0; i < 3; ++i) EXPECT(axl_trainer_step(trainer, &batch, &step.result) == AXL_OK);
    EXPECT(guard_intact(step.guard));
    EXPECT(step.result.updated == 1 && step.result.optimizer_step == 3);
    EXPECT(isfinite(step.result.loss) && step.result.num_tokens == ROWS * (SEQ - 1));
    EXPECT(layer_reports > 0);
    EXPECT(axl_trainer_discard_gradients(trainer) == AXL_OK);
    axl_batch empty;
    EXPECT(axl_batch_init(&empty, sizeof empty) == AXL_OK);
    EXPECT(axl_trainer_step(trainer, &empty, NULL) != AXL_OK);
    EXPECT(strlen(axl_trainer_last_error(trainer)) > 0);

    EXPECT(axl_model_evaluate(model, lora, &batch, &after.result) == AXL_OK);
    EXPECT(guard_intact(before.guard) && guard_intact(after.guard));
    EXPECT(after.result.loss < before.result.loss);
    EXPECT(after.result.num_tokens == ROWS * (SEQ - 1));

    float logits[2 * DEMO_VOCAB];
    int64_t positions[2] = {0, ROWS * SEQ - 1};
    EXPECT(axl_model_forward(model, lora, &batch, positions, 2, logits, 2 * DEMO_VOCAB) == AXL_OK);
    EXPECT(isfinite(logits[0]) && isfinite(logits[2 * DEMO_VOCAB - 1]));

    EXPECT(axl_lora_copy_from(copy, lora) == AXL_OK);
    EXPECT(axl_lora_copy_from(copy, NULL) != AXL_OK);
    EXPECT(strlen(axl_lora_last_error(copy)) > 0);
    EXPECT(axl_lora_save(lora, "adapter") == AXL_OK);
    axl_lora *loaded = NULL;
    EXPECT(axl_lora_load(model, "adapter", &loaded) == AXL_OK);
    axl_eval_result reloaded;
    EXPECT(axl_eval_result_init(&reloaded, sizeof reloaded) == AXL_OK);
    EXPECT(axl_model_evaluate(model, loaded, &batch, &reloaded) == AXL_OK);
    EXPECT(fabs(reloaded.loss - after.result.loss) < 1e-5);

    struct {
        axl_memory_stats stats;
        unsigned char guard[GUARD_BYTES];
    } memory;
    memset(&memory, GUARD_BYTE, sizeof memory);
    memory.stats.struct_size = sizeof memory.stats;
    EXPECT(axl_context_memory_stats(ctx, &memory.stats) == AXL_OK);
    EXPECT(guard_intact(memory.guard) && memory.stats.host_peak_bytes > 0);
    EXPECT(axl_context_reset_peak_memory(ctx) == AXL_OK);

    /* Parents first: children keep them alive. */
    axl_context_destroy(ctx);
    axl_model_destroy(model);
    axl_optimizer_destroy(opt);
    axl_lora_destroy(lora);
    EXPECT(axl_trainer_step(trainer, &batch, &step.result) == AXL_OK);
    axl_trainer_destroy(trainer);
    axl_lora_destroy(loaded);
    axl_lora_destroy(copy);

    if (failures) {
        fprintf(stderr, "old_client: %d check(s) failed\n", failures);
        return 1;
    }
    printf("old_client: built against the axl %d.%d.%d header, ran against libaxl %s: OK\n",
           AXL_VERSION_MAJOR, AXL_VERSION_MINOR, AXL_VERSION_PATCH, axl_version_string());
    return 0;
}
