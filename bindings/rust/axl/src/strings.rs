//! Strings and paths on their way into C (NUL-terminated UTF-8) and back.

use std::ffi::{c_char, CStr, CString};
use std::path::Path;

use crate::error::{Error, Result};

pub(crate) fn c_string(text: &str, what: &str) -> Result<CString> {
    CString::new(text).map_err(|_| Error::invalid_argument(format!("{what} contains a NUL byte")))
}

/// The header takes UTF-8 paths; a path that is not valid UTF-8 is refused here rather than
/// passed on in another encoding.
pub(crate) fn c_path(path: &Path) -> Result<CString> {
    let text = path
        .to_str()
        .ok_or_else(|| Error::invalid_argument(format!("path {} is not valid UTF-8", path.display())))?;
    c_string(text, "the path")
}

/// A string owned by the library, borrowed for as long as `'a`.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn borrowed_str<'a>(ptr: *const c_char) -> &'a str {
    if ptr.is_null() {
        ""
    } else {
        unsafe { CStr::from_ptr(ptr) }.to_str().unwrap_or("")
    }
}
