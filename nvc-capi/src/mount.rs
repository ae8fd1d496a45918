//! The mount calls and `nvc_ldcache_update`: each plans and applies one part of a configure
//! ([`nvc_core::Part`]) as its own transaction — a failure undoes that call's mounts and
//! cgroup rules and leaves the earlier calls' work in place, as upstream.

use std::ffi::{OsStr, c_int};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use nvc_core::{Capability, CompatMode, Driver, Part};

use crate::options::container as f;
use crate::registry::{Registry, call, lock};
use crate::types::{
    nvc_container, nvc_context, nvc_device, nvc_driver_info, nvc_imex_channel, nvc_mig_device,
};
use crate::{Failure, cmem, context, log};

/// The most compat libraries a container may list (a bound against a garbage count).
const MAX_LIBS: usize = 1 << 16;

/// Runs one part on the container `cnt` with the driver `find` names (`None`: the
/// context's), `find` resolving the caller's pointers in the registry.
fn mount(
    ctx: *mut nvc_context,
    cnt: *const nvc_container,
    what: &str,
    find: impl FnOnce(&Registry) -> Option<(Option<Arc<Driver>>, Part)>,
) -> c_int {
    let done = call(ctx, true, |state| {
        // The container's memory is read under the registry's lock, under which
        // `nvc_container_free` releases it: a free racing this call cannot pull it away.
        let (container, found, read) = {
            let registry = lock();
            let container = registry.containers.get(&(cnt as usize)).cloned();
            // SAFETY: `cnt` is registered (checked under the lock held), so a live
            // container of this library; its `libs` hold `nlibs` strings (upstream's CLI
            // replaces them with an array of its own).
            let read = container.as_ref().map(|_| unsafe { read_container(cnt) });
            (container, find(&registry), read)
        };
        let (Some(container), Some((driver, part)), Some(read)) = (container, found, read) else {
            return Err(Failure::invalid_argument());
        };
        let (flags, libs) = read?;
        let driver = match driver {
            Some(d) => d,
            None => Arc::clone(&context::initialized(state)?.driver),
        };
        // SAFETY: `ctx` is registered and its lock is held (`call`).
        let no_pivot = unsafe { (*ctx).no_pivot };
        log::info!("{what} for pid {}", container.pid);
        let setup = if container.standalone {
            driver.standalone(&container.rootfs)?
        } else {
            driver.container(container.pid, &container.rootfs)?
        };
        setup
            .dirs(container.dirs.clone())?
            .capabilities(&capabilities(flags))
            .compat32(flags & f::COMPAT32 != 0)
            .no_devbind(flags & f::NO_DEVBIND != 0)
            .device_cgroup(flags & f::NO_CGROUPS == 0)
            .cuda_compat(compat_mode(flags))
            .no_pivot(no_pivot)
            .ldconfig(container.ldconfig.clone())
            .with_compat_libraries(libs)
            .only(part)
            .mount()?;
        Ok(())
    });
    if done.is_some() { 0 } else { -1 }
}

/// The container's flags and its compat libraries as the caller left them.
///
/// # Safety
///
/// `cnt` is a live container of this library.
unsafe fn read_container(cnt: *const nvc_container) -> Result<(i32, Vec<PathBuf>), Failure> {
    // SAFETY: as the caller promises.
    let c = unsafe { &*cnt };
    if c.nlibs > MAX_LIBS || (c.nlibs > 0 && c.libs.is_null()) {
        return Err(Failure::invalid_argument());
    }
    let mut libs = Vec::with_capacity(c.nlibs);
    for i in 0..c.nlibs {
        // SAFETY: `i < nlibs`; each entry NULL or a NUL-terminated string.
        let lib = unsafe { cmem::read(*c.libs.add(i)) }.ok_or_else(Failure::invalid_argument)?;
        let lib = PathBuf::from(OsStr::from_bytes(lib));
        if !lib.is_absolute() {
            return Err(Failure::invalid_argument());
        }
        libs.push(lib);
    }
    Ok((c.flags, libs))
}

