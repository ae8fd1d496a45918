//! `nvc-embed`: several paused containers configured at once from a tokio program through
//! nvc-core, its own process left untouched (tier c: root).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use nvc_testkit::{DeviceNodes, Host, PausedContainer, Scenario};

#[test]
fn an_async_program_configures_containers_concurrently_and_stays_untouched() {
    let containers: Vec<PausedContainer> =
        (0..4).filter_map(|_| PausedContainer::start()).collect();
    if containers.len() < 4 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin("dgx").unwrap(), dir.path()).unwrap();
    if !matches!(host.device_nodes_state(), DeviceNodes::Created) {
        nvc_testkit::skip!("no device nodes");
        return;
    }
    let rootfses: Vec<tempfile::TempDir> = containers
        .iter()
        .map(|_| {
            let r = tempfile::tempdir().unwrap();
            nvc_testkit::debian_image(r.path(), &[], true).unwrap();
            r
        })
        .collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nvc-embed"));
    cmd.arg("--root").arg(dir.path());
    for (c, r) in containers.iter().zip(&rootfses) {
        cmd.arg(format!("{}:{}", c.pid(), r.path().display()));
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.ends_with("process untouched: cwd, mount namespace, no nvc thread or child left\n"),
        "{stdout}"
    );
    for (c, r) in containers.iter().zip(&rootfses) {
        assert!(
            stdout.contains(&format!("container {}: ", c.pid())),
            "{stdout}"
        );
        // Each container has all eight GPUs, in its own namespace only.
        let info = c.mountinfo();
        for minor in 0..8 {
            assert!(
                info.contains(&format!("{}/dev/nvidia{minor} ", r.path().display())),
                "{}: /dev/nvidia{minor} missing",
                c.pid()
            );
        }
        for other in rootfses.iter().filter(|o| o.path() != r.path()) {
            assert!(!info.contains(&format!("{}/dev/", other.path().display())));
        }
    }
}
