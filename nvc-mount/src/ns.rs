//! Running work inside a container's mount namespace without touching the caller's threads.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns, unshare};

use crate::{Container, Error};

/// Runs `work` inside the mount namespace of process `pid`, on a dedicated thread.
///
/// `setns(CLONE_NEWNS)` refuses a thread whose filesystem context (root, cwd, umask) is shared,
/// which every thread of a multithreaded process has; and it would move that thread's view of
/// the filesystem. So a new thread first unshares its filesystem context (`CLONE_FS`), then
/// enters the namespace; the caller's threads, namespace and working directory never change,
/// and the thread ends with the work.
///
/// # Errors
///
/// [`Error::Namespace`] when the namespace cannot be opened or entered (no such process,
/// missing `CAP_SYS_ADMIN`), or what `work` returns.
///
/// # Kernel requirements
///
/// `setns(2)` with `CLONE_NEWNS` (Linux 3.8).
pub fn in_mount_ns<T, F>(pid: u32, work: F) -> Result<T, Error>
where
    T: Send,
    F: FnOnce() -> Result<T, Error> + Send,
{
    let path = PathBuf::from(format!("/proc/{pid}/ns/mnt"));
    let ns = std::fs::File::open(&path).map_err(|e| Error::Namespace {
        step: "open",
        path: path.clone(),
        error: e,
    })?;
    enter(ns.into(), &path, work)
}

/// [`in_mount_ns`] for a container looked up before (checked to be the same process, see
/// [`Container::mount_ns`]).
pub(crate) fn in_container_ns<T, F>(container: &Container, work: F) -> Result<T, Error>
where
    T: Send,
    F: FnOnce() -> Result<T, Error> + Send,
{
    enter(container.mount_ns()?, &container.mount_ns_path(), work)
}

fn enter<T, F>(ns: OwnedFd, path: &Path, work: F) -> Result<T, Error>
where
    T: Send,
    F: FnOnce() -> Result<T, Error> + Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let fail = |step, errno| Error::Namespace {
                    step,
                    path: path.to_path_buf(),
                    error: crate::error::os(errno),
                };
                unshare(CloneFlags::CLONE_FS).map_err(|e| fail("unshare(CLONE_FS)", e))?;
                setns(&ns, CloneFlags::CLONE_NEWNS).map_err(|e| fail("setns(CLONE_NEWNS)", e))?;
                work()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(Error::Device {
                    what: "the namespace thread panicked".into(),
                })
            })
    })
}
