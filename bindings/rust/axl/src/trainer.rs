//! Training steps of an adapter.

use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};

use axl_sys as sys;

use crate::batch::Batch;
use crate::callback::{Progress, ProgressCallback, ProgressFlow};
use crate::error::{check, Result};
use crate::lora::Lora;
use crate::optimizer::{Optimizer, OptimizerParam};

/// Options of [`Trainer::new`], starting from the library's defaults.
pub struct TrainerOptions {
    raw: sys::axl_trainer_options,
    progress: Option<ProgressCallback<'static>>,
}

impl TrainerOptions {
    pub fn new() -> TrainerOptions {
        let mut raw = MaybeUninit::<sys::axl_trainer_options>::zeroed();
        unsafe {
            sys::axl_trainer_options_init(raw.as_mut_ptr(), std::mem::size_of::<sys::axl_trainer_options>())
        };
        TrainerOptions { raw: unsafe { raw.assume_init() }, progress: None }
    }

    /// Micro-batches per optimizer step.
    pub fn grad_accum_steps(mut self, steps: i32) -> Self {
        self.raw.grad_accum_steps = steps;
        self
    }

    /// Recompute layer activations in backward (default on).
    pub fn gradient_checkpointing(mut self, enabled: bool) -> Self {
        self.raw.gradient_checkpointing = if enabled { sys::AXL_CHECKPOINT_LAYERS } else { sys::AXL_CHECKPOINT_NONE };
        self
    }

    /// Recompute layer activations in backward and keep the checkpointed layer inputs in pinned
    /// host memory (`AXL_CHECKPOINT_LAYERS_OFFLOAD`: the CUDA backend; plain checkpointing on the
    /// CPU). `false` goes back to plain checkpointing.
    pub fn offload_activations(mut self, enabled: bool) -> Self {
        self.raw.gradient_checkpointing =
            if enabled { sys::AXL_CHECKPOINT_LAYERS_OFFLOAD } else { sys::AXL_CHECKPOINT_LAYERS };
        self
    }

    /// Called per layer of each step's forward and backward, on the thread calling
    /// [`Trainer::step`]; `Break` cancels the step (its gradients are discarded). A panic
    /// cancels the step too and is resumed from `step`.
    pub fn on_progress<F>(mut self, callback: F) -> Self
    where
        F: FnMut(&Progress<'_>) -> ProgressFlow + Send + 'static,
    {
        self.progress = Some(ProgressCallback::new(callback));
        self
    }
}

impl Default for TrainerOptions {
    fn default() -> Self {
        TrainerOptions::new()
    }
}

/// What one [`Trainer::step`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepResult {
    /// Mean loss over this micro-batch's target tokens.
    pub loss: f64,
    /// Global gradient norm before clipping (NaN if no update).
    pub grad_norm: f64,
    /// Learning rate of the update (NaN if no update).
    pub lr: f64,
    pub num_tokens: i64,
    /// Optimizer steps taken so far, after this call.
    pub optimizer_step: i64,
    /// Whether this call applied an optimizer update.
    pub updated: bool,
}

/// Runs training steps. It borrows its optimizer (and so the adapter) mutably.
///
/// `Send` (the progress closure must be `Send`) but not `Sync`.
pub struct Trainer<'o, 'l> {
    raw: NonNull<sys::axl_trainer>,
    optimizer: &'o mut Optimizer<'l>,
    // Dropped after the trainer handle (see Drop), since the library may call it until then.
    progress: Option<ProgressCallback<'static>>,
}

// SAFETY: see Context; the progress closure was required to be Send.
unsafe impl Send for Trainer<'_, '_> {}

impl<'o, 'l> Trainer<'o, 'l> {
    pub fn new(optimizer: &'o mut Optimizer<'l>, options: TrainerOptions) -> Result<Trainer<'o, 'l>> {
        let mut raw_options = options.raw;
        if let Some(progress) = &options.progress {
            (raw_options.progress_fn, raw_options.progress_user_data) = progress.raw();
        }
        let mut out = ptr::null_mut();
        check(unsafe { sys::axl_trainer_create(optimizer.as_raw(), &raw_options, &mut out) })?;
        Ok(Trainer {
            raw: NonNull::new(out).expect("axl_trainer_create returned NULL"),
            optimizer,
            progress: options.progress,
        })
    }

    /// Forward and backward of one micro-batch; every grad_accum_steps-th call also applies
    /// the optimizer update. Non-finite loss or gradients fail with `ErrorCode::Numeric` and
    /// leave adapter and optimizer unchanged.
    pub fn step(&mut self, batch: &Batch<'_>) -> Result<StepResult> {
        let raw_batch = batch.raw();
        let mut result = MaybeUninit::<sys::axl_step_result>::zeroed();
        unsafe { (*result.as_mut_ptr()).struct_size = std::mem::size_of::<sys::axl_step_result>() as u32 };
        let status = unsafe { sys::axl_trainer_step(self.raw.as_ptr(), &raw_batch, result.as_mut_ptr()) };
        let outcome = check(status);
        if let Some(progress) = &self.progress {
            progress.resume_panic();
        }
        outcome?;
        let result = unsafe { result.assume_init() };
        Ok(StepResult {
            loss: result.loss,
            grad_norm: result.grad_norm,
            lr: result.lr,
            num_tokens: result.num_tokens,
            optimizer_step: result.optimizer_step,
            updated: result.updated != 0,
        })
    }

    /// Zeroes the gradients of micro-batches not yet applied.
    pub fn discard_gradients(&mut self) -> Result<()> {
        check(unsafe { sys::axl_trainer_discard_gradients(self.raw.as_ptr()) })
    }

    /// The adapter being trained, to evaluate or save between steps.
    pub fn lora(&self) -> &Lora {
        self.optimizer.lora()
    }

    /// The optimizer, to read its parameters and schedule.
    pub fn optimizer(&self) -> &Optimizer<'l> {
        self.optimizer
    }

    /// Changes an optimizer tunable for the following steps. (The trainer hands out no
    /// `&mut Optimizer`: swapping it for another would let two trainers share an adapter.)
    pub fn set_optimizer_param(&mut self, param: OptimizerParam, value: f64) -> Result<()> {
        self.optimizer.set_param(param, value)
    }

    pub fn as_raw(&self) -> *mut sys::axl_trainer {
        self.raw.as_ptr()
    }
}

impl Drop for Trainer<'_, '_> {
    fn drop(&mut self) {
        unsafe { sys::axl_trainer_destroy(self.raw.as_ptr()) }
        // self.progress is dropped after this body: the library no longer holds it.
    }
}
