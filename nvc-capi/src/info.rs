//! `nvc_driver_info_new`, `nvc_device_info_new`, their `_free`s and the NVIDIA capability
//! helpers.

use std::ffi::{c_char, c_int};
use std::path::Path;
use std::sync::Arc;

use nvc_core::{Context, DriverInfo};

use crate::options::{self, DRIVER, NO_MODESET, NO_UVM};
use crate::registry::{DeviceInfoState, call, guard, lock};
use crate::types::{
    nvc_context, nvc_device, nvc_device_info, nvc_device_node, nvc_driver_info, nvc_mig_device,
    nvc_mig_device_info,
};
use crate::{Failure, cmem, context, log};

/// `NVC_NVCAPS_STYLE_*`.
const NVCAPS_STYLE_NONE: c_int = 0;
const NVCAPS_STYLE_PROC: c_int = 1;
const NVCAPS_STYLE_DEV: c_int = 2;

/// Capability files are a few lines; more is not one.
const CAP_FILE_LIMIT: u64 = 64 << 10;

pub(crate) extern "C" fn driver_info_new(
    ctx: *mut nvc_context,
    opts: *const c_char,
) -> *mut nvc_driver_info {
    call(ctx, true, |state| {
        // SAFETY: NULL or a NUL-terminated string.
        let opts = unsafe { cmem::read(opts) }.unwrap_or_default();
        let flags = options::parse(opts, DRIVER)?;
        let init = context::initialized(state)?;
        log::info!(
            "requesting driver information with '{}'",
            String::from_utf8_lossy(opts)
        );
        let mut info = init.driver.info().clone();
        // Every option but those two filters changes what discovery looks for.
        if flags & !(NO_UVM | NO_MODESET) != 0 {
            // The files again with these options; NVML's answers stay those of `nvc_init`.
            let mut b = init.builder.clone().nvml(false);
            b = b
                .glvnd(flags & options::NO_GLVND == 0)
                .mps(flags & options::NO_MPS == 0)
                .persistenced(flags & options::NO_PERSISTENCED == 0)
                .fabricmanager(flags & options::NO_FABRICMANAGER == 0)
                .gsp_firmware(flags & options::NO_GSP_FIRMWARE == 0);
            info.files = b.build()?.driver()?.info().files.clone();
        }
        let node = |p: &Path, name: &str| p == Path::new("/dev").join(name);
        info.files.devices.retain(|d| {
            !(flags & NO_UVM != 0
                && (node(&d.path, "nvidia-uvm") || node(&d.path, "nvidia-uvm-tools"))
                || flags & NO_MODESET != 0 && node(&d.path, "nvidia-modeset"))
        });
        let c = driver_info(&info)?;
        let driver = Context::builder()
            .root(init.driver.root())
            .build()?
            .with_info(info);
        lock().driver_infos.insert(c as usize, Arc::new(driver));
        Ok(c)
    })
    .unwrap_or(std::ptr::null_mut())
}

/// The C view of `info`, every path relative to the driver root as upstream's.
fn driver_info(info: &DriverInfo) -> Result<*mut nvc_driver_info, Failure> {
    // SAFETY: `calloc` of one zeroed struct (NULL pointers, zero counts); checked.
    let c = unsafe { libc::calloc(1, size_of::<nvc_driver_info>()) }.cast::<nvc_driver_info>();
    if c.is_null() {
        return Err(Failure::new("memory allocation failed"));
    }
    // SAFETY: `c` was just allocated and is not shared yet.
    let fill = unsafe { fill_driver_info(&mut *c, info) };
    if let Err(e) = fill {
        // SAFETY: partially filled by this library, not shared.
        unsafe {
            release_driver_info(c);
            cmem::free(c);
        }
        return Err(e);
    }
    Ok(c)
}

fn fill_driver_info(c: &mut nvc_driver_info, info: &DriverInfo) -> Result<(), Failure> {
    let f = &info.files;
    c.nvrm_version = cmem::string(info.nvrm_version.as_bytes())?;
    c.cuda_version = cmem::string(info.cuda_version.as_deref().unwrap_or_default().as_bytes())?;
    (c.bins, c.nbins) = cmem::paths(&f.binaries)?;
    (c.libs, c.nlibs) = cmem::paths(&f.libraries)?;
    (c.libs32, c.nlibs32) = cmem::paths(&f.libraries32)?;
    (c.ipcs, c.nipcs) = cmem::paths(&f.ipcs)?;
    (c.firmwares, c.nfirmwares) = cmem::paths(&f.firmwares)?;
    let mut devs = Vec::with_capacity(f.devices.len());
    for d in &f.devices {
        devs.push(nvc_device_node {
            path: cmem::path(&d.path)?,
            id: libc::makedev(d.major, d.minor),
        });
    }
    c.ndevs = devs.len();
    c.devs = cmem::array(devs)?;
    Ok(())
}

