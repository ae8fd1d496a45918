//! Kernel filesystems in a mount table: the sandbox detaches every one under its new root,
//! wherever the image or the runtime mounted it (a second procfs at `/opt/p` reaches
//! `/proc/sys/kernel/core_pattern` as well as one at `/proc`).

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;

/// Filesystem types through which a process reaches the kernel or the host: procfs (sysctls
/// such as `core_pattern`, other processes), sysfs, device filesystems, cgroup hierarchies,
/// tracing and debugging, security modules, BPF objects, binfmt handlers, namespaces, IPC
/// and the host's huge pages, RPC and NFS servers, hypervisor and automounter interfaces.
pub const KERNEL_FILESYSTEMS: &[&[u8]] = &[
    b"proc",
    b"sysfs",
    b"devtmpfs",
    b"devpts",
    b"cgroup",
    b"cgroup2",
    b"debugfs",
    b"tracefs",
    b"securityfs",
    b"bpf",
    b"configfs",
    b"efivarfs",
    b"pstore",
    b"fusectl",
    b"binfmt_misc",
    b"nsfs",
    b"selinuxfs",
    b"smackfs",
    b"apparmorfs",
    b"mqueue",
    b"hugetlbfs",
    b"rpc_pipefs",
    b"nfsd",
    b"xenfs",
    b"autofs",
];

/// The mount points of kernel filesystems ([`KERNEL_FILESYSTEMS`]) in a `mountinfo` table,
/// deepest first (so that each is detached before what it is mounted on), with the
/// table's octal escapes (`\040` for a space) decoded.
#[must_use]
pub fn kernel_mount_points(mountinfo: &[u8]) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mountinfo
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            let point = fields.get(4)?;
            let dash = fields.iter().position(|f| *f == b"-")?;
            let fstype = fields.get(dash + 1)?;
            KERNEL_FILESYSTEMS
                .contains(fstype)
                .then(|| PathBuf::from(OsStr::from_bytes(&unescape(point))))
        })
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points
}

/// A `mountinfo` field with its octal escapes decoded (`\040` for a space, `\011`, `\012`,
/// `\134`).
#[must_use]
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while let Some(&b) = field.get(i) {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Detaches every kernel filesystem of the calling thread's mount namespace (within its
/// root), reading the table through `proc` (a procfs root directory). A mount the kernel
/// locked (copied from a user namespace less privileged than the caller's: a user-namespaced
/// container's) cannot be detached: a directory is covered with an empty read-only tmpfs
/// instead; under one of `masks` (covered the same way right after) it is left. Fails with
/// `EBUSY` when one stays within reach after a few rounds.
pub(crate) fn detach_all(proc: BorrowedFd<'_>, masks: &[&Path]) -> Result<(), Errno> {
    let mut covered: Vec<PathBuf> = masks.iter().map(|m| m.to_path_buf()).collect();
    for _ in 0..8 {
        let points: Vec<PathBuf> = kernel_mount_points(&read_mount_table(proc, 16 << 20)?)
            .into_iter()
            .filter(|p| !covered.iter().any(|c| p.starts_with(c)))
            .collect();
        if points.is_empty() {
            return Ok(());
        }
        for point in points {
            // A point the image swapped meanwhile: the next round reads the table again.
            match umount2(&point, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
                Err(Errno::EINVAL)
                    if std::fs::symlink_metadata(&point).is_ok_and(|m| m.is_dir()) =>
                {
                    cover(&point)?;
                    covered.push(point);
                }
                _ => {}
            }
        }
    }
    Err(Errno::EBUSY)
}

/// An empty read-only tmpfs over directory `dir`.
pub(crate) fn cover(dir: &Path) -> Result<(), Errno> {
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), dir, Some("tmpfs"), flags, Some("mode=0555"))
}

/// The calling thread's mount table (`thread-self/mountinfo` below `proc`, a procfs root
/// directory: read after `setns`, the namespace entered), at most `limit` bytes; `EFBIG`
/// beyond, so that no caller works on part of a table.
///
/// # Errors
///
/// The errno of opening or reading it, `EFBIG` past `limit`.
pub fn read_mount_table(proc: BorrowedFd<'_>, limit: u64) -> Result<Vec<u8>, Errno> {
    read_opened_table(&open_mount_table(proc)?, limit)
}

/// The calling thread's mount table opened, not read: procfs binds it to the calling
/// thread's mount namespace when it is opened, so that another thread — one that entered a
/// container's namespace since — reads the caller's ([`read_opened_table`]).
///
/// # Errors
///
/// The errno of opening `thread-self/mountinfo` below `proc`.
pub fn open_mount_table(proc: BorrowedFd<'_>) -> Result<std::fs::File, Errno> {
    let fd = nix::fcntl::openat(
        proc.as_fd(),
        "thread-self/mountinfo",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(std::fs::File::from(fd))
}

/// The mount table `table` ([`open_mount_table`]) shows, read from its start, at most
/// `limit` bytes; `EFBIG` beyond.
///
/// # Errors
///
/// The errno of reading it, `EFBIG` past `limit`.
pub fn read_opened_table(table: &std::fs::File, limit: u64) -> Result<Vec<u8>, Errno> {
    // A table's size is unknown (procfs says 0): room for a busy host's from the start,
    // where an empty vector would start with a 32-byte probe and grow as it goes.
    let mut bytes = Vec::with_capacity(64 << 10);
    table
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    if bytes.len() as u64 > limit {
        return Err(Errno::EFBIG);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_filesystems_are_found_anywhere_deepest_first() {
        let table = b"\
1 0 8:1 / / rw - ext4 /dev/sda1 rw
2 1 0:5 / /proc rw,nosuid - proc proc rw
3 1 0:6 / /opt/p\\040x rw shared:4 - proc proc rw
4 1 0:7 / /data rw - tmpfs tmpfs rw
5 4 0:8 / /data/sys/fs/cgroup rw - cgroup2 cgroup2 rw
6 1 0:9 / /usr/lib/x rw - sysfs sysfs rw
";
        let points = kernel_mount_points(table);
        let names: Vec<&str> = points.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            names,
            ["/data/sys/fs/cgroup", "/usr/lib/x", "/opt/p x", "/proc"]
        );
    }
}
