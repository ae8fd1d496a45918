//! Running work inside a container's mount namespace without touching the caller's threads.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread::{Scope, ScopedJoinHandle};

use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::PROC_SUPER_MAGIC;
use nix::unistd::fchdir;

use crate::kernfs::open_dir_in;
use crate::{Container, Error};

/// Runs `work` inside the mount namespace of process `pid`, on a dedicated thread.
///
/// `setns(CLONE_NEWNS)` refuses a thread whose filesystem context (root, cwd, umask) is shared,
/// which every thread of a multithreaded process has; and it would move that thread's view of
/// the filesystem. So a new thread first unshares its filesystem context (`CLONE_FS`), then
/// enters the namespace; the caller's threads, namespace and working directory never change,
/// and the thread ends with the work.
///
/// The thread's working directory is then the caller's `/proc/self/fd` (the host's procfs,
/// opened before entering and checked to be procfs), so that a descriptor's number, as a
/// relative path, names the descriptor for the syscalls that take only paths
/// (`mount(2)`, `umount2(2)`) — never through the container's `/proc`, which it may have
/// mounted over.
///
/// # Errors
///
/// [`Error::Namespace`] when the namespace cannot be opened or entered (no such process,
/// missing `CAP_SYS_ADMIN`), when no thread can be started, or when `work` panicked (step
/// `namespace thread`); else what `work` returns.
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
    enter(ns.into(), &path, None, work)
}

/// [`in_mount_ns`] for a container looked up before (checked to be the same process, see
/// [`Container::mount_ns`]), with the thread creating files as the container's owner
/// ([`nvc_sys::set_fs_owner`]: owned by it from the moment they exist, no `chown` after).
pub(crate) fn in_container_ns<T, F>(container: &Container, work: F) -> Result<T, Error>
where
    T: Send,
    F: FnOnce() -> Result<T, Error> + Send,
{
    let owner = (container.uid, container.gid);
    enter(
        container.mount_ns()?,
        &container.mount_ns_path(),
        Some(owner),
        work,
    )
}

/// The relative path that names descriptor `fd` on a thread inside [`in_mount_ns`] (its
/// working directory is the host's `/proc/self/fd`).
pub(crate) fn proc_fd(fd: &impl AsRawFd) -> String {
    fd.as_raw_fd().to_string()
}

/// The host's `/proc/self/fd`, checked to be procfs.
fn host_proc_fds() -> Result<OwnedFd, Error> {
    let path = Path::new("/proc/self/fd");
    open_dir_in(Path::new("/"), path, PROC_SUPER_MAGIC).map_err(|e| Error::Namespace {
        step: "open",
        path: path.to_path_buf(),
        error: e.into_io(),
    })
}

fn enter<T, F>(ns: OwnedFd, path: &Path, owner: Option<(u32, u32)>, work: F) -> Result<T, Error>
where
    T: Send,
    F: FnOnce() -> Result<T, Error> + Send,
{
    std::thread::scope(|scope| join(spawn(scope, ns, path, owner, || (), |()| work())?, path))
}

/// [`in_container_ns`]'s `work` started on a thread of `scope` and not waited for: the
/// caller goes on, then [`Started::join`]s it. The thread runs `before` in the caller's
/// namespace first (reading the host's files there, off the caller's thread) and gives
/// `work` what it returned.
pub(crate) fn start_in_container_ns<'scope, 'env, T, P, B, F>(
    scope: &'scope Scope<'scope, 'env>,
    container: &Container,
    before: B,
    work: F,
) -> Result<Started<'scope, T>, Error>
where
    T: Send + 'scope,
    B: FnOnce() -> P + Send + 'scope,
    F: FnOnce(P) -> Result<T, Error> + Send + 'scope,
{
    let path = container.mount_ns_path();
    let owner = Some((container.uid, container.gid));
    let thread = spawn(scope, container.mount_ns()?, &path, owner, before, work)?;
    Ok(Started { thread, path })
}

/// Work running in a container's mount namespace ([`start_in_container_ns`]).
pub(crate) struct Started<'scope, T> {
    thread: ScopedJoinHandle<'scope, Result<T, Error>>,
    path: PathBuf,
}

impl<T> Started<'_, T> {
    /// Waits for the work: what it returned, or [`Error::Namespace`] as
    /// [`in_container_ns`].
    pub(crate) fn join(self) -> Result<T, Error> {
        join(self.thread, &self.path)
    }
}

fn join<T>(thread: ScopedJoinHandle<'_, Result<T, Error>>, path: &Path) -> Result<T, Error> {
    thread.join().unwrap_or_else(|_| {
        Err(Error::Namespace {
            step: "namespace thread",
            path: path.to_path_buf(),
            error: std::io::Error::other("panicked"),
        })
    })
}

/// Starts a new thread of `scope` that runs `before`, enters the namespace `ns` (at `path`)
/// and runs `work` with what `before` returned.
fn spawn<'scope, T, P, B, F>(
    scope: &'scope Scope<'scope, '_>,
    ns: OwnedFd,
    path: &Path,
    owner: Option<(u32, u32)>,
    before: B,
    work: F,
) -> Result<ScopedJoinHandle<'scope, Result<T, Error>>, Error>
where
    T: Send + 'scope,
    B: FnOnce() -> P + Send + 'scope,
    F: FnOnce(P) -> Result<T, Error> + Send + 'scope,
{
    let fds = host_proc_fds()?;
    let faults = nvc_sys::fault::carry();
    let at = path.to_path_buf();
    std::thread::Builder::new()
        .name("nvc-mount-ns".into())
        .spawn_scoped(scope, move || {
            faults.enter(|| {
                let prepared = before();
                let fail = |step, errno| Error::Namespace {
                    step,
                    path: at.clone(),
                    error: crate::error::os(errno),
                };
                unshare(CloneFlags::CLONE_FS).map_err(|e| fail("unshare(CLONE_FS)", e))?;
                setns(&ns, CloneFlags::CLONE_NEWNS).map_err(|e| fail("setns(CLONE_NEWNS)", e))?;
                fchdir(&fds).map_err(|e| fail("fchdir(/proc/self/fd)", e))?;
                if let Some((uid, gid)) = owner {
                    nvc_sys::set_fs_owner(uid, gid).map_err(|e| fail("setfsuid", e.errno()))?;
                }
                work(prepared)
            })
        })
        .map_err(|e| Error::Namespace {
            step: "spawn namespace thread",
            path: path.to_path_buf(),
            error: e,
        })
}
