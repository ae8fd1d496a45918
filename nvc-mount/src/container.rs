//! What nvc needs to know about the container: where its libraries, binaries and ldconfig
//! live, who owns it.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::fstatat;
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};
use nvc_ldcache::Platform;

use crate::Error;
use crate::inroot::InRoot;
use crate::kernfs::{OpenError, open_beneath, proc_dir};

/// Where things go inside the container (upstream's `copy_config`): detected from the image
/// ([`detect_dirs`](crate::detect_dirs)); change a field to put things elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ContainerDirs {
    /// Binaries (`/usr/bin`).
    pub bins: PathBuf,
    /// Native libraries: `/usr/lib/<multiarch>` (`/usr/lib/x86_64-linux-gnu`) on
    /// Debian-like images, else `/usr/lib64`.
    pub libs: PathBuf,
    /// 32-bit libraries: `/usr/lib/<compat32 multiarch>` (`/usr/lib/i386-linux-gnu`) on
    /// Debian-like images, else `/usr/lib32`, or `/usr/lib` when it exists and is not the
    /// 64-bit directory; `/var/empty` on a Debian image of an architecture without a 32-bit
    /// set (as upstream).
    pub libs32: PathBuf,
    /// The CUDA runtime directory (`/usr/local/cuda`), for forward compatibility.
    pub cudart: PathBuf,
    /// The container's ldconfig: `/sbin/ldconfig.real` when the image has it (Debian's
    /// `/sbin/ldconfig` is a shell wrapper), else `/sbin/ldconfig`.
    pub ldconfig: PathBuf,
    /// The image's architecture (its glibc's trusted directories, for the built-in linker
    /// cache update): this build's, [`Platform::host`], unless detected for another.
    #[cfg_attr(feature = "serde", serde(with = "platform_by_name"))]
    pub(crate) platform: &'static Platform,
}

/// A platform serialised as its name (`x86_64`), read back as the built-in one.
#[cfg(feature = "serde")]
mod platform_by_name {
    use nvc_ldcache::Platform;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(p: &&'static Platform, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.name)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<&'static Platform, D::Error> {
        let name = String::deserialize(d)?;
        Platform::from_name(&name)
            .ok_or_else(|| D::Error::custom(format!("unknown platform {name}")))
    }
}

/// Detects the directories of the image at `rootfs` (a host path) for this build's
/// architecture, resolving every probe inside it so that the image's links cannot point the
/// detection at the host. (Free functions, not methods: [`ContainerDirs`] is re-exported by
/// nvc-core, whose API must not carry this crate's error or nvc-ldcache's `Platform`.)
///
/// # Errors
///
/// A resolution error other than "not found" (permission, link loop), naming the path.
pub fn detect_dirs(rootfs: &Path) -> Result<ContainerDirs, Error> {
    detect_dirs_for(rootfs, Platform::host())
}

/// [`detect_dirs`] for an image of `platform`'s architecture.
///
/// # Errors
///
/// As [`detect_dirs`].
pub fn detect_dirs_for(rootfs: &Path, platform: &'static Platform) -> Result<ContainerDirs, Error> {
    let root = InRoot::new(rootfs).map_err(crate::apply::fail("open", rootfs))?;
    let exists = |p: &str| root.resolve(Path::new(p));
    let debian = exists("/etc/debian_version")?.is_some();
    let (libs, libs32) = if debian {
        let libs32 = platform.compat32.map_or_else(
            || "/var/empty".into(),
            |c| format!("/usr/lib/{}", c.multiarch),
        );
        (
            PathBuf::from(format!("/usr/lib/{}", platform.multiarch)),
            PathBuf::from(libs32),
        )
    } else {
        let libs = PathBuf::from("/usr/lib64");
        let libs32 = if exists("/usr/lib32")?.is_some() {
            PathBuf::from("/usr/lib32")
        } else {
            match (exists("/usr/lib")?, exists("/usr/lib64")?) {
                (Some(lib), lib64) if Some(&lib) != lib64.as_ref() => PathBuf::from("/usr/lib"),
                _ => PathBuf::from("/usr/lib32"),
            }
        };
        (libs, libs32)
    };
    let ldconfig = if exists("/sbin/ldconfig.real")?.is_some() {
        "/sbin/ldconfig.real"
    } else {
        "/sbin/ldconfig"
    };
    Ok(ContainerDirs {
        bins: "/usr/bin".into(),
        libs,
        libs32,
        cudart: "/usr/local/cuda".into(),
        ldconfig: ldconfig.into(),
        platform,
    })
}

/// The container a runtime hands nvc: its init process and root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The container's init process.
    pub pid: u32,
    /// The root filesystem, a host path: before `pivot_root` (a runtime hook's view), or
    /// `/proc/<pid>/root` for a running container ([`Container::running`]), whose root is
    /// then reached through a descriptor taken from that link at lookup.
    pub rootfs: PathBuf,
    /// Owner of the container (of `/proc/<pid>`), who owns created mountpoints.
    pub uid: u32,
    /// Group of the owner.
    pub gid: u32,
    /// Detected directories.
    pub dirs: ContainerDirs,
    /// Where `/proc` is found: `/` when supervised, the rootfs in standalone mode.
    pub proc_root: PathBuf,
    process: Process,
    /// Its user namespace's id maps, where it is not the caller's (supervised mode).
    userns: Option<crate::userns::UserNs>,
}

