//! Opening files of the image and the container's `/proc` and cgroup files without
//! trusting the paths that lead to them: in standalone mode they sit under the image's root, whose links the image
//! chose. Each base directory is resolved inside its root (`RESOLVE_IN_ROOT`) and checked
//! to be the kernel filesystem it should be (procfs, cgroupfs) before anything below it is
//! opened — without following links and without crossing into other mounts.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::statfs::{FsType, fstatfs};

use crate::inroot::{InRoot, openat2_retrying};

/// The most bytes read of one kernel file (`/proc/<pid>/mountinfo` of a busy host is tens
/// of KiB).
pub(crate) const READ_LIMIT: u64 = 4 << 20;

/// Why a kernel file could not be opened: the errno, or the filesystem it was on instead.
#[derive(Debug)]
pub(crate) enum OpenError {
    Os(Errno),
    NotKernelFs { found: i64 },
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Os(e) => write!(f, "{e}"),
            OpenError::NotKernelFs { found } => write!(
                f,
                "not the kernel filesystem expected there (filesystem magic {found:#x})"
            ),
        }
    }
}

impl From<Errno> for OpenError {
    fn from(e: Errno) -> Self {
        OpenError::Os(e)
    }
}

impl OpenError {
    pub(crate) fn into_io(self) -> std::io::Error {
        match self {
            OpenError::Os(e) => std::io::Error::from_raw_os_error(e as i32),
            other => std::io::Error::other(other.to_string()),
        }
    }
}

/// Opens directory `dir` inside `root` ([`InRoot::open`]) and checks that it is on a
/// filesystem of type `magic`.
pub(crate) fn open_dir_in(root: &Path, dir: &Path, magic: FsType) -> Result<OwnedFd, OpenError> {
    let fd = InRoot::new(root)?.open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let found = fstatfs(fd.as_fd())?.filesystem_type();
    if found != magic {
        return Err(OpenError::NotKernelFs { found: found.0 });
    }
    Ok(fd)
}

/// The host's procfs root (`/proc`, checked to be procfs).
pub(crate) fn host_procfs() -> Result<OwnedFd, crate::Error> {
    let path = Path::new("/proc");
    open_dir_in(Path::new("/"), path, nix::sys::statfs::PROC_SUPER_MAGIC).map_err(|e| {
        crate::Error::Namespace {
            step: "open",
            path: path.to_path_buf(),
            error: e.into_io(),
        }
    })
}

/// Opens `name` below `dir` following no link and crossing no mount.
pub(crate) fn open_beneath(dir: &OwnedFd, name: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS
            | ResolveFlag::RESOLVE_NO_XDEV,
    );
    openat2_retrying(dir.as_fd(), name, how)
}

/// Reads `name` below `dir` ([`open_beneath`]), at most [`READ_LIMIT`] bytes.
pub(crate) fn read_beneath(dir: &OwnedFd, name: &Path) -> Result<Vec<u8>, std::io::Error> {
    let fd = open_beneath(dir, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    // Room for a busy host's `mountinfo` from the start (an empty vector starts with a
    // 32-byte probe and grows as it goes).
    let mut bytes = Vec::with_capacity(64 << 10);
    File::from(fd).take(READ_LIMIT).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The procfs of `proc_root` (`<proc_root>/proc`), checked to be procfs.
pub(crate) fn proc_dir(proc_root: &Path) -> Result<OwnedFd, OpenError> {
    open_dir_in(
        proc_root,
        Path::new("/proc"),
        nix::sys::statfs::PROC_SUPER_MAGIC,
    )
}
