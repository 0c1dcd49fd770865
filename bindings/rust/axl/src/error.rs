//! Failures of libaxl calls as Rust errors.

use std::ffi::CStr;
use std::fmt;

use axl_sys as sys;

/// What kind of failure an [`Error`] is: the library's status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    InvalidArgument,
    OutOfMemory,
    Io,
    Format,
    Unsupported,
    NotFound,
    Shape,
    Numeric,
    Cancelled,
    Backend,
    State,
    Internal,
    /// A code newer than this crate (the header allows new codes).
    Unknown(i32),
}

impl ErrorCode {
    pub fn from_raw(status: sys::axl_status) -> ErrorCode {
        match status {
            sys::AXL_ERR_INVALID_ARGUMENT => ErrorCode::InvalidArgument,
            sys::AXL_ERR_OUT_OF_MEMORY => ErrorCode::OutOfMemory,
            sys::AXL_ERR_IO => ErrorCode::Io,
            sys::AXL_ERR_FORMAT => ErrorCode::Format,
            sys::AXL_ERR_UNSUPPORTED => ErrorCode::Unsupported,
            sys::AXL_ERR_NOT_FOUND => ErrorCode::NotFound,
            sys::AXL_ERR_SHAPE => ErrorCode::Shape,
            sys::AXL_ERR_NUMERIC => ErrorCode::Numeric,
            sys::AXL_ERR_CANCELLED => ErrorCode::Cancelled,
            sys::AXL_ERR_BACKEND => ErrorCode::Backend,
            sys::AXL_ERR_STATE => ErrorCode::State,
            sys::AXL_ERR_INTERNAL => ErrorCode::Internal,
            other => ErrorCode::Unknown(other),
        }
    }

    /// The `AXL_ERR_*` value.
    pub fn raw(self) -> sys::axl_status {
        match self {
            ErrorCode::InvalidArgument => sys::AXL_ERR_INVALID_ARGUMENT,
            ErrorCode::OutOfMemory => sys::AXL_ERR_OUT_OF_MEMORY,
            ErrorCode::Io => sys::AXL_ERR_IO,
            ErrorCode::Format => sys::AXL_ERR_FORMAT,
            ErrorCode::Unsupported => sys::AXL_ERR_UNSUPPORTED,
            ErrorCode::NotFound => sys::AXL_ERR_NOT_FOUND,
            ErrorCode::Shape => sys::AXL_ERR_SHAPE,
            ErrorCode::Numeric => sys::AXL_ERR_NUMERIC,
            ErrorCode::Cancelled => sys::AXL_ERR_CANCELLED,
            ErrorCode::Backend => sys::AXL_ERR_BACKEND,
            ErrorCode::State => sys::AXL_ERR_STATE,
            ErrorCode::Internal => sys::AXL_ERR_INTERNAL,
            ErrorCode::Unknown(code) => code,
        }
    }

    /// The library's short description ("invalid argument", ...).
    pub fn description(self) -> &'static str {
        // SAFETY: axl_status_string returns a static NUL-terminated string for every code.
        unsafe { CStr::from_ptr(sys::axl_status_string(self.raw())) }.to_str().unwrap_or("unknown status")
    }
}

/// A failed call: the status code and the library's message naming the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The library's message ("axl_model_load: ... not found"), or one of this crate's when
    /// the binding rejected an argument before calling the library.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error of the call that just returned `status` on this thread. Must run right after
    /// that call: the message lives in the library's thread-local state until the next call.
    pub(crate) fn last(status: sys::axl_status) -> Error {
        let code = ErrorCode::from_raw(status);
        // SAFETY: axl_last_error never returns NULL; the string is copied before any other call.
        let message = unsafe { CStr::from_ptr(sys::axl_last_error()) }.to_string_lossy().into_owned();
        let message = if message.is_empty() { code.description().to_string() } else { message };
        Error { code, message }
    }

    /// An argument this binding rejects before the library sees it.
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Error {
        Error { code: ErrorCode::InvalidArgument, message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code.description())
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turns a status into a Result, reading the message on failure.
pub(crate) fn check(status: sys::axl_status) -> Result<()> {
    if status == sys::AXL_OK {
        Ok(())
    } else {
        Err(Error::last(status))
    }
}
