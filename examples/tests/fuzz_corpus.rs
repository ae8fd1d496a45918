//! Replays the fuzz targets over nvc's parsers of untrusted bytes on stable: the seeds
//! (`fuzz/seeds/<target>`, real inputs, each of which must be accepted), the promoted crash
//! inputs (`fuzz/regressions/<target>`) and, where a fuzzer has grown one here, its working
//! corpus (`fuzz/corpus/<target>`, not committed), through exactly the bodies the fuzzer runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[allow(dead_code)]
#[path = "../../fuzz/bodies/mod.rs"]
mod bodies;

use std::fs;
use std::path::{Path, PathBuf};

use nvc_core::cdi::{Format, Spec};

/// The inputs of `target` from `kind` (`seeds`, `regressions`, `corpus`), sorted.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.file_name().is_some_and(|n| n != ".keep"));
    files.sort();
    files
}

/// Runs every input of `target` through `body`; checks each seed with `accepted`.
fn replay(target: &str, body: fn(&[u8]), accepted: impl Fn(&Path, &[u8]) -> bool) {
    let seeds = inputs("seeds", target);
    assert!(seeds.len() >= 2, "{target}: seed corpus missing");
    for path in &seeds {
        let data = fs::read(path).unwrap();
        body(&data);
        assert!(accepted(path, &data), "seed {} is rejected", path.display());
    }
    for path in inputs("regressions", target) {
        body(&fs::read(path).unwrap());
    }
    // A fuzzer running meanwhile may remove an input it has just listed.
    for path in inputs("corpus", target) {
        if let Ok(data) = fs::read(path) {
            body(&data);
        }
    }
}

fn utf8(data: &[u8]) -> &str {
    std::str::from_utf8(data).unwrap()
}

#[test]
fn device_lists() {
    replay("device_list", bodies::device_list, |_, d| {
        nvc_driver::DeviceRequest::parse(utf8(d)).is_ok()
    });
}

#[test]
fn requirements() {
    replay("requirement", bodies::requirement, |_, d| {
        nvc_driver::Requirement::parse(utf8(d)).is_ok()
    });
}

#[test]
fn proc_cgroup_and_mountinfo() {
    replay("proc_cgroup", bodies::proc_cgroup, |_, d| {
        let at = d.iter().position(|b| *b == 0).unwrap();
        nvc_mount::cgroup::DeviceCgroup::parse(&d[..at], &d[at + 1..], Path::new("/")).is_ok()
    });
}

#[test]
fn driver_proc_files() {
    use nvc_driver::procfs::{
        cap_device_minor, char_major, gpu_information, mig_minors, nvrm_version,
    };
    replay("procfs", bodies::procfs, |path, d| {
        let text = utf8(d);
        let name = path.file_name().unwrap().to_str().unwrap();
        match name {
            n if n.starts_with("version") => nvrm_version(text).is_some(),
            "devices" => char_major(text, "nvidia-caps").is_some(),
            "devices-this-machine" => char_major(text, "mem") == Some(1),
            n if n.starts_with("capability") => cap_device_minor(text).is_some(),
            "mig-minors" => !mig_minors(text, 8).is_empty(),
            "information" => gpu_information(text).is_some(),
            other => panic!("a seed of unknown kind: {other}"),
        }
    });
}

#[test]
fn oci_states() {
    replay("oci_state", bodies::oci_state, |_, d| {
        nvc_core::oci::read_state(d).is_ok()
    });
}

#[test]
fn oci_configs() {
    replay("oci_config", bodies::oci_config, |_, d| {
        serde_json::from_slice::<nvc_core::oci::oci_spec::runtime::Spec>(d)
            .is_ok_and(|spec| nvc_core::oci::request(&spec).is_ok_and(|r| r.is_some()))
    });
}

#[test]
fn ld_so_confs() {
    replay("ld_so_conf", bodies::ld_so_conf, |_, d| {
        nvc_mount::ldconf::parse(d).is_ok()
    });
}

#[test]
fn cdi_specs() {
    replay("cdi_spec", bodies::cdi_spec, |path, d| {
        Spec::from_bytes(d, Format::of(path)).is_ok()
    });
}
