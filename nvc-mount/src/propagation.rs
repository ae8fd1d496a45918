//! Mount propagation: a mount made under a *shared* mount is copied to every peer of it, so
//! a bind nvc makes below a volume the runtime mounted `rshared` (Kubernetes'
//! `mountPropagation: Bidirectional`) would appear in the host's copy of the volume and
//! outlive the container. nvc mounts nothing where the new mount would propagate: the target
//! is refused, naming the shared mount, before anything is mounted there.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::Error;
use crate::kernfs::READ_LIMIT;

/// The ids of the mounts in a `mountinfo` table that are shared (a `shared:N` optional
/// field: they have peers that receive what is mounted under them).
#[must_use]
pub(crate) fn shared_mounts(mountinfo: &[u8]) -> HashSet<u64> {
    mountinfo
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut fields = line.split(|&b| b == b' ');
            let id = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
            // Mount id, parent id, dev, root, mount point, options, then the optional
            // fields up to "-".
            let optional = fields.skip(5).take_while(|f| *f != b"-");
            let shared = optional.into_iter().any(|f| f.starts_with(b"shared:"));
            shared.then_some(id)
        })
        .collect()
}

/// The shared mounts of the calling thread's mount namespace, read from the host's procfs
/// (the namespace thread's working directory is its `/proc/self/fd`, [`crate::ns`]).
pub(crate) fn shared_here() -> Result<HashSet<u64>, Error> {
    let tid = nix::unistd::gettid();
    let path = format!("../task/{tid}/mountinfo");
    let fail = |errno: Errno| Error::Apply {
        op: "read",
        path: format!("/proc/self/task/{tid}/mountinfo").into(),
        error: crate::error::os(errno),
    };
    let fd = nix::fcntl::open(
        path.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail)?;
    let mut bytes = Vec::new();
    File::from(fd)
        .take(READ_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    if bytes.len() as u64 > READ_LIMIT {
        return Err(fail(Errno::EFBIG));
    }
    Ok(shared_mounts(&bytes))
}

/// Refuses `target` (whose mountpoint is `point`) when what would be mounted there lands on
/// a shared mount. Kernels without `STATX_MNT_ID` (before 5.8) are not checked.
pub(crate) fn refuse_shared(
    shared: &HashSet<u64>,
    point: &OwnedFd,
    target: &Path,
) -> Result<(), Error> {
    match nvc_sys::mount::mount_id(point.as_fd()) {
        Ok(id) if shared.contains(&id) => Err(Error::Apply {
            op: "refuse to mount under a shared mount (it would propagate out of the container) at",
            path: target.to_path_buf(),
            error: std::io::Error::from_raw_os_error(Errno::EXDEV as i32),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::shared_mounts;

    #[test]
    fn shared_peer_groups_are_read_from_the_optional_fields() {
        let table = b"\
22 1 0:21 / /proc rw,nosuid - proc proc rw
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
40 22 0:40 / /data rw shared:7 - tmpfs tmpfs rw
41 40 0:41 / /data/x rw shared:9 master:7 - tmpfs tmpfs rw
42 40 0:42 / /y rw - tmpfs shared:3 rw
";
        let mut ids: Vec<u64> = shared_mounts(table).into_iter().collect();
        ids.sort();
        assert_eq!(ids, [40, 41]);
    }
}
