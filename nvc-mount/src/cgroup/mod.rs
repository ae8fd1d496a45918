//! Device cgroups: granting a container access to device nodes (upstream §7), v1 through
//! `devices.allow`, v2 by splicing allow rules in front of the runtime's eBPF program.

mod discover;
mod grant;
pub mod program;

pub use discover::CgroupVersion;
pub use grant::DeviceGrant;

use std::path::{Path, PathBuf};

use crate::Error;

/// The device cgroup of one container process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCgroup {
    /// Which controller governs it.
    pub version: CgroupVersion,
    /// Its directory on the host (e.g. `/sys/fs/cgroup/devices/docker/<id>` or
    /// `/sys/fs/cgroup/system.slice/docker-<id>.scope`).
    pub path: PathBuf,
}

impl DeviceCgroup {
    /// Finds the device cgroup of process `pid` from `<proc_root>/proc/<pid>/cgroup` and the
    /// mount table `mountinfo` (the caller's `/proc/self/mountinfo` when it sees the host's
    /// cgroup mounts, `<rootfs>/proc/<pid>/mountinfo` in standalone mode). See
    /// [`DeviceCgroup::parse`] for the rules.
    ///
    /// # Errors
    ///
    /// [`Error::Cgroup`] naming the file that could not be read or what it lacks.
    pub fn of_process(pid: u32, proc_root: &Path, mountinfo: &Path) -> Result<Self, Error> {
        let cgroup_file = proc_root.join(format!("proc/{pid}/cgroup"));
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| Error::Cgroup {
                path: path.to_path_buf(),
                what: format!("cannot read: {e}"),
            })
        };
        let cgroup = read(&cgroup_file)?;
        let table = read(mountinfo)?;
        Self::parse(&cgroup, &table, proc_root).map_err(|what| Error::Cgroup {
            path: cgroup_file,
            what,
        })
    }

    /// The device cgroup described by the bytes of a `/proc/<pid>/cgroup` file and a
    /// `mountinfo` table, below `proc_root`. Every line shape the kernel writes is accepted
    /// (controllers upstream trips over, such as `1:net_cls:/`, are ignored); a v1
    /// `devices` line wins over the unified `0::` line (hybrid hosts, as upstream); the
    /// hierarchy's mount root is stripped from the path; `..` anywhere is refused.
    ///
    /// # Errors
    ///
    /// A message for the malformed or missing part.
    pub fn parse(cgroup: &[u8], mountinfo: &[u8], proc_root: &Path) -> Result<Self, String> {
        discover::device_cgroup(cgroup, mountinfo, proc_root)
            .map(|(version, path)| DeviceCgroup { version, path })
    }
}
