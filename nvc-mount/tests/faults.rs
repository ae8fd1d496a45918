//! Tier c, fault injection: every system-call step of a dgx `configure` (each mountpoint,
//! bind, remount, tmpfs, file, link, the device-cgroup writes, the linker-cache link, the
//! ldconfig run) made to fail in turn, and after each failure the container exactly as
//! before — its mounts, file tree, device cgroup and linker cache — the host's mount table
//! unchanged, and no descriptor, thread or child process left behind. The v2 device-program
//! steps, which a hybrid host's `configure` does not take, are walked on a cgroup2 directly.
//!
//! One test per binary on purpose: descriptors, threads and children are counted for the
//! whole process, which other tests running in parallel would disturb.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nvc_driver::tables::Capability::{Compute, Utility};
use nvc_mount::cgroup::program::{self, DeviceRule};
use nvc_mount::cgroup::{CgroupVersion, DeviceCgroup};
use nvc_mount::{Container, MountApi, MountPlan, PlanOptions};
use nvc_sys::bpf;
use nvc_testkit::{ProcessState, TestCgroup};

mod common;

/// The host's mount table, without the per-mount ids that differ between reads of the same
/// table (none do; the whole lines are compared).
fn host_mounts() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// The names and subjects of the fault points `work` passes, in order.
fn points(work: impl FnOnce()) -> Vec<(String, PathBuf)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    nvc_sys::fault::with_hook(
        move |name, path| {
            record
                .lock()
                .unwrap()
                .push((name.to_owned(), path.to_path_buf()));
            None
        },
        work,
    );
    Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
}

/// Runs `work` with the `n`th fault point it passes failing with `errno`.
fn failing_at<R>(n: usize, errno: Errno, work: impl FnOnce() -> R) -> R {
    let count = AtomicUsize::new(0);
    nvc_sys::fault::with_hook(
        move |_, _| (count.fetch_add(1, Ordering::Relaxed) == n).then_some(errno),
        work,
    )
}

/// Everything of the container a failed configure must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct ContainerState {
    mounts: Vec<String>,
    files: Vec<(PathBuf, Option<PathBuf>)>,
    devices: String,
    cache: Vec<u8>,
}

/// The dgx fixture: every GPU, compute and utility, the host's ldconfig, in a runtime-like
/// v1 device cgroup, an image with a linker cache of its own.
struct Dgx {
    sim: common::Sim,
    cgroup: TestCgroup,
}

impl Dgx {
    fn new() -> Option<Self> {
        Self::of("dgx")
    }

    fn of(scenario: &str) -> Option<Self> {
        let sim = common::sim(scenario)?;
        sim.mkdirs(&["sbin", "usr/lib/x86_64-linux-gnu", "usr/bin"]);
        fs::write(
            sim.rootfs.path().join("etc/ld.so.cache"),
            "the image's cache",
        )
        .unwrap();
        let cgroup = TestCgroup::v1_devices()?;
        fs::write(cgroup.path().join("devices.deny"), "a").unwrap();
        fs::write(cgroup.path().join("devices.allow"), "c 1:3 rwm").unwrap();
        cgroup.add(sim.c.pid()).unwrap();
        Some(Dgx { sim, cgroup })
    }

    fn plan(&self, container: &Container, api: MountApi) -> MountPlan {
        let mut plan = self.sim.plan(
            container,
            &PlanOptions {
                capabilities: vec![Compute, Utility],
                devices: self.sim.select("all"),
                ..PlanOptions::default()
            },
        );
        plan.mount_api = api;
        plan
    }

    fn state(&self) -> ContainerState {
        ContainerState {
            mounts: self.sim.mounts(),
            files: self.sim.tree(),
            devices: fs::read_to_string(self.cgroup.path().join("devices.list")).unwrap(),
            cache: fs::read(self.sim.rootfs.path().join("etc/ld.so.cache")).unwrap(),
        }
    }
}

#[test]
fn every_failing_step_leaves_container_host_and_process_as_they_were() {
    for api in [MountApi::Auto, MountApi::Legacy] {
        walk_configure(api);
    }
    walk_undo();
    walk_v2_grant();
}

