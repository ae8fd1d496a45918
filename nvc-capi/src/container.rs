//! Container configurations and containers (`nvc_container_new`): what upstream's CLI reads
//! back (`flags`, the image's CUDA compat libraries in `libs`) is filled in as upstream does.

use std::ffi::{OsStr, c_char};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nvc_core::Ldconfig;

use crate::options::container::{COMPAT_DISABLED, COMPUTE_LIBS, NO_CGROUPS, STANDALONE};
use crate::options::{self, CONTAINER, DEFAULT_CONTAINER};
use crate::registry::{ContainerState, call, guard, lock};
use crate::types::{nvc_container, nvc_container_config, nvc_context};
use crate::{Failure, cmem, context, log};

pub(crate) extern "C" fn config_new(
    pid: libc::pid_t,
    rootfs: *const c_char,
) -> *mut nvc_container_config {
    guard(std::ptr::null_mut(), || {
        // SAFETY: `calloc` of one zeroed struct; checked.
        let cfg = unsafe { libc::calloc(1, size_of::<nvc_container_config>()) }
            .cast::<nvc_container_config>();
        if !cfg.is_null() {
            // SAFETY: just allocated. The rootfs stays the caller's (upstream keeps the
            // pointer; `nvc_container_new` copies it).
            unsafe {
                (*cfg).pid = pid;
                (*cfg).rootfs = rootfs.cast_mut();
            }
            lock().container_configs.insert(cfg as usize);
        }
        cfg
    })
}

/// Frees the configuration only: its strings belong to the caller.
pub(crate) extern "C" fn config_free(cfg: *mut nvc_container_config) {
    guard((), || {
        let mut registry = lock();
        if registry.container_configs.remove(&(cfg as usize)) {
            // SAFETY: registered, so allocated here and live; unregistered now (under the
            // registry's lock, which readers of a configuration hold).
            unsafe { registry.retire(cfg) };
        }
    });
}

/// The caller's container configuration, checked as upstream: `pid > 0`, an absolute
/// rootfs, no empty directory.
struct Config {
    pid: u32,
    rootfs: PathBuf,
    dirs: [Option<PathBuf>; 5],
}

/// # Safety
///
/// `cfg` is NULL or a readable configuration whose non-NULL strings are NUL-terminated.
unsafe fn read_config(cfg: *const nvc_container_config) -> Result<Config, Failure> {
    if cfg.is_null() {
        return Err(Failure::invalid_argument());
    }
    // SAFETY: as the caller promises.
    let cfg = unsafe { &*cfg };
    // SAFETY: as the caller promises.
    let rootfs = unsafe { cmem::read(cfg.rootfs) };
    let pid = u32::try_from(cfg.pid).ok().filter(|&p| p > 0);
    let (Some(pid), Some(rootfs @ [b'/', ..])) = (pid, rootfs) else {
        return Err(Failure::invalid_argument());
    };
    let mut dirs: [Option<PathBuf>; 5] = Default::default();
    let given = [
        cfg.bins_dir,
        cfg.libs_dir,
        cfg.libs32_dir,
        cfg.cudart_dir,
        cfg.ldconfig,
    ];
    for (slot, p) in dirs.iter_mut().zip(given) {
        // SAFETY: as the caller promises.
        match unsafe { cmem::read(p) } {
            Some([]) => return Err(Failure::invalid_argument()),
            Some(b) => *slot = Some(PathBuf::from(OsStr::from_bytes(b))),
            None => {}
        }
    }
    Ok(Config {
        pid,
        rootfs: PathBuf::from(OsStr::from_bytes(rootfs)),
        dirs,
    })
}

