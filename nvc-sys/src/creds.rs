//! Per-thread credentials: creating files as the container's owner without giving up the
//! capabilities the rest of the work needs.

use nix::errno::Errno;
use nix::unistd::{Gid, Uid, setfsgid, setfsuid};

use crate::Error;

/// Makes the calling thread create files as `uid`:`gid` (its filesystem ids), keeping its
/// capabilities: `SECBIT_NO_SETUID_FIXUP` first (so leaving fsuid 0 does not clear the
/// effective file capabilities), then `setfsgid` and `setfsuid`. Credentials are per thread
/// and none of these calls is broadcast by glibc, so only this thread changes: call it on a
/// dedicated thread that ends with the work. Nothing is done for `0:0`.
///
/// # Errors
///
/// [`Error::Syscall`] naming `prctl(PR_SET_SECUREBITS)` (needs `CAP_SETPCAP`), `setfsgid` or
/// `setfsuid` (the kernel refused the id: `EPERM`).
pub fn set_fs_owner(uid: u32, gid: u32) -> Result<(), Error> {
    if uid == 0 && gid == 0 {
        return Ok(());
    }
    no_setuid_fixup().map_err(|errno| Error::Syscall {
        call: "prctl(PR_SET_SECUREBITS)",
        errno,
    })?;
    // Both calls return the previous id and report no error: ask again to check.
    setfsgid(Gid::from_raw(gid));
    if setfsgid(Gid::from_raw(gid)).as_raw() != gid {
        return Err(Error::Syscall {
            call: "setfsgid",
            errno: Errno::EPERM,
        });
    }
    setfsuid(Uid::from_raw(uid));
    if setfsuid(Uid::from_raw(uid)).as_raw() != uid {
        return Err(Error::Syscall {
            call: "setfsuid",
            errno: Errno::EPERM,
        });
    }
    Ok(())
}

/// Adds `SECBIT_NO_SETUID_FIXUP` to the calling thread's securebits: changing its uids or
/// fsuid away from 0 no longer clears its capabilities. Raw `prctl` calls only, so a fork
/// child may call it.
pub(crate) fn no_setuid_fixup() -> Result<(), Errno> {
    // SAFETY: plain integer arguments; it reads only the calling thread's securebits.
    let bits = unsafe { libc::prctl(libc::PR_GET_SECUREBITS) };
    if bits < 0 {
        return Err(Errno::last());
    }
    let fixup = libc::c_ulong::try_from(libc::SECBIT_NO_SETUID_FIXUP).unwrap_or(0);
    let bits = libc::c_ulong::try_from(bits).unwrap_or(0) | fixup;
    // SAFETY: as above; it changes only the calling thread's securebits.
    if unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits) } != 0 {
        return Err(Errno::last());
    }
    Ok(())
}
