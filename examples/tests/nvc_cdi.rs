//! `nvc-cdi generate` and `list` on a simulated host (no privileges needed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
