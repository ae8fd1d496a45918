//! `pidfd_open(2)`.

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;

use crate::Error;

/// Opens a pidfd for process `pid`: a handle that keeps naming this process even after its
/// pid is reused, usable with `setns` to enter its namespaces.
///
/// # Errors
///
/// [`Error::Syscall`]: `ESRCH` when no such process exists, `ENOSYS` before Linux 5.3.
pub fn pidfd_open(pid: u32) -> Result<OwnedFd, Error> {
    let fail = |errno| Error::Syscall {
        call: "pidfd_open",
        errno,
    };
    let pid = libc::pid_t::try_from(pid).map_err(|_| fail(Errno::ESRCH))?;
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Err(fail(Errno::last()));
    }
    let fd = i32::try_from(ret).map_err(|_| fail(Errno::EBADF))?;
    // SAFETY: the kernel returned `fd` as a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the process behind `pidfd` is still running (`pidfd_send_signal` with signal 0).
/// A live process keeps its pid, so a `/proc/<pid>` file opened before this answers `true`
/// belongs to it, not to a later process that reused the pid.
///
/// # Errors
///
/// [`Error::Syscall`] other than `ESRCH` (`ENOSYS` before Linux 5.1).
pub fn pidfd_alive(pidfd: std::os::fd::BorrowedFd<'_>) -> Result<bool, Error> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor, signal 0 (existence check), no siginfo, no flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    match ret {
        0 => Ok(true),
        _ => match Errno::last() {
            Errno::ESRCH => Ok(false),
            errno => Err(Error::Syscall {
                call: "pidfd_send_signal",
                errno,
            }),
        },
    }
}
