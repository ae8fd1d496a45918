//! Every object handed to C is registered here until its `_free`: a pointer the library did
//! not make (NULL, foreign, freed already) is refused instead of dereferenced, and the Rust
//! state behind each object lives here rather than in memory the caller can write.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use nvc_core::{ContainerDirs, ContextBuilder, Driver, Ldconfig};

use crate::types::nvc_context;
use crate::{Failure, cmem, log};

/// The live objects, by address.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) contexts: HashMap<usize, Arc<Mutex<ContextState>>>,
    pub(crate) configs: HashSet<usize>,
    pub(crate) container_configs: HashSet<usize>,
    pub(crate) containers: HashMap<usize, Arc<ContainerState>>,
    /// Each driver information with the probe it shows (driver options applied).
    pub(crate) driver_infos: HashMap<usize, Arc<Driver>>,
    pub(crate) device_infos: HashMap<usize, Arc<DeviceInfoState>>,
    /// The memory of objects freed last, still allocated ([`Registry::retire`]).
    quarantine: VecDeque<usize>,
}

/// How many freed objects' memory is kept allocated.
const QUARANTINE: usize = 1024;

impl Registry {
    /// Whether `p` is an object freed by its `_free` and still quarantined ([`Registry::retire`]):
    /// a stale handle (a configuration freed by another thread, or before this call), refused
    /// rather than read.
    pub(crate) fn retired(&self, p: usize) -> bool {
        self.quarantine.contains(&p)
    }

    /// Takes the memory of an object just unregistered instead of freeing it: it stays
    /// allocated until [`QUARANTINE`] later objects were freed, so no object made meanwhile
    /// gets its address and a stale handle (freed by another thread, or freed twice) is
    /// refused as unknown instead of taken for a new object.
    ///
    /// # Safety
    ///
    /// `p` is a `malloc`ed object of this library, unregistered, not used afterwards.
    pub(crate) unsafe fn retire<T>(&mut self, p: *mut T) {
        self.quarantine.push_back(p as usize);
        while self.quarantine.len() > QUARANTINE {
            if let Some(old) = self.quarantine.pop_front() {
                // SAFETY: retired earlier by the caller's promise, and never handed out since.
                unsafe { cmem::free(old as *mut u8) };
            }
        }
    }
}

/// A context's Rust side.
#[derive(Default)]
pub(crate) struct ContextState {
    pub(crate) init: Option<Initialized>,
    /// Set by `nvc_context_free` under this state's lock: a call that found the context
    /// before it was unregistered and waited for the lock must not touch its memory.
    pub(crate) freed: bool,
}

/// What `nvc_init` set up.
pub(crate) struct Initialized {
    /// The options, to probe again with driver options.
    pub(crate) builder: ContextBuilder,
    /// The probe made at `nvc_init` (NVML's versions and GPUs, the default file sets).
    pub(crate) driver: Arc<Driver>,
}

/// A container's Rust side, fixed at `nvc_container_new`.
#[derive(Debug)]
pub(crate) struct ContainerState {
    pub(crate) pid: u32,
    pub(crate) rootfs: PathBuf,
    pub(crate) standalone: bool,
    pub(crate) dirs: ContainerDirs,
    pub(crate) ldconfig: Ldconfig,
}

/// A device information's Rust side: where its arrays are and which GPU each entry is.
#[derive(Debug)]
pub(crate) struct DeviceInfoState {
    pub(crate) driver: Arc<Driver>,
    /// Address of `gpus[0]` and each entry's NVML index.
    pub(crate) gpus: (usize, Vec<u32>),
    /// Per GPU: address of its `mig_devices.devices[0]` and each entry's MIG index.
    pub(crate) migs: Vec<(usize, Vec<u32>)>,
}

