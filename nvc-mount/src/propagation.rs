//! Mount propagation: a mount made under a *shared* mount is copied to every peer of it, so
//! a bind nvc makes below a volume the runtime mounted `rshared` (Kubernetes'
//! `mountPropagation: Bidirectional`) would appear in the host's copy of the volume and
//! outlive the container. nvc mounts nothing where the new mount would reach the caller's
//! namespace: a target on a mount whose peer group has a member (or a slave) there is refused,
//! naming it, before anything is mounted. A mount shared only among the container's own
//! mounts (Docker's `rshared` rootfs propagation) propagates nowhere outside and is used.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;

use crate::Error;
use crate::kernfs::READ_LIMIT;

/// The optional fields of each mount of a `mountinfo` table: (mount id, fields).
fn optional_fields(mountinfo: &[u8]) -> impl Iterator<Item = (u64, Vec<&[u8]>)> {
    mountinfo.split(|&b| b == b'\n').filter_map(|line| {
        let mut fields = line.split(|&b| b == b' ');
        let id = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
        // Mount id, parent id, dev, root, mount point, options, then the optional fields
        // up to "-".
        Some((id, fields.skip(5).take_while(|f| *f != b"-").collect()))
    })
}

/// The number after `tag` (`shared:`, `master:`) in an optional field.
fn group(field: &[u8], tag: &[u8]) -> Option<u64> {
    std::str::from_utf8(field.strip_prefix(tag)?)
        .ok()?
        .parse()
        .ok()
}

/// Each shared mount of a `mountinfo` table: mount id → its peer group.
pub(crate) fn shared_mounts(mountinfo: &[u8]) -> HashMap<u64, u64> {
    optional_fields(mountinfo)
        .filter_map(|(id, fields)| Some((id, fields.iter().find_map(|f| group(f, b"shared:"))?)))
        .collect()
}

