//! The fixture the tier-c tests share: a paused container, a probed simulated host and an
//! empty Debian-like image.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;

use nvc_driver::{DriverInfo, DriverOptions, probe_driver};
use nvc_mount::{Container, MountPlan, PlanOptions};
use nvc_testkit::{DeviceNodes, Host, PausedContainer, Scenario};

pub struct Sim {
    pub c: PausedContainer,
    pub hostdir: tempfile::TempDir,
    pub host: Host,
    pub info: DriverInfo,
    /// Holds `etc/debian_version`, an empty `etc/ld.so.conf` and `proc/driver`.
    pub rootfs: tempfile::TempDir,
}

/// `None`, with the reason printed, without root or device nodes.
pub fn sim(scenario: &str) -> Option<Sim> {
    let c = PausedContainer::start()?;
    let hostdir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin(scenario).unwrap(), hostdir.path()).unwrap();
    if !matches!(host.device_nodes_state(), DeviceNodes::Created) {
        nvc_testkit::skip!("no device nodes");
        return None;
    }
    let mut opts = DriverOptions::new(hostdir.path());
    opts.discover.proc_devices = hostdir.path().join("proc/devices");
    let info = probe_driver(&opts).unwrap();
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

    /// The plan for `container` with `opts`.
    pub fn plan(&self, container: &Container, opts: &PlanOptions) -> MountPlan {
        MountPlan::build(self.hostdir.path(), &self.info, &container.dirs, opts).unwrap()
    }
}
