//! Device cgroups: granting a container access to device nodes (upstream's cgroup step of
//! `nvc_device_mount`), v1 through `devices.allow`, v2 by splicing allow rules in front of
//! the runtime's eBPF program.

mod discover;
mod grant;
pub mod program;

pub use discover::CgroupVersion;
pub use grant::{DeviceGrant, Note};

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC};

use crate::Error;
use crate::kernfs::{open_beneath, open_dir_in, proc_dir, read_beneath};

/// The device cgroup of one container process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCgroup {
    /// Which controller governs it.
    pub version: CgroupVersion,
    /// Its directory on the host (e.g. `/sys/fs/cgroup/devices/docker/<id>` or
    /// `/sys/fs/cgroup/system.slice/docker-<id>.scope`).
    pub path: PathBuf,
    /// The root `path` is resolved in: `/`, or the rootfs in standalone mode.
    root: PathBuf,
}

impl DeviceCgroup {
    /// The cgroup directory `path` on the host, governed by `version`'s device controller.
    #[must_use]
    pub fn new(version: CgroupVersion, path: PathBuf) -> Self {
        DeviceCgroup {
            version,
            path,
            root: PathBuf::from("/"),
        }
    }

    /// Finds the device cgroup of process `pid` from `<proc_root>/proc/<pid>/cgroup` and the
    /// hierarchy's mount: when supervised (`proc_root` is `/`: nvc sees the host's cgroup
    /// mounts), the one at its usual place where the kernel names it by id (`statmount`,
    /// Linux 6.8), else the first of the caller's own mount table;
    /// `<proc_root>/proc/<pid>/mountinfo` in standalone mode. `/proc` is
    /// resolved inside `proc_root` and checked to be procfs, the files below it opened
    /// following no link, and read with a size cap; in standalone mode the cgroup directory
    /// is later resolved inside the rootfs too, and checked to be cgroupfs, before any
    /// control file is written. See [`DeviceCgroup::parse`] for the rules.
    ///
    /// # Errors
    ///
    /// [`Error::Cgroup`] naming the file that could not be read or what it lacks.
    pub fn of_process(pid: u32, proc_root: &Path) -> Result<Self, Error> {
        let cgroup_file = proc_root.join(format!("proc/{pid}/cgroup"));
        let fail = |path: &Path, what: &str, error: Option<std::io::Error>| Error::Cgroup {
            path: path.to_path_buf(),
            what: what.to_owned(),
            error,
        };
        let proc = proc_dir(proc_root)
            .map_err(|e| fail(&proc_root.join("proc"), "cannot open", Some(e.into_io())))?;
        let cgroup = read_beneath(&proc, Path::new(&format!("{pid}/cgroup")))
            .map_err(|e| fail(&cgroup_file, "cannot read", Some(e)))?;
        // The host's hierarchies, where the kernel names their mounts by id (Linux 6.8): no
        // mount table read.
        if proc_root == Path::new("/")
            && let Ok((version, path)) = discover::device_cgroup_in(&cgroup, host_mount, proc_root)
        {
            return Ok(DeviceCgroup {
                version,
                path,
                root: proc_root.to_path_buf(),
            });
        }
        let table_of = if proc_root == Path::new("/") {
            std::process::id()
        } else {
            pid
        };
        let table =
            read_beneath(&proc, Path::new(&format!("{table_of}/mountinfo"))).map_err(|e| {
                let path = proc_root.join(format!("proc/{table_of}/mountinfo"));
                fail(&path, "cannot read", Some(e))
            })?;
        Self::parse(&cgroup, &table, proc_root).map_err(|what| fail(&cgroup_file, &what, None))
    }

    /// Opens the cgroup directory: resolved inside its root, checked to be a cgroup
    /// filesystem of its version.
    pub(crate) fn open_dir(&self) -> Result<OwnedFd, Error> {
        let magic = match self.version {
            CgroupVersion::V1 => CGROUP_SUPER_MAGIC,
            CgroupVersion::V2 => CGROUP2_SUPER_MAGIC,
        };
        let inside = self.path.strip_prefix(&self.root).unwrap_or(&self.path);
        open_dir_in(&self.root, inside, magic).map_err(|e| Error::Cgroup {
            path: self.path.clone(),
            what: "cannot open".to_owned(),
            error: Some(e.into_io()),
        })
    }

    /// Opens the control file `name` of the cgroup below `dir`, the cgroup directory opened
    /// before ([`DeviceCgroup::open_dir`]), following no link.
    pub(crate) fn open_file_in(
        &self,
        dir: &OwnedFd,
        name: &str,
        flags: OFlag,
    ) -> Result<std::fs::File, Error> {
        open_beneath(dir, Path::new(name), flags)
            .map(std::fs::File::from)
            .map_err(|e| Error::Cgroup {
                path: self.path.join(name),
                what: "cannot open".to_owned(),
                error: Some(crate::error::os(e)),
            })
    }