pub(crate) extern "C" fn container_new(
    ctx: *mut nvc_context,
    cfg: *const nvc_container_config,
    opts: *const c_char,
) -> *mut nvc_container {
    call(ctx, true, |state| {
        // Read under the registry's lock, which `nvc_container_config_free` takes.
        let cfg = {
            let registry = lock();
            if registry.retired(cfg as usize) {
                return Err(Failure::invalid_argument());
            }
            // SAFETY: the caller passes NULL or a configuration (upstream's contract).
            unsafe { read_config(cfg) }
        }?;
        // SAFETY: NULL or a NUL-terminated string.
        let opts = unsafe { cmem::read(opts) }.unwrap_or(DEFAULT_CONTAINER);
        let flags = options::container_flags(options::parse(opts, CONTAINER)?)?;
        log::info!(
            "configuring container with '{}'",
            String::from_utf8_lossy(opts)
        );
        let driver = &context::initialized(state)?.driver;
        let standalone = flags & STANDALONE != 0;
        let setup = if standalone {
            let parent = std::os::unix::process::parent_id();
            if cfg.pid != parent {
                return Err(Failure::new(format!(
                    "standalone mode configures the caller's parent ({parent}), not {}",
                    cfg.pid
                )));
            }
            driver.standalone(&cfg.rootfs)?
        } else {
            driver.container(cfg.pid, &cfg.rootfs)?
        };
        let mut dirs = setup.image_dirs()?;
        let [bins, libs, libs32, cudart, ldconfig] = cfg.dirs;
        for (slot, given) in [
            (&mut dirs.bins, bins),
            (&mut dirs.libs, libs),
            (&mut dirs.libs32, libs32),
            (&mut dirs.cudart, cudart),
        ] {
            if let Some(dir) = given {
                *slot = dir;
            }
        }
        // Upstream's spelling: `@PATH` the host's, else the image's (nvc adds `builtin` and
        // `auto:PATH`); none given, what the image's own writes (`Ldconfig::Auto`: in
        // process where nvc proves it).
        let ldconfig = match ldconfig.map(Ldconfig::parse) {
            Some(Ldconfig::Image(p)) => {
                dirs.ldconfig.clone_from(&p);
                Ldconfig::Image(p)
            }
            Some(other) => other,
            None => Ldconfig::Auto(dirs.ldconfig.clone()),
        };
        let setup = setup.dirs(dirs.clone())?;
        let compat = if flags & COMPUTE_LIBS != 0 && flags & COMPAT_DISABLED == 0 {
            setup.compat_libraries()?
        } else {
            Vec::new()
        };
        // As nvc-core looked it up (in standalone mode through the rootfs's checked `/proc`).
        let (uid, gid) = setup.owner().ok_or_else(Failure::invalid_argument)?;
        let ldconfig_text = ldconfig.to_string();
        let state = ContainerState {
            pid: cfg.pid,
            rootfs: cfg.rootfs,
            standalone,
            dirs,
            ldconfig,
        };
        let c = container(flags, &state, (uid, gid), &ldconfig_text, &compat)?;
        log::info!("setting pid to {}", state.pid);
        log::info!("setting rootfs to {}", state.rootfs.display());
        log::info!("setting owner to {uid}:{gid}");
        log::info!("setting bins directory to {}", state.dirs.bins.display());
        log::info!("setting libs directory to {}", state.dirs.libs.display());
        log::info!(
            "setting libs32 directory to {}",
            state.dirs.libs32.display()
        );
        log::info!(
            "setting cudart directory to {}",
            state.dirs.cudart.display()
        );
        log::info!("setting ldconfig to {ldconfig_text}");
        if flags & NO_CGROUPS == 0 {
            log::info!("device cgroup found when devices are granted");
        }
        lock().containers.insert(c as usize, Arc::new(state));
        Ok(c)
    })
    .unwrap_or(std::ptr::null_mut())
}

/// The C container: upstream's fields, `libs` the image's compat libraries (container
/// paths), the device cgroup left unset (nvc finds it when it grants).
fn container(
    flags: i32,
    s: &ContainerState,
    (uid, gid): (u32, u32),
    ldconfig: &str,
    compat: &[PathBuf],
) -> Result<*mut nvc_container, Failure> {
    // SAFETY: `calloc` of one zeroed struct (NULL pointers, zero counts); checked.
    let c = unsafe { libc::calloc(1, size_of::<nvc_container>()) }.cast::<nvc_container>();
    if c.is_null() {
        return Err(Failure::new("memory allocation failed"));
    }
    let fill = |c: &mut nvc_container| -> Result<(), Failure> {
        c.flags = flags;
        c.cfg.pid = libc::pid_t::try_from(s.pid).map_err(|_| Failure::invalid_argument())?;
        c.cfg.rootfs = cmem::path(&s.rootfs)?;
        c.cfg.bins_dir = cmem::path(&s.dirs.bins)?;
        c.cfg.libs_dir = cmem::path(&s.dirs.libs)?;
        c.cfg.libs32_dir = cmem::path(&s.dirs.libs32)?;
        c.cfg.cudart_dir = cmem::path(&s.dirs.cudart)?;
        c.cfg.ldconfig = cmem::string(ldconfig.as_bytes())?;
        c.uid = uid;
        c.gid = gid;
        let prefix = if s.standalone {
            s.rootfs.as_path()
        } else {
            Path::new("/")
        };
        c.mnt_ns = cmem::path(&prefix.join(format!("proc/{}/ns/mnt", s.pid)))?;
        (c.libs, c.nlibs) = cmem::paths(compat)?;
        Ok(())
    };
    // SAFETY: `c` was just allocated and is not shared yet.
    if let Err(e) = fill(unsafe { &mut *c }) {
        // SAFETY: partially filled by this library, not shared.
        unsafe {
            release(c);
            cmem::free(c);
        }
        return Err(e);
    }
    Ok(c)
}

/// Frees what a container holds as upstream's `nvc_container_free`: `libs` as an array of
/// `nlibs` `malloc`ed strings (the caller may have replaced it with its own),
/// `cuda_compat_dir`; not the container itself (retired, or freed by the caller).
///
/// # Safety
///
/// `c` is a container this library made, not used afterwards.
unsafe fn release(c: *mut nvc_container) {
    // SAFETY: as the caller promises; the fields the caller may set are `malloc`ed.
    unsafe {
        let k = &mut *c;
        for p in [
            k.cfg.rootfs,
            k.cfg.bins_dir,
            k.cfg.libs_dir,
            k.cfg.libs32_dir,
            k.cfg.cudart_dir,
            k.cfg.ldconfig,
            k.mnt_ns,
            k.dev_cg,
            k.cuda_compat_dir,
        ] {
            cmem::free(p);
        }
        cmem::free_strings(k.libs, k.nlibs);
    }
}

pub(crate) extern "C" fn container_free(cnt: *mut nvc_container) {
    guard((), || {
        let mut registry = lock();
        if registry.containers.remove(&(cnt as usize)).is_some() {
            // SAFETY: registered, so made by `container` and live; unregistered now, and
            // released under the registry's lock, under which calls read it.
            unsafe {
                release(cnt);
                registry.retire(cnt);
            }
        }
    });
}
