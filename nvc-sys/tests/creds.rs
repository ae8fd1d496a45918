//! `set_fs_owner`: files the calling thread creates afterwards belong to the given
//! uid:gid while it keeps its capabilities (it still writes a root-only directory), and no
//! other thread changes; `0:0` changes nothing; each refusal names its call and `EPERM`.
//! Every credential change happens on a thread started for it, which then ends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Barrier;

use caps::{CapSet, Capability};
use nix::errno::Errno;
use nvc_sys::set_fs_owner;

/// A directory only root may write (mode 0700, owned by root).
fn root_only_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::metadata(p).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn files_the_thread_creates_are_owned_as_asked_and_other_threads_unchanged() {
    if !common::root_or_skip("set_fs_owner") {
        return;
    }
    let dir = root_only_dir();
    let (mine, theirs) = (dir.path().join("mine"), dir.path().join("theirs"));
    let both_created = Barrier::new(2);
    let changed = Barrier::new(2);
    let created = std::thread::scope(|s| {
        let thread = s.spawn(|| {
            // In a 0700 root directory: only a kept CAP_DAC_OVERRIDE lets uid 1234 in.
            // Errors are returned, not raised: the barriers must be reached either way.
            let created = set_fs_owner(1234, 5678)
                .map_err(|e| e.to_string())
                .and_then(|()| fs::write(&mine, "x").map_err(|e| format!("write: {e}")))
                .and_then(|()| {
                    fs::create_dir(dir.path().join("mine.d")).map_err(|e| format!("mkdir: {e}"))
                });
            changed.wait();
            both_created.wait();
            created
        });
        changed.wait();
        // While the other thread still runs with its fs ids changed.
        let theirs = fs::write(&theirs, "y");
        both_created.wait();
        theirs.unwrap();
        thread.join().unwrap()
    });
    created.unwrap();
    assert_eq!(owner(&mine), (1234, 5678));
    assert_eq!(owner(&dir.path().join("mine.d")), (1234, 5678));
    let me = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    assert_eq!(owner(&theirs), me, "another thread's fs ids changed too");
}

/// The calling thread's securebits.
fn securebits() -> libc::c_int {
    // SAFETY: plain integer arguments; it only reads the calling thread's securebits.
    unsafe { libc::prctl(libc::PR_GET_SECUREBITS) }
}

#[test]
fn root_owner_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    let (before, after) = std::thread::scope(|s| {
        s.spawn(|| {
            let before = securebits();
            set_fs_owner(0, 0).unwrap();
            let after = securebits();
            fs::write(&file, "x").unwrap();
            (before, after)
        })
        .join()
        .unwrap()
    });
    assert_eq!(before, after, "securebits changed for 0:0");
    let me = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    assert_eq!(owner(&file), me);
}

/// `set_fs_owner(1234, 5678)` on a thread that first drops `cap` from its effective set.
fn without(cap: Capability) -> nvc_sys::Error {
    std::thread::scope(|s| {
        s.spawn(|| {
            caps::drop(None, CapSet::Effective, cap).unwrap();
            set_fs_owner(1234, 5678).expect_err("set_fs_owner without the capability")
        })
        .join()
        .unwrap()
    })
}

#[test]
fn each_refusal_names_its_call() {
    if !common::root_or_skip("dropping capabilities to see the refusals") {
        return;
    }
    for (cap, call) in [
        (Capability::CAP_SETPCAP, "prctl(PR_SET_SECUREBITS)"),
        (Capability::CAP_SETGID, "setfsgid"),
        (Capability::CAP_SETUID, "setfsuid"),
    ] {
        let err = without(cap);
        assert_eq!(err.errno(), Errno::EPERM, "{cap}: {err}");
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("{call}:")), "{cap}: {shown}");
        assert!(shown.contains("EPERM"), "{shown}");
    }
}