impl DeviceInfoState {
    /// The NVML index of the GPU at `p`, if `p` is one of this information's entries.
    pub(crate) fn gpu_at(&self, p: usize) -> Option<u32> {
        entry_at(
            self.gpus.0,
            &self.gpus.1,
            p,
            size_of::<crate::types::nvc_device>(),
        )
    }

    /// (GPU index, MIG index) of the MIG device at `p`.
    pub(crate) fn mig_at(&self, p: usize) -> Option<(u32, u32)> {
        let size = size_of::<crate::types::nvc_mig_device>();
        self.gpus
            .1
            .iter()
            .zip(&self.migs)
            .find_map(|(&gpu, (base, migs))| entry_at(*base, migs, p, size).map(|mig| (gpu, mig)))
    }
}

/// `items[i]` when `p` is the address of element `i` of an array at `base`.
fn entry_at(base: usize, items: &[u32], p: usize, size: usize) -> Option<u32> {
    let offset = p.checked_sub(base)?;
    if base == 0 || offset % size != 0 {
        return None;
    }
    items.get(offset / size).copied()
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

/// The registry, locked (a panic elsewhere does not make it unusable).
pub(crate) fn lock() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs a function without a context, `fallback` if it panics.
pub(crate) fn guard<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// Runs an entry point on the context at `ctx`: `None` without a message for a NULL or
/// unknown context (upstream returns -1 for NULL); with `need_init`, "context
/// uninitialized" before `nvc_init`; a failure or a panic is stored as the context's error
/// (`nvc_error`) and logged.
pub(crate) fn call<T>(
    ctx: *mut nvc_context,
    need_init: bool,
    body: impl FnOnce(&mut ContextState) -> Result<T, Failure>,
) -> Option<T> {
    let state = lock().contexts.get(&(ctx as usize)).cloned()?;
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    if state.freed {
        return None;
    }
    let result = if need_init && state.init.is_none() {
        Err(Failure::new("context uninitialized"))
    } else {
        catch_unwind(AssertUnwindSafe(|| body(&mut state))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Failure::new(format!("internal error: {what}")))
        })
    };
    match result {
        Ok(v) => Some(v),
        Err(failure) => {
            log::error!("{}", failure.message);
            // SAFETY: `ctx` was registered and is not freed (checked under its state's lock,
            // which `nvc_context_free` takes too), so it is a live context this library
            // allocated; the lock serialises the calls that write its error.
            unsafe { set_error(ctx, &failure.message) };
            None
        }
    }
}

