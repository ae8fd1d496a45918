//! `pidfd_open` and `pidfd_alive`: a pidfd of a running child says "alive" until the child
//! has exited and been reaped, and opening one for a pid that names no process fails with an
//! error naming `pidfd_open` and `ESRCH`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nvc_sys::{pidfd_alive, pidfd_open};

#[test]
fn a_pidfd_is_alive_while_its_process_runs_and_not_after_it_is_reaped() {
    let mut child = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    let pidfd = pidfd_open(child.id()).expect("pidfd_open of a live child");
    assert!(
        pidfd_alive(pidfd.as_fd()).unwrap(),
        "running child reported dead"
    );
    // Still alive on asking again (the check sends signal 0, which does nothing).
    assert!(pidfd_alive(pidfd.as_fd()).unwrap());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !pidfd_alive(pidfd.as_fd()).unwrap(),
        "reaped child still reported alive"
    );
}

#[test]
fn each_pidfd_follows_its_own_process() {
    // Two children: the pidfd of the first says dead once it is reaped, whatever the
    // second (still running) does.
    let mut first = Command::new("true").spawn().unwrap();
    let mut second = Command::new("sleep").arg("30").spawn().unwrap();
    let first_fd = pidfd_open(first.id()).unwrap();
    let second_fd = pidfd_open(second.id()).unwrap();
    first.wait().unwrap();
    assert!(!pidfd_alive(first_fd.as_fd()).unwrap());
    assert!(pidfd_alive(second_fd.as_fd()).unwrap());
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(!pidfd_alive(second_fd.as_fd()).unwrap());
}

#[test]
fn no_such_process_is_esrch_naming_pidfd_open() {
    // Above the kernel's largest pid_max (2^22): no process can have it.
    for pid in [i32::MAX.unsigned_abs(), u32::MAX] {
        let err = pidfd_open(pid).expect_err("pidfd_open of a pid nobody has");
        assert_eq!(err.errno(), Errno::ESRCH, "pid {pid}: {err}");
        let shown = err.to_string();
        assert!(shown.contains("pidfd_open"), "{shown}");
        assert!(shown.contains("ESRCH"), "{shown}");
    }
}
