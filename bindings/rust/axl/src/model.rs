//! The frozen base model: load, describe, forward, evaluate.

use std::mem::MaybeUninit;
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use axl_sys as sys;

use crate::batch::Batch;
use crate::callback::{LogSink, Progress, ProgressCallback, ProgressFlow};
use crate::context::Context;
use crate::error::{check, Error, Result};
use crate::lora::Lora;
use crate::quant::{QuantConfig, QuantFormat};
use crate::strings::{borrowed_str, c_path};

/// Options of [`Model::load_with`].
#[derive(Default)]
pub struct ModelOptions<'a> {
    quant: Option<&'a QuantConfig>,
    progress: Option<ProgressCallback<'a>>,
}

impl<'a> ModelOptions<'a> {
    pub fn new() -> ModelOptions<'a> {
        ModelOptions::default()
    }

    /// Stores the base weights as `quant` says (read during the load only).
    pub fn quant(mut self, quant: &'a QuantConfig) -> Self {
        self.quant = Some(quant);
        self
    }

    /// Called once per tensor loaded, on the loading thread; `Break` cancels the load.
    pub fn on_progress<F>(mut self, callback: F) -> Self
    where
        F: FnMut(&Progress<'_>) -> ProgressFlow + 'a,
    {
        self.progress = Some(ProgressCallback::new(callback));
        self
    }
}

/// Dimensions of a loaded model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub vocab_size: i32,
    pub hidden_size: i32,
    pub intermediate_size: i32,
    pub num_layers: i32,
    pub num_heads: i32,
    pub num_kv_heads: i32,
    pub head_dim: i32,
    pub max_position_embeddings: i32,
    /// Base parameters (logical elements).
    pub num_parameters: i64,
    /// Bytes the base weights occupy as stored.
    pub weight_bytes: u64,
}

/// Mean causal-LM loss of a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalResult {
    pub loss: f64,
    pub num_tokens: i64,
}

/// A frozen base model.
///
/// `Send + Sync`: the header makes a loaded model read-only and lets several threads run
/// forward/evaluate on it at once and build adapters over it, so a `Model` may be shared
/// through `&Model` or `Arc<Model>`. (Each thread then passes its own [`Lora`], which is not
/// `Sync`, as the header requires.)
pub struct Model {
    raw: NonNull<sys::axl_model>,
    info: ModelInfo,
    pub(crate) log: Option<Arc<LogSink>>,
}

// SAFETY: the header allows concurrent forward/evaluate and adapter creation on one model;
// every method takes &self and nothing else mutates the handle.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

impl Model {
    /// Loads a Hugging Face model directory (config.json + safetensors).
    pub fn load(ctx: &Context, model_dir: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(ctx, model_dir, ModelOptions::new())
    }

    pub fn load_with(ctx: &Context, model_dir: impl AsRef<Path>, options: ModelOptions<'_>) -> Result<Model> {
        Model::load_impl(ctx, model_dir.as_ref(), options, sys::axl_model_load, "axl_model_load")
    }

    /// Loads a model from a cache file written by [`save_cache`](Self::save_cache): the file is
    /// memory-mapped and used where it lies (no checkpoint read, no quantization). Every
    /// tensor's checksum is verified.
    pub fn load_cache(ctx: &Context, path: impl AsRef<Path>) -> Result<Model> {
        Model::load_cache_with(ctx, path, ModelOptions::new())
    }

    /// As [`load_cache`](Self::load_cache); a quant config given must not contradict the cache's
    /// format, and the progress callback is called once per tensor.
    pub fn load_cache_with(
        ctx: &Context,
        path: impl AsRef<Path>,
        options: ModelOptions<'_>,
    ) -> Result<Model> {
        Model::load_impl(ctx, path.as_ref(), options, sys::axl_model_load_cache, "axl_model_load_cache")
    }

    fn load_impl(
        ctx: &Context,
        path: &Path,
        options: ModelOptions<'_>,
        load: unsafe extern "C" fn(
            *mut sys::axl_context,
            *const std::ffi::c_char,
            *const sys::axl_model_options,
            *mut *mut sys::axl_model,
        ) -> sys::axl_status,
        what: &str,
    ) -> Result<Model> {
        let dir = c_path(path)?;
        let mut raw_options = MaybeUninit::<sys::axl_model_options>::zeroed();
        unsafe {
            sys::axl_model_options_init(
                raw_options.as_mut_ptr(),
                std::mem::size_of::<sys::axl_model_options>(),
            )
        };
        let mut raw_options = unsafe { raw_options.assume_init() };
        if let Some(quant) = options.quant {
            raw_options.quant = quant.as_raw();
        }
        if let Some(progress) = &options.progress {
            (raw_options.progress_fn, raw_options.progress_user_data) = progress.raw();
        }
        let mut out = ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the callback outlives it.
        let status = unsafe { load(ctx.as_raw(), dir.as_ptr(), &raw_options, &mut out) };
        let result = check(status);
        if let Some(progress) = &options.progress {
            progress.resume_panic();
        }
        result?;
        let raw = NonNull::new(out).unwrap_or_else(|| panic!("{what} returned NULL"));
        let info = match Model::read_info(raw) {
            Ok(info) => info,
            Err(error) => {
                unsafe { sys::axl_model_destroy(raw.as_ptr()) };
                return Err(error);
            }
        };
        Ok(Model { raw, info, log: ctx.log.clone() })
    }