/// A user-namespaced container's user namespace, open, and its owner's ids inside it.
pub(crate) struct ContainerUserNs {
    pub(crate) fd: OwnedFd,
    /// uid and gid.
    pub(crate) owner: (u32, u32),
}

/// A pidfd on the container process, when the kernel has them (Linux 5.3): it lets every
/// later step check that `/proc/<pid>` still means the process looked up; and, for a running
/// container, its root directory (opened through the host's `/proc/<pid>/root`).
#[derive(Debug, Clone, Default)]
struct Process {
    pidfd: Option<Arc<OwnedFd>>,
    root: Option<Arc<OwnedFd>>,
}

impl PartialEq for Process {
    /// Containers are the same when their facts are; the handle adds no identity.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Process {}

impl Container {
    /// Reads the facts of container process `pid` with root filesystem `rootfs`
    /// (supervised mode: nvc sees the host's `/proc`), and keeps a pidfd on the process.
    ///
    /// # Errors
    ///
    /// [`Error::BadRootfs`] for a relative or `/` rootfs, [`Error::NoProcess`] when
    /// `/proc/<pid>` is gone, or a detection error.
    pub fn from_pid(pid: u32, rootfs: &Path) -> Result<Self, Error> {
        let pidfd = nvc_sys::pidfd_open(pid).ok().map(Arc::new);
        Self::lookup(pid, rootfs, Path::new("/"), Process { pidfd, root: None })
    }

    /// A running container (started, its root pivoted): process `pid`'s own root directory
    /// is the root, taken from the host's `/proc/<pid>/root` (procfs checked, `<pid>`
    /// opened following no link) and held open, so nothing the container does to its
    /// mount table later changes which directory nvc works in; the rootfs shown and probed
    /// from the host is `/proc/<pid>/root`. With a pidfd (Linux 5.3) the process is checked
    /// afterwards to be the one the descriptor was taken from.
    ///
    /// # Errors
    ///
    /// [`Error::NoProcess`] when the process is gone, [`Error::Namespace`] when its root
    /// cannot be opened, or a detection error.
    pub fn running(pid: u32) -> Result<Self, Error> {
        Self::running_with(pid, nvc_sys::pidfd_open(pid).ok())
    }

