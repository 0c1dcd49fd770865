//! Raw bindings to libaxl: every type, constant and function of `include/axl.h`, declared by
//! hand. The header is the contract; read it for what each function does. The `axl` crate
//! wraps these in a safe interface.
//!
//! Structs mirror the header field for field (`#[repr(C)]`); the tests compare their sizes and
//! offsets with what the C compiler makes of the header. Opaque handles are zero-sized
//! `#[repr(C)]` types that cannot be built, moved out of a pointer or shared by accident
//! (neither `Send`, `Sync` nor `Unpin`).
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};
use std::marker::{PhantomData, PhantomPinned};

macro_rules! opaque {
    ($($name:ident),* $(,)?) => {$(
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
            _marker: PhantomData<(*mut u8, PhantomPinned)>,
        }
    )*};
}

opaque!(axl_context, axl_quant_config, axl_model, axl_lora, axl_optimizer, axl_trainer);

// ---- Version ---------------------------------------------------------------------------------

pub const AXL_VERSION_MAJOR: u32 = 0;
pub const AXL_VERSION_MINOR: u32 = 1;
pub const AXL_VERSION_PATCH: u32 = 0;
pub const AXL_VERSION_NUMBER: u32 = AXL_VERSION_MAJOR * 10000 + AXL_VERSION_MINOR * 100 + AXL_VERSION_PATCH;
pub const AXL_ABI_VERSION: u32 = 0;

// ---- Status codes ----------------------------------------------------------------------------

pub type axl_status = i32;

pub const AXL_OK: axl_status = 0;
pub const AXL_ERR_INVALID_ARGUMENT: axl_status = 1;
pub const AXL_ERR_OUT_OF_MEMORY: axl_status = 2;
pub const AXL_ERR_IO: axl_status = 3;
pub const AXL_ERR_FORMAT: axl_status = 4;
pub const AXL_ERR_UNSUPPORTED: axl_status = 5;
pub const AXL_ERR_NOT_FOUND: axl_status = 6;
pub const AXL_ERR_SHAPE: axl_status = 7;
pub const AXL_ERR_NUMERIC: axl_status = 8;
pub const AXL_ERR_CANCELLED: axl_status = 9;
pub const AXL_ERR_BACKEND: axl_status = 10;
pub const AXL_ERR_STATE: axl_status = 11;
pub const AXL_ERR_INTERNAL: axl_status = 12;

// ---- Callbacks -------------------------------------------------------------------------------

pub const AXL_LOG_ERROR: i32 = 0;
pub const AXL_LOG_WARN: i32 = 1;
pub const AXL_LOG_INFO: i32 = 2;
pub const AXL_LOG_DEBUG: i32 = 3;

pub type axl_log_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: i32, message: *const c_char)>;

pub const AXL_STAGE_LOAD: i32 = 1;
pub const AXL_STAGE_FORWARD: i32 = 2;
pub const AXL_STAGE_BACKWARD: i32 = 3;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct axl_progress {
    pub struct_size: u32,
    pub stage: i32,
    pub done: i64,
    pub total: i64,
    pub what: *const c_char,
}

pub type axl_progress_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, progress: *const axl_progress) -> i32>;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct axl_host_allocator {
    pub struct_size: u32,
    pub user_data: *mut c_void,
    pub allocate:
        Option<unsafe extern "C" fn(user_data: *mut c_void, size: usize, alignment: usize) -> *mut c_void>,
    pub deallocate: Option<unsafe extern "C" fn(user_data: *mut c_void, ptr: *mut c_void, size: usize)>,
}

// ---- Context ---------------------------------------------------------------------------------

