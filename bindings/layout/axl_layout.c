/*
 * axl_layout: prints the size of every public struct of axl.h and the offset of each field,
 * as compiled by this platform's C compiler. The bindings' layout tests compare their own
 * mirrors of these structs against this output, so a mirror that drifts from the header
 * fails a test instead of corrupting memory.
 *
 * Output, one line each:   STRUCT FIELD OFFSET   (FIELD "sizeof" gives the struct's size)
 */
#include <stddef.h>
#include <stdio.h>

#include "axl.h"

#define SIZE(s) printf("%s sizeof %zu\n", #s, sizeof(s))
#define FIELD(s, f) printf("%s %s %zu\n", #s, #f, offsetof(s, f))

int main(void) {
    SIZE(axl_progress);
    FIELD(axl_progress, struct_size);
    FIELD(axl_progress, stage);
    FIELD(axl_progress, done);
    FIELD(axl_progress, total);
    FIELD(axl_progress, what);

    SIZE(axl_host_allocator);
    FIELD(axl_host_allocator, struct_size);
    FIELD(axl_host_allocator, user_data);
    FIELD(axl_host_allocator, allocate);
    FIELD(axl_host_allocator, deallocate);

    SIZE(axl_context_options);
    FIELD(axl_context_options, struct_size);
    FIELD(axl_context_options, backend);
    FIELD(axl_context_options, device);
    FIELD(axl_context_options, cuda_stream);
    FIELD(axl_context_options, num_threads);
    FIELD(axl_context_options, log_level);
    FIELD(axl_context_options, log_fn);
    FIELD(axl_context_options, log_user_data);
    FIELD(axl_context_options, host_allocator);
    FIELD(axl_context_options, device_memory_budget);

    SIZE(axl_memory_stats);
    FIELD(axl_memory_stats, struct_size);
    FIELD(axl_memory_stats, host_current_bytes);
    FIELD(axl_memory_stats, host_peak_bytes);
    FIELD(axl_memory_stats, device_current_bytes);
    FIELD(axl_memory_stats, device_peak_bytes);

    SIZE(axl_model_options);
    FIELD(axl_model_options, struct_size);
    FIELD(axl_model_options, quant);
    FIELD(axl_model_options, progress_fn);
    FIELD(axl_model_options, progress_user_data);

    SIZE(axl_model_info);
    FIELD(axl_model_info, struct_size);
    FIELD(axl_model_info, vocab_size);
    FIELD(axl_model_info, hidden_size);
    FIELD(axl_model_info, intermediate_size);
    FIELD(axl_model_info, num_layers);
    FIELD(axl_model_info, num_heads);
    FIELD(axl_model_info, num_kv_heads);
    FIELD(axl_model_info, head_dim);
    FIELD(axl_model_info, max_position_embeddings);
    FIELD(axl_model_info, num_parameters);
    FIELD(axl_model_info, weight_bytes);

    SIZE(axl_batch);
    FIELD(axl_batch, struct_size);
    FIELD(axl_batch, batch_size);
    FIELD(axl_batch, seq_len);
    FIELD(axl_batch, tokens);
    FIELD(axl_batch, labels);
    FIELD(axl_batch, loss_mask);
    FIELD(axl_batch, segment_ids);

    SIZE(axl_lora_options);
    FIELD(axl_lora_options, struct_size);
    FIELD(axl_lora_options, rank);
    FIELD(axl_lora_options, alpha);
    FIELD(axl_lora_options, dropout);
    FIELD(axl_lora_options, use_rslora);
    FIELD(axl_lora_options, use_dora);
    FIELD(axl_lora_options, target_modules);
    FIELD(axl_lora_options, seed);
    FIELD(axl_lora_options, init);

    SIZE(axl_eval_result);
    FIELD(axl_eval_result, struct_size);
    FIELD(axl_eval_result, loss);
    FIELD(axl_eval_result, num_tokens);

    SIZE(axl_optimizer_options);
    FIELD(axl_optimizer_options, struct_size);
    FIELD(axl_optimizer_options, type);
    FIELD(axl_optimizer_options, lr);
    FIELD(axl_optimizer_options, beta1);
    FIELD(axl_optimizer_options, beta2);
    FIELD(axl_optimizer_options, eps);
    FIELD(axl_optimizer_options, weight_decay);
    FIELD(axl_optimizer_options, schedule);
    FIELD(axl_optimizer_options, warmup_steps);
    FIELD(axl_optimizer_options, total_steps);
    FIELD(axl_optimizer_options, min_lr_ratio);
    FIELD(axl_optimizer_options, max_grad_norm);

    SIZE(axl_trainer_options);
    FIELD(axl_trainer_options, struct_size);
    FIELD(axl_trainer_options, grad_accum_steps);
    FIELD(axl_trainer_options, gradient_checkpointing);
    FIELD(axl_trainer_options, progress_fn);
    FIELD(axl_trainer_options, progress_user_data);

    SIZE(axl_step_result);
    FIELD(axl_step_result, struct_size);
    FIELD(axl_step_result, loss);
    FIELD(axl_step_result, grad_norm);
    FIELD(axl_step_result, lr);
    FIELD(axl_step_result, num_tokens);
    FIELD(axl_step_result, optimizer_step);
    FIELD(axl_step_result, updated);
    return 0;
}
