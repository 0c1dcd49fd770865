//! Safe Rust interface to libaxl: fine-tune language models with LoRA from Rust.
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use axl::{Batch, Context, Lora, LoraOptions, Model, Optimizer, OptimizerOptions, Trainer, TrainerOptions};
//!
//! # fn main() -> axl::Result<()> {
//! let ctx = Context::new()?;
//! let model = Model::load(&ctx, "path/to/llama")?;
//! let mut lora = Lora::new(&model, &LoraOptions::new().rank(16).alpha(32.0))?;
//! let mut optimizer = Optimizer::new(&mut lora, &OptimizerOptions::new().lr(2e-4))?;
//! let mut trainer = Trainer::new(&mut optimizer, TrainerOptions::new()
//!     .on_progress(|p| { eprintln!("{:?} {}/{}", p.stage, p.done, p.total); ControlFlow::Continue(()) }))?;
//! let tokens = vec![1i32; 4 * 128];
//! let batch = Batch::new(&tokens, 4, 128)?;
//! let step = trainer.step(&batch)?;
//! println!("loss {}", step.loss);
//! drop(trainer);
//! drop(optimizer);
//! lora.save("adapter")?;
//! # Ok(()) }
//! ```
//!
//! Ownership follows the C API: every handle type destroys its handle on drop, and the library
//! keeps parents alive for their children, so drop order never matters for memory. The borrow
//! checker enforces the threading rules of `axl.h`: handles are `Send` and used by one thread
//! at a time (`!Sync`), except [`Model`], which is `Send + Sync` because the header lets threads
//! share a loaded model for forward/evaluate and adapter creation.
//!
//! Errors are [`Error`] values carrying the library's status code and message, read on the
//! calling thread right after the failing call.

mod batch;
mod callback;
mod context;
mod error;
mod lora;
mod model;
mod optimizer;
mod quant;
mod strings;
mod trainer;

pub use axl_sys as sys;
pub use batch::{Batch, IGNORE_INDEX};
pub use callback::{LogLevel, Progress, ProgressFlow, Stage};
pub use context::{Backend, Context, ContextOptions, MemoryStats};
pub use error::{Error, ErrorCode, Result};
pub use lora::{Lora, LoraInit, LoraOptions};
pub use model::{EvalResult, Model, ModelInfo, ModelOptions};
pub use optimizer::{Optimizer, OptimizerOptions, OptimizerParam, Schedule};
pub use quant::{QuantConfig, QuantFormat, WeightDtype};
pub use trainer::{StepResult, Trainer, TrainerOptions};

/// Version of the loaded library as "MAJOR.MINOR.PATCH".
pub fn version() -> &'static str {
    // SAFETY: static storage, never NULL.
    unsafe { strings::borrowed_str(sys::axl_version_string()) }
}

/// Version of the loaded library as MAJOR*10000 + MINOR*100 + PATCH.
pub fn version_number() -> u32 {
    unsafe { sys::axl_version() }
}
