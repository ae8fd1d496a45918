//! Tier c: real failures during `configure`, not injected ones — a full rootfs (`ENOSPC`), a
//! read-only one (`EROFS`), an image whose library directory is a symlink loop (`ELOOP`) or
//! a name too long (`ENAMETOOLONG`), the container's cgroup removed mid-grant, the container
//! exiting mid-configure. Each ends in a clear error carrying the errno, the container (where
//! it still exists) exactly as before, and nothing of the caller's left behind.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use nix::errno::Errno;
use nvc_driver::tables::Capability::{Compute, Utility};
use nvc_mount::{Container, MountPlan, PlanOptions};
use nvc_testkit::{ProcessState, TestCgroup};

mod common;

/// The errno at the bottom of `err`'s source chain (of the failure that started an undo).
fn errno_of(err: &nvc_mount::Error) -> Option<Errno> {
    let err = match err {
        nvc_mount::Error::UndoIncomplete { error, .. } => error,
        other => other,
    };
    let mut e: Option<&dyn std::error::Error> = Some(err);
    while let Some(cur) = e {
        if let Some(io) = cur.downcast_ref::<std::io::Error>()
            && let Some(raw) = io.raw_os_error()
        {
            return Some(Errno::from_raw(raw));
        }
        e = cur.source();
    }
    None
}

/// The container's view of its rootfs: every path below it with its link target, and its
/// mounts there (read through the container's own root, so a mount made only in its
/// namespace counts).
fn view(sim: &common::Sim) -> (Vec<(PathBuf, Option<PathBuf>)>, Vec<String>) {
    let base = PathBuf::from(format!("/proc/{}/root", sim.c.pid()))
        .join(sim.rootfs.path().strip_prefix("/").unwrap());
    let mut files = Vec::new();
    let mut todo = vec![base.clone()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                todo.push(p.clone());
            }
            files.push((
                p.strip_prefix(&base).unwrap().to_path_buf(),
                fs::read_link(&p).ok(),
            ));
        }
    }
    files.sort();
    (files, sim.mounts())
}

/// Held by each test: descriptors are counted for the whole process, so these tests take
/// turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn plan(sim: &common::Sim, container: &Container) -> MountPlan {
    sim.plan(
        container,
        &PlanOptions {
            capabilities: vec![Compute, Utility],
            devices: sim.select("all"),
            ..PlanOptions::default()
        },
    )
}

