//! Reading CDI directories (JSON and YAML) and applying a request's edits to an OCI spec, as
//! a CDI-aware runtime does (features `cdi`, `oci`, `yaml`).
#![cfg(all(feature = "cdi", feature = "oci", feature = "yaml"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use nvc_core::ErrorKind;
use nvc_core::cdi::{self, CdiOptions, Format, Registry, Spec};
use nvc_core::oci::oci_spec::runtime::{LinuxDeviceType, Spec as OciSpec};
use nvc_testkit::{Host, Scenario};

mod common;

/// The spec nvc generates for a scenario, with explicit node numbers (as the simulated
/// host's nodes exist only where the test may create them).
fn spec(scenario: &str) -> (tempfile::TempDir, Host, Spec) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin(scenario).unwrap(), dir.path()).unwrap();
    let driver = common::driver(dir.path());
    let mut spec = driver.cdi_spec(&CdiOptions::default()).unwrap();
    let numbered = |n: &mut cdi::DeviceNode| {
        let name = n.path.file_name().unwrap().to_str().unwrap().to_owned();
        let minor = name
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap_or(255);
        n.kind = Some("c".into());
        n.major = Some(195);
        n.minor = Some(minor);
    };
    spec.container_edits
        .device_nodes
        .iter_mut()
        .for_each(numbered);
    for d in &mut spec.devices {
        d.container_edits.device_nodes.iter_mut().for_each(numbered);
    }
    (dir, host, spec)
}

fn registry_of(spec: &Spec, file: &str) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    cdi::write(spec, &dir.path().join(file)).unwrap();
    let registry = Registry::load(&[dir.path()]).unwrap();
    (dir, registry)
}

fn env(oci: &OciSpec) -> Vec<String> {
    oci.process().as_ref().unwrap().env().clone().unwrap()
}

#[test]
fn one_gpu_gets_its_node_the_driver_and_the_hook() {
    let (_d, _h, spec) = spec("dgx");
    let (_c, registry) = registry_of(&spec, "nvidia.json");
    // Eight by index, eight by UUID (nvidia-ctk's default names), and `all`.
    assert_eq!(registry.devices().len(), 17);
    assert!(registry.devices().iter().any(|d| d == "nvidia.com/gpu=all"));
    let uuid = &_h.scenario().gpus[3].uuid;
    let (mut by_index, mut by_uuid) = (OciSpec::default(), OciSpec::default());
    registry
        .inject(&mut by_index, &["nvidia.com/gpu=3"])
        .unwrap();
    registry
        .inject(&mut by_uuid, &[format!("nvidia.com/gpu={uuid}").as_str()])
        .unwrap();
    assert_eq!(by_uuid, by_index);
    let mut oci = OciSpec::default();
    let before_mounts = oci.mounts().as_ref().unwrap().len();
    registry.inject(&mut oci, &["nvidia.com/gpu=3"]).unwrap();

    let linux = oci.linux().as_ref().unwrap();
    let nodes: Vec<(PathBuf, i64, i64)> = linux
        .devices()
        .as_ref()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d.typ(), LinuxDeviceType::C);
            (d.path().clone(), d.major(), d.minor())
        })
        .collect();
    // The control nodes (spec-wide), then GPU 3's own node, and no other GPU's.
    assert!(
        nodes.contains(&("/dev/nvidiactl".into(), 195, 255)),
        "{nodes:?}"
    );
    assert!(
        nodes.contains(&("/dev/nvidia3".into(), 195, 3)),
        "{nodes:?}"
    );
    assert!(!nodes.iter().any(|(p, _, _)| p == Path::new("/dev/nvidia2")));
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    assert!(rules.iter().any(|r| r.allow()
        && r.major() == Some(195)
        && r.minor() == Some(3)
        && r.access().as_deref() == Some("rwm")));

    let mounts = oci.mounts().as_ref().unwrap();
    assert!(mounts.len() > before_mounts);
    let libcuda = mounts
        .iter()
        .find(|m| m.destination().to_string_lossy().contains("libcuda.so."))
        .expect("libcuda is mounted");
    assert_eq!(libcuda.typ().as_deref(), Some("bind"));
    assert!(
        libcuda
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_owned())
    );
    // Parents first: no mount comes after one nested inside it.
    let depth = |p: &Path| p.components().count();
    assert!(
        mounts
            .windows(2)
            .all(|w| depth(w[0].destination()) <= depth(w[1].destination()))
    );

    let hooks = oci
        .hooks()
        .as_ref()
        .unwrap()
        .create_runtime()
        .as_ref()
        .unwrap();
    let names: Vec<&str> = hooks
        .iter()
        .map(|h| h.args().as_ref().unwrap()[1].as_str())
        .collect();
    assert_eq!(names, ["create-symlinks", "update-ldcache"]);
    assert!(env(&oci).contains(&"NVIDIA_VISIBLE_DEVICES=void".to_owned()));

    // Injecting again changes nothing more than once did (no duplicate nodes or mounts).
    let once = oci.clone();
    registry.inject(&mut oci, &["nvidia.com/gpu=3"]).unwrap();
    assert_eq!(
        oci.linux().as_ref().unwrap().devices(),
        once.linux().as_ref().unwrap().devices()
    );
    assert_eq!(oci.mounts(), once.mounts());
}

