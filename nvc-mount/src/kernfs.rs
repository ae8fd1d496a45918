//! Opening files of the image and the container's `/proc` and cgroup files without
//! trusting the paths that lead to them: in standalone mode they sit under the image's root, whose links the image
//! chose. Each base directory is resolved inside its root (`RESOLVE_IN_ROOT`) and checked
//! to be the kernel filesystem it should be (procfs, cgroupfs) before anything below it is
//! opened — without following links and without crossing into other mounts.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;
use nix::sys::statfs::{FsType, fstatfs};

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

/// `path` made relative (only its normal components).
pub(crate) fn relative(path: &Path) -> PathBuf {
    let r: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if r.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        r
    }
}

/// Opens `path` inside `root` (a trusted host directory) resolved as if `root` were `/`:
/// links the image placed on the way cannot lead out of it, and magic links are refused.
pub(crate) fn open_in_root(root: &Path, path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let base = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2_retrying(base.as_fd(), &relative(path), how)
}

/// `openat2`, retried when the kernel answers `EAGAIN`: with `RESOLVE_IN_ROOT` or
/// `RESOLVE_BENEATH` it does so when a rename or mount anywhere on the system raced with a
/// `..` step (a container's processes can cause that at will); 64 tries.
pub(crate) fn openat2_retrying(
    dir: BorrowedFd<'_>,
    path: &Path,
    how: OpenHow,
) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match openat2(dir, path, how) {
            Err(Errno::EAGAIN) if tries < 64 => tries += 1,
            other => return other,
        }
    }
}

/// Opens directory `dir` inside `root` ([`open_in_root`]) and checks that it is on a
/// filesystem of type `magic`.
pub(crate) fn open_dir_in(root: &Path, dir: &Path, magic: FsType) -> Result<OwnedFd, OpenError> {
    let fd = open_in_root(root, dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
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
    let mut bytes = Vec::new();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Renames anywhere make the kernel answer `EAGAIN` to an in-root resolution with `..`
    /// steps it raced with; a container's processes can rename at will, so every in-root
    /// open retries.
    #[test]
    fn dot_dot_steps_racing_renames_are_retried_not_failed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::create_dir(root.join("x")).unwrap();
        // `..` reaches the kernel through a link's target (paths are made relative first).
        std::os::unix::fs::symlink("../a/b/c/../../b/c/../../b/c/../..", root.join("a/l")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let renamer = {
            let (stop, root) = (Arc::clone(&stop), root.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::fs::rename(root.join("x"), root.join("y"));
                    let _ = std::fs::rename(root.join("y"), root.join("x"));
                }
            })
        };
        let path = Path::new("a/l/b/c");
        // Without the retry, an EAGAIN came within a quarter of a second here.
        let start = std::time::Instant::now();
        let opened = std::iter::repeat_with(|| {
            open_in_root(&root, path, OFlag::O_PATH | OFlag::O_DIRECTORY)
        })
        .take_while(|_| start.elapsed() < std::time::Duration::from_secs(2))
        .find(Result::is_err);
        stop.store(true, Ordering::Relaxed);
        renamer.join().unwrap();
        assert_eq!(opened.map(|r| r.map(drop)), None);
    }
}