    /// Bytes of base weights held in `format` ([`QuantFormat::None`] counts every tensor held in
    /// a float dtype). Summed over all formats this is [`ModelInfo::weight_bytes`].
    pub fn weight_bytes(&self, format: QuantFormat) -> Result<u64> {
        let mut bytes = 0u64;
        check(unsafe { sys::axl_model_weight_bytes(self.raw.as_ptr(), format.raw(), &mut bytes) })?;
        Ok(bytes)
    }

    /// Writes the loaded model (config and weights as held, quantized or not) to one cache file
    /// at `path`, for [`load_cache`](Self::load_cache). Never leaves a partial file.
    pub fn save_cache(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = c_path(path.as_ref())?;
        check(unsafe { sys::axl_model_save_cache(self.raw.as_ptr(), path.as_ptr()) })
    }

    fn read_info(raw: NonNull<sys::axl_model>) -> Result<ModelInfo> {
        let mut info = MaybeUninit::<sys::axl_model_info>::zeroed();
        unsafe { (*info.as_mut_ptr()).struct_size = std::mem::size_of::<sys::axl_model_info>() as u32 };
        check(unsafe { sys::axl_model_get_info(raw.as_ptr(), info.as_mut_ptr()) })?;
        let info = unsafe { info.assume_init() };
        Ok(ModelInfo {
            vocab_size: info.vocab_size,
            hidden_size: info.hidden_size,
            intermediate_size: info.intermediate_size,
            num_layers: info.num_layers,
            num_heads: info.num_heads,
            num_kv_heads: info.num_kv_heads,
            head_dim: info.head_dim,
            max_position_embeddings: info.max_position_embeddings,
            num_parameters: info.num_parameters,
            weight_bytes: info.weight_bytes,
        })
    }

    pub fn info(&self) -> ModelInfo {
        self.info
    }

    /// The architecture name ("llama", "qwen3", ...).
    pub fn architecture(&self) -> &str {
        // SAFETY: the string is owned by the model and lives as long as it.
        unsafe { borrowed_str(sys::axl_model_architecture(self.raw.as_ptr())) }
    }

    /// Logits (fp32) of the selected flat positions `b*seq_len+t` (every position when `None`),
    /// row after row: `positions.len() * vocab_size` values. `lora` None runs the bare base.
    pub fn forward(
        &self,
        lora: Option<&Lora>,
        batch: &Batch<'_>,
        positions: Option<&[i64]>,
    ) -> Result<Vec<f32>> {
        let rows = positions.map_or(batch.num_tokens(), <[i64]>::len);
        let mut logits = vec![0.0f32; rows * self.info.vocab_size as usize];
        self.forward_into(lora, batch, positions, &mut logits)?;
        Ok(logits)
    }

    /// As [`forward`](Self::forward), into a caller buffer of at least rows*vocab_size floats.
    pub fn forward_into(
        &self,
        lora: Option<&Lora>,
        batch: &Batch<'_>,
        positions: Option<&[i64]>,
        logits: &mut [f32],
    ) -> Result<()> {
        let raw_batch = batch.raw();
        let (positions_ptr, num_positions) = match positions {
            Some([]) => return Err(Error::invalid_argument("positions is empty")),
            Some(p) => (p.as_ptr(), p.len() as i64),
            None => (ptr::null(), 0),
        };
        let lora_ptr = lora.map_or(ptr::null(), |l| l.as_raw() as *const _);
        // SAFETY: the batch's slices were checked against its shape; logits_len bounds writes.
        check(unsafe {
            sys::axl_model_forward(
                self.raw.as_ptr(),
                lora_ptr,
                &raw_batch,
                positions_ptr,
                num_positions,
                logits.as_mut_ptr(),
                logits.len(),
            )
        })
    }

    /// Mean cross-entropy over the batch's target tokens (dropout off).
    pub fn evaluate(&self, lora: Option<&Lora>, batch: &Batch<'_>) -> Result<EvalResult> {
        let raw_batch = batch.raw();
        let mut result = sys::axl_eval_result {
            struct_size: std::mem::size_of::<sys::axl_eval_result>() as u32,
            loss: 0.0,
            num_tokens: 0,
        };
        let lora_ptr = lora.map_or(ptr::null(), |l| l.as_raw() as *const _);
        check(unsafe { sys::axl_model_evaluate(self.raw.as_ptr(), lora_ptr, &raw_batch, &mut result) })?;
        Ok(EvalResult { loss: result.loss, num_tokens: result.num_tokens })
    }

    pub fn as_raw(&self) -> *mut sys::axl_model {
        self.raw.as_ptr()
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { sys::axl_model_destroy(self.raw.as_ptr()) }
    }
}