pub const AXL_BACKEND_AUTO: i32 = 0;
pub const AXL_BACKEND_CPU: i32 = 1;
pub const AXL_BACKEND_CUDA: i32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct axl_context_options {
    pub struct_size: u32,
    pub backend: i32,
    pub device: i32,
    pub cuda_stream: *mut c_void,
    pub num_threads: i32,
    pub log_level: i32,
    pub log_fn: axl_log_fn,
    pub log_user_data: *mut c_void,
    pub host_allocator: *const axl_host_allocator,
    pub device_memory_budget: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct axl_memory_stats {
    pub struct_size: u32,
    pub host_current_bytes: u64,
    pub host_peak_bytes: u64,
    pub device_current_bytes: u64,
    pub device_peak_bytes: u64,
}

// ---- Quantization config ---------------------------------------------------------------------

pub const AXL_QUANT_NONE: i32 = 0;
pub const AXL_QUANT_NF4: i32 = 1;
pub const AXL_QUANT_FP4: i32 = 2;
pub const AXL_QUANT_INT8_ROW: i32 = 3;
pub const AXL_QUANT_INT4_GROUP: i32 = 4;
pub const AXL_QUANT_INT8_CHAN: i32 = 5;
pub const AXL_QUANT_FP8_E4M3: i32 = 6;
pub const AXL_QUANT_NVFP4: i32 = 7;
pub const AXL_QUANT_MXFP4: i32 = 8;

pub const AXL_WEIGHT_DTYPE_AUTO: i32 = 0;
pub const AXL_WEIGHT_DTYPE_F32: i32 = 1;
pub const AXL_WEIGHT_DTYPE_BF16: i32 = 2;
pub const AXL_WEIGHT_DTYPE_F16: i32 = 3;

// ---- Model -----------------------------------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct axl_model_options {
    pub struct_size: u32,
    pub quant: *const axl_quant_config,
    pub progress_fn: axl_progress_fn,
    pub progress_user_data: *mut c_void,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct axl_model_info {
    pub struct_size: u32,
    pub vocab_size: i32,
    pub hidden_size: i32,
    pub intermediate_size: i32,
    pub num_layers: i32,
    pub num_heads: i32,
    pub num_kv_heads: i32,
    pub head_dim: i32,
    pub max_position_embeddings: i32,
    pub num_parameters: i64,
    pub weight_bytes: u64,
}

// ---- Batches ---------------------------------------------------------------------------------

pub const AXL_IGNORE_INDEX: i32 = -100;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct axl_batch {
    pub struct_size: u32,
    pub batch_size: i32,
    pub seq_len: i32,
    pub tokens: *const i32,
    pub labels: *const i32,
    pub loss_mask: *const i32,
    pub segment_ids: *const i32,
}

// ---- LoRA adapter ----------------------------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct axl_lora_options {
    pub struct_size: u32,
    pub rank: i32,
    pub alpha: f64,
    pub dropout: f64,
    pub use_rslora: i32,
    pub use_dora: i32,
    pub target_modules: *const c_char,
    pub seed: u64,
    pub init: i32,
}

pub const AXL_LORA_INIT_DEFAULT: i32 = 0;
pub const AXL_LORA_INIT_GAUSSIAN: i32 = 1;
pub const AXL_LORA_INIT_RANDOM_B: i32 = 2;

// ---- Forward and evaluation ------------------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct axl_eval_result {
    pub struct_size: u32,
    pub loss: f64,
    pub num_tokens: i64,
}

// ---- Optimizer -------------------------------------------------------------------------------

pub const AXL_OPTIMIZER_ADAMW: i32 = 0;

pub const AXL_SCHEDULE_CONSTANT: i32 = 0;
pub const AXL_SCHEDULE_LINEAR: i32 = 1;
pub const AXL_SCHEDULE_COSINE: i32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct axl_optimizer_options {
    pub struct_size: u32,
    pub type_: i32,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub schedule: i32,
    pub warmup_steps: i64,
    pub total_steps: i64,
    pub min_lr_ratio: f64,
    pub max_grad_norm: f64,
}

