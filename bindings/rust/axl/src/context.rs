//! The context: compute backend, threads, logging.

use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use axl_sys as sys;

use crate::callback::{log_trampoline, LogLevel, LogSink};
use crate::error::{check, Result};

/// The compute backend a context runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// CUDA when built with it and a device is present, else CPU (only as an option).
    Auto,
    Cpu,
    Cuda,
    Unknown(i32),
}

impl Backend {
    fn raw(self) -> i32 {
        match self {
            Backend::Auto => sys::AXL_BACKEND_AUTO,
            Backend::Cpu => sys::AXL_BACKEND_CPU,
            Backend::Cuda => sys::AXL_BACKEND_CUDA,
            Backend::Unknown(value) => value,
        }
    }

    fn from_raw(value: i32) -> Backend {
        match value {
            sys::AXL_BACKEND_AUTO => Backend::Auto,
            sys::AXL_BACKEND_CPU => Backend::Cpu,
            sys::AXL_BACKEND_CUDA => Backend::Cuda,
            other => Backend::Unknown(other),
        }
    }
}

/// Options of [`Context::with_options`], starting from the library's defaults.
pub struct ContextOptions {
    raw: sys::axl_context_options,
    log: Option<Arc<LogSink>>,
}

impl ContextOptions {
    pub fn new() -> ContextOptions {
        let mut raw = MaybeUninit::<sys::axl_context_options>::zeroed();
        // SAFETY: the struct is ours and its size is passed; init cannot fail with these.
        unsafe {
            sys::axl_context_options_init(raw.as_mut_ptr(), std::mem::size_of::<sys::axl_context_options>())
        };
        ContextOptions { raw: unsafe { raw.assume_init() }, log: None }
    }

    pub fn backend(mut self, backend: Backend) -> Self {
        self.raw.backend = backend.raw();
        self
    }

    /// CUDA device index.
    pub fn device(mut self, device: i32) -> Self {
        self.raw.device = device;
        self
    }

    /// CPU threads; 0 = all cores.
    pub fn num_threads(mut self, threads: i32) -> Self {
        self.raw.num_threads = threads;
        self
    }

    /// Device memory budget in bytes; 0 = no limit.
    pub fn device_memory_budget(mut self, bytes: u64) -> Self {
        self.raw.device_memory_budget = bytes;
        self
    }

    /// Runs the library on the caller's CUDA stream.
    ///
    /// # Safety
    /// `stream` is a valid `cudaStream_t` that outlives the context and every handle made
    /// from it.
    pub unsafe fn cuda_stream(mut self, stream: *mut std::ffi::c_void) -> Self {
        self.raw.cuda_stream = stream;
        self
    }

    /// Receives log messages up to `level`. The closure may be called from any thread that
    /// calls into the library, concurrently, for as long as any handle of the context lives;
    /// it must not call into axl. A panic inside it is caught and dropped.
    pub fn on_log<F>(mut self, level: LogLevel, callback: F) -> Self
    where
        F: Fn(LogLevel, &str) + Send + Sync + 'static,
    {
        self.raw.log_level = level.raw();
        self.log = Some(Arc::new(LogSink::new(Box::new(callback))));
        self
    }
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions::new()
    }
}

/// Host and device memory in use through a context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub host_current_bytes: u64,
    pub host_peak_bytes: u64,
    pub device_current_bytes: u64,
    pub device_peak_bytes: u64,
}

/// Owns the compute backend, threads and logging; every other handle is made from one and keeps
/// it alive, so a `Context` may be dropped before the models made from it.
///
/// `Send` but not `Sync`: one thread at a time may use it (the header's rule for handles).
pub struct Context {
    raw: NonNull<sys::axl_context>,
    pub(crate) log: Option<Arc<LogSink>>,
}

// SAFETY: axl handles may move between threads; they are used by one thread at a time,
// which `&mut`/`!Sync` guarantees.
unsafe impl Send for Context {}

impl Context {
    /// A context with the default options (best backend, all cores, no logging).
    pub fn new() -> Result<Context> {
        Context::with_options(ContextOptions::new())
    }

    pub fn with_options(options: ContextOptions) -> Result<Context> {
        let mut raw_options = options.raw;
        if let Some(sink) = &options.log {
            raw_options.log_fn = Some(log_trampoline);
            raw_options.log_user_data = Arc::as_ptr(sink) as *mut std::ffi::c_void;
        }
        let mut out = ptr::null_mut();
        // SAFETY: options and out are valid for the call.
        check(unsafe { sys::axl_context_create(&raw_options, &mut out) })?;
        Ok(Context { raw: NonNull::new(out).expect("axl_context_create returned NULL"), log: options.log })
    }

    /// The backend in use (CPU or CUDA).
    pub fn backend(&self) -> Result<Backend> {
        let mut backend = 0;
        check(unsafe { sys::axl_context_backend(self.raw.as_ptr(), &mut backend) })?;
        Ok(Backend::from_raw(backend))
    }

    pub fn memory_stats(&self) -> Result<MemoryStats> {
        let mut stats = sys::axl_memory_stats {
            struct_size: std::mem::size_of::<sys::axl_memory_stats>() as u32,
            host_current_bytes: 0,
            host_peak_bytes: 0,
            device_current_bytes: 0,
            device_peak_bytes: 0,
        };
        check(unsafe { sys::axl_context_memory_stats(self.raw.as_ptr(), &mut stats) })?;
        Ok(MemoryStats {
            host_current_bytes: stats.host_current_bytes,
            host_peak_bytes: stats.host_peak_bytes,
            device_current_bytes: stats.device_current_bytes,
            device_peak_bytes: stats.device_peak_bytes,
        })
    }

    /// Sets the peak counters to the current values.
    pub fn reset_peak_memory(&mut self) -> Result<()> {
        check(unsafe { sys::axl_context_reset_peak_memory(self.raw.as_ptr()) })
    }

    pub fn as_raw(&self) -> *mut sys::axl_context {
        self.raw.as_ptr()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        unsafe { sys::axl_context_destroy(self.raw.as_ptr()) }
    }
}
