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
