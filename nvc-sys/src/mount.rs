//! The new mount API (Linux 5.2+, `mount_setattr` 5.12+): detached clones of a mount, their
//! flags set before anyone can see them, attached by file descriptor.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use crate::Error;

/// Per-mount flags, as `MOUNT_ATTR_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountAttrs {
    /// `ro`.
    pub read_only: bool,
    /// `nosuid`.
    pub nosuid: bool,
    /// `nodev`.
    pub nodev: bool,
    /// `noexec`.
    pub noexec: bool,
}

pub(crate) fn sys(call: &'static str) -> impl FnOnce(Errno) -> Error {
    move |errno| Error::Syscall { call, errno }
}

fn open_tree(dirfd: libc::c_int, path: &CString, flags: libc::c_uint) -> Result<OwnedFd, Error> {
    // SAFETY: `path` is a NUL-terminated string alive for the call; `dirfd` is AT_FDCWD or a
    // descriptor the caller borrows.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    if ret < 0 {
        return Err(sys("open_tree")(Errno::last()));
    }
    let fd = i32::try_from(ret).map_err(|_| sys("open_tree")(Errno::EBADF))?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const CLONE: libc::c_uint = libc::OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;

/// A detached copy of the mount at `source` (a bind of that one file or directory, not of
/// the mounts below it), resolved in the caller's mount namespace; it can be attached in
/// another namespace with [`attach`].
///
/// # Errors
///
/// [`Error::Syscall`] naming `open_tree`: `ENOENT`, `EACCES`, `EPERM` (needs
/// `CAP_SYS_ADMIN`), `ENOSYS` before Linux 5.2.
pub fn clone_tree(source: &Path) -> Result<OwnedFd, Error> {
    let path =
        CString::new(source.as_os_str().as_bytes()).map_err(|_| sys("open_tree")(Errno::EINVAL))?;
    open_tree(libc::AT_FDCWD, &path, CLONE)
}

/// [`clone_tree`] of what `fd` (an `O_PATH` descriptor) refers to.
///
/// # Errors
///
/// As [`clone_tree`].
pub fn clone_tree_fd(fd: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    let flags = CLONE | libc::AT_EMPTY_PATH as libc::c_uint;
    open_tree(fd.as_raw_fd(), &CString::default(), flags)
}

/// Sets `attrs` on the detached mount `tree` (flags not in `attrs` are cleared) and makes it
/// private, before it is attached anywhere: a clone of a mount that is shared on the host
/// is in the host's peer group, so whatever the container later mounts on it would appear
/// on the host.
///
/// # Errors
///
/// [`Error::Syscall`] naming `mount_setattr` (`ENOSYS` before Linux 5.12).
pub fn set_attrs(tree: BorrowedFd<'_>, attrs: MountAttrs) -> Result<(), Error> {
    let mut set = 0;
    for (on, flag) in [
        (attrs.read_only, libc::MOUNT_ATTR_RDONLY),
        (attrs.nosuid, libc::MOUNT_ATTR_NOSUID),
        (attrs.nodev, libc::MOUNT_ATTR_NODEV),
        (attrs.noexec, libc::MOUNT_ATTR_NOEXEC),
    ] {
        if on {
            set |= flag;
        }
    }
    let all = libc::MOUNT_ATTR_RDONLY
        | libc::MOUNT_ATTR_NOSUID
        | libc::MOUNT_ATTR_NODEV
        | libc::MOUNT_ATTR_NOEXEC;
    let private = libc::MS_PRIVATE;
    mount_setattr(
        tree.as_raw_fd(),
        c"",
        libc::AT_EMPTY_PATH,
        set,
        all & !set,
        private,
    )
}

/// `mount_setattr(dirfd, path, flags, {set, clear, propagation})` (0: propagation unchanged).
fn mount_setattr(
    dirfd: libc::c_int,
    path: &std::ffi::CStr,
    flags: libc::c_int,
    set: u64,
    clear: u64,
    propagation: u64,
) -> Result<(), Error> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clear,
        propagation,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a live `mount_attr` of the size passed; `path` is NUL-terminated and
    // `dirfd` is AT_FDCWD or a descriptor the caller borrows, both alive for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            std::ptr::from_ref(&attr),
            size_of::<libc::mount_attr>(),
        )
    };
    if ret < 0 {
        return Err(sys("mount_setattr")(Errno::last()));
    }
    Ok(())
}

