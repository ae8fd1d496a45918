//! What a user-namespaced container's own user could create. nvc creates mountpoints, links
//! and the cache as the container's owner but keeps its capabilities (as upstream), so the
//! kernel would let it write where that owner could not — a directory of a host volume the
//! image links into, say. For a container in a user namespace of its own, each creation
//! is checked first against what the container's user could do there: its root may write
//! wherever the directory's owner and group are mapped into its namespace (the kernel's
//! `capable_wrt_inode_uidgid`), any user where the mode bits let it.

use std::path::Path;

use nix::sys::stat::FileStat;

/// The container's id maps and its owner, for a container whose user namespace is not the
/// caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserNs {
    uids: Vec<(u32, u32, u32)>,
    gids: Vec<(u32, u32, u32)>,
    /// The owner's host uid and gid.
    owner: (u32, u32),
}

impl UserNs {
    /// The user namespace of process `pid` (seen through the host's `/proc`), or `None`
    /// where it is the caller's own.
    pub(crate) fn of(pid: u32, owner: (u32, u32)) -> std::io::Result<Option<Self>> {
        let proc = Path::new("/proc").join(pid.to_string());
        if std::fs::read_link(proc.join("ns/user"))? == std::fs::read_link("/proc/self/ns/user")? {
            return Ok(None);
        }
        let read = |name: &str| std::fs::read_to_string(proc.join(name)).map(|t| parse_map(&t));
        Ok(Some(UserNs {
            uids: read("uid_map")?,
            gids: read("gid_map")?,
            owner,
        }))
    }

    /// The owner's uid and gid inside the namespace, where both are mapped.
    pub(crate) fn owner_inside(&self) -> Option<(u32, u32)> {
        Some((
            inside(&self.uids, self.owner.0)?,
            inside(&self.gids, self.owner.1)?,
        ))
    }

    /// Whether the container's owner could create an entry in the directory `dir`.
    pub(crate) fn may_create(&self, dir: &FileStat) -> bool {
        let root_inside = inside(&self.uids, self.owner.0) == Some(0);
        if root_inside
            && inside(&self.uids, dir.st_uid).is_some()
            && inside(&self.gids, dir.st_gid).is_some()
        {
            return true;
        }
        let wx = if dir.st_uid == self.owner.0 {
            0o300
        } else if dir.st_gid == self.owner.1 {
            0o030
        } else {
            0o003
        };
        dir.st_mode & wx == wx
    }
}

/// `uid_map`/`gid_map` lines: (inside, outside, count).
fn parse_map(text: &str) -> Vec<(u32, u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some((f.next()??, f.next()??, f.next()??))
        })
        .collect()
}

/// The id inside the namespace of host id `id`, if it is mapped.
fn inside(map: &[(u32, u32, u32)], id: u32) -> Option<u32> {
    map.iter().find_map(|&(inside, outside, count)| {
        let offset = id.checked_sub(outside)?;
        (offset < count).then(|| inside.saturating_add(offset))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(uid: u32, gid: u32, mode: u32) -> FileStat {
        let mut st = nix::sys::stat::stat("/").unwrap();
        st.st_uid = uid;
        st.st_gid = gid;
        st.st_mode = nix::sys::stat::SFlag::S_IFDIR.bits() | mode;
        st
    }

    #[test]
    fn the_containers_root_writes_where_owner_and_group_are_mapped() {
        let ns = UserNs {
            uids: parse_map("         0     100000      65536\n"),
            gids: parse_map("0 100000 65536\n"),
            owner: (100000, 100000),
        };
        // The image's directories (owned by the container's root or users), even 0555.
        assert!(ns.may_create(&dir(100000, 100000, 0o555)));
        assert!(ns.may_create(&dir(101000, 100000, 0o755)));
        // A host volume owned by the host's root: only where its mode lets anyone write.
        assert!(!ns.may_create(&dir(0, 0, 0o755)));
        assert!(!ns.may_create(&dir(100500, 0, 0o755)));
        assert!(ns.may_create(&dir(0, 0, 0o777)));
        // A container whose init is not its root: the mode bits only.
        let user = UserNs {
            owner: (101000, 101000),
            ..ns
        };
        assert!(!user.may_create(&dir(100000, 100000, 0o755)));
        assert!(user.may_create(&dir(101000, 100000, 0o755)));
        assert!(!user.may_create(&dir(101000, 100000, 0o555)));
    }
}