    /// Opens the cgroup for a sandboxed process to be born in ([`SandboxCgroup`]): its
    /// `cgroup.procs` for writing and, for a cgroup2 cgroup, its directory.
    ///
    /// # Errors
    ///
    /// [`Error::Cgroup`] naming the directory or `cgroup.procs` that could not be opened
    /// (`EACCES` where the caller may not move processes into it).
    pub(crate) fn open_for_sandbox(&self) -> Result<SandboxCgroup, Error> {
        let dir = self.open_dir()?;
        let procs = self.open_file_in(&dir, "cgroup.procs", OFlag::O_WRONLY)?;
        Ok(SandboxCgroup {
            procs,
            dir: (self.version == CgroupVersion::V2).then_some(dir),
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
        discover::device_cgroup(cgroup, mountinfo, proc_root).map(|(version, path)| DeviceCgroup {
            version,
            path,
            root: proc_root.to_path_buf(),
        })
    }
}

/// The host's mount of `version`'s device hierarchy where it is at its usual place — v1's
/// `devices` at `/sys/fs/cgroup/devices` (a cgroup filesystem with `devices.list`), cgroup2
/// at `/sys/fs/cgroup` or `/sys/fs/cgroup/unified` — and the kernel tells its root (`/`
/// only) and mount point by its id (`statmount`, Linux 6.8). `None` elsewhere: the mount
/// table decides.
fn host_mount(version: CgroupVersion) -> Option<discover::CgroupMount> {
    let candidates: &[&str] = match version {
        CgroupVersion::V1 => &["/sys/fs/cgroup/devices"],
        CgroupVersion::V2 => &["/sys/fs/cgroup", "/sys/fs/cgroup/unified"],
    };
    candidates.iter().find_map(|dir| {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(*dir, flags, nix::sys::stat::Mode::empty()).ok()?;
        let id = nvc_sys::statmount::unique_mount_id(fd.as_fd()).ok()?;
        let stat = nvc_sys::statmount::stat_mount(id, true).ok()?;
        let (magic, marker) = match version {
            CgroupVersion::V1 => (CGROUP_SUPER_MAGIC, Some("devices.list")),
            CgroupVersion::V2 => (CGROUP2_SUPER_MAGIC, None),
        };
        let is_magic = i64::try_from(stat.magic).is_ok_and(|m| m == magic.0);
        let marked = marker.is_none_or(|name| {
            nix::sys::stat::fstatat(fd.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok()
        });
        let whole = stat.root.is_some_and(|r| r == b"/");
        let point = String::from_utf8(stat.point?).ok()?;
        (is_magic && marked && whole).then(|| discover::CgroupMount {
            root: "/".to_owned(),
            mount_point: point,
        })
    })
}

/// A device cgroup opened for the ldconfig sandbox ([`DeviceCgroup::open_for_sandbox`]). In
/// a cgroup2 cgroup the sandbox's program is created with `clone3(CLONE_INTO_CGROUP)` given
/// the directory (Linux 5.7), and nothing migrates; in a v1 cgroup, or where the kernel
/// cannot, the sandbox's first process writes itself into `cgroup.procs`
/// ([`nvc_sys::confine::Cgroup`]).
#[derive(Debug)]
pub(crate) struct SandboxCgroup {
    /// Its `cgroup.procs`, open for writing.
    procs: std::fs::File,
    /// Its directory, for a cgroup2 cgroup.
    dir: Option<OwnedFd>,
}

impl SandboxCgroup {
    /// How [`nvc_sys::confine`] places the program in this cgroup.
    pub(crate) fn confine(&self) -> nvc_sys::confine::Cgroup<'_> {
        match &self.dir {
            Some(dir) => nvc_sys::confine::Cgroup::Unified {
                dir: dir.as_fd(),
                procs: self.procs.as_fd(),
            },
            None => nvc_sys::confine::Cgroup::Procs(self.procs.as_fd()),
        }
    }
}

#[cfg(test)]
mod sandbox_tests;

#[cfg(test)]
mod host_mount_tests {
    use super::*;

    /// Where the kernel names the hierarchies' mounts, they show the directory the mount
    /// table's first one does, at the same root.
    #[test]
    fn the_mount_named_by_id_is_the_tables() {
        use std::os::unix::fs::MetadataExt;
        let table = std::fs::read("/proc/self/mountinfo").unwrap();
        let inode = |dir: &str| std::fs::metadata(dir).map(|m| (m.dev(), m.ino())).unwrap();
        for version in [CgroupVersion::V1, CgroupVersion::V2] {
            match host_mount(version) {
                Some(mount) => {
                    let first = discover::find_mount(&table, version).unwrap();
                    assert_eq!(mount.root, first.root);
                    assert_eq!(inode(&mount.mount_point), inode(&first.mount_point));
                }
                None => eprintln!("skipped {version:?}: not at its usual place, or no statmount"),
            }
        }
    }
}
