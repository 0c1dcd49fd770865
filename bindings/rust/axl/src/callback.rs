//! Progress and log callbacks: closures behind C function pointers.
//!
//! A panic must not unwind into C. Each trampoline catches it; a progress callback's panic
//! cancels the running operation and is resumed on the caller's thread once the C call has
//! returned. A log callback's panic cannot be carried anywhere (the log call may come from
//! any thread) and is dropped.

use std::any::Any;
use std::ffi::{c_char, c_void, CStr};
use std::ops::ControlFlow;
use std::panic::{self, AssertUnwindSafe};

use axl_sys as sys;

/// Which long operation a [`Progress`] report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Reading and converting model tensors (one report per tensor).
    Load,
    /// Forward pass of a training step (one report per layer).
    Forward,
    /// Backward pass of a training step (one report per layer).
    Backward,
    /// A stage newer than this crate.
    Unknown(i32),
}

impl Stage {
    fn from_raw(stage: i32) -> Stage {
        match stage {
            sys::AXL_STAGE_LOAD => Stage::Load,
            sys::AXL_STAGE_FORWARD => Stage::Forward,
            sys::AXL_STAGE_BACKWARD => Stage::Backward,
            other => Stage::Unknown(other),
        }
    }
}

/// One progress report. `what` names the unit being worked on (a tensor name...).
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    pub stage: Stage,
    pub done: i64,
    pub total: i64,
    pub what: &'a str,
}

/// What a progress closure returns: `ControlFlow::Break(())` cancels the operation, which then
/// fails with [`ErrorCode::Cancelled`](crate::ErrorCode::Cancelled) and changes nothing.
pub type ProgressFlow = ControlFlow<()>;

struct ProgressHandler<F> {
    callback: F,
    panic: Option<Box<dyn Any + Send>>,
}

trait PanicSlot {
    fn take_panic(&mut self) -> Option<Box<dyn Any + Send>>;
}

impl<F> PanicSlot for ProgressHandler<F> {
    fn take_panic(&mut self) -> Option<Box<dyn Any + Send>> {
        self.panic.take()
    }
}

unsafe extern "C" fn progress_trampoline<F>(user_data: *mut c_void, progress: *const sys::axl_progress) -> i32
where
    F: FnMut(&Progress<'_>) -> ProgressFlow,
{
    // SAFETY: user_data is the ProgressHandler<F> that ProgressCallback::new leaked, alive
    // until the callback is dropped, which happens only after C can no longer call it.
    let handler = unsafe { &mut *(user_data as *mut ProgressHandler<F>) };
    if handler.panic.is_some() || progress.is_null() {
        return 1;
    }
    // SAFETY: the library passes a valid report whose strings live for this call.
    let raw = unsafe { &*progress };
    let what =
        if raw.what.is_null() { "" } else { unsafe { CStr::from_ptr(raw.what) }.to_str().unwrap_or("") };
    let report = Progress { stage: Stage::from_raw(raw.stage), done: raw.done, total: raw.total, what };
    match panic::catch_unwind(AssertUnwindSafe(|| (handler.callback)(&report))) {
        Ok(ControlFlow::Continue(())) => 0,
        Ok(ControlFlow::Break(())) => 1,
        Err(payload) => {
            handler.panic = Some(payload);
            1
        }
    }
}

/// A boxed progress closure with its C trampoline. The C side gets (function, user_data) from
/// [`raw`](Self::raw); after each C call that may have called it, [`resume_panic`] rethrows a
/// panic the closure raised.
pub(crate) struct ProgressCallback<'a> {
    handler: *mut (dyn PanicSlot + 'a),
    function: unsafe extern "C" fn(*mut c_void, *const sys::axl_progress) -> i32,
}

impl<'a> ProgressCallback<'a> {
    pub(crate) fn new<F>(callback: F) -> ProgressCallback<'a>
    where
        F: FnMut(&Progress<'_>) -> ProgressFlow + 'a,
    {
        let handler: Box<dyn PanicSlot + 'a> = Box::new(ProgressHandler { callback, panic: None });
        ProgressCallback { handler: Box::into_raw(handler), function: progress_trampoline::<F> }
    }

    pub(crate) fn raw(&self) -> (sys::axl_progress_fn, *mut c_void) {
        (Some(self.function), self.handler as *mut c_void)
    }

    pub(crate) fn resume_panic(&self) {
        // SAFETY: the handler is alive (owned by self) and no C call is running on it now.
        if let Some(payload) = unsafe { (*self.handler).take_panic() } {
            panic::resume_unwind(payload);
        }
    }
}

impl Drop for ProgressCallback<'_> {
    fn drop(&mut self) {
        // SAFETY: created by Box::into_raw in new; dropped once.
        drop(unsafe { Box::from_raw(self.handler) });
    }
}

/// Severity of a log message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    pub(crate) fn raw(self) -> i32 {
        match self {
            LogLevel::Error => sys::AXL_LOG_ERROR,
            LogLevel::Warn => sys::AXL_LOG_WARN,
            LogLevel::Info => sys::AXL_LOG_INFO,
            LogLevel::Debug => sys::AXL_LOG_DEBUG,
        }
    }

    fn from_raw(level: i32) -> LogLevel {
        match level {
            sys::AXL_LOG_ERROR => LogLevel::Error,
            sys::AXL_LOG_WARN => LogLevel::Warn,
            sys::AXL_LOG_INFO => LogLevel::Info,
            _ => LogLevel::Debug,
        }
    }
}

/// A log closure shared by a context and every handle made from it: the library may log
/// through the context for as long as any of them lives, so each holds an `Arc` to it.
pub(crate) type LogFn = dyn Fn(LogLevel, &str) + Send + Sync;

pub(crate) struct LogSink {
    callback: Box<LogFn>,
}

impl LogSink {
    pub(crate) fn new(callback: Box<LogFn>) -> LogSink {
        LogSink { callback }
    }
}

pub(crate) unsafe extern "C" fn log_trampoline(user_data: *mut c_void, level: i32, message: *const c_char) {
    // SAFETY: user_data points into an Arc<LogSink> held by every live handle of the context.
    let sink = unsafe { &*(user_data as *const LogSink) };
    let text =
        if message.is_null() { "".into() } else { unsafe { CStr::from_ptr(message) }.to_string_lossy() };
    let _ = panic::catch_unwind(AssertUnwindSafe(|| (sink.callback)(LogLevel::from_raw(level), &text)));
}
