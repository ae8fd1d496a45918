//! One mount's own facts, asked of the kernel by its id (`statmount`, Linux 6.8), where a
//! whole mount table (`/proc/<pid>/mountinfo`) would otherwise be read: a host with many
//! mounts (a node with hundreds of containers) has a table of hundreds of KiB, which the
//! kernel writes out as text at each read.

use std::os::fd::BorrowedFd;

use nix::errno::Errno;

use crate::Error;
use crate::mount::sys;

/// `STATX_MNT_ID_UNIQUE` (Linux 6.8): the mount's 64-bit id that `statmount` takes.
const STATX_MNT_ID_UNIQUE: libc::c_uint = 0x4000;
/// `STATMOUNT_SB_BASIC`, `STATMOUNT_MNT_BASIC`, `STATMOUNT_MNT_ROOT`, `STATMOUNT_MNT_POINT`.
const SB_BASIC: u64 = 0x1;
const MNT_BASIC: u64 = 0x2;
const MNT_ROOT: u64 = 0x8;
const MNT_POINT: u64 = 0x10;
/// The size of `struct statmount` before its strings, the same in every kernel since 6.8.
const HEADER: usize = 512;
/// The first `struct mnt_id_req` (`MNT_ID_REQ_SIZE_VER0`).
const REQUEST_SIZE: u32 = 24;

/// `statmount`'s number on the architectures nvc builds for (the generic table's).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const SYS_STATMOUNT: libc::c_long = 457;

/// What `statmount` says of a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountStat {
    /// The filesystem's magic number (`*_SUPER_MAGIC`).
    pub magic: u64,
    /// Its propagation: `MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE`, `MS_UNBINDABLE` bits.
    pub propagation: u64,
    /// The peer group it is a member of where it is shared (`shared:N` in `mountinfo`).
    pub peer_group: u64,
    /// The directory of the filesystem it shows (`/` for the whole; where paths were
    /// asked for).
    pub root: Option<Vec<u8>>,
    /// Where it is mounted, from the caller's root (where paths were asked for).
    pub point: Option<Vec<u8>>,
}

impl MountStat {
    /// Whether the mount is shared (a member of a peer group).
    #[must_use]
    pub fn is_shared(&self) -> bool {
        self.propagation & libc::MS_SHARED != 0
    }
}

/// The 64-bit id of the mount `fd` (any descriptor, `O_PATH` included) is on, the one
/// [`stat_mount`] takes.
///
/// # Errors
///
/// [`Error::Syscall`] naming `statx`; `ENOSYS` before Linux 6.8.
pub fn unique_mount_id(fd: BorrowedFd<'_>) -> Result<u64, Error> {
    crate::mount::statx_mount_id(fd, STATX_MNT_ID_UNIQUE)
}