    /// [`Container::running`] for the process of `pidfd` (a runtime's `pidfd_open` or
    /// `CLONE_PIDFD` descriptor of the container's init): no pid is looked up by number, so
    /// the process cannot be confused with another that reused its pid.
    ///
    /// # Errors
    ///
    /// [`Error::NoProcess`] (pid 0) when `pidfd` is not a pidfd or its process has exited;
    /// else as [`Container::running`].
    ///
    /// # Kernel requirements
    ///
    /// Linux 5.3 (pidfds and their `Pid:` in `/proc/self/fdinfo`).
    pub fn running_pidfd(pidfd: OwnedFd) -> Result<Self, Error> {
        use std::os::fd::AsRawFd;
        let gone = |errno: Errno| Error::NoProcess {
            pid: 0,
            source: crate::error::os(errno),
        };
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))
            .map_err(|_| gone(Errno::EBADF))?;
        // `Pid: -1` once the process has exited; no `Pid:` line for another kind of file.
        let pid = info
            .lines()
            .find_map(|l| l.strip_prefix("Pid:"))
            .ok_or_else(|| gone(Errno::EBADF))?
            .trim()
            .parse::<u32>()
            .map_err(|_| gone(Errno::ESRCH))?;
        Self::running_with(pid, Some(pidfd))
    }

    fn running_with(pid: u32, pidfd: Option<OwnedFd>) -> Result<Self, Error> {
        let pidfd = pidfd.map(Arc::new);
        let rootfs = PathBuf::from(format!("/proc/{pid}/root"));
        let fail = |e: OpenError| Error::Namespace {
            step: "open the root of",
            path: rootfs.clone(),
            error: e.into_io(),
        };
        let proc = proc_dir(Path::new("/")).map_err(fail)?;
        let dir = open_beneath(
            &proc,
            Path::new(&pid.to_string()),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        )
        .map_err(|e| Error::NoProcess {
            pid,
            source: crate::error::os(e),
        })?;
        // `root` is procfs's own link to the process's root, in a directory checked above.
        let root = nix::fcntl::openat(
            dir.as_fd(),
            "root",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| fail(e.into()))?;
        let process = Process {
            pidfd,
            root: Some(Arc::new(root)),
        };
        process.check_alive(pid)?;
        Self::lookup(pid, &rootfs, Path::new("/"), process)
    }

    /// Standalone mode (upstream's `configure` without `--pid`): the container process is
    /// the caller's parent, and its `/proc` is the one under `rootfs` (the caller runs in the
    /// container's pid namespace, with the container's `/proc` mounted in the rootfs).
    ///
    /// # Errors
    ///
    /// As [`Container::from_pid`], for `<rootfs>/proc/<ppid>`.
    pub fn standalone(rootfs: &Path) -> Result<Self, Error> {
        let ppid = u32::try_from(nix::unistd::getppid().as_raw()).unwrap_or(0);
        Self::lookup(ppid, rootfs, rootfs, Process::default())
    }

    fn lookup(pid: u32, rootfs: &Path, proc_root: &Path, process: Process) -> Result<Self, Error> {
        if !rootfs.is_absolute() || rootfs == Path::new("/") {
            return Err(Error::BadRootfs {
                rootfs: rootfs.into(),
            });
        }
        let proc = proc_dir(proc_root).map_err(|e| Error::Namespace {
            step: "open procfs",
            path: proc_root.join("proc"),
            error: e.into_io(),
        })?;
        let meta = fstatat(
            proc.as_fd(),
            pid.to_string().as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::NoProcess {
            pid,
            source: crate::error::os(e),
        })?;
        // Standalone, nvc runs in the container's own user namespace already.
        let userns = if proc_root == Path::new("/") {
            crate::userns::UserNs::of(pid, (meta.st_uid, meta.st_gid)).map_err(|e| {
                Error::Namespace {
                    step: "read the user namespace of",
                    path: format!("/proc/{pid}/ns/user").into(),
                    error: e,
                }
            })?
        } else {
            None
        };
        Ok(Container {
            pid,
            rootfs: rootfs.into(),
            uid: meta.st_uid,
            gid: meta.st_gid,
            dirs: detect_dirs(rootfs)?,
            proc_root: proc_root.into(),
            process,
            userns,
        })
    }

    /// Its user namespace's maps, where it is not the caller's.
    pub(crate) fn userns(&self) -> Option<&crate::userns::UserNs> {
        self.userns.as_ref()
    }

    /// The root directory held open for a running container ([`Container::running`]).
    pub(crate) fn root_fd(&self) -> Option<&OwnedFd> {
        self.process.root.as_deref()
    }

    /// Whether this is a running container, reached through its process's root.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.process.root.is_some()
    }

    /// Where the container's mount namespace is: `<proc_root>/proc/<pid>/ns/mnt`.
    #[must_use]
    pub fn mount_ns_path(&self) -> PathBuf {
        self.ns_path("mnt")
    }

    /// `<proc_root>/proc/<pid>/ns/<name>`.
    fn ns_path(&self, name: &str) -> PathBuf {
        self.proc_root.join(format!("proc/{}/ns/{name}", self.pid))
    }

    /// Opens the container's mount namespace (`<proc_root>/proc/<pid>/ns/mnt`): `/proc`
    /// resolved inside `proc_root` and checked to be procfs, `<pid>/ns` opened below it
    /// following no link and crossing no mount, the result checked to be a namespace file
    /// (in standalone mode the image cannot point nvc at a namespace of its choosing). With a
    /// pidfd, checks afterwards that the process is still the one looked up, so a pid reused
    /// since cannot lead nvc into another process's namespace.
    ///
    /// # Errors
    ///
    /// [`Error::Namespace`] when the file cannot be opened, [`Error::NoProcess`] when the
    /// container process has exited.
    pub fn mount_ns(&self) -> Result<OwnedFd, Error> {
        self.namespace("mnt")
    }

    /// The container's user namespace and its owner's ids inside it, where that namespace
    /// is not the caller's (supervised mode; see [`crate::userns`]): opened as
    /// [`Container::mount_ns`] opens the mount namespace.
    ///
    /// # Errors
    ///
    /// As [`Container::mount_ns`]; [`Error::Namespace`] (`EOVERFLOW`) when the owner is not
    /// mapped into the namespace.
    pub(crate) fn user_ns(&self) -> Result<Option<ContainerUserNs>, Error> {
        let Some(userns) = &self.userns else {
            return Ok(None);
        };
        let owner = userns.owner_inside().ok_or_else(|| Error::Namespace {
            step: "map the container's owner into",
            path: self.ns_path("user"),
            error: std::io::Error::from_raw_os_error(Errno::EOVERFLOW as i32),
        })?;
        Ok(Some(ContainerUserNs {
            fd: self.namespace("user")?,
            owner,
        }))
    }

    /// Opens the container process's namespace file `ns/<name>` (see [`Container::mount_ns`]).
    fn namespace(&self, name: &str) -> Result<OwnedFd, Error> {
        let fail = |e: OpenError| Error::Namespace {
            step: "open",
            path: self.ns_path(name),
            error: e.into_io(),
        };
        let proc = proc_dir(&self.proc_root).map_err(fail)?;
        let dir = open_beneath(
            &proc,
            Path::new(&format!("{}/ns", self.pid)),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        )
        .map_err(|e| fail(e.into()))?;
        // `<name>` is procfs's own link to the namespace, in a directory checked above.
        let ns = nix::fcntl::openat(
            dir.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| fail(e.into()))?;
        let found = fstatfs(ns.as_fd())
            .map_err(|e| fail(e.into()))?
            .filesystem_type();
        if found != NSFS_MAGIC {
            return Err(fail(OpenError::NotKernelFs { found: found.0 }));
        }
        self.process.check_alive(self.pid)?;
        Ok(ns)
    }
}

impl Process {
    /// [`Error::NoProcess`] when the pidfd says the process looked up has exited (its pid
    /// may name another process now).
    fn check_alive(&self, pid: u32) -> Result<(), Error> {
        if let Some(pidfd) = &self.pidfd
            && !nvc_sys::pidfd_alive(pidfd.as_fd()).unwrap_or(true)
        {
            return Err(Error::NoProcess {
                pid,
                source: std::io::Error::from_raw_os_error(Errno::ESRCH as i32),
            });
        }
        Ok(())
    }
}
