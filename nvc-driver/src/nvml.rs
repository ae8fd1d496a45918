//! GPU facts from NVML (through `nvml-wrapper`), snapshot into owned data; no NVML type
//! leaves this module.
//!
//! Every probe runs on its own thread and the caller waits at most the configured timeout:
//! NVML can block for a long time (many GPUs without persistence mode, a wedged GPU), and a
//! container runtime must not hang with it. A probe that times out is abandoned: its thread
//! stays blocked in NVML until NVML returns. Running it in a separate, killable, chrooted
//! and unprivileged helper process instead is the planned next step (upstream's design).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use crate::{Error, Gpu, MigDevice, PciBusId};

/// The default NVML timeout (upstream's per-call RPC timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable that overrides the NVML timeout, in seconds.
pub const TIMEOUT_ENV: &str = "NVC_NVML_TIMEOUT";

/// What NVML says about the driver and its GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlInfo {
    /// `nvmlSystemGetDriverVersion`.
    pub nvrm_version: String,
    /// `nvmlSystemGetCudaDriverVersion` as `major.minor`.
    pub cuda_version: String,
    /// The GPUs, in NVML index order.
    pub gpus: Vec<Gpu>,
}

/// The call a probe is in, for the timeout message.
type Current = Arc<Mutex<&'static str>>;

fn nvml_err(call: &'static str) -> impl Fn(NvmlError) -> Error {
    move |e| Error::Nvml {
        call,
        message: e.to_string(),
    }
}

fn enter(current: &Current, call: &'static str) {
    if let Ok(mut c) = current.lock() {
        *c = call;
    }
}

/// Upstream's brand names.
fn brand_name(brand: u32) -> &'static str {
    match brand {
        1 => "Quadro",
        2 => "Tesla",
        3 => "NVS",
        4 => "GRID",
        5 => "GeForce",
        6 => "TITAN",
        _ => "Unknown",
    }
}

/// Loads `library` and reads versions and GPUs, giving up after `timeout`.
///
/// # Errors
///
/// [`Error::Nvml`] naming the failed call and NVML's message (a library that cannot be
/// loaded is `nvmlInit`'s failure), or [`Error::NvmlTimeout`] naming the call that did not
/// return in time.
pub fn probe(library: &Path, timeout: Duration) -> Result<NvmlInfo, Error> {
    let current: Current = Arc::new(Mutex::new("nvmlInit"));
    let (tx, rx) = mpsc::channel();
    let library: PathBuf = library.to_path_buf();
    let worker_current = Arc::clone(&current);
    std::thread::Builder::new()
        .name("nvc-nvml".into())
        .spawn(move || {
            let _ = tx.send(probe_now(&library, &worker_current));
        })
        .map_err(|e| Error::Nvml {
            call: "spawn",
            message: e.to_string(),
        })?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(_) => Err(Error::NvmlTimeout {
            call: current.lock().map(|c| *c).unwrap_or("NVML"),
            timeout,
        }),
    }
}

fn probe_now(library: &Path, current: &Current) -> Result<NvmlInfo, Error> {
    enter(current, "nvmlInit");
    let nvml = Nvml::builder()
        .lib_path(library.as_os_str())
        .init()
        .map_err(nvml_err("nvmlInit"))?;
    enter(current, "nvmlSystemGetDriverVersion");
    let nvrm_version = nvml
        .sys_driver_version()
        .map_err(nvml_err("nvmlSystemGetDriverVersion"))?;
    enter(current, "nvmlSystemGetCudaDriverVersion");
    let cuda = nvml
        .sys_cuda_driver_version()
        .map_err(nvml_err("nvmlSystemGetCudaDriverVersion"))?;
    let cuda_version = format!("{}.{}", cuda / 1000, (cuda % 100) / 10);
    enter(current, "nvmlDeviceGetCount");
    let count = nvml
        .device_count()
        .map_err(nvml_err("nvmlDeviceGetCount"))?;
    let mut gpus = Vec::new();
    for index in 0..count {
        gpus.push(gpu(&nvml, index, current)?);
    }
    Ok(NvmlInfo {
        nvrm_version,
        cuda_version,
        gpus,
    })
}

