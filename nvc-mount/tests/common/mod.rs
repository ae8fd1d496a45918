//! The fixture the tier-c tests share: a paused container, a probed simulated host and an
//! empty Debian-like image.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nvc_driver::{DriverInfo, DriverOptions, probe_driver};
use nvc_mount::{Container, Ldconfig, LdconfigOptions, Limits, MountPlan, PlanOptions};
use nvc_testkit::{DeviceNodes, Host, PausedContainer, Scenario};

pub mod running;

pub struct Sim {
    pub c: PausedContainer,
    pub hostdir: tempfile::TempDir,
    pub host: Host,
    pub info: DriverInfo,
    /// Holds `etc/debian_version`, an empty `etc/ld.so.conf` and `proc/driver`.
    pub rootfs: tempfile::TempDir,
}

/// The simulated host `scenario` built in a new directory and probed (its own
/// `/proc/devices`); `None`, with the reason printed, without device nodes.
pub fn probed_host(scenario: &str) -> Option<(tempfile::TempDir, Host, DriverInfo)> {
    let hostdir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin(scenario).unwrap(), hostdir.path()).unwrap();
    if !matches!(host.device_nodes_state(), DeviceNodes::Created) {
        nvc_testkit::skip!("no device nodes");
        return None;
    }
    let mut opts = DriverOptions::new(hostdir.path());
    opts.discover.proc_devices = hostdir.path().join("proc/devices");
    let info = probe_driver(&opts).unwrap();
    Some((hostdir, host, info))
}

/// `None`, with the reason printed, without root or device nodes.
pub fn sim(scenario: &str) -> Option<Sim> {
    let c = PausedContainer::start()?;
    let (hostdir, host, info) = probed_host(scenario)?;
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &["proc/driver"], false).unwrap();
    Some(Sim {
        c,
        hostdir,
        host,
        info,
        rootfs,
    })
}

impl Sim {
    /// Creates `dirs` in the image.
    pub fn mkdirs(&self, dirs: &[&str]) {
        for d in dirs {
            fs::create_dir_all(self.rootfs.path().join(d)).unwrap();
        }
    }

    /// The paused container with the image as its rootfs.
    pub fn container(&self) -> Container {
        Container::from_pid(self.c.pid(), self.rootfs.path()).unwrap()
    }

    /// The container's mounts under the rootfs.
    pub fn mounts(&self) -> Vec<String> {
        let prefix = format!("{} ", self.rootfs.path().display());
        let under = format!("{}/", self.rootfs.path().display());
        self.c
            .mountinfo()
            .lines()
            .filter(|l| l.contains(&prefix) || l.contains(&under))
            .map(str::to_owned)
            .collect()
    }

    /// Every path under the rootfs with its link target, for "exactly as before".
    pub fn tree(&self) -> Vec<(PathBuf, Option<PathBuf>)> {
        let mut out = Vec::new();
        let mut todo = vec![self.rootfs.path().to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let meta = fs::symlink_metadata(&p).unwrap();
                if meta.is_dir() {
                    todo.push(p.clone());
                }
                out.push((p.clone(), fs::read_link(&p).ok()));
            }
        }
        out.sort();
        out
    }

    /// The host's GPUs a `--device` list selects.
    pub fn select(&self, devices: &str) -> nvc_driver::Selection {
        nvc_driver::DeviceRequest::parse(devices)
            .unwrap()
            .select(&self.info.gpus)
            .unwrap()
    }

    /// The plan for `container` with `opts`.
    pub fn plan(&self, container: &Container, opts: &PlanOptions) -> MountPlan {
        MountPlan::build(self.hostdir.path(), &self.info, &container.dirs, opts).unwrap()
    }
}

/// The first library bind of `plan`: where it goes in the container.
pub fn first_library(plan: &MountPlan) -> PathBuf {
    plan.ops
        .iter()
        .find_map(|op| match op {
            nvc_mount::Op::Bind { target, .. }
                if target.starts_with("/usr/lib/x86_64-linux-gnu") =>
            {
                Some(target.clone())
            }
            _ => None,
        })
        .unwrap()
}

/// The host's `ldconfig` with the default limits, as nvc-core runs it by default.
pub fn host_ldconfig() -> LdconfigOptions {
    LdconfigOptions {
        ldconfig: Ldconfig::Host("/sbin/ldconfig".into()),
        no_pivot: false,
        extra_dirs: Vec::new(),
        cuda_compat_dir: None,
        limits: Limits::default(),
    }
}

/// Builds the C program `source` statically into `out` (with `defines`, `-DNAME=VALUE`);
/// false, with the skip reported, without a working `gcc -static`.
pub fn build_static(source: &str, out: &Path, defines: &[String]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("prog.c");
    fs::write(&src, source).unwrap();
    let built = Command::new("gcc")
        .arg("-static")
        .args(defines)
        .arg("-o")
        .arg(out)
        .arg(&src)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        nvc_testkit::skip!("cannot build a static test program with gcc");
        return false;
    }
    true
}
