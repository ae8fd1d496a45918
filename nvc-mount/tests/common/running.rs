//! A running container for the attach and detach tests: pivoted (as a runtime leaves a
//! started one) over a Debian-like image with a static busybox, on the dgx host, in a
//! runtime-like v1 device cgroup.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nvc_driver::DriverInfo;
use nvc_driver::tables::Capability::{Compute, Utility};
use nvc_mount::{Container, MountApi, MountPlan, Part, PlanOptions};
use nvc_testkit::{Host, PausedContainer, TestCgroup};

pub struct Running {
    pub c: Mutex<Option<PausedContainer>>,
    pub pid: u32,
    pub hostdir: tempfile::TempDir,
    _host: Host,
    pub info: DriverInfo,
    _rootfs: tempfile::TempDir,
    pub cgroup: TestCgroup,
}

/// A running container on the dgx host, in a runtime-like v1 device cgroup.
pub fn running() -> Option<Running> {
    let (hostdir, host, info) = super::probed_host("dgx")?;
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
    pub fn container(&self) -> Container {
        Container::running(self.pid).unwrap()
    }

    pub fn plan(&self, container: &Container, part: Option<Part>) -> MountPlan {
        self.plan_with(container, part, MountApi::Auto)
    }

    /// GPU 1's plan (or `part` of it) with mount API `api`.
    pub fn plan_with(&self, container: &Container, part: Option<Part>, api: MountApi) -> MountPlan {
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
        let mut plan =
            MountPlan::build(self.hostdir.path(), &self.info, &container.dirs, &opts).unwrap();
        plan.mount_api = api;
        plan
    }

    /// GPU 1's part: its node, `/proc` directory and rule.
    pub fn gpu1(&self) -> Part {
        Part::Gpu(self.info.gpus[1].clone())
    }

    /// Its mounts, every file of its tree (read through `/proc/<pid>/root`) and its device
    /// cgroup's list.
    pub fn state(&self) -> (String, Vec<PathBuf>, String) {
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

pub fn host_mounts() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// Runs `work` with the `n`th fault point it passes failing with `errno`; the names and
/// subjects of the points passed.
pub fn failing_at<R>(n: Option<usize>, work: impl FnOnce() -> R) -> (R, Vec<(String, PathBuf)>) {
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
