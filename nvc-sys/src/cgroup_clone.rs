//! Creating a process directly in a cgroup2 cgroup with `clone3(CLONE_INTO_CGROUP)`, so that
//! it never migrates: writing a pid into `cgroup.procs` moves the process and waits for an
//! RCU grace period (6–13 ms measured on an idle VM); a process created in its cgroup waits
//! for nothing.
//!
//! cgroup v1 hierarchies have no such flag: their callers write `cgroup.procs`. So do callers
//! on kernels without it, which [`clone_into_cgroup`] tells apart by the errno alone.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};

use crate::Error;

/// `CLONE_INTO_CGROUP` (Linux 5.7): `clone_args.cgroup` names the child's cgroup.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of `<linux/sched.h>` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `clone3` with only `CLONE_INTO_CGROUP` and `SIGCHLD` as the exit signal, into the cgroup
/// open as `fd`: a fork whose child starts in that cgroup. `Ok(None)` in the child.
///
/// # Safety
///
/// As [`clone_into_cgroup`].
unsafe fn clone3_into(fd: i32) -> Result<Option<Pid>, Errno> {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: u64::try_from(fd).map_err(|_| Errno::EBADF)?,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid, fully initialised `clone_args` of the size passed, alive
    // for the call; without CLONE_VM the child gets a copy of the address space and no
    // stack is needed. The caller upholds the contract on what the child may run.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::from_ref(&args),
            size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(None),
        pid => i32::try_from(pid)
            .map(|pid| Some(Pid::from_raw(pid)))
            .map_err(|_| Errno::ERANGE),
    }
}

/// Whether an errno of `clone3(CLONE_INTO_CGROUP)` says the kernel (or a seccomp filter in
/// front of it) cannot do it at all, so that joining through `cgroup.procs` is the way:
/// `ENOSYS` (no `clone3`: before Linux 5.3, or a filter answering as Docker's default profile
/// does), `E2BIG` (a `clone3` that does not know the `cgroup` field: 5.3–5.6), `EINVAL` (the
/// flag unknown), `EPERM` (a filter refusing `clone3` outright, as Docker's profile did
/// before 20.10; the kernel itself answers a permission problem with `EACCES`).
#[must_use]
pub fn cgroup_clone_unsupported(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL | Errno::EPERM
    )
}

/// Forks the calling process with `clone3(CLONE_INTO_CGROUP)`: the child exists in the
/// cgroup2 cgroup whose directory `cgroup` is open (any mode, `O_PATH` included) from its
/// first instruction, and no process is migrated. `Ok(Some(ForkResult::Parent { child }))`
/// in the parent, `Ok(Some(ForkResult::Child))` in the child, as [`nix::unistd::fork`].
///
/// `Ok(None)`, and no child, where the kernel cannot create a process in a cgroup
/// ([`cgroup_clone_unsupported`]): the caller forks and writes `cgroup.procs` instead.
///
/// # Errors
///
/// [`Error::Syscall`] (`clone3(CLONE_INTO_CGROUP)`) with the kernel's errno: `EBADF` when
/// `cgroup` is not a cgroup2 directory (a v1 cgroup included), `EACCES` without write
/// permission on `cgroup.procs` of the common ancestor, `ENODEV` for a removed cgroup,
/// `EBUSY`/`EOPNOTSUPP` for a cgroup that may not hold processes, `EAGAIN`/`ENOMEM` as
/// `fork`.
///
/// # Kernel requirements
///
/// Linux 5.7 (`CLONE_INTO_CGROUP`); older kernels give `Ok(None)`.
///
/// # Safety
///
/// Unlike glibc's `fork`, this runs no `pthread_atfork` handlers and does not take or reset
/// glibc's internal locks (malloc's arenas, stdio): in the child, a lock another thread of the
/// caller held at the call stays held forever. Call it from a single-threaded process (a
/// child of `fork`), or have the child run only async-signal-safe code until it execs or
/// `_exit`s. The child must end with `_exit` (or `exec`), never by returning into code that
/// the parent also runs.
pub unsafe fn clone_into_cgroup(cgroup: BorrowedFd<'_>) -> Result<Option<ForkResult>, Error> {
    // SAFETY: the caller upholds the contract above.
    match unsafe { clone3_into(cgroup.as_raw_fd()) } {
        Ok(Some(child)) => Ok(Some(ForkResult::Parent { child })),
        Ok(None) => Ok(Some(ForkResult::Child)),
        Err(errno) if cgroup_clone_unsupported(errno) => Ok(None),
        Err(errno) => Err(Error::Syscall {
            call: "clone3(CLONE_INTO_CGROUP)",
            errno,
        }),
    }
}

/// Whether this kernel creates processes in a cgroup ([`clone_into_cgroup`]), asked without
/// creating one: `clone3(CLONE_INTO_CGROUP)` naming a descriptor that cannot be open
/// (`INT_MAX`). A kernel that knows the flag gets as far as looking the descriptor up and
/// answers `EBADF`; one that does not answers as [`cgroup_clone_unsupported`] says. Any other
/// answer is false too. The kernel copies the caller's task (memory map included) before it
/// looks the descriptor up: the call costs about what a `fork` of the caller does.
///
/// # Kernel requirements
///
/// None; true from Linux 5.7.
#[must_use]
pub fn cgroup_clone_supported() -> bool {
    // SAFETY: a descriptor that cannot be open: no kernel that creates the child can get
    // past looking it up. Should one anyway, the child only `_exit`s (async-signal-safe)
    // and the parent reaps it.
    match unsafe { clone3_into(i32::MAX) } {
        Err(errno) => errno == Errno::EBADF,
        Ok(None) => {
            // SAFETY: `_exit` ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(0) }
        }
        Ok(Some(child)) => {
            while let Err(Errno::EINTR) = waitpid(child, None) {}
            true
        }
    }
}