/// The peer groups a `mountinfo` table's mounts are members of (`shared:N`) or receive
/// from (`master:N`): a mount made in such a group shows up in that table's namespace.
pub(crate) fn reached_groups(mountinfo: &[u8]) -> HashSet<u64> {
    optional_fields(mountinfo)
        .flat_map(|(_, fields)| {
            fields
                .into_iter()
                .filter_map(|f| group(f, b"shared:").or_else(|| group(f, b"master:")))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The calling thread's `mountinfo`, through `proc` (the host's procfs root, checked),
/// at most [`READ_LIMIT`] bytes.
fn read_table(proc: &OwnedFd) -> Result<Vec<u8>, Error> {
    nvc_sys::kernel_mounts::read_mount_table(proc.as_fd(), READ_LIMIT).map_err(table_error)
}

fn table_error(errno: Errno) -> Error {
    Error::Apply {
        op: "read",
        path: "/proc/thread-self/mountinfo".into(),
        error: crate::error::os(errno),
    }
}

/// What refuses the mounts that would propagate to the caller's namespace: made on the
/// caller's thread ([`Watch::new`]), asked on the namespace thread ([`Watch::refuse`]).
///
/// Where the kernel tells a mount's own propagation (`statmount`, Linux 6.8), each mount a
/// target is on is asked once; only a shared one needs the caller's mount table. Elsewhere,
/// the container's whole table is read once, and the caller's where it has a shared mount.
pub(crate) struct Watch {
    /// The host's procfs, through which the container's table is read.
    proc: OwnedFd,
    /// The caller's table, opened on its thread (procfs binds it to the opener's namespace)
    /// and read only where a shared mount needs it.
    caller: File,
    /// The peer groups that reach the caller's namespace (read from `caller`).
    outside: OnceCell<HashSet<u64>>,
    /// Whether a mount made on a mount (by its unique id) would reach the caller.
    known: RefCell<HashMap<u64, bool>>,
    /// Without `statmount`: the container's mounts (by `mountinfo` id) that would.
    escaping: OnceCell<HashSet<u64>>,
    /// Whether `statmount` answers: decided at the first target (the fault point), and
    /// `Some(false)` once the kernel says it has no such call.
    statmount: Cell<Option<bool>>,
}

impl Watch {
    /// Opens the caller's mount table; call on the caller's thread, before it enters the
    /// container's namespace. `proc` is the host's procfs root, checked.
    pub(crate) fn new(proc: OwnedFd) -> Result<Self, Error> {
        let caller = nvc_sys::kernel_mounts::open_mount_table(proc.as_fd()).map_err(table_error)?;
        Ok(Watch {
            proc,
            caller,
            outside: OnceCell::new(),
            known: RefCell::default(),
            escaping: OnceCell::new(),
            statmount: Cell::new(None),
        })
    }

    /// Refuses `target` (whose mountpoint is `point`, in the container's namespace: call on
    /// its thread) when what would be mounted there reaches the caller's namespace. Kernels
    /// without `STATX_MNT_ID` (before 5.8) are not checked.
    pub(crate) fn refuse(&self, point: &OwnedFd, target: &Path) -> Result<(), Error> {
        let escapes = match self.asked(point, target)? {
            Some(escapes) => escapes,
            None => self.in_table(point)?,
        };
        if escapes {
            return Err(Error::Apply {
                op: "refuse to mount under a shared mount (it would propagate out of the container) at",
                path: target.to_path_buf(),
                error: std::io::Error::from_raw_os_error(Errno::EXDEV as i32),
            });
        }
        Ok(())
    }

    /// The answer of `statmount` for the mount `point` is on; `None` where the kernel does
    /// not give it (before Linux 6.8: remembered at the first `ENOSYS`). The fault point
    /// `statmount`, passed at the first target, fails the check, or with `ENOSYS` stands for
    /// a kernel without the call.
    fn asked(&self, point: &OwnedFd, target: &Path) -> Result<Option<bool>, Error> {
        match self.statmount.get() {
            Some(true) => {}
            Some(false) => return Ok(None),
            None => match nvc_sys::fault::point("statmount", target) {
                Ok(()) => self.statmount.set(Some(true)),
                Err(Errno::ENOSYS) => {
                    self.statmount.set(Some(false));
                    return Ok(None);
                }
                Err(e) => return Err(crate::apply::fail("statmount", target)(e)),
            },
        }
        let id = match nvc_sys::statmount::unique_mount_id(point.as_fd()) {
            Ok(id) => id,
            Err(e) => return Ok(self.unanswered(&e)),
        };
        if let Some(&escapes) = self.known.borrow().get(&id) {
            return Ok(Some(escapes));
        }
        let stat = match nvc_sys::statmount::stat_mount(id, false) {
            Ok(stat) => stat,
            Err(e) => return Ok(self.unanswered(&e)),
        };
        let escapes = stat.is_shared() && self.outside()?.contains(&stat.peer_group);
        self.known.borrow_mut().insert(id, escapes);
        Ok(Some(escapes))
    }

    /// No answer, after `error` (remembered where the kernel lacks the call).
    fn unanswered(&self, error: &nvc_sys::Error) -> Option<bool> {
        if matches!(
            error,
            nvc_sys::Error::Syscall {
                errno: Errno::ENOSYS,
                ..
            }
        ) {
            self.statmount.set(Some(false));
        }
        None
    }

    /// The answer of the container's table, read once, for the mount `point` is on.
    fn in_table(&self, point: &OwnedFd) -> Result<bool, Error> {
        let Ok(id) = nvc_sys::mount::mount_id(point.as_fd()) else {
            return Ok(false);
        };
        if self.escaping.get().is_none() {
            let shared = shared_mounts(&read_table(&self.proc)?);
            let escaping = if shared.is_empty() {
                HashSet::new()
            } else {
                let outside = self.outside()?;
                shared
                    .into_iter()
                    .filter(|(_, group)| outside.contains(group))
                    .map(|(id, _)| id)
                    .collect()
            };
            let _ = self.escaping.set(escaping);
        }
        Ok(self.escaping.get().is_some_and(|e| e.contains(&id)))
    }

    /// The peer groups that reach the caller's namespace, its table read the first time.
    fn outside(&self) -> Result<&HashSet<u64>, Error> {
        if let Some(outside) = self.outside.get() {
            return Ok(outside);
        }
        let table = nvc_sys::kernel_mounts::read_opened_table(&self.caller, READ_LIMIT)
            .map_err(table_error)?;
        Ok(self.outside.get_or_init(|| reached_groups(&table)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_groups_are_read_from_the_optional_fields() {
        let table = b"\
22 1 0:21 / /proc rw,nosuid - proc proc rw
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
40 22 0:40 / /data rw shared:7 - tmpfs tmpfs rw
41 40 0:41 / /data/x rw shared:9 master:7 - tmpfs tmpfs rw
42 40 0:42 / /y rw - tmpfs shared:3 rw
";
        let shared = shared_mounts(table);
        assert_eq!(shared, HashMap::from([(40, 7), (41, 9)]));
        let reached = reached_groups(table);
        assert_eq!(reached, HashSet::from([1, 7, 9]));
    }
}
