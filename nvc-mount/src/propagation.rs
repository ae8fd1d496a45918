//! Mount propagation: a mount made under a *shared* mount is copied to every peer of it, so
//! a bind nvc makes below a volume the runtime mounted `rshared` (Kubernetes'
//! `mountPropagation: Bidirectional`) would appear in the host's copy of the volume and
//! outlive the container. nvc mounts nothing where the new mount would reach the caller's
//! namespace: a target on a mount whose peer group has a member (or a slave) there is refused,
//! naming it, before anything is mounted. A mount shared only among the container's own
//! mounts (Docker's `rshared` rootfs propagation) propagates nowhere outside and is used.

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

/// The caller's mount table, opened on the caller's thread before it enters the container's
/// namespace (procfs binds it to the caller's namespace then) and read only where
/// [`escaping_here`] needs it.
pub(crate) fn caller_table(proc: &OwnedFd) -> Result<File, Error> {
    nvc_sys::kernel_mounts::open_mount_table(proc.as_fd()).map_err(table_error)
}

/// The mounts of the calling thread's mount namespace (the container's, on the namespace
/// thread) whose peer group reaches the caller's namespace, whose `caller` table
/// ([`caller_table`]) is read only where the container has a shared mount.
pub(crate) fn escaping_here(proc: &OwnedFd, caller: &File) -> Result<HashSet<u64>, Error> {
    let shared = shared_mounts(&read_table(proc)?);
    if shared.is_empty() {
        return Ok(HashSet::new());
    }
    let table =
        nvc_sys::kernel_mounts::read_opened_table(caller, READ_LIMIT).map_err(table_error)?;
    let outside = reached_groups(&table);
    Ok(shared
        .into_iter()
        .filter(|(_, group)| outside.contains(group))
        .map(|(id, _)| id)
        .collect())
}

/// Refuses `target` (whose mountpoint is `point`) when what would be mounted there lands on
/// one of the `escaping` mounts. Kernels without `STATX_MNT_ID` (before 5.8) are not checked.
pub(crate) fn refuse_escaping(
    escaping: &HashSet<u64>,
    point: &OwnedFd,
    target: &Path,
) -> Result<(), Error> {
    match nvc_sys::mount::mount_id(point.as_fd()) {
        Ok(id) if escaping.contains(&id) => Err(Error::Apply {
            op: "refuse to mount under a shared mount (it would propagate out of the container) at",
            path: target.to_path_buf(),
            error: std::io::Error::from_raw_os_error(Errno::EXDEV as i32),
        }),
        _ => Ok(()),
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