/// What the kernel says of the mount whose id is `id` ([`unique_mount_id`]), in the calling
/// thread's mount namespace: its filesystem type and propagation, and with `paths` its root
/// and mount point.
///
/// # Errors
///
/// [`Error::Syscall`] naming `statmount`: `ENOSYS` before Linux 6.8 (and on architectures
/// other than x86-64 and aarch64), `ENOENT` for a mount not in the namespace, `EPERM` for one out
/// of the caller's reach.
pub fn stat_mount(id: u64, paths: bool) -> Result<MountStat, Error> {
    let mask = SB_BASIC | MNT_BASIC | if paths { MNT_ROOT | MNT_POINT } else { 0 };
    // Room for two paths of a few hundred bytes; the kernel says EOVERFLOW where they do not
    // fit, and the buffer grows.
    let mut len = HEADER + 4096;
    loop {
        let mut buf = vec![0u8; len];
        match statmount(id, mask, &mut buf) {
            Ok(()) => return parse(&buf, mask).ok_or_else(|| sys("statmount")(Errno::EINVAL)),
            Err(Errno::EOVERFLOW) if len < 1 << 20 => len *= 4,
            Err(e) => return Err(sys("statmount")(e)),
        }
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn statmount(id: u64, mask: u64, buf: &mut [u8]) -> Result<(), Errno> {
    // struct mnt_id_req { u32 size; u32 spare; u64 mnt_id; u64 param; }
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&REQUEST_SIZE.to_ne_bytes());
    let request: [u64; 3] = [u64::from_ne_bytes(head), id, mask];
    // SAFETY: `request` is a readable mnt_id_req of REQUEST_SIZE bytes; `buf` is writable for
    // its length, which is passed.
    let ret = unsafe {
        libc::syscall(
            SYS_STATMOUNT,
            request.as_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            0 as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn statmount(_: u64, _: u64, _: &mut [u8]) -> Result<(), Errno> {
    Err(Errno::ENOSYS)
}

/// A `struct statmount` the kernel wrote into `buf` for `mask`: `None` where it reports less
/// than was asked (a kernel that knows only part of it), or a string offset outside `buf`.
fn parse(buf: &[u8], mask: u64) -> Option<MountStat> {
    let u32_at = |at: usize| {
        buf.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    let u64_at = |at: usize| {
        buf.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_ne_bytes)
    };
    let string = |offset_at: usize| {
        let start = HEADER.checked_add(usize::try_from(u32_at(offset_at)?).ok()?)?;
        let rest = buf.get(start..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        rest.get(..end).map(<[u8]>::to_vec)
    };
    let got = u64_at(8)?;
    if got & mask != mask {
        return None;
    }
    let paths = mask & (MNT_ROOT | MNT_POINT) != 0;
    Some(MountStat {
        magic: u64_at(24)?,
        propagation: u64_at(72)?,
        peer_group: u64_at(80)?,
        root: if paths { Some(string(104)?) } else { None },
        point: if paths { Some(string(108)?) } else { None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A `struct statmount` as the kernel writes it.
    fn written(mask: u64, root: &[u8], point: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER];
        let mut put = |at: usize, bytes: &[u8]| buf[at..at + bytes.len()].copy_from_slice(bytes);
        put(8, &mask.to_ne_bytes());
        put(24, &0x0027_e0ebu64.to_ne_bytes());
        put(72, &(libc::MS_SHARED).to_ne_bytes());
        put(80, &7u64.to_ne_bytes());
        put(104, &0u32.to_ne_bytes());
        put(108, &u32::try_from(root.len() + 1).unwrap().to_ne_bytes());
        buf.extend_from_slice(root);
        buf.push(0);
        buf.extend_from_slice(point);
        buf.push(0);
        buf
    }

    #[test]
    fn the_kernels_answer_is_read_by_offset() {
        let all = SB_BASIC | MNT_BASIC | MNT_ROOT | MNT_POINT;
        let buf = written(all, b"/", b"/sys/fs/cgroup/devices");
        let stat = parse(&buf, all).unwrap();
        assert_eq!(stat.magic, 0x0027_e0eb);
        assert!(stat.is_shared());
        assert_eq!(stat.peer_group, 7);
        assert_eq!(stat.root.as_deref(), Some(&b"/"[..]));
        assert_eq!(stat.point.as_deref(), Some(&b"/sys/fs/cgroup/devices"[..]));
        // Less than asked for, a string past the end, a buffer cut short: nothing.
        assert_eq!(
            parse(&written(SB_BASIC | MNT_BASIC, b"/", b"/x"), all),
            None
        );
        let mut cut = buf.clone();
        cut.truncate(HEADER + 2);
        assert_eq!(parse(&cut, all), None);
        assert_eq!(parse(&buf[..60], SB_BASIC), None);
    }

    /// On a kernel that has it (6.8), the mount of `/proc` is procfs, its root `/`.
    #[test]
    fn the_procfs_mount_is_told_by_its_id() {
        let proc = std::fs::File::open("/proc").unwrap();
        let unsupported = |e: &Error| {
            matches!(
                e,
                Error::Syscall {
                    errno: Errno::ENOSYS | Errno::EPERM,
                    ..
                }
            )
        };
        let stat = match unique_mount_id(proc.as_fd()).and_then(|id| stat_mount(id, true)) {
            Ok(stat) => stat,
            Err(e) if unsupported(&e) => {
                eprintln!("skipped: no statmount here ({e})");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(stat.magic, 0x9fa0, "{stat:?}");
        assert_eq!(stat.root.as_deref(), Some(&b"/"[..]));
        assert_eq!(stat.point.as_deref(), Some(&b"/proc"[..]));
    }
}