/// Attaches the detached mount `tree` on top of `target` (an `O_PATH` descriptor of the
/// mountpoint, in the caller's mount namespace).
///
/// # Errors
///
/// [`Error::Syscall`] naming `move_mount`.
pub fn attach(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Error> {
    // SAFETY: both descriptors are borrowed for the call; the paths are empty C strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if ret < 0 {
        return Err(sys("move_mount")(Errno::last()));
    }
    Ok(())
}

/// The kernel's id of the mount that `fd` (any descriptor, `O_PATH` included) is on:
/// `statx(STATX_MNT_ID)`. Two descriptors on the same mount have the same id; a mount made
/// later on top of a path gets a new one, so the id tells "the mount nvc made" from whatever
/// is there now.
///
/// # Errors
///
/// [`Error::Syscall`] naming `statx`; `ENOSYS` when the kernel does not report mount ids
/// (before Linux 5.8).
///
/// # Kernel requirements
///
/// Linux 5.8 (`STATX_MNT_ID`).
pub fn mount_id(fd: BorrowedFd<'_>) -> Result<u64, Error> {
    statx_mount_id(fd, libc::STATX_MNT_ID)
}

/// The mount id `statx` reports for `fd` with `mask` (`STATX_MNT_ID`, or
/// `STATX_MNT_ID_UNIQUE`); `ENOSYS` where it reports none.
pub(crate) fn statx_mount_id(fd: BorrowedFd<'_>, mask: libc::c_uint) -> Result<u64, Error> {
    let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `st` is a writable `statx` buffer for the call; the path is an empty C string
    // with AT_EMPTY_PATH, so only `fd` is looked at.
    let ret = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            mask,
            st.as_mut_ptr(),
        )
    };
    if ret < 0 {
        return Err(sys("statx")(Errno::last()));
    }
    // SAFETY: statx succeeded and filled the buffer (it was zeroed before in any case).
    let st = unsafe { st.assume_init() };
    if st.stx_mask & mask == 0 {
        return Err(sys("statx")(Errno::ENOSYS));
    }
    Ok(st.stx_mnt_id)
}

/// A detached copy of the mount tree at the working directory, every mount of it `nodev`:
/// the root of a sandbox whose directory was reached by descriptor (`fchdir`), not by a path
/// in the caller's namespace. Attach it with [`attach`].
///
/// # Errors
///
/// [`Error::Syscall`] naming `open_tree` (`EINVAL` when the working directory is not in the
/// caller's mount namespace) or `mount_setattr`.
///
/// # Kernel requirements
///
/// Linux 5.12 (`open_tree`, `mount_setattr`); `CAP_SYS_ADMIN`.
pub fn clone_cwd_nodev() -> Result<OwnedFd, Error> {
    let flags = CLONE | libc::AT_RECURSIVE as libc::c_uint;
    let tree = open_tree(libc::AT_FDCWD, &CString::from(c"."), flags)?;
    let recursive = libc::AT_EMPTY_PATH | libc::AT_RECURSIVE;
    mount_setattr(
        tree.as_raw_fd(),
        c"",
        recursive,
        libc::MOUNT_ATTR_NODEV,
        0,
        0,
    )?;
    Ok(tree)
}

/// Adds `nodev` to the mount at `path` and to every mount below it
/// (`mount_setattr(AT_RECURSIVE)`), leaving their other flags as they are: device nodes
/// anywhere in that tree can no longer be opened. For a private mount namespace (the
/// sandbox's), since it changes the mounts themselves.
///
/// # Errors
///
/// [`Error::Syscall`] naming `mount_setattr` (`ENOSYS` before Linux 5.12).
///
/// # Kernel requirements
///
/// Linux 5.12 (`mount_setattr`); `CAP_SYS_ADMIN`.
pub fn set_nodev_recursive(path: &Path) -> Result<(), Error> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| sys("mount_setattr")(Errno::EINVAL))?;
    mount_setattr(
        libc::AT_FDCWD,
        &path,
        libc::AT_RECURSIVE,
        libc::MOUNT_ATTR_NODEV,
        0,
        0,
    )
}