/// Frees everything a driver information holds (not the object itself: retired, or freed by
/// the caller).
///
/// # Safety
///
/// `c` came from [`driver_info`] and is not used afterwards.
unsafe fn release_driver_info(c: *mut nvc_driver_info) {
    // SAFETY: as the caller promises: every pointer is NULL or this library's allocation.
    unsafe {
        let i = &mut *c;
        cmem::free(i.nvrm_version);
        cmem::free(i.cuda_version);
        cmem::free_strings(i.bins, i.nbins);
        cmem::free_strings(i.libs, i.nlibs);
        cmem::free_strings(i.libs32, i.nlibs32);
        cmem::free_strings(i.ipcs, i.nipcs);
        cmem::free_strings(i.firmwares, i.nfirmwares);
        if !i.devs.is_null() {
            for d in 0..i.ndevs {
                cmem::free((*i.devs.add(d)).path);
            }
        }
        cmem::free(i.devs);
    }
}

pub(crate) extern "C" fn driver_info_free(info: *mut nvc_driver_info) {
    guard((), || {
        let mut registry = lock();
        if registry.driver_infos.remove(&(info as usize)).is_some() {
            // SAFETY: registered, so made by `driver_info` and live; unregistered now.
            unsafe {
                release_driver_info(info);
                registry.retire(info);
            }
        }
    });
}

pub(crate) extern "C" fn device_info_new(
    ctx: *mut nvc_context,
    opts: *const c_char,
) -> *mut nvc_device_info {
    call(ctx, true, |state| {
        // SAFETY: NULL or a NUL-terminated string. Upstream has no device options.
        options::parse(unsafe { cmem::read(opts) }.unwrap_or_default(), &[])?;
        let driver = &context::initialized(state)?.driver;
        log::info!("requesting device information with ''");
        let (c, state) = device_info(driver)?;
        lock().device_infos.insert(c as usize, Arc::new(state));
        Ok(c)
    })
    .unwrap_or(std::ptr::null_mut())
}

fn device_info(
    driver: &Arc<nvc_core::Driver>,
) -> Result<(*mut nvc_device_info, DeviceInfoState), Failure> {
    let gpus = &driver.info().gpus;
    // SAFETY: `calloc` of one zeroed struct; checked.
    let c = unsafe { libc::calloc(1, size_of::<nvc_device_info>()) }.cast::<nvc_device_info>();
    if c.is_null() {
        return Err(Failure::new("memory allocation failed"));
    }
    // Zeroed entries first, so that each MIG device can point at its parent.
    let zeroed = gpus.iter().map(|_| {
        // SAFETY: every field of `nvc_device` is valid when zero (NULL, false, 0).
        unsafe { std::mem::zeroed::<nvc_device>() }
    });
    let filled = cmem::array(zeroed.collect()).and_then(|array| {
        // SAFETY: `c` was just allocated and is not shared yet.
        unsafe {
            (*c).gpus = array;
            (*c).ngpus = gpus.len();
        }
        let mut migs = Vec::with_capacity(gpus.len());
        for (i, g) in gpus.iter().enumerate() {
            // SAFETY: `i < ngpus`, an entry of the array just made.
            let entry = unsafe { array.add(i) };
            // SAFETY: as above; not shared yet.
            unsafe { fill_device(&mut *entry, entry, g) }?;
            // SAFETY: as above.
            let base = unsafe { (*entry).mig_devices.devices } as usize;
            migs.push((base, g.mig_devices.iter().map(|m| m.index).collect()));
        }
        Ok(DeviceInfoState {
            driver: Arc::clone(driver),
            gpus: (array as usize, gpus.iter().map(|g| g.index).collect()),
            migs,
        })
    });
    match filled {
        Ok(state) => Ok((c, state)),
        Err(e) => {
            // SAFETY: partially filled by this library, not shared.
            unsafe {
                release_device_info(c);
                cmem::free(c);
            }
            Err(e)
        }
    }
}

