//! Memory the C side sees: every string and array in the structs comes from `malloc` and
//! goes back with `free` (upstream's CLI frees `nvc_nvcaps_device_from_proc_path`'s path and
//! replaces `nvc_container.libs` with arrays of its own).

use std::ffi::{CStr, c_char};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::Failure;

/// A `malloc`ed copy of `bytes` with a NUL appended.
pub(crate) fn string(bytes: &[u8]) -> Result<*mut c_char, Failure> {
    if bytes.contains(&0) {
        return Err(Failure::new(format!(
            "string with a NUL byte: {}",
            String::from_utf8_lossy(bytes)
        )));
    }
    let len = bytes.len();
    // SAFETY: `malloc` of len + 1 bytes; checked for NULL before use.
    let p = unsafe { libc::malloc(len + 1) }.cast::<u8>();
    if p.is_null() {
        return Err(Failure::new("memory allocation failed"));
    }
    // SAFETY: `p` has len + 1 bytes; `bytes` does not overlap a fresh allocation.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, len);
        *p.add(len) = 0;
    }
    Ok(p.cast())
}

/// [`string`] of a path's bytes.
pub(crate) fn path(p: &Path) -> Result<*mut c_char, Failure> {
    string(p.as_os_str().as_bytes())
}

/// A `calloc`ed array holding `items` (NULL when empty, as upstream).
pub(crate) fn array<T>(items: Vec<T>) -> Result<*mut T, Failure> {
    if items.is_empty() {
        return Ok(std::ptr::null_mut());
    }
    // SAFETY: `calloc` checks the multiplication; checked for NULL before use.
    let p = unsafe { libc::calloc(items.len(), size_of::<T>()) }.cast::<T>();
    if p.is_null() {
        return Err(Failure::new("memory allocation failed"));
    }
    for (i, item) in items.into_iter().enumerate() {
        // SAFETY: `i` is within the allocation of `len` elements, suitably aligned by calloc.
        unsafe { p.add(i).write(item) };
    }
    Ok(p)
}

/// An array of [`path`] strings; on failure the ones made are freed.
pub(crate) fn paths(list: &[impl AsRef<Path>]) -> Result<(*mut *mut c_char, usize), Failure> {
    let mut made = Vec::with_capacity(list.len());
    for p in list {
        match path(p.as_ref()) {
            Ok(s) => made.push(s),
            Err(e) => {
                let n = made.len();
                // SAFETY: the strings were just allocated here and are not shared.
                unsafe { free_strings(array(made).unwrap_or_default(), n) };
                return Err(e);
            }
        }
    }
    let n = made.len();
    Ok((array(made)?, n))
}

/// Frees a `malloc`ed pointer (NULL is fine).
///
/// # Safety
///
/// `p` is NULL or came from `malloc`/`calloc` and is not used afterwards.
pub(crate) unsafe fn free<T>(p: *mut T) {
    // SAFETY: as the caller promises.
    unsafe { libc::free(p.cast()) }
}

/// Frees an array of `n` strings and the array (upstream's `array_free`).
///
/// # Safety
///
/// `arr` is NULL or a `malloc`ed array of at least `n` `malloc`ed strings (or NULLs), none
/// used afterwards.
pub(crate) unsafe fn free_strings(arr: *mut *mut c_char, n: usize) {
    if arr.is_null() {
        return;
    }
    for i in 0..n {
        // SAFETY: `i < n`, within the array as the caller promises.
        unsafe { free(*arr.add(i)) };
    }
    // SAFETY: as the caller promises.
    unsafe { free(arr) };
}

/// The bytes of a C string the caller passed (`None` for NULL).
///
/// # Safety
///
/// `p` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn read<'a>(p: *const c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: as the caller promises.
    Some(unsafe { CStr::from_ptr(p) }.to_bytes())
}