fn walk_configure(api: MountApi) {
    // The steps, from a configure that succeeds (on a container of its own).
    let Some(probe) = Dgx::new() else { return };
    let container = probe.sim.container();
    let plan = probe.plan(&container, api);
    let steps = points(|| {
        plan.configure(&container, Some(&common::host_ldconfig()))
            .unwrap();
    });
    let names: BTreeSet<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "mkdir",
        "create",
        "write devices.allow",
        "keep a link to",
        "ldconfig",
        "mount tmpfs on",
    ] {
        assert!(
            names.contains(expected),
            "{api:?}: no {expected} step in {names:?}"
        );
    }
    let binds = ["move_mount", "bind-mount"];
    assert!(binds.iter().any(|b| names.contains(b)), "{names:?}");
    assert!(steps.len() > 100, "{api:?}: only {} steps", steps.len());
    eprintln!("{api:?}: {} fault points, each failed in turn", steps.len());
    drop(probe);

    let Some(dgx) = Dgx::new() else { return };
    let container = dgx.sim.container();
    let plan = dgx.plan(&container, api);
    let before = dgx.state();
    let host = host_mounts();
    let process = ProcessState::now();
    for (n, (name, path)) in steps.iter().enumerate() {
        let step = format!("{api:?} step {n} ({name} {})", path.display());
        let err = failing_at(n, Errno::EIO, || {
            plan.configure(&container, Some(&common::host_ldconfig()))
        })
        .err()
        .unwrap_or_else(|| panic!("{step}: configure succeeded"));
        let text = err.to_string();
        assert!(!text.contains("undo left"), "{step}: {text}");
        assert!(
            text.contains(&Errno::EIO.desc().to_string())
                || std::error::Error::source(&err).is_some(),
            "{step}: {text}"
        );
        let after = dgx.state();
        assert_eq!(
            after.mounts, before.mounts,
            "{step}: mounts changed ({text})"
        );
        assert_eq!(after.files, before.files, "{step}: files changed ({text})");
        assert_eq!(
            after.devices, before.devices,
            "{step}: device cgroup changed ({text})"
        );
        assert_eq!(
            after.cache, before.cache,
            "{step}: linker cache changed ({text})"
        );
        assert_eq!(host_mounts(), host, "{step}: the host's mounts changed");
        assert_eq!(
            ProcessState::now(),
            process,
            "{step}: fds, threads or children left"
        );
    }
    // And with nothing failing, the same container configures.
    plan.configure(&container, Some(&common::host_ldconfig()))
        .unwrap();
    assert_ne!(dgx.state(), before);
}

