//! Compiles the fake `libnvidia-ml.so.1` (`fake-nvml/nvml.rs`, no dependencies) with the
//! same rustc, so that `Host::build` can install it; its path is `NVC_FAKE_NVML`.

#![allow(clippy::expect_used)] // a build script reports failure by panicking

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = PathBuf::from("fake-nvml/nvml.rs");
    println!("cargo::rerun-if-changed={}", src.display());
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("libnvidia-ml.so");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "cdylib",
            "--crate-name",
            "nvidia_ml",
        ])
        .args([
            "-C",
            "opt-level=2",
            "-C",
            "strip=debuginfo",
            "-C",
            "panic=abort",
        ])
        .args(["-C", "link-arg=-Wl,-soname,libnvidia-ml.so.1"])
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run rustc for the fake NVML library");
    assert!(status.success(), "building the fake NVML library failed");
    println!("cargo::rustc-env=NVC_FAKE_NVML={}", out.display());
}
