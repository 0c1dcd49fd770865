//! How the frozen base weights are stored.

use std::ptr::{self, NonNull};

use axl_sys as sys;

use crate::error::{check, Result};
use crate::strings::c_string;

/// Storage format of the base weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuantFormat {
    /// Keep the checkpoint's dtype.
    None,
    Nf4,
    Fp4,
    Int8Row,
    Int4Group,
    Int8Channel,
    Fp8E4m3,
    Nvfp4,
    Mxfp4,
}

impl QuantFormat {
    pub(crate) fn raw(self) -> i32 {
        match self {
            QuantFormat::None => sys::AXL_QUANT_NONE,
            QuantFormat::Nf4 => sys::AXL_QUANT_NF4,
            QuantFormat::Fp4 => sys::AXL_QUANT_FP4,
            QuantFormat::Int8Row => sys::AXL_QUANT_INT8_ROW,
            QuantFormat::Int4Group => sys::AXL_QUANT_INT4_GROUP,
            QuantFormat::Int8Channel => sys::AXL_QUANT_INT8_CHAN,
            QuantFormat::Fp8E4m3 => sys::AXL_QUANT_FP8_E4M3,
            QuantFormat::Nvfp4 => sys::AXL_QUANT_NVFP4,
            QuantFormat::Mxfp4 => sys::AXL_QUANT_MXFP4,
        }
    }
}

/// The dtype weights are rounded through before they are quantized (transformers' `dtype=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WeightDtype {
    /// Each tensor's checkpoint dtype.
    #[default]
    Auto,
    F32,
    Bf16,
    F16,
}

impl WeightDtype {
    fn raw(self) -> i32 {
        match self {
            WeightDtype::Auto => sys::AXL_WEIGHT_DTYPE_AUTO,
            WeightDtype::F32 => sys::AXL_WEIGHT_DTYPE_F32,
            WeightDtype::Bf16 => sys::AXL_WEIGHT_DTYPE_BF16,
            WeightDtype::F16 => sys::AXL_WEIGHT_DTYPE_F16,
        }
    }
}

/// A quantization configuration, read by [`Model::load_with`](crate::Model::load_with).
/// `Send`, not `Sync`.
pub struct QuantConfig {
    raw: NonNull<sys::axl_quant_config>,
}

// SAFETY: see Context.
unsafe impl Send for QuantConfig {}

impl QuantConfig {
    /// An empty configuration (format `None`).
    pub fn new() -> Result<QuantConfig> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::axl_quant_config_create(&mut out) })?;
        Ok(QuantConfig { raw: NonNull::new(out).expect("axl_quant_config_create returned NULL") })
    }

    pub fn set_format(&mut self, format: QuantFormat) -> Result<()> {
        check(unsafe { sys::axl_quant_config_set_format(self.raw.as_ptr(), format.raw()) })
    }

    /// Block or group size; 0 selects the format's default.
    pub fn set_block_size(&mut self, block_size: i32) -> Result<()> {
        check(unsafe { sys::axl_quant_config_set_block_size(self.raw.as_ptr(), block_size) })
    }

    pub fn set_double_quant(&mut self, enabled: bool) -> Result<()> {
        check(unsafe { sys::axl_quant_config_set_double_quant(self.raw.as_ptr(), enabled as i32) })
    }

    /// Keeps modules whose name contains `module_name` in full precision.
    pub fn add_skip_module(&mut self, module_name: &str) -> Result<()> {
        let name = c_string(module_name, "module_name")?;
        check(unsafe { sys::axl_quant_config_add_skip_module(self.raw.as_ptr(), name.as_ptr()) })
    }

    /// The dtype weights are rounded through before they are quantized, as if the model had
    /// been loaded in it first.
    pub fn set_weight_dtype(&mut self, dtype: WeightDtype) -> Result<()> {
        check(unsafe { sys::axl_quant_config_set_weight_dtype(self.raw.as_ptr(), dtype.raw()) })
    }

    pub fn as_raw(&self) -> *mut sys::axl_quant_config {
        self.raw.as_ptr()
    }
}

impl Drop for QuantConfig {
    fn drop(&mut self) {
        unsafe { sys::axl_quant_config_destroy(self.raw.as_ptr()) }
    }
}
