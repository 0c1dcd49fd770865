//! The optimizer over an adapter's parameters.

use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};

use axl_sys as sys;

use crate::error::{check, Result};
use crate::lora::Lora;

/// Learning-rate schedule after warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    Constant,
    /// Linear decay to min_lr_ratio*lr at total_steps.
    Linear,
    /// Half-cosine decay to min_lr_ratio*lr at total_steps.
    Cosine,
}

/// Tunables that may change between steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerParam {
    LearningRate,
    WeightDecay,
    MaxGradNorm,
}

impl OptimizerParam {
    fn raw(self) -> i32 {
        match self {
            OptimizerParam::LearningRate => sys::AXL_OPTIMIZER_PARAM_LR,
            OptimizerParam::WeightDecay => sys::AXL_OPTIMIZER_PARAM_WEIGHT_DECAY,
            OptimizerParam::MaxGradNorm => sys::AXL_OPTIMIZER_PARAM_MAX_GRAD_NORM,
        }
    }
}

/// Options of [`Optimizer::new`] (AdamW), starting from the library's defaults.
#[derive(Clone, Copy, Debug)]
pub struct OptimizerOptions {
    raw: sys::axl_optimizer_options,
}

impl OptimizerOptions {
    pub fn new() -> OptimizerOptions {
        let mut raw = MaybeUninit::<sys::axl_optimizer_options>::zeroed();
        unsafe {
            sys::axl_optimizer_options_init(
                raw.as_mut_ptr(),
                std::mem::size_of::<sys::axl_optimizer_options>(),
            )
        };
        OptimizerOptions { raw: unsafe { raw.assume_init() } }
    }

    /// Peak learning rate.
    pub fn lr(mut self, lr: f64) -> Self {
        self.raw.lr = lr;
        self
    }

    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.raw.beta1 = beta1;
        self.raw.beta2 = beta2;
        self
    }

    pub fn eps(mut self, eps: f64) -> Self {
        self.raw.eps = eps;
        self
    }

    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.raw.weight_decay = weight_decay;
        self
    }

    /// A decaying schedule needs `total_steps` > `warmup_steps`.
    pub fn schedule(mut self, schedule: Schedule, warmup_steps: i64, total_steps: i64) -> Self {
        self.raw.schedule = match schedule {
            Schedule::Constant => sys::AXL_SCHEDULE_CONSTANT,
            Schedule::Linear => sys::AXL_SCHEDULE_LINEAR,
            Schedule::Cosine => sys::AXL_SCHEDULE_COSINE,
        };
        self.raw.warmup_steps = warmup_steps;
        self.raw.total_steps = total_steps;
        self
    }

    pub fn min_lr_ratio(mut self, ratio: f64) -> Self {
        self.raw.min_lr_ratio = ratio;
        self
    }

    /// Global-norm clipping; 0 disables.
    pub fn max_grad_norm(mut self, norm: f64) -> Self {
        self.raw.max_grad_norm = norm;
        self
    }
}

impl Default for OptimizerOptions {
    fn default() -> Self {
        OptimizerOptions::new()
    }
}

/// AdamW over an adapter's parameters. It borrows the adapter mutably for its whole life: the
/// library changes the adapter's values during training, so nothing else may use it meanwhile
/// (read it through [`lora`](Self::lora) or [`Trainer::lora`](crate::Trainer::lora)).
///
/// `Send` but not `Sync`.
pub struct Optimizer<'l> {
    raw: NonNull<sys::axl_optimizer>,
    lora: &'l mut Lora,
}

// SAFETY: see Context; the borrowed Lora is Send.
unsafe impl Send for Optimizer<'_> {}

impl<'l> Optimizer<'l> {
    pub fn new(lora: &'l mut Lora, options: &OptimizerOptions) -> Result<Optimizer<'l>> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::axl_optimizer_create(lora.as_raw(), &options.raw, &mut out) })?;
        Ok(Optimizer { raw: NonNull::new(out).expect("axl_optimizer_create returned NULL"), lora })
    }

    pub fn lora(&self) -> &Lora {
        self.lora
    }

    pub fn set_param(&mut self, param: OptimizerParam, value: f64) -> Result<()> {
        check(unsafe { sys::axl_optimizer_set_param(self.raw.as_ptr(), param.raw(), value) })
    }

    pub fn param(&self, param: OptimizerParam) -> Result<f64> {
        let mut value = 0.0;
        check(unsafe { sys::axl_optimizer_get_param(self.raw.as_ptr(), param.raw(), &mut value) })?;
        Ok(value)
    }

    /// The learning rate the schedule gives at optimizer step `step` (0-based).
    pub fn lr_at(&self, step: i64) -> Result<f64> {
        let mut lr = 0.0;
        check(unsafe { sys::axl_optimizer_lr_at(self.raw.as_ptr(), step, &mut lr) })?;
        Ok(lr)
    }

    pub fn as_raw(&self) -> *mut sys::axl_optimizer {
        self.raw.as_ptr()
    }
}

impl Drop for Optimizer<'_> {
    fn drop(&mut self) {
        unsafe { sys::axl_optimizer_destroy(self.raw.as_ptr()) }
    }
}
