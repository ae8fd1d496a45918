//! `nvc-sim create` and `nvc-sim run`, as a user runs them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use nvc_testkit::{DeviceNodes, Host, Scenario};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nvc-sim"))
        .args(args)
        .output()
        .unwrap()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn mountinfo() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap()
}

#[test]
fn run_shows_the_scenario_in_dev_and_proc_and_leaves_the_host_alone() {
    if !is_root() {
        nvc_testkit::skip!("nvc-sim run needs root (private mount namespace)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin("mig").unwrap(), dir.path()).unwrap();
    assert_eq!(host.device_nodes_state(), &DeviceNodes::Created);
    let before = mountinfo();
    let root = dir.path().to_str().unwrap();

    // Every node, seen through the host's own /dev paths.
    let nodes = host.device_nodes();
    let paths: Vec<String> = nodes.iter().map(|n| format!("/{}", n.path)).collect();
    let mut args = vec!["run", root, "--", "stat", "-c", "%n %F %t:%T"];
    args.extend(paths.iter().map(String::as_str));
    let out = sim(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for (n, line) in nodes.iter().zip(text.lines()) {
        assert_eq!(
            line,
            format!(
                "/{} character special file {:x}:{:x}",
                n.path, n.major, n.minor
            )
        );
    }

    // /proc/driver/nvidia, nvidia-caps and /proc/devices are the scenario's; /dev/null still works.
    let out = sim(&[
        "run",
        root,
        "--",
        "sh",
        "-c",
        "cat /proc/driver/nvidia/version /proc/driver/nvidia/gpus/0000:07:00.0/information \
         /proc/driver/nvidia-caps/mig-minors /proc/devices; echo ok > /dev/null",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14"));
    assert!(text.contains(&host.scenario().gpus[0].uuid));
    assert!(text.contains("config 1\nmonitor 2\n"));
    assert!(text.contains(&format!("{} nvidia-uvm\n", host.majors().uvm)));

    // Nothing leaked into the host's namespace.
    assert_eq!(mountinfo(), before);
    assert!(
        !fs::read_to_string("/proc/devices")
            .unwrap()
            .contains(&format!("{} nvidia-uvm\n", host.majors().uvm))
    );
}

#[test]
fn run_without_privilege_says_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let _host = Host::build(&Scenario::builtin("single").unwrap(), dir.path()).unwrap();
    let root = dir.path().to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_nvc-sim");
    let out = if is_root() {
        if !Path::new("/usr/bin/setpriv").exists() {
            nvc_testkit::skip!("setpriv is missing, cannot drop privileges");
            return;
        }
        // The temp dir must be reachable by the unprivileged user.
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                bin,
                "run",
                root,
                "--",
                "true",
            ])
            .output()
            .unwrap()
    } else {
        sim(&["run", root, "--", "true"])
    };
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("needs root (CAP_SYS_ADMIN)"), "{err}");
}

#[test]
fn create_reports_bad_input() {
    let out = sim(&[
        "create",
        "--scenario",
        "quantum",
        "/tmp/never-created-by-nvc-sim",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(
        "unknown scenario \"quantum\" (built-in: single, dgx, mig, nogpu, nocache, legacy32)"
    ));
    assert!(!Path::new("/tmp/never-created-by-nvc-sim").exists());
    assert_eq!(sim(&["create", "dgx"]).status.code(), Some(2));
    let not_host = tempfile::tempdir().unwrap();
    let out = sim(&["run", not_host.path().to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("is not a simulated host")
    );
}

#[test]
fn create_builds_every_scenario() {
    for name in nvc_testkit::BUILTIN {
        let dir = tempfile::tempdir().unwrap();
        let out = sim(&["create", "--scenario", name, dir.path().to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8(out.stdout)
                .unwrap()
                .starts_with(&format!("created scenario {name} in "))
        );
        assert!(dir.path().join("proc/driver/nvidia/version").is_file());
    }
}
