//! `nvc_version`, contexts and library configurations, `nvc_init`, `nvc_shutdown`,
//! `nvc_error`.

use std::ffi::{OsStr, c_char, c_int};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use nvc_core::Context;

use crate::options::{self, LIBRARY, LOAD_KMODS, NO_CREATE_IMEX_CHANNELS};
use crate::registry::{ContextState, Initialized, call, guard, lock};
use crate::types::{nvc_config, nvc_context, nvc_imex_channel, nvc_version};
use crate::{Failure, cmem, log};

/// The version of libnvidia-container whose API this library implements.
pub const VERSION: (u32, u32, u32) = (1, 17, 7);
const VERSION_STRING: &std::ffi::CStr = c"1.17.7";

struct Version(nvc_version);
// SAFETY: the struct is never written and points to a static string.
unsafe impl Sync for Version {}

static NVC_VERSION: Version = Version(nvc_version {
    major: VERSION.0,
    minor: VERSION.1,
    patch: VERSION.2,
    string: VERSION_STRING.as_ptr(),
});

/// The most IMEX channels a configuration may name (a bound against a garbage count).
const MAX_IMEX_CHANNELS: usize = 1 << 16;

pub(crate) extern "C" fn version() -> *const nvc_version {
    &raw const NVC_VERSION.0
}

pub(crate) extern "C" fn context_new() -> *mut nvc_context {
    guard(std::ptr::null_mut(), || {
        // SAFETY: `calloc` of one zeroed context (all fields valid when zero); checked.
        let ctx = unsafe { libc::calloc(1, size_of::<nvc_context>()) }.cast::<nvc_context>();
        if !ctx.is_null() {
            lock().contexts.insert(
                ctx as usize,
                Arc::new(std::sync::Mutex::new(ContextState::default())),
            );
        }
        ctx
    })
}

pub(crate) extern "C" fn context_free(ctx: *mut nvc_context) {
    guard((), || {
        let Some(state) = lock().contexts.remove(&(ctx as usize)) else {
            return;
        };
        let mut state = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A call that found it before it was unregistered sees this once it has the lock.
        state.freed = true;
        // SAFETY: `ctx` was registered, so this library allocated it and it is still live;
        // it is unregistered and marked freed under its lock, so no other call reaches it.
        unsafe {
            release_config(&mut (*ctx).cfg);
            cmem::free((*ctx).err.msg);
            lock().retire(ctx);
        }
    });
}

pub(crate) extern "C" fn config_new() -> *mut nvc_config {
    guard(std::ptr::null_mut(), || {
        // SAFETY: `calloc` of one zeroed configuration; checked.
        let cfg = unsafe { libc::calloc(1, size_of::<nvc_config>()) }.cast::<nvc_config>();
        if !cfg.is_null() {
            // SAFETY: just allocated.
            unsafe {
                (*cfg).uid = u32::MAX;
                (*cfg).gid = u32::MAX;
            }
            lock().configs.insert(cfg as usize);
        }
        cfg
    })
}

/// Frees the configuration only: its strings belong to the caller (upstream's CLI points
/// them at its own arguments).
pub(crate) extern "C" fn config_free(cfg: *mut nvc_config) {
    guard((), || {
        let mut registry = lock();
        if registry.configs.remove(&(cfg as usize)) {
            // SAFETY: registered, so allocated here and live; unregistered now (under the
            // registry's lock, which readers of a configuration hold).
            unsafe { registry.retire(cfg) };
        }
    });
}

pub(crate) extern "C" fn init(
    ctx: *mut nvc_context,
    cfg: *const nvc_config,
    opts: *const c_char,
) -> c_int {
    let done = call(ctx, false, |state| {
        if state.init.is_some() {
            return Ok(());
        }
        // Read under the registry's lock, which `nvc_config_free` takes: a free racing this
        // call cannot pull the configuration away mid-read.
        let (root, ldcache, uid, gid, chans) = {
            let registry = lock();
            if registry.retired(cfg as usize) {
                return Err(Failure::invalid_argument());
            }
            // SAFETY: the caller passes NULL or a configuration (upstream's contract); the
            // strings it names are NUL-terminated.
            unsafe { read_config(cfg) }
        }?;
        // SAFETY: NULL or a NUL-terminated string.
        let opts = unsafe { cmem::read(opts) }.unwrap_or_default();
        let flags = options::parse(opts, LIBRARY)?;
        log::open();
        log::info!(
            "initializing library context (version={}, build=nvc {})",
            VERSION_STRING.to_string_lossy(),
            env!("CARGO_PKG_VERSION")
        );
        let (uid, gid) = (
            uid.unwrap_or_else(|| overflow("uid")),
            gid.unwrap_or_else(|| overflow("gid")),
        );
        let mut builder = Context::builder()
            .root(OsStr::from_bytes(&root))
            .ldcache(OsStr::from_bytes(&ldcache))
            .nvml_user(uid, gid);
        if let Some(path) = std::env::var_os("PATH") {
            builder = builder.search_path(path);
        }
        if let Some(dir) = std::env::var_os("CUDA_MPS_PIPE_DIRECTORY") {
            builder = builder.mps_pipe_dir(dir);
        }
        if flags & LOAD_KMODS != 0 {
            builder = builder.load_kmods(&chans, flags & NO_CREATE_IMEX_CHANNELS == 0);
        }
        let driver = builder.clone().build()?.driver()?;
        // SAFETY: `ctx` is registered (checked by `call`) and its lock is held.
        unsafe { copy_config(&mut (*ctx).cfg, &root, &ldcache, uid, gid, &chans) }?;
        state.init = Some(Initialized {
            builder,
            driver: Arc::new(driver),
        });
        // SAFETY: as above.
        unsafe { (*ctx).initialized = true };
        Ok(())
    });
    if done.is_some() { 0 } else { -1 }
}

