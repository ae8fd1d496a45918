//! `chrooted`: a command runs with the given directory as its root and `/` as its working
//! directory (a statically linked busybox copied into a temporary root lists only that
//! root); `/` leaves the command as it was; a root with a NUL byte is `InvalidInput`, and
//! without `CAP_SYS_CHROOT` the spawn fails with `EPERM`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

use caps::{CapSet, Capability};
use nvc_sys::chrooted;

/// A temporary root (mode 0755) holding `bin/busybox` and `marker`, or `None` (skip
/// reported) without a statically linked busybox.
fn busybox_root() -> Option<tempfile::TempDir> {
    let busybox = common::static_busybox()?;
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("bin")).unwrap();
    fs::copy(busybox, root.path().join("bin/busybox")).unwrap();
    fs::write(root.path().join("marker"), "").unwrap();
    Some(root)
}

#[test]
fn the_command_sees_only_its_root_from_its_top() {
    if !common::root_or_skip("chroot") {
        return;
    }
    let Some(root) = busybox_root() else { return };
    let mut cmd = Command::new("/bin/busybox");
    // A working directory outside the root: the command must not start there.
    cmd.args(["sh", "-c", "ls -a /; pwd"]).current_dir("/");
    chrooted(&mut cmd, root.path()).unwrap();
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, [".", "..", "bin", "marker", "/"], "{text}");
}

#[test]
fn slash_leaves_the_command_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "pwd -P"]).current_dir(dir.path());
    chrooted(&mut cmd, Path::new("/")).unwrap();
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        Path::new(shown.trim_end()),
        dir.path().canonicalize().unwrap(),
        "the working directory changed"
    );
}

#[test]
fn a_root_with_a_nul_byte_is_invalid_input() {
    let mut cmd = Command::new("true");
    let err = chrooted(&mut cmd, Path::new("/tmp/a\0b")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn without_cap_sys_chroot_the_spawn_fails_with_eperm() {
    if !common::root_or_skip("dropping CAP_SYS_CHROOT") {
        return;
    }
    let Some(root) = busybox_root() else { return };
    // On a thread of its own: capabilities are per thread, and the command is forked from
    // the thread that spawns it.
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            caps::drop(None, CapSet::Effective, Capability::CAP_SYS_CHROOT).unwrap();
            let mut cmd = Command::new("/bin/busybox");
            cmd.arg("true");
            chrooted(&mut cmd, root.path()).unwrap();
            cmd.status().expect_err("chrooted without CAP_SYS_CHROOT")
        })
        .join()
        .unwrap()
    });
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
}