fn gpu(nvml: &Nvml, index: u32, current: &Current) -> Result<Gpu, Error> {
    enter(current, "nvmlDeviceGetHandleByIndex");
    let d = nvml
        .device_by_index(index)
        .map_err(nvml_err("nvmlDeviceGetHandleByIndex"))?;
    enter(current, "nvmlDeviceGetMinorNumber");
    let minor = d
        .minor_number()
        .map_err(nvml_err("nvmlDeviceGetMinorNumber"))?;
    enter(current, "nvmlDeviceGetPciInfo");
    let pci = d.pci_info().map_err(nvml_err("nvmlDeviceGetPciInfo"))?;
    let byte = |v: u32, what: &'static str| {
        u8::try_from(v).map_err(|_| Error::Nvml {
            call: "nvmlDeviceGetPciInfo",
            message: format!("{what} {v} is out of range"),
        })
    };
    let bus_id = PciBusId {
        domain: pci.domain,
        bus: byte(pci.bus, "bus")?,
        device: byte(pci.device, "device")?,
    };
    enter(current, "nvmlDeviceGetUUID");
    let uuid = d.uuid().map_err(nvml_err("nvmlDeviceGetUUID"))?;
    enter(current, "nvmlDeviceGetName");
    let model = d.name().map_err(nvml_err("nvmlDeviceGetName"))?;
    enter(current, "nvmlDeviceGetBrand");
    let brand = brand_name(d.brand().map_err(nvml_err("nvmlDeviceGetBrand"))?.as_c()).to_owned();
    enter(current, "nvmlDeviceGetCudaComputeCapability");
    let cc = d
        .cuda_compute_capability()
        .map_err(nvml_err("nvmlDeviceGetCudaComputeCapability"))?;
    enter(current, "nvmlDeviceGetMigMode");
    let mig_enabled = match d.mig_mode() {
        Ok(m) => m.current == 1 && m.pending == 1,
        Err(
            NvmlError::NotSupported
            | NvmlError::FunctionNotFound
            | NvmlError::FailedToLoadSymbol(_),
        ) => false,
        Err(e) => return Err(nvml_err("nvmlDeviceGetMigMode")(e)),
    };
    let mut mig_devices = Vec::new();
    if mig_enabled {
        enter(current, "nvmlDeviceGetMaxMigDeviceCount");
        let max = d
            .mig_device_count()
            .map_err(nvml_err("nvmlDeviceGetMaxMigDeviceCount"))?;
        for mig_index in 0..max {
            enter(current, "nvmlDeviceGetMigDeviceHandleByIndex");
            let m = match d.mig_device_by_index(mig_index) {
                Ok(m) => m,
                // The first gap ends the list, as upstream.
                Err(NvmlError::NotFound) => break,
                Err(e) => return Err(nvml_err("nvmlDeviceGetMigDeviceHandleByIndex")(e)),
            };
            enter(current, "nvmlDeviceGetGpuInstanceId");
            let (gi, ci) = instance_ids(nvml, &m)?;
            enter(current, "nvmlDeviceGetUUID");
            mig_devices.push(MigDevice {
                index: mig_index,
                gi,
                ci,
                uuid: m.uuid().map_err(nvml_err("nvmlDeviceGetUUID"))?,
            });
        }
    }
    Ok(Gpu {
        index,
        minor,
        uuid,
        bus_id,
        model,
        brand,
        architecture: format!("{}.{}", cc.major, cc.minor),
        mig_devices,
    })
}

/// GPU and compute instance ids of a MIG device, which nvml-wrapper does not wrap: the one
/// raw NVML call of nvc.
#[allow(unsafe_code)]
fn instance_ids(nvml: &Nvml, mig: &nvml_wrapper::Device<'_>) -> Result<(u32, u32), Error> {
    let (mut gi, mut ci) = (0u32, 0u32);
    let lib = nvml.lib();
    let (Ok(gi_fn), Ok(ci_fn)) = (
        lib.nvmlDeviceGetGpuInstanceId.as_ref(),
        lib.nvmlDeviceGetComputeInstanceId.as_ref(),
    ) else {
        return Err(Error::Nvml {
            call: "nvmlDeviceGetGpuInstanceId",
            message: "the NVML library lacks the MIG instance calls".into(),
        });
    };
    // SAFETY: `mig` is a live handle of `nvml` (it borrows it), the symbols were resolved
    // from the same library, and both out pointers are valid, writable u32s.
    let (r_gi, r_ci) = unsafe { (gi_fn(mig.handle(), &mut gi), ci_fn(mig.handle(), &mut ci)) };
    for (call, code) in [
        ("nvmlDeviceGetGpuInstanceId", r_gi),
        ("nvmlDeviceGetComputeInstanceId", r_ci),
    ] {
        if code != 0 {
            return Err(Error::Nvml {
                call,
                message: NvmlError::from(code).to_string(),
            });
        }
    }
    Ok((gi, ci))
}
