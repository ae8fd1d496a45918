//! Finding a process's device cgroup from `/proc/<pid>/cgroup` and a mount table: pure
//! parsers over bytes, then the path joined.

use std::path::{Component, Path, PathBuf};

/// Which device controller governs a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupVersion {
    /// cgroup v1 `devices` controller: rules written to `devices.allow`.
    V1,
    /// cgroup v2: eBPF programs attached to the cgroup directory.
    V2,
}

/// A cgroup's membership line, and the mount that shows that hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Membership {
    v1_devices: Option<String>,
    unified: Option<String>,
}

/// Reads `/proc/<pid>/cgroup` (`id:controllers:path`, the path may itself hold colons).
/// Lines without the two colons are refused; other controllers (`1:net_cls:/`,
/// `9:name=systemd:/x`) are accepted and ignored.
fn membership(cgroup: &[u8]) -> Result<Membership, String> {
    let text = String::from_utf8_lossy(cgroup);
    let mut m = Membership {
        v1_devices: None,
        unified: None,
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("malformed line {line:?}"));
        };
        if controllers.is_empty() {
            m.unified.get_or_insert_with(|| path.to_owned());
        } else if controllers.split(',').any(|c| c == "devices") {
            m.v1_devices = Some(path.to_owned());
        }
    }
    Ok(m)
}

/// Undoes mountinfo's octal escapes ([`nvc_sys::kernel_mounts::unescape`]).
fn unescape(field: &str) -> String {
    String::from_utf8_lossy(&nvc_sys::kernel_mounts::unescape(field.as_bytes())).into_owned()
}

/// A mount of a cgroup hierarchy: its root inside the hierarchy and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CgroupMount {
    pub(super) root: String,
    pub(super) mount_point: String,
}

/// The first mount of `version`'s hierarchy in a `mountinfo` table: fstype `cgroup` whose
/// super options name `devices`, or fstype `cgroup2`.
pub(super) fn find_mount(mountinfo: &[u8], version: CgroupVersion) -> Option<CgroupMount> {
    let text = String::from_utf8_lossy(mountinfo);
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        let fstype = *fields.get(sep + 1)?;
        let options = fields.get(sep + 3).copied().unwrap_or_default();
        let wanted = match version {
            CgroupVersion::V1 => fstype == "cgroup" && options.split(',').any(|o| o == "devices"),
            CgroupVersion::V2 => fstype == "cgroup2",
        };
        wanted.then(|| CgroupMount {
            root: unescape(fields.get(3).copied().unwrap_or("/")),
            mount_point: unescape(fields.get(4).copied().unwrap_or_default()),
        })
    })
}

/// The device cgroup directory of a process, from the bytes of its `/proc/<pid>/cgroup` and
/// of a `mountinfo` that shows the cgroup hierarchies, below `proc_root` (`/` when
/// supervised, the container's root in standalone mode). Like upstream, a v1 `devices`
/// membership wins over the unified one (hybrid hosts); the mount's root is stripped from
/// the cgroup path (nested cgroup namespaces).
///
/// # Errors
///
/// A message naming what is missing or malformed: a line that is not `id:controllers:path`,
/// no `devices` or unified entry, no mount of that hierarchy, a mount root or cgroup path
/// that climbs with `..`.
pub fn device_cgroup(
    cgroup: &[u8],
    mountinfo: &[u8],
    proc_root: &Path,
) -> Result<(CgroupVersion, PathBuf), String> {
    device_cgroup_in(cgroup, |version| find_mount(mountinfo, version), proc_root)
}

/// [`device_cgroup`], with the mount of the hierarchy found by `mount_of` (the first of a
/// `mountinfo` table, or the one the kernel names by id).
pub(super) fn device_cgroup_in(
    cgroup: &[u8],
    mount_of: impl FnOnce(CgroupVersion) -> Option<CgroupMount>,
    proc_root: &Path,
) -> Result<(CgroupVersion, PathBuf), String> {
    let m = membership(cgroup)?;
    let (version, path) = match (m.v1_devices, m.unified) {
        (Some(path), _) => (CgroupVersion::V1, path),
        (None, Some(path)) => (CgroupVersion::V2, path),
        (None, None) => return Err("no devices or unified cgroup entries found".into()),
    };
    let mount = mount_of(version).ok_or_else(|| {
        format!(
            "cgroup subsystem {} not found",
            if version == CgroupVersion::V1 {
                "devices"
            } else {
                "cgroup2"
            }
        )
    })?;
    let climbs = |p: &str| Path::new(p).components().any(|c| c == Component::ParentDir);
    if climbs(&mount.root) {
        return Err(format!("relative path in mount prefix: {}", mount.root));
    }
    if climbs(&path) {
        return Err(format!("relative path in cgroup path: {path}"));
    }
    let relative = if mount.root != "/" {
        path.strip_prefix(mount.root.as_str()).unwrap_or(&path)
    } else {
        &path
    };
    let mut dir = proc_root.to_path_buf();
    for part in [mount.mount_point.as_str(), relative] {
        dir.extend(
            Path::new(part)
                .components()
                .filter(|c| matches!(c, Component::Normal(_))),
        );
    }
    Ok((version, dir))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_prefers_v1_devices() {
        let cg = b"9:name=systemd:/x\n5:devices:/docker/abc\n1:net_cls:/\n0::/docker/abc\n";
        let (v, p) = device_cgroup(cg, HYBRID_MOUNTS.as_bytes(), Path::new("/")).unwrap();
        assert_eq!(v, CgroupVersion::V1);
        assert_eq!(p, Path::new("/sys/fs/cgroup/devices/docker/abc"));
    }

    #[test]
    fn unified_only_uses_cgroup2_and_strips_mount_root() {
        let mounts =
            "29 23 0:26 /kubepods /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        let cg = b"0::/kubepods/pod1/ctr:with:colons\n";
        let (v, p) = device_cgroup(cg, mounts.as_bytes(), Path::new("/rootfs")).unwrap();
        assert_eq!(v, CgroupVersion::V2);
        assert_eq!(p, Path::new("/rootfs/sys/fs/cgroup/pod1/ctr:with:colons"));
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        let mounts = "41 31 0:38 / /sys/fs/cgroup/my\\040cg rw - cgroup2 cgroup2 rw\n";
        let (_, p) = device_cgroup(b"0::/a\n", mounts.as_bytes(), Path::new("/")).unwrap();
        assert_eq!(p, Path::new("/sys/fs/cgroup/my cg/a"));
    }

    #[test]
    fn bad_inputs_are_named() {
        let err =
            |cg: &[u8], mi: &str| device_cgroup(cg, mi.as_bytes(), Path::new("/")).unwrap_err();
        assert!(err(b"garbage\n", HYBRID_MOUNTS).contains("malformed line \"garbage\""));
        assert!(err(b"1:net_cls:/\n", HYBRID_MOUNTS).contains("no devices or unified"));
        assert!(err(b"5:devices:/a\n", "").contains("cgroup subsystem devices not found"));
        assert!(err(b"0::/a/../../etc\n", HYBRID_MOUNTS).contains("relative path in cgroup path"));
        let climbing = "36 31 0:33 /../x /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n";
        assert!(err(b"5:devices:/a\n", climbing).contains("relative path in mount prefix"));
    }
}