/// Runs `script` in the container's mount namespace.
fn in_container(sim: &common::Sim, script: &str) {
    let out = Command::new("nsenter")
        .args(["-t", &sim.c.pid().to_string(), "-m", "sh", "-ec", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A dgx configure of `sim` that must fail with `errno` and change nothing.
fn fails_cleanly(sim: &common::Sim, errno: Errno) {
    let container = sim.container();
    let plan = plan(sim, &container);
    let before = view(sim);
    let open = ProcessState::now().fds;
    let err = plan
        .configure(&container, Some(&common::host_ldconfig()))
        .unwrap_err();
    assert_eq!(errno_of(&err), Some(errno), "{err}");
    assert!(!err.to_string().contains("undo left"), "{err}");
    assert_eq!(view(sim), before, "{err}");
    assert_eq!(ProcessState::now().fds, open);
}

/// The rootfs as a small tmpfs in the container's namespace, with the image's files.
fn tmpfs_rootfs(sim: &common::Sim, options: &str) {
    let r = sim.rootfs.path().display();
    in_container(
        sim,
        &format!(
            "mount -t tmpfs -o {options} tmpfs {r}; mkdir -p {r}/etc {r}/proc/driver {r}/usr/bin; \
             echo 12 > {r}/etc/debian_version; : > {r}/etc/ld.so.conf"
        ),
    );
}

#[test]
fn a_full_rootfs_is_enospc_and_nothing_changes() {
    let _serial = serial();
    let Some(sim) = common::sim("dgx") else {
        return;
    };
    // Room for the image's entries and a few more, not for 57 mountpoints.
    tmpfs_rootfs(&sim, "size=64k,nr_inodes=16");
    fails_cleanly(&sim, Errno::ENOSPC);
}

#[test]
fn a_read_only_rootfs_is_erofs_and_nothing_changes() {
    let _serial = serial();
    let Some(sim) = common::sim("dgx") else {
        return;
    };
    tmpfs_rootfs(&sim, "size=1m");
    in_container(
        &sim,
        &format!("mount -o remount,ro {}", sim.rootfs.path().display()),
    );
    fails_cleanly(&sim, Errno::EROFS);
}

#[test]
fn a_library_directory_that_loops_is_eloop_and_nothing_changes() {
    let _serial = serial();
    let Some(sim) = common::sim("dgx") else {
        return;
    };
    let lib = sim.rootfs.path().join("usr/lib");
    fs::create_dir_all(&lib).unwrap();
    symlink("loop-a", lib.join("x86_64-linux-gnu")).unwrap();
    symlink("loop-b", lib.join("loop-a")).unwrap();
    symlink("loop-a", lib.join("loop-b")).unwrap();
    fails_cleanly(&sim, Errno::ELOOP);
}

#[test]
fn a_name_too_long_is_enametoolong_and_nothing_changes() {
    let _serial = serial();
    let Some(sim) = common::sim("dgx") else {
        return;
    };
    let lib = sim.rootfs.path().join("usr/lib");
    fs::create_dir_all(&lib).unwrap();
    symlink("n".repeat(300), lib.join("x86_64-linux-gnu")).unwrap();
    fails_cleanly(&sim, Errno::ENAMETOOLONG);
}

#[test]
fn a_cgroup_removed_mid_grant_fails_and_the_mounts_are_undone() {
    let _serial = serial();
    let Some(sim) = common::sim("dgx") else {
        return;
    };
    let Some(parent) = TestCgroup::v1_devices() else {
        return;
    };
    let cg = parent.nested().unwrap();
    fs::write(cg.path().join("devices.deny"), "a").unwrap();
    cg.add(sim.c.pid()).unwrap();
    let container = sim.container();
    let plan = plan(&sim, &container);
    let before = view(&sim);
    let (pid, cg_path, parent_path) = (
        sim.c.pid(),
        cg.path().to_path_buf(),
        parent.path().to_path_buf(),
    );
    let removed = AtomicBool::new(false);
    let err = nvc_sys::fault::with_hook(
        move |name, _| {
            if name == "write devices.allow" && !removed.swap(true, Ordering::Relaxed) {
                // The runtime moves the container out and removes its cgroup.
                fs::write(parent_path.join("cgroup.procs"), pid.to_string()).unwrap();
                fs::remove_dir(&cg_path).unwrap();
            }
            None
        },
        || plan.configure(&container, None),
    )
    .unwrap_err();
    assert!(matches!(err, nvc_mount::Error::Cgroup { .. }), "{err}");
    assert!(errno_of(&err).is_some(), "{err}");
    assert!(!err.to_string().contains("undo left"), "{err}");
    assert_eq!(view(&sim), before, "{err}");
}

#[test]
fn a_container_exiting_mid_configure_ends_in_an_error() {
    let _serial = serial();
    let Some(sim) = common::sim("dgx") else {
        return;
    };
    let container = sim.container();
    let plan = plan(&sim, &container);
    let open = ProcessState::now().fds;
    let pid = sim.c.pid();
    let count = AtomicUsize::new(0);
    let err = nvc_sys::fault::with_hook(
        move |_, _| {
            if count.fetch_add(1, Ordering::Relaxed) == 40 {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid.try_into().unwrap()),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .unwrap();
            }
            None
        },
        || plan.configure(&container, Some(&common::host_ldconfig())),
    )
    .unwrap_err();
    // The mounts went on in the namespace nvc's thread still held; the ldconfig run (or a
    // later step) finds the container gone, and so does the undo (the namespace went with
    // it). Nothing of the caller's is left.
    assert!(
        matches!(
            errno_of(&err),
            Some(Errno::ENOENT | Errno::ESRCH | Errno::EINVAL)
        ) || err.to_string().contains("not found"),
        "{err}"
    );
    assert_eq!(ProcessState::now().fds, open, "{err}");
}
