//! LoRA adapters: create, load and save in PEFT's format.

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use axl_sys as sys;

use crate::callback::LogSink;
use crate::error::{check, Result};
use crate::model::Model;
use crate::strings::{c_path, c_string};

/// Initialisation of a new adapter's matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoraInit {
    /// PEFT's default: A kaiming-uniform, B = 0.
    Default,
    /// A ~ N(0, 1/r), B = 0.
    Gaussian,
    /// As Default but B also random (tests, warm starts).
    RandomB,
}

/// Options of [`Lora::new`], starting from the library's defaults (rank 8, alpha 8,
/// "all-linear").
#[derive(Clone, Debug)]
pub struct LoraOptions {
    raw: sys::axl_lora_options,
    target_modules: Option<String>,
}

impl LoraOptions {
    pub fn new() -> LoraOptions {
        let mut raw = MaybeUninit::<sys::axl_lora_options>::zeroed();
        unsafe { sys::axl_lora_options_init(raw.as_mut_ptr(), std::mem::size_of::<sys::axl_lora_options>()) };
        LoraOptions { raw: unsafe { raw.assume_init() }, target_modules: None }
    }

    pub fn rank(mut self, rank: i32) -> Self {
        self.raw.rank = rank;
        self
    }

    pub fn alpha(mut self, alpha: f64) -> Self {
        self.raw.alpha = alpha;
        self
    }

    pub fn dropout(mut self, dropout: f64) -> Self {
        self.raw.dropout = dropout;
        self
    }

    /// scaling = alpha/sqrt(r) instead of alpha/r.
    pub fn use_rslora(mut self, enabled: bool) -> Self {
        self.raw.use_rslora = enabled as i32;
        self
    }

    pub fn use_dora(mut self, enabled: bool) -> Self {
        self.raw.use_dora = enabled as i32;
        self
    }

    /// Comma-separated module name suffixes ("q_proj,v_proj") or "all-linear".
    pub fn target_modules(mut self, modules: &str) -> Self {
        self.target_modules = Some(modules.to_string());
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.raw.seed = seed;
        self
    }

    pub fn init(mut self, init: LoraInit) -> Self {
        self.raw.init = match init {
            LoraInit::Default => sys::AXL_LORA_INIT_DEFAULT,
            LoraInit::Gaussian => sys::AXL_LORA_INIT_GAUSSIAN,
            LoraInit::RandomB => sys::AXL_LORA_INIT_RANDOM_B,
        };
        self
    }
}

impl Default for LoraOptions {
    fn default() -> Self {
        LoraOptions::new()
    }
}

/// A LoRA adapter over a model. It keeps its model alive inside the library.
///
/// `Send` but not `Sync`: one thread at a time uses an adapter, and each thread running
/// forward on a shared model passes its own. While an [`Optimizer`](crate::Optimizer) holds it
/// (by `&mut`), only the optimizer's trainer uses it.
pub struct Lora {
    raw: NonNull<sys::axl_lora>,
    _log: Option<Arc<LogSink>>,
}

// SAFETY: see Context.
unsafe impl Send for Lora {}

impl Lora {
    /// A freshly initialised adapter.
    pub fn new(model: &Model, options: &LoraOptions) -> Result<Lora> {
        let targets: Option<CString> =
            options.target_modules.as_deref().map(|t| c_string(t, "target_modules")).transpose()?;
        let mut raw_options = options.raw;
        raw_options.target_modules = targets.as_ref().map_or(ptr::null(), |t| t.as_ptr());
        let mut out = ptr::null_mut();
        check(unsafe { sys::axl_lora_create(model.as_raw(), &raw_options, &mut out) })?;
        Ok(Lora::from_created(out, model))
    }

    /// Loads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
    pub fn load(model: &Model, adapter_dir: impl AsRef<Path>) -> Result<Lora> {
        let dir = c_path(adapter_dir.as_ref())?;
        let mut out = ptr::null_mut();
        check(unsafe { sys::axl_lora_load(model.as_raw(), dir.as_ptr(), &mut out) })?;
        Ok(Lora::from_created(out, model))
    }

    fn from_created(raw: *mut sys::axl_lora, model: &Model) -> Lora {
        Lora { raw: NonNull::new(raw).expect("libaxl returned a NULL adapter"), _log: model.log.clone() }
    }

    /// Writes the adapter in PEFT's format into `adapter_dir` (created if missing).
    pub fn save(&self, adapter_dir: impl AsRef<Path>) -> Result<()> {
        let dir = c_path(adapter_dir.as_ref())?;
        check(unsafe { sys::axl_lora_save(self.raw.as_ptr(), dir.as_ptr()) })
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> Result<i64> {
        let mut count = 0;
        check(unsafe { sys::axl_lora_num_parameters(self.raw.as_ptr(), &mut count) })?;
        Ok(count)
    }

    /// Copies `source`'s values into this adapter (same model, targets and rank): hot-swaps
    /// what a server serves with an adapter just trained.
    pub fn copy_from(&mut self, source: &Lora) -> Result<()> {
        check(unsafe { sys::axl_lora_copy_from(self.raw.as_ptr(), source.raw.as_ptr()) })
    }

    /// Merges the adapter into its base model and writes a full-precision (bf16) Hugging Face
    /// model into `out_dir` (created if missing): config.json and model.safetensors (or shards
    /// with an index). Quantized base weights are dequantized first. No tokenizer files.
    pub fn merge_and_export(&self, out_dir: impl AsRef<Path>) -> Result<()> {
        let dir = c_path(out_dir.as_ref())?;
        check(unsafe { sys::axl_lora_merge_and_export(self.raw.as_ptr(), dir.as_ptr()) })
    }

    pub fn as_raw(&self) -> *mut sys::axl_lora {
        self.raw.as_ptr()
    }
}

impl Drop for Lora {
    fn drop(&mut self) {
        unsafe { sys::axl_lora_destroy(self.raw.as_ptr()) }
    }
}
