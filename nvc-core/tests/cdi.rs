//! CDI specs generated for simulated hosts (feature `cdi`): names, nodes, mounts, version,
//! validation, atomic writes.
#![cfg(feature = "cdi")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use nvc_core::cdi::{self, CdiOptions, DeviceNameStrategy, Spec};
use nvc_core::{Driver, ErrorKind};
use nvc_testkit::{Host, Scenario};

mod common;

fn driver(name: &str) -> (tempfile::TempDir, Host, Driver) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin(name).unwrap(), dir.path()).unwrap();
    let driver = common::driver(dir.path());
    (dir, host, driver)
}

fn names(spec: &Spec) -> Vec<&str> {
    spec.devices.iter().map(|d| d.name.as_str()).collect()
}

#[test]
fn a_dgx_spec_names_every_gpu_and_carries_the_driver() {
    let (dir, host, driver) = driver("dgx");
    let spec = driver.cdi_spec(&CdiOptions::default()).unwrap();
    // Names starting with a digit need CDI 0.5.0 (as do host paths): the version podman 4.3
    // still reads.
    assert_eq!(spec.cdi_version, "0.5.0");
    assert_eq!(spec.kind, "nvidia.com/gpu");
    // By index and by UUID (nvidia-ctk 1.17's default), then `all`.
    let mut want: Vec<String> = (0..8).map(|i| i.to_string()).collect();
    want.extend(host.scenario().gpus.iter().map(|g| g.uuid.clone()));
    want.push("all".into());
    assert_eq!(names(&spec), want);
    let root = dir.path();
    for (i, g) in host.scenario().gpus.iter().enumerate() {
        let nodes = &spec.devices[i].container_edits.device_nodes;
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].path, Path::new(&format!("/dev/nvidia{}", g.minor)));
        assert_eq!(
            nodes[0].host_path.as_deref(),
            Some(root.join(format!("dev/nvidia{}", g.minor)).as_path())
        );
    }
    assert_eq!(spec.devices[16].container_edits.device_nodes.len(), 8);
    // A UUID name carries the same node as its index name.
    assert_eq!(
        spec.devices[8].container_edits,
        spec.devices[0].container_edits
    );
    let common = &spec.container_edits;
    assert_eq!(common.env, ["NVIDIA_VISIBLE_DEVICES=void"]);
    let paths: Vec<&Path> = common
        .device_nodes
        .iter()
        .map(|n| n.path.as_path())
        .collect();
    assert!(paths.contains(&Path::new("/dev/nvidiactl")), "{paths:?}");
    assert!(paths.contains(&Path::new("/dev/nvidia-uvm")), "{paths:?}");
    let libcuda = common
        .mounts
        .iter()
        .find(|m| m.container_path.ends_with("libcuda.so.550.54.14"))
        .unwrap();
    assert_eq!(
        libcuda.host_path,
        root.join(libcuda.container_path.strip_prefix("/").unwrap())
    );
    assert_eq!(libcuda.options, ["ro", "nosuid", "nodev", "bind"]);
    let socket = common
        .mounts
        .iter()
        .find(|m| m.container_path.ends_with("nvidia-persistenced/socket"))
        .unwrap();
    assert!(!socket.options.contains(&"ro".to_owned()));
    // The development links first, then the linker cache; both before the image runs.
    assert_eq!(common.hooks.len(), 2);
    assert!(common.hooks.iter().all(|h| h.hook_name == "createRuntime"));
    assert_eq!(
        common.hooks[0].args,
        [
            "nvc-hook",
            "create-symlinks",
            "--link",
            "libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so",
            "--link",
            "libnvidia-opticalflow.so.1::/usr/lib/x86_64-linux-gnu/libnvidia-opticalflow.so",
            "--link",
            "../libnvidia-allocator.so.1::/usr/lib/x86_64-linux-gnu/gbm/nvidia-drm_gbm.so"
        ]
    );
    assert_eq!(
        common.hooks[1].args,
        [
            "nvc-hook",
            "update-ldcache",
            "--host-driver-version=550.54.14",
            "--folder",
            "/usr/lib/x86_64-linux-gnu"
        ]
    );
    // JSON round trip.
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains(r#""cdiVersion":"0.5.0""#), "{json}");
    assert!(json.contains(r#""containerEdits""#));
    assert!(!json.contains("annotations"), "empty fields are left out");
    assert_eq!(serde_json::from_str::<Spec>(&json).unwrap(), spec);
}

#[test]
fn mig_devices_and_naming_strategies() {
    let (_dir, _host, driver) = driver("mig");
    let opts = CdiOptions {
        names: vec![DeviceNameStrategy::TypeIndex, DeviceNameStrategy::Uuid],
        dev_root: Some("/".into()),
        hook: None,
        ..CdiOptions::default()
    };
    let spec = driver.cdi_spec(&opts).unwrap();
    // No name starts with a digit, no host path: the mounts' type (bind) is the newest
    // thing, CDI 0.4.0.
    assert_eq!(spec.cdi_version, "0.4.0");
    let n = names(&spec);
    assert_eq!(&n[..5], ["gpu0", "mig0:0", "mig0:1", "mig0:2", "gpu1"]);
    assert!(n.iter().any(|s| s.starts_with("GPU-")));
    assert!(n.iter().any(|s| s.starts_with("MIG-")));
    assert_eq!(n.last(), Some(&"all"));
    // A MIG device: its parent's node and its GPU- and compute-instance capability nodes.
    let mig = &spec.devices[1].container_edits.device_nodes;
    assert_eq!(mig.len(), 3);
    assert_eq!(mig[0].path, Path::new("/dev/nvidia0"));
    assert!(mig[1].path.starts_with("/dev/nvidia-caps"));
    assert!(spec.container_edits.hooks.is_empty());
    // A dot in the class needs 0.6.0.
    let dotted = CdiOptions {
        class: "gpu.mig".into(),
        ..opts.clone()
    };
    assert_eq!(driver.cdi_spec(&dotted).unwrap().cdi_version, "0.6.0");
    // Bad input is refused, naming it.
    let bad = CdiOptions {
        vendor: "-nvidia.com".into(),
        ..opts
    };
    let err = driver.cdi_spec(&bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    assert!(
        err.to_string().contains("invalid kind \"-nvidia.com/gpu\""),
        "{err}"
    );
    "bus-id".parse::<DeviceNameStrategy>().unwrap_err();
}

#[test]
fn validation_catches_what_consumers_refuse() {
    let (_dir, _host, driver) = driver("single");
    let good = driver.cdi_spec(&CdiOptions::default()).unwrap();
    let check = |edit: &dyn Fn(&mut Spec), want: &str| {
        let mut s = good.clone();
        edit(&mut s);
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains(want), "{err} (wanted {want})");
    };
    check(&|s| s.cdi_version = "0.3.0".into(), "too old");
    check(&|s| s.cdi_version = "1.0".into(), "unknown cdiVersion");
    check(&|s| s.devices[0].name = "0/1".into(), "invalid device name");
    check(&|s| s.devices[1].name = "0".into(), "defined twice");
    check(&|s| s.devices.clear(), "no device");
    check(
        &|s| s.container_edits.mounts[0].container_path = "relative".into(),
        "absolute",
    );
    check(
        &|s| s.container_edits.hooks[0].hook_name = "prestop".into(),
        "unknown hook name",
    );
    check(&|s| s.container_edits.env.push("=x".into()), "NAME=VALUE");
    check(
        &|s| s.devices[0].container_edits.device_nodes[0].permissions = Some("rx".into()),
        "invalid permissions",
    );
}

#[test]
fn specs_are_written_whole_or_not_at_all() {
    let (_dir, _host, driver) = driver("single");
    let spec = driver.cdi_spec(&CdiOptions::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("nvidia.json");
    std::fs::write(&path, "the old spec").unwrap();
    cdi::write(&spec, &path).unwrap();
    let back: Spec = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(back, spec);
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        1,
        "no temporary left"
    );
    // An invalid spec is not written; the file keeps what it had.
    let mut bad = spec.clone();
    bad.kind = "nvidia".into();
    let err = cdi::write(&bad, &path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    assert_eq!(
        serde_json::from_slice::<Spec>(&std::fs::read(&path).unwrap()).unwrap(),
        spec
    );
    // A directory that does not exist yet (`/var/run/cdi` after boot) is made.
    let nested = out.path().join("run/cdi/nvidia.json");
    cdi::write(&spec, &nested).unwrap();
    assert_eq!(
        serde_json::from_slice::<Spec>(&std::fs::read(&nested).unwrap()).unwrap(),
        spec
    );
    // One that cannot be made: an error naming it, nothing left behind.
    let err = cdi::write(&spec, &path.join("cdi/nvidia.json")).unwrap_err();
    assert!(err.to_string().contains("nvidia.json/cdi"), "{err}");
    assert_eq!(err.os_error(), Some(libc::ENOTDIR));
}
