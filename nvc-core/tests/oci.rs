//! The OCI hook flow's reading of the runtime state, the bundle and the image environment
//! (feature `oci`; no privileges needed).
#![cfg(feature = "oci")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use nvc_core::Capability::{Compute, Graphics, Utility};
use nvc_core::oci::{self, GpuRequest, HookOptions};
use nvc_core::{Devices, ErrorKind};

mod common;

/// A bundle whose `config.json` has `root.path` = `root` and `process.env` = `env`.
fn bundle(root: &str, env: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.2.0",
        "root": { "path": root },
        "process": { "env": env, "args": ["sh"], "cwd": "/", "user": { "uid": 0, "gid": 0 } },
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

fn state(pid: i64, bundle: &Path) -> String {
    serde_json::json!({
        "ociVersion": "1.2.0", "id": "c1", "status": "creating",
        "pid": pid, "bundle": bundle,
    })
    .to_string()
}

fn request(env: &[&str]) -> Result<Option<GpuRequest>, nvc_core::Error> {
    let b = bundle("rootfs", env);
    oci::request(&oci::read_spec(b.path())?)
}

#[test]
fn the_state_and_bundle_are_read() {
    let b = bundle(
        "rootfs",
        &["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=0,1", "EMPTY"],
    );
    let st = oci::read_state(state(42, b.path()).as_bytes()).unwrap();
    assert_eq!(*st.pid(), Some(42));
    let spec = oci::read_spec(st.bundle()).unwrap();
    assert_eq!(
        oci::rootfs(st.bundle(), &spec).unwrap(),
        b.path().join("rootfs")
    );
    let abs = bundle("/abs/rootfs", &[]);
    let spec = oci::read_spec(abs.path()).unwrap();
    assert_eq!(
        oci::rootfs(abs.path(), &spec).unwrap(),
        Path::new("/abs/rootfs")
    );

    let err = |s: &str| oci::read_state(s.as_bytes()).unwrap_err().to_string();
    assert!(
        err("{").starts_with("input error: invalid OCI state: "),
        "{}",
        err("{")
    );
    assert_eq!(err(r#"{"bundle": "/x"}"#), "input error: OCI state: no pid");
    assert_eq!(
        err(r#"{"pid": -1, "bundle": "/x"}"#),
        "input error: OCI state: pid is not a process id"
    );
    let e = oci::read_spec(Path::new("/nonexistent")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadInput);
    assert!(
        e.to_string()
            .starts_with("input error: cannot read /nonexistent/config.json"),
        "{e}"
    );
    let no_root = tempfile::tempdir().unwrap();
    std::fs::write(no_root.path().join("config.json"), "{}").unwrap();
    let spec = oci::read_spec(no_root.path()).unwrap();
    let e = oci::rootfs(no_root.path(), &spec).unwrap_err();
    assert!(e.to_string().ends_with("config.json: no root.path"), "{e}");
    // Inputs are capped.
    let huge = vec![b' '; (1 << 20) + 1];
    let e = oci::read_state(&huge[..]).unwrap_err();
    assert!(e.to_string().contains("larger than 1048576 bytes"), "{e}");
}

#[test]
fn the_image_environment_is_read_as_the_toolkit_does() {
    let devices = |s: &str| s.parse::<Devices>().unwrap();
    let text = |r: &GpuRequest| {
        r.requirements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    // No GPU asked for.
    assert_eq!(request(&[]).unwrap(), None);
    assert_eq!(request(&["NVIDIA_VISIBLE_DEVICES=void"]).unwrap(), None);
    assert_eq!(request(&["NVIDIA_VISIBLE_DEVICES="]).unwrap(), None);
    // Defaults: utility + compute.
    let r = request(&["NVIDIA_VISIBLE_DEVICES=all"]).unwrap().unwrap();
    assert_eq!(r.devices, Devices::all());
    assert_eq!(r.capabilities, [Utility, Compute]);
    assert!(r.requirements.is_empty() && !r.compat32);
    // Legacy CUDA image: all devices, a cuda>= requirement from CUDA_VERSION.
    let r = request(&["CUDA_VERSION=12.4.1"]).unwrap().unwrap();
    assert_eq!(r.devices, Devices::all());
    assert_eq!(text(&r), ["cuda>=12.4"]);
    let r = request(&[
        "NVIDIA_VISIBLE_DEVICES=none",
        "NVIDIA_DRIVER_CAPABILITIES=graphics,utility",
        "NVIDIA_REQUIRE_CUDA=cuda>=12.0",
        "NVIDIA_REQUIRE_ARCH=arch>=8.0",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(r.devices, devices("none"));
    assert_eq!(r.capabilities, [Graphics, Utility]);
    assert_eq!(text(&r), ["arch>=8.0", "cuda>=12.0"]);
    let r = request(&[
        "NVIDIA_VISIBLE_DEVICES=0",
        "NVIDIA_DRIVER_CAPABILITIES=all",
        "NVIDIA_REQUIRE_CUDA=cuda>=99",
        "NVIDIA_DISABLE_REQUIRE=true",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(r.capabilities.len(), 6);
    assert!(r.requirements.is_empty());
    // `all` includes the 32-bit libraries, as the toolkit's list does.
    assert!(r.compat32);
    // `compat32` is a capability of the toolkit's, nvc's `compat32` switch.
    let r = request(&[
        "NVIDIA_VISIBLE_DEVICES=0",
        "NVIDIA_DRIVER_CAPABILITIES=compute,compat32",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(r.capabilities, [Compute]);
    assert!(r.compat32);
    let e = request(&[
        "NVIDIA_VISIBLE_DEVICES=0",
        "NVIDIA_DRIVER_CAPABILITIES=compute,warp",
    ])
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "input error: unknown driver capability \"warp\" in NVIDIA_DRIVER_CAPABILITIES"
    );
    // Bad lists and requirements fail when read, naming themselves.
    let e = request(&["NVIDIA_VISIBLE_DEVICES=0,sda"]).unwrap_err();
    assert_eq!(e.to_string(), "device error: sda: unknown device");
    let e = request(&["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_X=cuda>>1"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadInput);
}

#[test]
fn unprivileged_images_can_be_denied_the_environment() {
    let unprivileged = bundle("rootfs", &["NVIDIA_VISIBLE_DEVICES=all"]);
    let spec = oci::read_spec(unprivileged.path()).unwrap();
    assert!(!oci::privileged(&spec));
    let privileged = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "root": { "path": "rootfs" },
        "process": { "env": ["NVIDIA_VISIBLE_DEVICES=all"], "cwd": "/", "user": { "uid": 0, "gid": 0 },
                     "capabilities": { "bounding": ["CAP_CHOWN", "CAP_SYS_ADMIN"] } },
    });
    std::fs::write(privileged.path().join("config.json"), config.to_string()).unwrap();
    assert!(oci::privileged(&oci::read_spec(privileged.path()).unwrap()));

    // With the opt-out, the unprivileged image's request is ignored before anything else
    // (the pid here exists nowhere).
    let dir = tempfile::tempdir().unwrap();
    let _host = nvc_testkit::Host::build(
        &nvc_testkit::Scenario::builtin("single").unwrap(),
        dir.path(),
    )
    .unwrap();
    let driver = common::driver(dir.path());
    let st = oci::read_state(state(i64::from(i32::MAX), unprivileged.path()).as_bytes()).unwrap();
    let opts = HookOptions {
        envvar_when_unprivileged: false,
        ..HookOptions::default()
    };
    assert!(driver.configure_oci(&st, &spec, &opts).unwrap().is_none());
    // Honoured, it goes on to the container, which does not exist.
    let e = driver
        .configure_oci(&st, &spec, &HookOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoContainer, "{e}");
}

/// `nvc-cdi inject` (and any `write_spec`) replaces `config.json` atomically and keeps its
/// mode and owner: a bundle private to its runtime's user stays private.
#[test]
fn a_rewritten_config_keeps_its_mode_and_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let b = bundle("rootfs", &["PATH=/bin"]);
    let config = b.path().join("config.json");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Another owner where the test may set one (root).
    let root = std::os::unix::fs::chown(&config, Some(1234), Some(5678)).is_ok();
    let spec = oci::read_spec(b.path()).unwrap();
    oci::write_spec(b.path(), &spec).unwrap();
    let meta = std::fs::metadata(&config).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    if root {
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    }
    assert_eq!(oci::read_spec(b.path()).unwrap(), spec);
}

/// A rewrite keeps what oci-spec's types do not know: a newer runtime-spec's fields, an
/// engine's extensions, at the top and nested; what the spec changed is the spec's.
#[test]
fn a_rewritten_config_keeps_the_fields_nvc_does_not_know() {
    let b = bundle("rootfs", &["PATH=/bin"]);
    let config = b.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    json["x-engine"] = serde_json::json!({ "keep": [1, 2] });
    json["linux"]["netDevices"] = serde_json::json!({ "eth9": { "name": "eth9" } });
    json["process"]["x-new"] = true.into();
    std::fs::write(&config, json.to_string()).unwrap();
    let mut spec = oci::read_spec(b.path()).unwrap();
    let mut env = spec.process().as_ref().unwrap().env().clone().unwrap();
    env.push("NVIDIA_VISIBLE_DEVICES=void".into());
    spec.process_mut().as_mut().unwrap().set_env(Some(env));
    oci::write_spec(b.path(), &spec).unwrap();
    let back: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(back["x-engine"], json["x-engine"]);
    assert_eq!(back["linux"]["netDevices"], json["linux"]["netDevices"]);
    assert_eq!(back["process"]["x-new"], true);
    assert_eq!(
        back["process"]["env"],
        serde_json::json!(["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=void"])
    );
    assert_eq!(oci::read_spec(b.path()).unwrap(), spec);
}
