/*
 * consumer: the minimal training program of docs/getting-started-c.md, built against an
 * installed axl (tests/install/run.cmake builds it with find_package(axl) and with pkg-config).
 *
 *   consumer [MODEL_DIR]     with no MODEL_DIR: writes a tiny random Llama model to ./tiny-model
 */
#define _POSIX_C_SOURCE 200809L

#include <axl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "demo_checkpoint.h"

static int check(axl_status status, const char *what) {
    if (status == AXL_OK) return 0;
    fprintf(stderr, "%s failed: %s\n", what, axl_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *model_dir = argc > 1 ? argv[1] : "tiny-model";
    if (argc == 1) {
        demo_rng rng = {DEMO_RNG_SEED};
        mkdir(model_dir, 0755);
        if (demo_write_model(model_dir, &rng)) return 1;
    }

    axl_context *ctx = NULL;
    axl_model *model = NULL;
    axl_lora *lora = NULL;
    axl_optimizer *opt = NULL;
    axl_trainer *trainer = NULL;
    int rc = 1;
    if (check(axl_context_create(NULL, &ctx), "axl_context_create") ||
        check(axl_model_load(ctx, model_dir, NULL, &model), "axl_model_load") ||
        check(axl_lora_create(model, NULL, &lora), "axl_lora_create") ||
        check(axl_optimizer_create(lora, NULL, &opt), "axl_optimizer_create") ||
        check(axl_trainer_create(opt, NULL, &trainer), "axl_trainer_create"))
        goto done;

    int32_t tokens[2 * 16];
    for (int i = 0; i < 2 * 16; ++i) tokens[i] = (7 + 3 * i) % 64;
    axl_batch batch;
    axl_batch_init(&batch, sizeof batch);
    batch.batch_size = 2;
    batch.seq_len = 16;
    batch.tokens = tokens;
    axl_step_result result;
    axl_step_result_init(&result, sizeof result);
    for (int step = 0; step < 3; ++step) {
        if (check(axl_trainer_step(trainer, &batch, &result), "axl_trainer_step")) goto done;
        printf("step %d: loss %.4f\n", step + 1, result.loss);
    }
    if (check(axl_lora_save(lora, "adapter"), "axl_lora_save")) goto done;
    printf("axl %s: trained 3 steps and saved ./adapter\n", axl_version_string());
    rc = 0;
done:
    axl_trainer_destroy(trainer);
    axl_optimizer_destroy(opt);
    axl_lora_destroy(lora);
    axl_model_destroy(model);
    axl_context_destroy(ctx);
    return rc;
}