/// The undo's own steps failing: a configure of a single-GPU host fails at its last step
/// (the ldconfig run), so that everything is undone, and one undo step — an unmount, a
/// removal, the device-cgroup deny, putting the linker cache back — fails in turn. The
/// error lists what was left, the undo goes on past the failed step, and whatever of the
/// configure remains in the container is in that list; nothing of the process is left.
fn walk_undo() {
    let undoing = |n: Option<usize>| {
        let count = AtomicUsize::new(0);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let hook = move |name: &str, path: &std::path::Path| {
            if name == "ldconfig" {
                return Some(Errno::EIO);
            }
            if !name.starts_with("undo: ") {
                return None;
            }
            record
                .lock()
                .unwrap()
                .push((name.to_owned(), path.to_path_buf()));
            (Some(count.fetch_add(1, Ordering::Relaxed)) == n).then_some(Errno::EIO)
        };
        (hook, seen)
    };
    let Some(probe) = Dgx::of("single") else {
        return;
    };
    let container = probe.sim.container();
    let plan = probe.plan(&container, MountApi::Auto);
    let (hook, seen) = undoing(None);
    let err = nvc_sys::fault::with_hook(hook, || {
        plan.configure(&container, Some(&common::host_ldconfig()))
            .unwrap_err()
    });
    assert!(!err.to_string().contains("undo left"), "{err}");
    let steps = seen.lock().unwrap().clone();
    let names: BTreeSet<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "undo: put back",
            "undo: remove",
            "undo: umount",
            "undo: write devices.deny"
        ])
    );
    drop(probe);
    eprintln!("undo: {} steps, each failed in turn", steps.len());

    for (n, (name, path)) in steps.iter().enumerate() {
        let Some(f) = Dgx::of("single") else { return };
        let container = f.sim.container();
        let plan = f.plan(&container, MountApi::Auto);
        let before = f.state();
        let process = ProcessState::now();
        let (hook, _) = undoing(Some(n));
        let err = nvc_sys::fault::with_hook(hook, || {
            plan.configure(&container, Some(&common::host_ldconfig()))
                .unwrap_err()
        });
        let text = err.to_string();
        let step = format!("undo step {n} ({name} {})", path.display());
        let Some((_, left)) = text.split_once("; undo left: ") else {
            panic!("{step}: nothing said left: {text}")
        };
        let reported = |p: &std::path::Path| left.contains(&*p.to_string_lossy());
        if name == "undo: write devices.deny" {
            // The cgroup is the fixture's own: its path differs from the recording run's.
            assert!(left.contains("device grant not revoked"), "{step}: {left}");
        } else {
            assert!(reported(path), "{step}: {left}");
        }
        let after = f.state();
        let root = f.sim.rootfs.path();
        for (file, _) in after.files.iter().filter(|e| !before.files.contains(e)) {
            let inside = std::path::Path::new("/").join(file.strip_prefix(root).unwrap());
            assert!(
                reported(&inside),
                "{step}: {} left unreported: {left}",
                inside.display()
            );
        }
        for m in after.mounts.iter().filter(|m| !before.mounts.contains(m)) {
            let at = m.split(' ').nth(4).unwrap();
            let inside = at.strip_prefix(&*root.to_string_lossy()).unwrap();
            assert!(
                left.contains(inside),
                "{step}: mount {inside} left unreported: {left}"
            );
        }
        if after.devices != before.devices {
            assert!(left.contains("device grant not revoked"), "{step}: {left}");
        }
        if after.cache != before.cache {
            assert!(
                left.contains("/etc/ld.so.cache not put back"),
                "{step}: {left}"
            );
        }
        assert_eq!(
            ProcessState::now(),
            process,
            "{step}: fds, threads or children left"
        );
    }
}

/// The v2 grant's steps (loading the copy of the runtime's program, swapping it in) failing:
/// the runtime's program stays attached alone.
fn walk_v2_grant() {
    let Some(cg) = TestCgroup::v2() else { return };
    // A runtime's program: allow /dev/null, deny the rest.
    let runtime = program::program(&[DeviceRule::allow_char_rw(1, 3)], false);
    let runtime_fd = match bpf::prog_load_cgroup_device(&runtime, c"Apache") {
        Ok(fd) => fd,
        Err(e) => {
            nvc_testkit::skip!("cannot load a device program: {e}");
            return;
        }
    };
    let dir = fs::File::open(cg.path()).unwrap();
    bpf::prog_attach_cgroup_device(runtime_fd.as_fd(), dir.as_fd(), None).unwrap();
    let attached = || -> Vec<Vec<bpf::Insn>> {
        bpf::prog_query_cgroup_device(dir.as_fd())
            .unwrap()
            .into_iter()
            .map(|id| {
                let fd = bpf::prog_get_fd_by_id(id).unwrap();
                bpf::prog_instructions(fd.as_fd()).unwrap()
            })
            .collect()
    };
    let device = DeviceCgroup::new(CgroupVersion::V2, cg.path().to_path_buf());
    let devices = [(195, 0), (195, 255)];
    let steps = points(|| drop(device.allow(&devices).unwrap().revoke()));
    assert_eq!(
        steps.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["load a device program", "attach a device program"]
    );
    let process = ProcessState::now();
    for n in 0..steps.len() {
        let err = failing_at(n, Errno::EPERM, || device.allow(&devices)).unwrap_err();
        assert!(err.to_string().contains("cannot"), "{err}");
        assert_eq!(attached(), std::slice::from_ref(&runtime), "step {n}");
        assert_eq!(ProcessState::now(), process, "step {n}");
    }
}
