//! `nvc-cdi generate` and `list` on a simulated host (no privileges needed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use nvc_testkit::{Host, Scenario};

fn nvc_cdi(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nvc-cdi"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_generated_spec_is_written_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let _host = Host::build(&Scenario::builtin("dgx").unwrap(), dir.path()).unwrap();
    let cdi_dir = tempfile::tempdir().unwrap();
    let out_file = cdi_dir.path().join("nvidia.json");
    let root = dir.path().to_str().unwrap();
    let out = nvc_cdi(&[
        "generate",
        "--driver-root",
        root,
        "--device-name-strategy=uuid",
        "--device-name-strategy",
        "index",
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = nvc_cdi(&["list", "--spec-dir", cdi_dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Eight by UUID, eight by index, and all.
    assert_eq!(lines.len(), 17, "{text}");
    assert!(lines[0].starts_with("nvidia.com/gpu=GPU-"), "{text}");
    assert_eq!(lines[8], "nvidia.com/gpu=0");
    assert_eq!(lines[16], "nvidia.com/gpu=all");

    // Bad input names itself.
    let out = nvc_cdi(&[
        "generate",
        "--driver-root",
        root,
        "--device-name-strategy=bus",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid device name strategy \"bus\""));
    let out = nvc_cdi(&["generate", "--driver-root", root, "--vendor", "nvidia..com"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid kind"));
}

#[test]
fn the_library_search_path_adds_libraries_the_cache_misses() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin("single").unwrap(), dir.path()).unwrap();
    let file = format!(
        "libnvidia-ptxjitcompiler.so.{}",
        host.scenario().driver_version
    );
    let extra = dir.path().join("opt/nvidia/lib");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::rename(
        dir.path().join("usr/lib/x86_64-linux-gnu").join(&file),
        extra.join(&file),
    )
    .unwrap();
    let root = dir.path().to_str().unwrap();
    let moved = format!("\"/opt/nvidia/lib/{file}\"");

    let out = nvc_cdi(&["generate", "--driver-root", root]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&moved));

    let out = nvc_cdi(&[
        "generate",
        "--driver-root",
        root,
        "--library-search-path",
        "/nonexistent:/opt/nvidia/lib",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Mounted at the same path in the container, as every driver library, and its directory
    // is in the update-ldcache hook's folders with the usual one.
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("\"containerPath\": {moved}")),
        "{text}"
    );
    let spec =
        nvc_core::cdi::Spec::from_bytes(text.as_bytes(), nvc_core::cdi::Format::Json).unwrap();
    let update = spec
        .container_edits
        .hooks
        .iter()
        .find(|h| h.args.get(1).is_some_and(|a| a == "update-ldcache"))
        .unwrap();
    assert_eq!(
        update.args[3..],
        [
            "--folder",
            "/usr/lib/x86_64-linux-gnu",
            "--folder",
            "/opt/nvidia/lib"
        ],
        "{text}"
    );
}
