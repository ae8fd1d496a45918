//! Running a host program with another root directory (the driver root's `modprobe`).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// Makes `cmd` run chrooted into `root` (with `/` as its working directory) when `root` is
/// not `/`: the child calls `chroot(2)` and `chdir("/")` between `fork` and `exec`.
///
/// # Errors
///
/// `InvalidInput` for a root with a NUL byte; the spawn then fails with the errno of
/// `chroot` or `chdir` (`EPERM` without `CAP_SYS_CHROOT`).
pub fn chrooted(cmd: &mut Command, root: &Path) -> io::Result<()> {
    if root == Path::new("/") {
        return Ok(());
    }
    let root = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "root path with a NUL byte"))?;
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: it makes two system calls on memory allocated
    // before the fork (`root` is moved in, "/" is a static C string) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}
