//! nvml-wrapper, loading the fake `libnvidia-ml.so.1` exactly as it loads the real one, sees
//! every scenario field, and NVML's error paths behave like NVML's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nvc_testkit::driver_files::LIB64_DIR;
use nvc_testkit::{BUILTIN, Host, NvmlFaults, Scenario};
use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

fn host(s: &Scenario) -> (tempfile::TempDir, Host, OsString) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(s, dir.path()).unwrap();
    let lib: PathBuf = dir.path().join(LIB64_DIR).join("libnvidia-ml.so.1");
    (dir, host, lib.into_os_string())
}

fn init(lib: &OsString) -> Result<Nvml, NvmlError> {
    Nvml::builder().lib_path(lib).init()
}

#[test]
fn every_scenario_field_reads_back() {
    for name in BUILTIN {
        let s = Scenario::builtin(name).unwrap();
        let (_dir, _host, lib) = host(&s);
        let nvml = init(&lib).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(nvml.sys_driver_version().unwrap(), s.driver_version);
        assert_eq!(
            nvml.sys_cuda_driver_version().unwrap(),
            i32::try_from(s.cuda_version).unwrap()
        );
        assert_eq!(
            nvml.device_count().unwrap(),
            u32::try_from(s.gpus.len()).unwrap()
        );
        for g in &s.gpus {
            let d = nvml.device_by_index(g.index).unwrap();
            assert_eq!(d.uuid().unwrap(), g.uuid);
            assert_eq!(d.name().unwrap(), g.name);
            assert_eq!(d.minor_number().unwrap(), g.minor);
            assert_eq!(d.brand().unwrap().as_c(), g.brand);
            assert_eq!(d.architecture().unwrap().as_c(), g.architecture);
            let cc = d.cuda_compute_capability().unwrap();
            assert_eq!(
                (cc.major, cc.minor),
                (
                    i32::try_from(g.compute_capability.0).unwrap(),
                    i32::try_from(g.compute_capability.1).unwrap()
                )
            );
            let pci = d.pci_info().unwrap();
            assert_eq!(
                (pci.domain, pci.bus, pci.device),
                (g.pci.domain, u32::from(g.pci.bus), u32::from(g.pci.device))
            );
            assert_eq!(pci.bus_id.to_lowercase(), g.pci.bus_id());
            // Look-ups by UUID and by bus id (both spellings) find the same GPU.
            assert_eq!(
                nvml.device_by_uuid(g.uuid.as_str())
                    .unwrap()
                    .index()
                    .unwrap(),
                g.index
            );
            assert_eq!(
                nvml.device_by_pci_bus_id(g.pci.bus_id())
                    .unwrap()
                    .index()
                    .unwrap(),
                g.index
            );
            assert_eq!(
                nvml.device_by_pci_bus_id(g.pci.proc_name())
                    .unwrap()
                    .index()
                    .unwrap(),
                g.index
            );
            match g.mig_mode {
                None => assert!(matches!(d.mig_mode(), Err(NvmlError::NotSupported))),
                Some((current, pending)) => {
                    let m = d.mig_mode().unwrap();
                    assert_eq!(
                        (m.current, m.pending),
                        (u32::from(current), u32::from(pending))
                    );
                }
            }
            mig_devices_read_back(&nvml, &d, g);
        }
    }
}