/// The capabilities the flags name (`video` brings the compute libraries by itself).
fn capabilities(flags: i32) -> Vec<Capability> {
    [
        (f::UTILITY_BINS | f::UTILITY_LIBS, Capability::Utility),
        (f::COMPUTE_BINS, Capability::Compute),
        (f::VIDEO_LIBS, Capability::Video),
        (f::GRAPHICS_LIBS, Capability::Graphics),
        (f::DISPLAY, Capability::Display),
        (f::NGX_LIBS, Capability::Ngx),
    ]
    .into_iter()
    .filter(|(bits, _)| flags & bits != 0)
    .map(|(_, cap)| cap)
    .collect()
}

fn compat_mode(flags: i32) -> CompatMode {
    if flags & f::COMPAT_DISABLED != 0 {
        CompatMode::Disabled
    } else if flags & f::COMPAT_LDCONFIG != 0 {
        CompatMode::Ldconfig
    } else {
        CompatMode::Mount
    }
}

/// The device information holding the GPU entry at `dev`, and the GPU's NVML index.
fn gpu(r: &Registry, dev: *const nvc_device) -> Option<(Option<Arc<Driver>>, u32)> {
    r.device_infos
        .values()
        .find_map(|i| Some((Some(Arc::clone(&i.driver)), i.gpu_at(dev as usize)?)))
}

pub(crate) extern "C" fn driver_mount(
    ctx: *mut nvc_context,
    cnt: *const nvc_container,
    info: *const nvc_driver_info,
) -> c_int {
    mount(ctx, cnt, "mounting the driver", |r| {
        let driver = r.driver_infos.get(&(info as usize))?;
        Some((Some(Arc::clone(driver)), Part::Driver))
    })
}

pub(crate) extern "C" fn device_mount(
    ctx: *mut nvc_context,
    cnt: *const nvc_container,
    dev: *const nvc_device,
) -> c_int {
    mount(ctx, cnt, "mounting a device", |r| {
        let (driver, index) = gpu(r, dev)?;
        Some((driver, Part::Gpu { index }))
    })
}

pub(crate) extern "C" fn mig_device_access_caps_mount(
    ctx: *mut nvc_context,
    cnt: *const nvc_container,
    mig: *const nvc_mig_device,
) -> c_int {
    mount(ctx, cnt, "mounting MIG device access", |r| {
        r.device_infos.values().find_map(|i| {
            let (gpu, mig) = i.mig_at(mig as usize)?;
            Some((Some(Arc::clone(&i.driver)), Part::MigAccess { gpu, mig }))
        })
    })
}

pub(crate) extern "C" fn mig_config_global_caps_mount(
    ctx: *mut nvc_context,
    cnt: *const nvc_container,
) -> c_int {
    mount(ctx, cnt, "mounting MIG config capability", |_| {
        Some((None, Part::MigConfig))
    })
}

pub(crate) extern "C" fn mig_monitor_global_caps_mount(
    ctx: *mut nvc_context,
    cnt: *const nvc_container,
) -> c_int {
    mount(ctx, cnt, "mounting MIG monitor capability", |_| {
        Some((None, Part::MigMonitor))
    })
}

pub(crate) extern "C" fn device_mig_caps_mount(
    ctx: *mut nvc_context,
    cnt: *const nvc_container,
    dev: *const nvc_device,
) -> c_int {
    mount(ctx, cnt, "mounting a device's MIG capabilities", |r| {
        let (driver, gpu) = gpu(r, dev)?;
        Some((driver, Part::GpuMigCaps { gpu }))
    })
}

pub(crate) extern "C" fn imex_channel_mount(
    ctx: *mut nvc_context,
    cnt: *const nvc_container,
    chan: *const nvc_imex_channel,
) -> c_int {
    // SAFETY: NULL or a channel, as upstream's contract.
    let channel = (!chan.is_null()).then(|| unsafe { (*chan).id });
    mount(ctx, cnt, "mounting an IMEX channel", |_| {
        let channel = u32::try_from(channel?).ok()?;
        Some((None, Part::Imex { channel }))
    })
}

pub(crate) extern "C" fn ldcache_update(ctx: *mut nvc_context, cnt: *const nvc_container) -> c_int {
    mount(ctx, cnt, "updating the linker cache", |_| {
        Some((None, Part::Ldcache))
    })
}