fn fill_device(
    d: &mut nvc_device,
    this: *mut nvc_device,
    g: &nvc_core::Gpu,
) -> Result<(), Failure> {
    d.model = cmem::string(g.model.as_bytes())?;
    d.uuid = cmem::string(g.uuid.as_bytes())?;
    d.busid = cmem::string(g.bus_id.to_string().as_bytes())?;
    d.arch = cmem::string(g.architecture.as_deref().unwrap_or_default().as_bytes())?;
    d.brand = cmem::string(g.brand.as_deref().unwrap_or_default().as_bytes())?;
    d.node = nvc_device_node {
        path: cmem::string(format!("/dev/nvidia{}", g.minor).as_bytes())?,
        id: libc::makedev(195, g.minor),
    };
    d.mig_capable = g.mig_capable;
    d.mig_caps_path = cmem::string(g.mig_caps_path().as_bytes())?;
    let mut migs = Vec::with_capacity(g.mig_devices.len());
    for m in &g.mig_devices {
        let mig = nvc_mig_device {
            parent: this,
            uuid: cmem::string(m.uuid.as_bytes())?,
            gi: m.gi,
            ci: m.ci,
            gi_caps_path: cmem::string(g.gi_caps_path(m).as_bytes())?,
            ci_caps_path: cmem::string(g.ci_caps_path(m).as_bytes())?,
        };
        migs.push(mig);
    }
    d.mig_devices = nvc_mig_device_info {
        ndevices: migs.len(),
        devices: cmem::array(migs)?,
    };
    Ok(())
}

/// Frees everything a device information holds (not the object itself: retired, or freed by
/// the caller).
///
/// # Safety
///
/// `c` came from [`device_info`] and is not used afterwards.
unsafe fn release_device_info(c: *mut nvc_device_info) {
    // SAFETY: as the caller promises: every pointer is NULL or this library's allocation.
    unsafe {
        let info = &mut *c;
        for i in 0..if info.gpus.is_null() { 0 } else { info.ngpus } {
            let d = &mut *info.gpus.add(i);
            for p in [
                d.model,
                d.uuid,
                d.busid,
                d.arch,
                d.brand,
                d.node.path,
                d.mig_caps_path,
            ] {
                cmem::free(p);
            }
            let migs = &d.mig_devices;
            for j in 0..if migs.devices.is_null() {
                0
            } else {
                migs.ndevices
            } {
                let m = &*migs.devices.add(j);
                cmem::free(m.uuid);
                cmem::free(m.gi_caps_path);
                cmem::free(m.ci_caps_path);
            }
            cmem::free(migs.devices);
        }
        cmem::free(info.gpus);
    }
}

pub(crate) extern "C" fn device_info_free(info: *mut nvc_device_info) {
    guard((), || {
        let mut registry = lock();
        if registry.device_infos.remove(&(info as usize)).is_some() {
            // SAFETY: registered, so made by `device_info` and live; unregistered now.
            unsafe {
                release_device_info(info);
                registry.retire(info);
            }
        }
    });
}

/// How MIG capabilities are exposed: as `/dev/nvidia-caps` nodes when the `nvidia-caps`
/// major exists, else through `/proc` when its capability files do.
pub(crate) extern "C" fn nvcaps_style() -> c_int {
    guard(NVCAPS_STYLE_NONE, || {
        let devices = std::fs::read_to_string("/proc/devices").unwrap_or_default();
        if nvc_driver::procfs::char_major(&devices, "nvidia-caps").is_some() {
            NVCAPS_STYLE_DEV
        } else if Path::new(nvc_driver::CAPS_DIR).exists() {
            NVCAPS_STYLE_PROC
        } else {
            NVCAPS_STYLE_NONE
        }
    })
}

/// The `/dev/nvidia-caps` node of a capability file (`/proc/driver/nvidia/capabilities/...`,
/// read inside the driver root): `node->path` is `malloc`ed, the caller frees it.
pub(crate) extern "C" fn nvcaps_device_from_proc_path(
    ctx: *mut nvc_context,
    cap_path: *const c_char,
    node: *mut nvc_device_node,
) -> c_int {
    let done = call(ctx, true, |state| {
        // SAFETY: NULL or a NUL-terminated string.
        let cap = unsafe { cmem::read(cap_path) }.ok_or_else(Failure::invalid_argument)?;
        if node.is_null() {
            return Err(Failure::invalid_argument());
        }
        let driver = &context::initialized(state)?.driver;
        let cap = String::from_utf8_lossy(cap).into_owned();
        let file = driver.root().join(cap.trim_start_matches('/'));
        let text = read_small(&file)
            .map_err(|e| Failure::new(format!("open failed: {}: {e}", file.display())))?;
        let minor = nvc_driver::procfs::cap_device_minor(&text)
            .ok_or_else(|| Failure::new(format!("invalid device minor number: {cap}")))?;
        let major =
            driver.info().files.caps_major.ok_or_else(|| {
                Failure::new("invalid device major number: no nvidia-caps device")
            })?;
        let path = cmem::string(format!("/dev/nvidia-caps/nvidia-cap{minor}").as_bytes())?;
        // SAFETY: `node` is non-NULL and points to a node, as the caller promises.
        unsafe {
            (*node).path = path;
            (*node).id = libc::makedev(major, minor);
        }
        Ok(())
    });
    if done.is_some() { 0 } else { -1 }
}

fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(CAP_FILE_LIMIT)
        .read_to_string(&mut text)?;
    Ok(text)
}
