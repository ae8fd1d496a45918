//! Tier c, running containers: a container whose root was pivoted (as a runtime leaves a
//! started one) given GPU 1 of the dgx host through its process's root alone
//! ([`Container::running`]) and the GPU taken back ([`MountPlan::detach`]); every fault
//! point of the attach failing in turn, each leaving the container, its device cgroup, the
//! host's mounts and the calling process as they were; the detach's failing steps; and the
//! container's init exiting in the middle of an attach.
//!
//! One test per binary on purpose: descriptors, threads and children are counted for the
//! whole process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nvc_driver::tables::Capability::{Compute, Utility};
use nvc_driver::{DriverInfo, DriverOptions, probe_driver};
use nvc_mount::{Container, MountPlan, Part, PlanOptions};
use nvc_testkit::{DeviceNodes, Host, PausedContainer, ProcessState, Scenario, TestCgroup};

mod common;

struct Running {
    c: Mutex<Option<PausedContainer>>,
    pid: u32,
    hostdir: tempfile::TempDir,
    _host: Host,
    info: DriverInfo,
    _rootfs: tempfile::TempDir,
    cgroup: TestCgroup,
}

/// A running container on the dgx host, in a runtime-like v1 device cgroup.
fn running() -> Option<Running> {
    let hostdir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin("dgx").unwrap(), hostdir.path()).unwrap();
    if !matches!(host.device_nodes_state(), DeviceNodes::Created) {
        nvc_testkit::skip!("no device nodes");
        return None;
    }
    let mut opts = DriverOptions::new(hostdir.path());
    opts.discover.proc_devices = hostdir.path().join("proc/devices");
    let info = probe_driver(&opts).unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(
        rootfs.path(),
        &[
            "dev",
            "proc/driver",
            "sbin",
            "usr/bin",
            "usr/lib/x86_64-linux-gnu",
        ],
        false,
    )
    .unwrap();
    if !Path::new("/bin/busybox").exists() {
        nvc_testkit::skip!("no /bin/busybox for the image (Debian package busybox-static)");
        return None;
    }
    fs::create_dir_all(rootfs.path().join("bin")).unwrap();
    fs::copy("/bin/busybox", rootfs.path().join("bin/busybox")).unwrap();
    let cgroup = TestCgroup::v1_devices()?;
    fs::write(cgroup.path().join("devices.deny"), "a").unwrap();
    fs::write(cgroup.path().join("devices.allow"), "c *:* m").unwrap();
    let c = PausedContainer::pivoted(rootfs.path())?;
    cgroup.add(c.pid()).unwrap();
    Some(Running {
        pid: c.pid(),
        c: Mutex::new(Some(c)),
        hostdir,
        _host: host,
        info,
        _rootfs: rootfs,
        cgroup,
    })
}

impl Running {
    fn container(&self) -> Container {
        Container::running(self.pid).unwrap()
    }

    fn plan(&self, container: &Container, part: Option<Part>) -> MountPlan {
        let select = nvc_driver::DeviceRequest::parse("1")
            .unwrap()
            .select(&self.info.gpus)
            .unwrap();
        let opts = PlanOptions {
            capabilities: vec![Compute, Utility],
            devices: select,
            part,
            ..PlanOptions::default()
        };
        MountPlan::build(self.hostdir.path(), &self.info, &container.dirs, &opts).unwrap()
    }

    /// GPU 1's part: its node, `/proc` directory and rule.
    fn gpu1(&self) -> Part {
        Part::Gpu(self.info.gpus[1].clone())
    }

    /// Its mounts, every file of its tree (read through `/proc/<pid>/root`) and its device
    /// cgroup's list.
    fn state(&self) -> (String, Vec<PathBuf>, String) {
        let mounts = fs::read_to_string(format!("/proc/{}/mountinfo", self.pid)).unwrap();
        let root = PathBuf::from(format!("/proc/{}/root", self.pid));
        let mut files = Vec::new();
        let mut todo = vec![root.clone()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if fs::symlink_metadata(&p).unwrap().is_dir() {
                    todo.push(p.clone());
                }
                files.push(p.strip_prefix(&root).unwrap().to_path_buf());
            }
        }
        files.sort();
        let devices = fs::read_to_string(self.cgroup.path().join("devices.list")).unwrap();
        (mounts, files, devices)
    }
}

fn host_mounts() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// Runs `work` with the `n`th fault point it passes failing with `errno`; the names and
/// subjects of the points passed.
fn failing_at<R>(n: Option<usize>, work: impl FnOnce() -> R) -> (R, Vec<(String, PathBuf)>) {
    let count = AtomicUsize::new(0);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let r = nvc_sys::fault::with_hook(
        move |name, path| {
            record
                .lock()
                .unwrap()
                .push((name.to_owned(), path.to_path_buf()));
            (Some(count.fetch_add(1, Ordering::Relaxed)) == n).then_some(Errno::EIO)
        },
        work,
    );
    let seen = seen.lock().unwrap().clone();
    (r, seen)
}