/// Replaces the context's error (upstream's `error_setx`).
///
/// # Safety
///
/// `ctx` is a live context made by `nvc_context_new`, not written concurrently.
unsafe fn set_error(ctx: *mut nvc_context, message: &str) {
    // SAFETY: as the caller promises.
    let err = unsafe { &mut (*ctx).err };
    // SAFETY: `msg` is NULL or a string this library `malloc`ed.
    unsafe { cmem::free(err.msg) };
    let bytes: Vec<u8> = message.bytes().filter(|&b| b != 0).collect();
    err.msg = cmem::string(&bytes).unwrap_or(std::ptr::null_mut());
    err.code = -1;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by the tests that free objects by the thousand or count on the quarantine: the
    /// quarantine is the process's, and one test's frees (about 10,000 contexts in
    /// `a_configuration_freed_while_read_is_refused_not_read`) would push another test's
    /// freed objects out of it while that test still checks their addresses are not reused.
    static QUARANTINE_USERS: Mutex<()> = Mutex::new(());

    #[test]
    #[allow(clippy::panic)]
    fn a_panic_becomes_the_contexts_error() {
        let ctx = crate::context::context_new();
        let got: Option<()> = call(ctx, false, |_| panic!("boom"));
        assert!(got.is_none());
        let msg = crate::context::error(ctx);
        // SAFETY: `nvc_error` returns NULL or the context's NUL-terminated message.
        let msg = unsafe { cmem::read(msg) }.map(|b| String::from_utf8_lossy(b).into_owned());
        assert_eq!(msg.as_deref(), Some("internal error: boom"));
        // The context still works after it.
        let got = call(ctx, false, |_| Ok(7));
        assert_eq!(got, Some(7));
        crate::context::context_free(ctx);
        assert!(crate::context::error(ctx).is_null());
    }

    /// Threads calling on a context (each call writes its error) while another frees it:
    /// a call that found the context before the free and waited for its lock wrote into
    /// freed memory (and freed its message twice). Now every call either runs before the
    /// free or is refused, and a freed handle stays refused: no new object takes its
    /// address while it is quarantined.
    #[test]
    fn a_free_racing_every_call_is_refused_not_a_use_after_free() {
        let _serial = QUARANTINE_USERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut freed = HashSet::new();
        for _ in 0..100 {
            let ctx = crate::context::context_new() as usize;
            let callers: Vec<_> = (0..4)
                .map(|_| {
                    std::thread::spawn(move || {
                        let ctx = ctx as *mut nvc_context;
                        for _ in 0..200 {
                            let _: Option<()> = call(ctx, false, |_| Err(Failure::new("busy")));
                            let _ = crate::context::error(ctx);
                        }
                    })
                })
                .collect();
            std::thread::yield_now();
            crate::context::context_free(ctx as *mut nvc_context);
            for c in callers {
                c.join().unwrap();
            }
            let stale = ctx as *mut nvc_context;
            assert_eq!(call(stale, false, |_| Ok(1)), None);
            assert!(crate::context::error(stale).is_null());
            crate::context::context_free(stale); // twice: nothing
            freed.insert(ctx);
        }
        let fresh: Vec<usize> = (0..100)
            .map(|_| crate::context::context_new() as usize)
            .collect();
        assert!(fresh.iter().all(|c| !freed.contains(c)));
        for c in fresh {
            crate::context::context_free(c as *mut nvc_context);
        }
    }

    /// Threads making `nvc_init` read a configuration while another thread frees it: each
    /// read comes before the free (and fails on the configuration's relative driver root) or
    /// is refused as an invalid argument — never a read of freed memory — and the freed
    /// handle stays refused.
    #[test]
    fn a_configuration_freed_while_read_is_refused_not_read() {
        let _serial = QUARANTINE_USERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        const RELATIVE: &str = "invalid driver root: relative is not an absolute path";
        let message = |ctx: *mut nvc_context| {
            // SAFETY: `nvc_error` returns NULL or the context's NUL-terminated message.
            unsafe { cmem::read(crate::context::error(ctx)) }
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        for _ in 0..50 {
            let cfg = crate::context::config_new();
            // SAFETY: just made, not shared yet; the string is static.
            unsafe { (*cfg).root = c"relative".as_ptr().cast_mut() };
            let cfg = cfg as usize;
            let readers: Vec<_> = (0..4)
                .map(|_| {
                    std::thread::spawn(move || {
                        let mut seen = HashSet::new();
                        for _ in 0..50 {
                            let ctx = crate::context::context_new();
                            let rc = crate::context::init(ctx, cfg as *const _, std::ptr::null());
                            assert_eq!(rc, -1);
                            seen.insert(message(ctx).unwrap_or_default());
                            crate::context::context_free(ctx);
                        }
                        seen
                    })
                })
                .collect();
            std::thread::yield_now();
            crate::context::config_free(cfg as *mut _);
            for r in readers {
                let seen = r.join().unwrap();
                assert!(
                    seen.iter()
                        .all(|m| m == RELATIVE || m == "invalid argument"),
                    "{seen:?}"
                );
            }
            let ctx = crate::context::context_new();
            assert_eq!(
                crate::context::init(ctx, cfg as *const _, std::ptr::null()),
                -1
            );
            assert_eq!(message(ctx).as_deref(), Some("invalid argument"));
            crate::context::context_free(ctx);
        }
    }
}