#[test]
fn all_brings_every_gpu_and_the_spec_edits_once() {
    let (_d, _h, spec) = spec("dgx");
    let (_c, registry) = registry_of(&spec, "nvidia.json");
    let mut oci = OciSpec::default();
    registry
        .inject(&mut oci, &["nvidia.com/gpu=all", "nvidia.com/gpu=0"])
        .unwrap();
    let devices = oci.linux().as_ref().unwrap().devices().clone().unwrap();
    for i in 0..8 {
        let path = PathBuf::from(format!("/dev/nvidia{i}"));
        assert_eq!(devices.iter().filter(|d| *d.path() == path).count(), 1);
    }
    let hooks = oci
        .hooks()
        .as_ref()
        .unwrap()
        .create_runtime()
        .clone()
        .unwrap();
    assert_eq!(hooks.len(), 2, "the spec's own edits apply once");
}

#[test]
fn yaml_specs_read_as_json_ones_and_later_directories_win() {
    let (_d, _h, spec) = spec("single");
    let yaml = spec.to_bytes(Format::Yaml).unwrap();
    assert!(
        String::from_utf8_lossy(&yaml).starts_with("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    );
    assert_eq!(Spec::from_bytes(&yaml, Format::Yaml).unwrap(), spec);

    // /etc/cdi has the spec as YAML; /var/run/cdi overrides device 0 with other edits.
    let etc = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    cdi::write(&spec, &etc.path().join("nvidia.yaml")).unwrap();
    let mut over = spec.clone();
    over.devices.retain(|d| d.name == "0");
    over.devices[0].container_edits.env = vec!["OVERRIDDEN=1".into()];
    cdi::write(&over, &run.path().join("nvidia.json")).unwrap();
    let registry = Registry::load(&[etc.path(), run.path()]).unwrap();
    let mut oci = OciSpec::default();
    registry.inject(&mut oci, &["nvidia.com/gpu=0"]).unwrap();
    assert!(env(&oci).contains(&"OVERRIDDEN=1".to_owned()));
    // A missing directory is empty, as for consumers.
    assert!(
        Registry::load(&["/nonexistent/cdi"])
            .unwrap()
            .devices()
            .is_empty()
    );
}

#[test]
fn bad_requests_and_bad_files_are_named_and_change_nothing() {
    let (_d, _h, spec) = spec("single");
    let (_c, registry) = registry_of(&spec, "nvidia.json");
    let mut oci = OciSpec::default();
    let before = oci.clone();
    for (name, says) in [
        (
            "nvidia.com/gpu=7",
            "unresolvable CDI device nvidia.com/gpu=7",
        ),
        ("gpu0", "not a qualified CDI device name"),
        ("amd.com/gpu=0", "unresolvable CDI device amd.com/gpu=0"),
    ] {
        let err = registry.inject(&mut oci, &[name]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(err.to_string().contains(says), "{err}");
        assert_eq!(oci, before);
    }
    // A node with no numbers whose host path is no device: an error, and nothing applied
    // (the mounts of the spec's edits came first and are not left behind).
    let mut broken = spec.clone();
    let node = &mut broken.devices[0].container_edits.device_nodes[0];
    node.major = None;
    node.host_path = Some("/etc/hostname".into());
    let registry = Registry::from_specs(vec![broken]);
    let err = registry
        .inject(&mut oci, &["nvidia.com/gpu=0"])
        .unwrap_err();
    assert!(
        err.to_string().contains("/etc/hostname: not a device node"),
        "{err}"
    );
    assert_eq!(oci, before);

    // Files that are no spec are named.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "cdiVersion: [").unwrap();
    let err = Registry::load(&[dir.path()]).unwrap_err();
    assert!(
        err.to_string().contains("broken.yaml: invalid CDI spec"),
        "{err}"
    );
    std::fs::write(dir.path().join("broken.yaml"), vec![b' '; 17 << 20]).unwrap();
    let err = Registry::load(&[dir.path()]).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}
