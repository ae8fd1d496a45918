//! Tier c: work in a container's mount namespace from a multithreaded caller leaves the
//! caller's namespace and working directory alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::process::{Child, Command};
use std::time::Duration;

use nix::mount::{MsFlags, mount};
use nvc_mount::{Error, in_mount_ns};

/// A paused "container": `sleep` in its own private mount namespace, killed on drop.
struct Paused(Child);

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn paused_container() -> Option<Paused> {
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sleep", "60"])
        .spawn()
        .ok()?;
    let c = Paused(child);
    let mine = fs::read_link("/proc/self/ns/mnt").unwrap();
    for _ in 0..200 {
        if fs::read_link(format!("/proc/{}/ns/mnt", c.0.id())).is_ok_and(|ns| ns != mine) {
            return Some(c);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn concurrent_callers_mount_in_the_container_only() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: entering another mount namespace needs root");
        return;
    }
    let Some(container) = paused_container() else {
        eprintln!("skipped: cannot start `unshare --mount` here");
        return;
    };
    let pid = container.0.id();
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
    let theirs = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
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
        err.to_string()
            .starts_with(&format!("open /proc/{}/ns/mnt: ENOENT", u32::MAX - 7)),
        "{err}"
    );
}
