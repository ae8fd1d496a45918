//! `fork_with_pipe` and `Forked`: what the child writes arrives at the parent's end and the
//! pipe ends when the child does; the child's exit code, a signal that ended it, and a panic
//! in it (exit 101) are reported; a child is reaped once and never left behind (dropping or
//! killing an unreaped `Forked` kills and reaps it); `Forked::spawn` pipes a program's
//! stdout and names `execve` with the errno when the program cannot start.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use nix::errno::Errno;
use nvc_sys::{Ended, Forked, fork_with_pipe, pidfd_alive, pidfd_open};

use common::{fork_and_collect, read_all};

#[test]
fn the_childs_bytes_and_exit_code_reach_the_parent() {
    let (bytes, ended) = fork_and_collect(|out| {
        out.write_all(b"hello from ").unwrap();
        out.write_all(std::process::id().to_string().as_bytes())
            .unwrap();
        42
    });
    let text = String::from_utf8(bytes).unwrap();
    let pid = text.strip_prefix("hello from ").expect(&text);
    assert_ne!(
        pid,
        std::process::id().to_string(),
        "the work ran in the parent"
    );
    assert_eq!(ended, Some(Ended::Exited(42)));
}

#[test]
fn a_child_is_reaped_once() {
    // SAFETY: the child only returns a code.
    let mut child = unsafe { fork_with_pipe(|_| 3) }.unwrap();
    assert_eq!(child.wait(), Some(Ended::Exited(3)));
    assert_eq!(child.wait(), None, "a second wait found the child again");
    assert!(child.take_output().is_some());
    assert!(
        child.take_output().is_none(),
        "the read end was given twice"
    );
}

#[test]
fn a_signal_that_ends_the_child_is_named() {
    let (_, ended) = fork_and_collect(|_| {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM);
        0
    });
    assert_eq!(ended, Some(Ended::Signaled("SIGTERM")));
}

#[test]
fn a_panic_in_the_child_exits_101_and_leaves_the_parent_running() {
    let (bytes, ended) = fork_and_collect(|out| {
        out.write_all(b"before").unwrap();
        // Unwinding stops at the child's edge: "after" is never written.
        std::panic::resume_unwind(Box::new("child panics"));
    });
    assert_eq!(bytes, b"before");
    assert_eq!(ended, Some(Ended::Exited(101)));
}

/// A child that reports its pid and then blocks until killed.
fn blocked_child() -> (Forked, u32) {
    // SAFETY: the child writes its pid and sleeps; it takes no lock.
    let mut child = unsafe {
        fork_with_pipe(|out| {
            // Never outlives the test thread, even where `Forked` fails to kill it.
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            out.write_all(&std::process::id().to_le_bytes()).unwrap();
            out.flush().unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    }
    .unwrap();
    let mut out = child.take_output().unwrap();
    let mut pid = [0u8; 4];
    out.read_exact(&mut pid).unwrap();
    (child, u32::from_le_bytes(pid))
}

#[test]
fn dropping_an_unreaped_child_kills_and_reaps_it() {
    let (child, pid) = blocked_child();
    let pidfd = pidfd_open(pid).unwrap();
    assert!(pidfd_alive(pidfd.as_fd()).unwrap());
    drop(child);
    // A zombie still answers signal 0: false means it was reaped, not only killed.
    let alive = pidfd_alive(pidfd.as_fd()).unwrap();
    if alive {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid.try_into().unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(!alive, "child left behind");
}

#[test]
fn kill_ends_and_reaps_a_running_child() {
    let (mut child, pid) = blocked_child();
    let pidfd = pidfd_open(pid).unwrap();
    child.kill();
    assert!(!pidfd_alive(pidfd.as_fd()).unwrap());
    assert_eq!(child.wait(), None, "kill did not reap");
}

#[test]
fn spawn_pipes_a_programs_stdout() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "printf 'out:%s' \"$1\"; exit 5", "sh", "arg"]);
    let mut child = Forked::spawn(&mut cmd).unwrap();
    let mut out = child.take_output().unwrap();
    assert_eq!(read_all(&mut out, Duration::from_secs(20)), b"out:arg");
    assert_eq!(child.wait(), Some(Ended::Exited(5)));
}

#[test]
fn spawn_of_a_missing_program_names_execve_and_enoent() {
    let mut cmd = Command::new("/nonexistent/nvc-sys-test-program");
    let err = Forked::spawn(&mut cmd).unwrap_err();
    assert_eq!(err.errno(), Errno::ENOENT);
    let shown = err.to_string();
    assert!(
        shown.contains("execve") && shown.contains("ENOENT"),
        "{shown}"
    );
}
