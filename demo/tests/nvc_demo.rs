//! `nvc-demo`, the README's first command: discovery, list and configure on a simulated host
//! where this machine has no NVIDIA driver (as root, a real configure).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn the_demo_runs_on_a_simulated_host_without_a_driver() {
    let out = Command::new(env!("CARGO_BIN_EXE_nvc-demo"))
        .args(["--scenario", "single"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    if text.starts_with("== no NVIDIA driver here") {
        assert!(text.contains("Model:          NVIDIA GeForce RTX 4090\n"));
        assert!(text.contains("/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14\n"));
        assert!(text.contains("bind ro,nosuid,noexec /dev/nvidia0 <- "));
        assert!(text.contains("ldconfig (host) /sbin/ldconfig "));
        // As root the configure really happens, ldconfig included.
        if nix::unistd::geteuid().is_root() {
            assert!(text.contains("== configured container "), "{text}");
            assert!(
                text.contains("libcuda.so.1 => /usr/lib/x86_64-linux-gnu/libcuda.so.1"),
                "{text}"
            );
        }
    }
}