pub(crate) extern "C" fn shutdown(ctx: *mut nvc_context) -> c_int {
    call(ctx, false, |state| {
        if state.init.take().is_some() {
            log::info!("shutting down library context");
            // SAFETY: `ctx` is registered and its lock is held.
            unsafe {
                release_config(&mut (*ctx).cfg);
                (*ctx).initialized = false;
            }
            log::close();
        }
        Ok(())
    });
    0
}

pub(crate) extern "C" fn error(ctx: *mut nvc_context) -> *const c_char {
    guard(std::ptr::null(), || {
        let Some(state) = lock().contexts.get(&(ctx as usize)).cloned() else {
            return std::ptr::null();
        };
        let held = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.freed {
            return std::ptr::null();
        }
        // SAFETY: registered and not freed (checked under its lock, which is held), so a
        // live context of this library.
        let err = unsafe { &(*ctx).err };
        if err.code != 0 && err.msg.is_null() {
            return c"unknown error".as_ptr();
        }
        err.msg.cast_const()
    })
}

type Config = (Vec<u8>, Vec<u8>, Option<u32>, Option<u32>, Vec<u32>);

/// The caller's configuration with upstream's defaults and checks: root `/`, ldcache
/// `/etc/ld.so.cache`, empty strings refused, `(uid_t)-1` meaning the overflow id.
///
/// # Safety
///
/// `cfg` is NULL or a readable configuration whose non-NULL strings are NUL-terminated and
/// whose `imex.chans` holds `imex.nchans` entries.
unsafe fn read_config(cfg: *const nvc_config) -> Result<Config, Failure> {
    let default = |bytes: Option<&[u8]>, value: &[u8]| match bytes {
        Some([]) => Err(Failure::invalid_argument()),
        Some(b) => Ok(b.to_vec()),
        None => Ok(value.to_vec()),
    };
    if cfg.is_null() {
        return Ok((
            b"/".to_vec(),
            b"/etc/ld.so.cache".to_vec(),
            None,
            None,
            Vec::new(),
        ));
    }
    // SAFETY: as the caller promises.
    let cfg = unsafe { &*cfg };
    // SAFETY: as the caller promises.
    let root = default(unsafe { cmem::read(cfg.root) }, b"/")?;
    // SAFETY: as the caller promises.
    let ldcache = default(unsafe { cmem::read(cfg.ldcache) }, b"/etc/ld.so.cache")?;
    let id = |v: u32| (v != u32::MAX).then_some(v);
    if cfg.imex.nchans > MAX_IMEX_CHANNELS || (cfg.imex.nchans > 0 && cfg.imex.chans.is_null()) {
        return Err(Failure::invalid_argument());
    }
    let mut chans = Vec::with_capacity(cfg.imex.nchans);
    for i in 0..cfg.imex.nchans {
        // SAFETY: `i < nchans`, within the array as the caller promises.
        let id = unsafe { (*cfg.imex.chans.add(i)).id };
        chans.push(u32::try_from(id).map_err(|_| Failure::invalid_argument())?);
    }
    Ok((root, ldcache, id(cfg.uid), id(cfg.gid), chans))
}

/// The kernel's overflow id (`/proc/sys/kernel/overflow{uid,gid}`), 65534 if unreadable.
fn overflow(which: &str) -> u32 {
    std::fs::read_to_string(Path::new("/proc/sys/kernel").join(format!("overflow{which}")))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65_534)
}

/// Fills the context's copy of the configuration (upstream keeps one in `ctx->cfg`).
///
/// # Safety
///
/// `cfg` is the `cfg` of a live context, holding NULL or this library's allocations.
unsafe fn copy_config(
    cfg: &mut nvc_config,
    root: &[u8],
    ldcache: &[u8],
    uid: u32,
    gid: u32,
    chans: &[u32],
) -> Result<(), Failure> {
    // SAFETY: as the caller promises.
    unsafe { release_config(cfg) };
    let chans: Vec<nvc_imex_channel> = chans
        .iter()
        .map(|&c| nvc_imex_channel {
            id: c_int::try_from(c).unwrap_or(c_int::MAX),
        })
        .collect();
    cfg.imex.nchans = chans.len();
    cfg.imex.chans = cmem::array(chans)?;
    cfg.root = cmem::string(root)?;
    cfg.ldcache = cmem::string(ldcache)?;
    cfg.uid = uid;
    cfg.gid = gid;
    Ok(())
}

/// Frees the context's copy of the configuration.
///
/// # Safety
///
/// As [`copy_config`].
unsafe fn release_config(cfg: &mut nvc_config) {
    // SAFETY: NULL or this library's allocations, as the caller promises.
    unsafe {
        cmem::free(cfg.root);
        cmem::free(cfg.ldcache);
        cmem::free(cfg.imex.chans);
    }
    cfg.root = std::ptr::null_mut();
    cfg.ldcache = std::ptr::null_mut();
    cfg.imex.chans = std::ptr::null_mut();
    cfg.imex.nchans = 0;
}

/// What `nvc_init` set up (for the other modules).
pub(crate) fn initialized(state: &ContextState) -> Result<&Initialized, Failure> {
    state
        .init
        .as_ref()
        .ok_or_else(|| Failure::new("context uninitialized"))
}