#[test]
fn gpus_go_into_and_out_of_a_running_container_and_every_failure_leaves_it_as_it_was() {
    let Some(r) = running() else { return };
    let container = r.container();
    assert!(container.is_running());
    assert_eq!(
        container.rootfs,
        Path::new(&format!("/proc/{}/root", r.pid))
    );
    let plan = r.plan(&container, None);
    let host = host_mounts();

    // Every fault point of the attach, failing in turn.
    let ((), steps) = failing_at(None, || {
        let done = plan
            .configure(&container, Some(&common::host_ldconfig()))
            .unwrap();
        assert!(done.mounted.mounts.contains(&PathBuf::from("/dev/nvidia1")));
    });
    let attached = r.state();
    assert!(attached.0.contains(" /dev/nvidia1 "), "{}", attached.0);
    assert!(
        attached.2.lines().any(|l| l == "c 195:1 rw"),
        "{}",
        attached.2
    );
    assert!(
        attached.1.contains(&PathBuf::from("etc/ld.so.cache")),
        "the sandboxed ldconfig wrote the container's cache"
    );
    // The sandboxed ldconfig, rooted by descriptor, ran.
    assert!(steps.iter().any(|(n, _)| n == "ldconfig"), "{steps:?}");
    let gpu1 = r.plan(&container, Some(r.gpu1()));
    assert_eq!(
        gpu1.in_place(&container).unwrap(),
        [
            PathBuf::from("/dev/nvidia1"),
            PathBuf::from("/proc/driver/nvidia/gpus/0000:2a:00.0")
        ]
    );

    // Detached: the rule denied, the node and the /proc directory gone, the rest kept.
    let detached = gpu1.detach(&container).unwrap();
    assert_eq!(detached.unmounted.len(), 2, "{detached:?}");
    assert_eq!(detached.cgroup.as_ref().unwrap().1.added, [(195, 1)]);
    let after = r.state();
    assert!(!after.0.contains(" /dev/nvidia1 "), "{}", after.0);
    assert!(!after.1.contains(&PathBuf::from("dev/nvidia1")));
    assert!(
        after.0.contains(" /dev/nvidiactl "),
        "the driver-wide nodes stay"
    );
    assert!(
        !after.2.lines().any(|l| l.starts_with("c 195:1 ")),
        "{}",
        after.2
    );
    assert!(gpu1.in_place(&container).unwrap().is_empty());
    // A second detach finds nothing to do.
    let again = gpu1.detach(&container).unwrap();
    assert_eq!(
        (again.unmounted.len(), again.cgroup.unwrap().1.already),
        (0, vec![(195, 1)])
    );
    drop(container);
    drop(r);

    // Each failing attach step leaves everything as it was.
    for (n, (name, path)) in steps.iter().enumerate() {
        let Some(r) = running() else { return };
        let container = r.container();
        let plan = r.plan(&container, None);
        let before = r.state();
        let process = ProcessState::now();
        let step = format!("step {n} ({name} {})", path.display());
        let (result, _) = failing_at(Some(n), || {
            plan.configure(&container, Some(&common::host_ldconfig()))
        });
        let err = result
            .err()
            .unwrap_or_else(|| panic!("{step}: attach succeeded"));
        let text = err.to_string();
        assert!(!text.contains("undo left"), "{step}: {text}");
        assert!(
            text.contains(Errno::EIO.desc()) || std::error::Error::source(&err).is_some(),
            "{step}: failed for another reason: {text}"
        );
        assert_eq!(r.state(), before, "{step}: the container changed ({err})");
        assert_eq!(host_mounts(), host, "{step}: the host's mounts changed");
        assert_eq!(
            ProcessState::now(),
            process,
            "{step}: fds, threads or children left"
        );
    }

    // Detach's own steps: a failed denial changes nothing; a failed unmount leaves the
    // device denied and says which mount stayed.
    let Some(r) = running() else { return };
    let container = r.container();
    let plan = r.plan(&container, None);
    let gpu1 = r.plan(&container, Some(r.gpu1()));
    plan.configure(&container, None).unwrap();
    let (steps, denied_at) = {
        let (_, steps) = failing_at(Some(usize::MAX), || gpu1.detach(&container).unwrap());
        plan.configure(&container, None).unwrap();
        let at = steps
            .iter()
            .position(|(n, _)| n == "detach: umount")
            .unwrap();
        (steps, at)
    };
    let attached = r.state();
    let (err, _) = failing_at(Some(0), || gpu1.detach(&container));
    let err = err.unwrap_err().to_string();
    assert!(
        err.contains("devices.deny"),
        "{} failed first: {err}",
        steps[0].0
    );
    assert_eq!(r.state(), attached, "a failed denial changes nothing");
    let (err, _) = failing_at(Some(denied_at), || gpu1.detach(&container));
    let err = err.unwrap_err().to_string();
    assert!(
        err.contains("detach left mounts in place") && err.contains("/proc/driver/nvidia/gpus"),
        "{err}"
    );
    let now = r.state();
    assert!(
        !now.2.lines().any(|l| l.starts_with("c 195:1 ")),
        "denied: {}",
        now.2
    );
    drop(container);

    // The container's init exits in the middle of an attach: the attach fails, and nothing
    // is left on the host or in the calling process.
    let process = ProcessState::now();
    let Some(r) = running() else { return };
    let container = r.container();
    let plan = r.plan(&container, None);
    let count = AtomicUsize::new(0);
    let init = Arc::new(Mutex::new(r.c.lock().unwrap().take()));
    let exits = Arc::clone(&init);
    let result = nvc_sys::fault::with_hook(
        move |name, _| {
            if name == "move_mount" && count.fetch_add(1, Ordering::Relaxed) == 3 {
                drop(exits.lock().unwrap().take());
            }
            None
        },
        || plan.configure(&container, Some(&common::host_ldconfig())),
    );
    // The namespace went with its last process, and nvc's mounts with it: the error says
    // the namespace could not be entered (to go on, or to undo).
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("not found") || err.contains("/ns/mnt"),
        "{err}"
    );
    assert_eq!(host_mounts(), host, "the host's mounts changed");
    drop((container, plan, r));
    assert_eq!(
        ProcessState::now(),
        process,
        "fds, threads or children left"
    );
}
