//! Tier c: work in a container's mount namespace from a multithreaded caller leaves the
//! caller's namespace and working directory alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;

use nix::mount::{MsFlags, mount};
use nvc_mount::{Error, in_mount_ns};
use nvc_testkit::PausedContainer;

#[test]
fn concurrent_callers_mount_in_the_container_only() {
    let Some(container) = PausedContainer::start() else {
        return;
    };
    let pid = container.pid();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let before = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let cwd = std::env::current_dir().unwrap();
    std::thread::scope(|s| {
        for d in &dirs {
            let target = d.path().to_path_buf();
            s.spawn(move || {
                in_mount_ns(pid, || {
                    mount(
                        Some("tmpfs"),
                        &target,
                        Some("tmpfs"),
                        MsFlags::MS_NOSUID,
                        None::<&str>,
                    )
                    .unwrap();
                    let here = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
                    assert!(here.contains(target.to_str().unwrap()));
                    Ok(())
                })
                .unwrap();
            });
        }
    });
    assert_eq!(fs::read_to_string("/proc/self/mountinfo").unwrap(), before);
    assert_eq!(std::env::current_dir().unwrap(), cwd);
    let theirs = container.mountinfo();
    for d in &dirs {
        assert!(
            theirs.contains(d.path().to_str().unwrap()),
            "mount missing in the container"
        );
    }
    drop(container);
}

#[test]
fn a_missing_process_is_a_clear_error() {
    let err = in_mount_ns(u32::MAX - 7, || Ok(())).unwrap_err();
    assert!(matches!(err, Error::Namespace { step: "open", .. }));
    assert!(
        nvc_testkit::chain(&err).starts_with(&format!(
            "open /proc/{}/ns/mnt: No such file or directory",
            u32::MAX - 7
        )),
        "{err}"
    );
}