pub const AXL_OPTIMIZER_PARAM_LR: i32 = 1;
pub const AXL_OPTIMIZER_PARAM_WEIGHT_DECAY: i32 = 2;
pub const AXL_OPTIMIZER_PARAM_MAX_GRAD_NORM: i32 = 3;

// ---- Trainer ---------------------------------------------------------------------------------

pub const AXL_CHECKPOINT_NONE: i32 = 0;
pub const AXL_CHECKPOINT_LAYERS: i32 = 1;
pub const AXL_CHECKPOINT_LAYERS_OFFLOAD: i32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct axl_trainer_options {
    pub struct_size: u32,
    pub grad_accum_steps: i32,
    pub gradient_checkpointing: i32,
    pub progress_fn: axl_progress_fn,
    pub progress_user_data: *mut c_void,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct axl_step_result {
    pub struct_size: u32,
    pub loss: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub num_tokens: i64,
    pub optimizer_step: i64,
    pub updated: i32,
}

extern "C" {
    pub fn axl_version() -> u32;
    pub fn axl_version_string() -> *const c_char;

    pub fn axl_status_string(status: axl_status) -> *const c_char;
    pub fn axl_last_error() -> *const c_char;
    pub fn axl_last_error_code() -> axl_status;

    pub fn axl_context_options_init(opts: *mut axl_context_options, struct_size: usize) -> axl_status;
    pub fn axl_context_create(opts: *const axl_context_options, out: *mut *mut axl_context) -> axl_status;
    pub fn axl_context_destroy(ctx: *mut axl_context);
    pub fn axl_context_last_error(ctx: *const axl_context) -> *const c_char;
    pub fn axl_context_backend(ctx: *const axl_context, out_backend: *mut i32) -> axl_status;
    pub fn axl_context_memory_stats(ctx: *const axl_context, stats: *mut axl_memory_stats) -> axl_status;
    pub fn axl_context_reset_peak_memory(ctx: *mut axl_context) -> axl_status;

    pub fn axl_quant_config_create(out: *mut *mut axl_quant_config) -> axl_status;
    pub fn axl_quant_config_destroy(config: *mut axl_quant_config);
    pub fn axl_quant_config_last_error(config: *const axl_quant_config) -> *const c_char;
    pub fn axl_quant_config_set_format(config: *mut axl_quant_config, format: i32) -> axl_status;
    pub fn axl_quant_config_set_block_size(config: *mut axl_quant_config, block_size: i32) -> axl_status;
    pub fn axl_quant_config_set_double_quant(config: *mut axl_quant_config, enabled: i32) -> axl_status;
    pub fn axl_quant_config_add_skip_module(
        config: *mut axl_quant_config,
        module_name: *const c_char,
    ) -> axl_status;
    pub fn axl_quant_config_set_weight_dtype(config: *mut axl_quant_config, dtype: i32) -> axl_status;

    pub fn axl_model_options_init(opts: *mut axl_model_options, struct_size: usize) -> axl_status;
    pub fn axl_model_load(
        ctx: *mut axl_context,
        model_dir: *const c_char,
        opts: *const axl_model_options,
        out: *mut *mut axl_model,
    ) -> axl_status;
    pub fn axl_model_destroy(model: *mut axl_model);
    pub fn axl_model_last_error(model: *const axl_model) -> *const c_char;
    pub fn axl_model_get_info(model: *const axl_model, info: *mut axl_model_info) -> axl_status;
    pub fn axl_model_weight_bytes(model: *const axl_model, format: i32, out: *mut u64) -> axl_status;
    pub fn axl_model_save_cache(model: *const axl_model, path: *const c_char) -> axl_status;
    pub fn axl_model_load_cache(
        ctx: *mut axl_context,
        path: *const c_char,
        opts: *const axl_model_options,
        out: *mut *mut axl_model,
    ) -> axl_status;
    pub fn axl_model_architecture(model: *const axl_model) -> *const c_char;

    pub fn axl_batch_init(batch: *mut axl_batch, struct_size: usize) -> axl_status;

    pub fn axl_lora_options_init(opts: *mut axl_lora_options, struct_size: usize) -> axl_status;
    pub fn axl_lora_create(
        model: *mut axl_model,
        opts: *const axl_lora_options,
        out: *mut *mut axl_lora,
    ) -> axl_status;
    pub fn axl_lora_load(
        model: *mut axl_model,
        adapter_dir: *const c_char,
        out: *mut *mut axl_lora,
    ) -> axl_status;
    pub fn axl_lora_save(lora: *const axl_lora, adapter_dir: *const c_char) -> axl_status;
    pub fn axl_lora_destroy(lora: *mut axl_lora);
    pub fn axl_lora_last_error(lora: *const axl_lora) -> *const c_char;
    pub fn axl_lora_num_parameters(lora: *const axl_lora, out: *mut i64) -> axl_status;
    pub fn axl_lora_copy_from(dst: *mut axl_lora, src: *const axl_lora) -> axl_status;
    pub fn axl_lora_merge_and_export(lora: *const axl_lora, out_dir: *const c_char) -> axl_status;

    pub fn axl_model_forward(
        model: *mut axl_model,
        lora: *const axl_lora,
        batch: *const axl_batch,
        positions: *const i64,
        num_positions: i64,
        logits: *mut f32,
        logits_len: usize,
    ) -> axl_status;
    pub fn axl_model_evaluate(
        model: *mut axl_model,
        lora: *const axl_lora,
        batch: *const axl_batch,
        result: *mut axl_eval_result,
    ) -> axl_status;

    pub fn axl_optimizer_options_init(opts: *mut axl_optimizer_options, struct_size: usize) -> axl_status;
    pub fn axl_optimizer_create(
        lora: *mut axl_lora,
        opts: *const axl_optimizer_options,
        out: *mut *mut axl_optimizer,
    ) -> axl_status;
    pub fn axl_optimizer_destroy(optimizer: *mut axl_optimizer);
    pub fn axl_optimizer_last_error(optimizer: *const axl_optimizer) -> *const c_char;
    pub fn axl_optimizer_set_param(optimizer: *mut axl_optimizer, param: i32, value: f64) -> axl_status;
    pub fn axl_optimizer_get_param(
        optimizer: *const axl_optimizer,
        param: i32,
        value: *mut f64,
    ) -> axl_status;
    pub fn axl_optimizer_lr_at(optimizer: *const axl_optimizer, step: i64, lr: *mut f64) -> axl_status;

    pub fn axl_trainer_options_init(opts: *mut axl_trainer_options, struct_size: usize) -> axl_status;
    pub fn axl_trainer_create(
        optimizer: *mut axl_optimizer,
        opts: *const axl_trainer_options,
        out: *mut *mut axl_trainer,
    ) -> axl_status;
    pub fn axl_trainer_destroy(trainer: *mut axl_trainer);
    pub fn axl_trainer_last_error(trainer: *const axl_trainer) -> *const c_char;
    pub fn axl_trainer_step(
        trainer: *mut axl_trainer,
        batch: *const axl_batch,
        result: *mut axl_step_result,
    ) -> axl_status;
    pub fn axl_trainer_discard_gradients(trainer: *mut axl_trainer) -> axl_status;

    pub fn axl_step_result_init(result: *mut axl_step_result, struct_size: usize) -> axl_status;
    pub fn axl_eval_result_init(result: *mut axl_eval_result, struct_size: usize) -> axl_status;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::mem::{offset_of, size_of};

    /// What the C compiler made of axl.h: (struct, field) -> offset, with field "sizeof" for the
    /// size. Written by build.rs from bindings/layout/axl_layout.c.
    fn c_layout() -> HashMap<(String, String), usize> {
        let text = include_str!(concat!(env!("OUT_DIR"), "/c_layout.txt"));
        assert!(!text.is_empty(), "the C layout probe did not run; see the build script's warnings");
        text.lines()
            .map(|line| {
                let parts: Vec<&str> = line.split_whitespace().collect();
                ((parts[0].to_string(), parts[1].to_string()), parts[2].parse().unwrap())
            })
            .collect()
    }

    macro_rules! check_layout {
        ($layout:expr, $ty:ident { $($field:ident $(as $c_name:ident)?),* $(,)? }) => {{
            let layout = &$layout;
            let mut checked = 0;
            let size = layout[&(stringify!($ty).to_string(), "sizeof".to_string())];
            assert_eq!(size_of::<$ty>(), size, "size of {}", stringify!($ty));
            $(
                let c_field = check_layout!(@name $field $($c_name)?);
                let c_offset = layout.get(&(stringify!($ty).to_string(), c_field.to_string()))
                    .unwrap_or_else(|| panic!("{}.{} is not in the C layout", stringify!($ty), c_field));
                assert_eq!(offset_of!($ty, $field), *c_offset, "offset of {}.{}", stringify!($ty), c_field);
                checked += 1;
            )*
            let c_fields = layout.keys().filter(|(s, f)| s == stringify!($ty) && f != "sizeof").count();
            assert_eq!(checked, c_fields, "{} has fields in C that the mirror lacks", stringify!($ty));
        }};
        (@name $field:ident) => { stringify!($field) };
        (@name $field:ident $c_name:ident) => { stringify!($c_name) };
    }

    #[test]
    fn structs_match_the_c_layout() {
        let c = c_layout();
        check_layout!(c, axl_progress { struct_size, stage, done, total, what });
        check_layout!(c, axl_host_allocator { struct_size, user_data, allocate, deallocate });
        check_layout!(
            c,
            axl_context_options {
                struct_size,
                backend,
                device,
                cuda_stream,
                num_threads,
                log_level,
                log_fn,
                log_user_data,
                host_allocator,
                device_memory_budget,
            }
        );
        check_layout!(
            c,
            axl_memory_stats {
                struct_size,
                host_current_bytes,
                host_peak_bytes,
                device_current_bytes,
                device_peak_bytes,
            }
        );
        check_layout!(c, axl_model_options { struct_size, quant, progress_fn, progress_user_data });
        check_layout!(
            c,
            axl_model_info {
                struct_size,
                vocab_size,
                hidden_size,
                intermediate_size,
                num_layers,
                num_heads,
                num_kv_heads,
                head_dim,
                max_position_embeddings,
                num_parameters,
                weight_bytes,
            }
        );
        check_layout!(
            c,
            axl_batch { struct_size, batch_size, seq_len, tokens, labels, loss_mask, segment_ids }
        );
        check_layout!(
            c,
            axl_lora_options {
                struct_size,
                rank,
                alpha,
                dropout,
                use_rslora,
                use_dora,
                target_modules,
                seed,
                init,
            }
        );
        check_layout!(c, axl_eval_result { struct_size, loss, num_tokens });
        check_layout!(c, axl_optimizer_options {
            struct_size, type_ as type, lr, beta1, beta2, eps, weight_decay, schedule, warmup_steps,
            total_steps, min_lr_ratio, max_grad_norm,
        });
        check_layout!(
            c,
            axl_trainer_options {
                struct_size,
                grad_accum_steps,
                gradient_checkpointing,
                progress_fn,
                progress_user_data,
            }
        );
        check_layout!(
            c,
            axl_step_result { struct_size, loss, grad_norm, lr, num_tokens, optimizer_step, updated }
        );
        let mirrored = 12;
        let c_structs: std::collections::HashSet<&String> = c.keys().map(|(s, _)| s).collect();
        assert_eq!(c_structs.len(), mirrored, "the probe knows structs this crate does not mirror");
    }

    #[test]
    fn header_version_matches_the_library() {
        let version = unsafe { axl_version() };
        assert_eq!(
            version / 10000,
            AXL_VERSION_MAJOR,
            "libaxl's major version differs from the header this crate mirrors"
        );
    }
}