fn mig_devices_read_back(nvml: &Nvml, d: &nvml_wrapper::Device<'_>, g: &nvc_testkit::Gpu) {
    if g.mig_mode != Some((true, true)) {
        return;
    }
    assert_eq!(d.mig_device_count().unwrap(), 7);
    for (i, m) in g.mig_devices.iter().enumerate() {
        let mig = d.mig_device_by_index(u32::try_from(i).unwrap()).unwrap();
        assert_eq!(mig.uuid().unwrap(), m.uuid);
        assert!(mig.mig_is_mig_device_handle().unwrap());
        assert_eq!(mig.mig_parent_device().unwrap().uuid().unwrap(), g.uuid);
        assert_eq!(
            nvml.device_by_uuid(m.uuid.as_str())
                .unwrap()
                .uuid()
                .unwrap(),
            m.uuid
        );
        // GPU/compute instance ids are not wrapped by nvml-wrapper: the one raw call.
        let (mut gi, mut ci) = (u32::MAX, u32::MAX);
        // SAFETY: `mig` is a live handle of `nvml`, and the out pointers are valid u32s.
        let (r1, r2) = unsafe {
            (
                nvml.lib().nvmlDeviceGetGpuInstanceId(mig.handle(), &mut gi),
                nvml.lib()
                    .nvmlDeviceGetComputeInstanceId(mig.handle(), &mut ci),
            )
        };
        assert_eq!((r1, r2, gi, ci), (0, 0, m.gi, m.ci));
    }
    // The first index past the last MIG device is NVML_ERROR_NOT_FOUND: the list ends there.
    let past = u32::try_from(g.mig_devices.len()).unwrap();
    assert!(matches!(
        d.mig_device_by_index(past),
        Err(NvmlError::NotFound)
    ));
}

#[test]
fn lookups_of_unknown_things_fail_like_nvml() {
    let s = Scenario::builtin("single").unwrap();
    let (_dir, _host, lib) = host(&s);
    let nvml = init(&lib).unwrap();
    assert!(matches!(
        nvml.device_by_index(1),
        Err(NvmlError::InvalidArg)
    ));
    assert!(matches!(
        nvml.device_by_uuid("GPU-00000000-0000-0000-0000-000000000000"),
        Err(NvmlError::NotFound)
    ));
    assert!(matches!(
        nvml.device_by_pci_bus_id("00000000:ff:00.0"),
        Err(NvmlError::NotFound)
    ));
    let d = nvml.device_by_index(0).unwrap();
    assert!(matches!(
        d.mig_device_by_index(0),
        Err(NvmlError::NotSupported)
    ));
    assert!(matches!(d.mig_parent_device(), Err(NvmlError::InvalidArg)));
}

#[test]
fn calls_before_init_are_uninitialized() {
    let s = Scenario::builtin("single").unwrap();
    let (_dir, _host, lib) = host(&s);
    // SAFETY: loading the fake library runs no initialisers with preconditions.
    let raw = unsafe { nvml_wrapper_sys::bindings::NvmlLib::new(&lib) }.unwrap();
    let mut count = 0u32;
    // SAFETY: valid out pointer; the library is loaded.
    assert_eq!(unsafe { raw.nvmlDeviceGetCount_v2(&mut count) }, 1); // NVML_ERROR_UNINITIALIZED
    // SAFETY: as above; init and shutdown are reference counted like NVML's.
    unsafe {
        assert_eq!(raw.nvmlInit_v2(), 0);
        assert_eq!(raw.nvmlDeviceGetCount_v2(&mut count), 0);
        assert_eq!(raw.nvmlShutdown(), 0);
        assert_eq!(raw.nvmlDeviceGetCount_v2(&mut count), 1);
        assert_eq!(raw.nvmlShutdown(), 1);
    }
    assert_eq!(count, 1);
}

#[test]
fn init_failures_and_hangs_are_injected() {
    let mut s = Scenario::builtin("single").unwrap();
    s.nvml_faults = NvmlFaults {
        init_result: 9, // NVML_ERROR_DRIVER_NOT_LOADED
        init_delay_ms: 0,
        ..NvmlFaults::default()
    };
    let (_dir, _host, lib) = host(&s);
    assert!(matches!(init(&lib), Err(NvmlError::DriverNotLoaded)));

    s.nvml_faults = NvmlFaults {
        init_result: 0,
        init_delay_ms: 300,
        ..NvmlFaults::default()
    };
    let (_dir, _host, lib) = host(&s);
    let start = Instant::now();
    init(&lib).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_host_without_nvml_has_no_library_to_load() {
    let mut s = Scenario::builtin("single").unwrap();
    s.files.nvml = false;
    let (_dir, _host, lib) = host(&s);
    assert!(matches!(init(&lib), Err(NvmlError::LibloadingError(_))));
}
