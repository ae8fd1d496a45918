//! Taking back from a running container what a plan gave it: the device rules first, then
//! the mounts.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{SFlag, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::apply::{Root, open_entry, unmount_ours};
use crate::cgroup::{DeviceCgroup, DeviceGrant};
use crate::ns::in_container_ns;
use crate::plan::{MountPlan, Op};
use crate::{Container, Error};

/// What [`MountPlan::detach`] did.
#[derive(Debug)]
pub struct Detached {
    /// Container paths whose bind of the plan's source was unmounted, in order.
    pub unmounted: Vec<PathBuf>,
    /// Container paths where the plan's source was not mounted (never attached, or
    /// detached before): nothing to do there.
    pub absent: Vec<PathBuf>,
    /// The device cgroup and what was denied there (`None` when the plan has no rule).
    pub cgroup: Option<(DeviceCgroup, DeviceGrant)>,
}

impl MountPlan {
    /// Takes back from the running `container` what this plan gives (detaching a GPU: the
    /// plan of that GPU's parts). First the plan's device rules are denied in the
    /// container's device cgroup ([`DeviceCgroup::deny`]), so that no process of it can
    /// open the devices from then on; then, in its mount namespace and in reverse order,
    /// each bind whose target shows the plan's source (same device and inode) is
    /// unmounted (`MNT_DETACH`), checked by mount id to be the topmost mount there just
    /// before and no longer there after — again while the target shows the source (a copy a
    /// container process stacked on it) — and the empty file or directory nvc made as its
    /// mountpoint is removed. Anything else at a target — a file of the image, a mount the
    /// container made of something else — is left alone; one the container stacks on nvc's
    /// while detaching is not taken for nvc's (nvc's is then said to be left), but
    /// `umount2(2)` takes the topmost mount at a place, so one stacked in the instant between
    /// that check and the unmount goes instead (also said: nvc's is left). A process that
    /// already had a device open keeps its descriptor (the kernel checks access at
    /// `open(2)`); files stay open and mapped where processes use them.
    ///
    /// Tmpfs, written files and links are not touched (the driver files a container keeps
    /// while it has any GPU; see the caller).
    ///
    /// # Errors
    ///
    /// The cgroup's errors (nothing changed then); [`Error::Namespace`] or
    /// [`Error::NoProcess`] when the namespace cannot be entered; [`Error::DetachIncomplete`]
    /// naming the mounts that could not be taken away (the device rules are denied then).
    pub fn detach(&self, container: &Container) -> Result<Detached, Error> {
        let rules = self.device_rules();
        let cgroup = if rules.is_empty() {
            None
        } else {
            let cg = DeviceCgroup::of_process(container.pid, &container.proc_root)?;
            let denied = cg.deny(&rules)?;
            Some((cg, denied))
        };
        let binds = binds(self);
        let (unmounted, absent, left) = in_container_ns(container, || {
            let root = Root::of(container)?;
            let (mut unmounted, mut absent, mut left) = (Vec::new(), Vec::new(), Vec::new());
            for (target, source) in binds {
                match source.map(|source| take_away(&root, target, source)) {
                    Some(Ok(true)) => unmounted.push(target.to_path_buf()),
                    None | Some(Ok(false)) => absent.push(target.to_path_buf()),
                    Some(Err(e)) => left.push(format!("{}: {e}", target.display())),
                }
            }
            Ok((unmounted, absent, left))
        })?;
        if !left.is_empty() {
            return Err(Error::DetachIncomplete { left });
        }
        Ok(Detached {
            unmounted,
            absent,
            cgroup,
        })
    }
}

impl MountPlan {
    /// The targets of this plan's binds that show their sources in `container` now (the
    /// same device and inode, looked at inside its root in its mount namespace): what of
    /// the plan is in place. Changes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Namespace`] or [`Error::NoProcess`] when the namespace cannot be entered;
    /// [`Error::Apply`] for a target that cannot be looked at.
    pub fn in_place(&self, container: &Container) -> Result<Vec<PathBuf>, Error> {
        let binds = binds(self);
        in_container_ns(container, || {
            let root = Root::of(container)?;
            let mut found = Vec::new();
            for (target, source) in binds {
                if let Some(source) = source
                    && shown(&root, target, source)
                        .map_err(crate::apply::fail("look at", target))?
                        .is_some()
                {
                    found.push(target.to_path_buf());
                }
            }
            found.reverse();
            Ok(found)
        })
    }
}

/// The plan's binds, last first, with their sources' (device, inode) read in the caller's
/// namespace (`None` for a source that is gone).
fn binds(plan: &MountPlan) -> Vec<(&Path, Option<(u64, u64)>)> {
    plan.ops
        .iter()
        .rev()
        .filter_map(|op| match op {
            Op::Bind { source, target, .. } => Some((
                target.as_path(),
                nix::sys::stat::stat(source)
                    .ok()
                    .map(|st| (st.st_dev, st.st_ino)),
            )),
            _ => None,
        })
        .collect()
}

/// `target`'s directory and the entry there, opened (not followed) inside the root, when it
/// shows `source` (device, inode): the plan's bind is in place.
fn shown(
    root: &Root,
    target: &Path,
    source: (u64, u64),
) -> Result<Option<(OwnedFd, OwnedFd)>, Errno> {
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return Ok(None);
    };
    let dir = match root.open(parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
        Ok(dir) => dir,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
        Err(e) => return Err(e),
    };
    let top = match open_entry(&dir, name) {
        Ok(top) => top,
        Err(Errno::ENOENT | Errno::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = fstat(top.as_fd())?;
    Ok(((st.st_dev, st.st_ino) == source).then_some((dir, top)))
}

/// Unmounts the binds of `source` (device, inode) at `target` — nvc's, and copies a
/// container process stacked on it (each shows the host's node; at most
/// [`MAX_STACKED`]) — and removes nvc's empty mountpoint; `false` when `target` does not
/// show `source`.
fn take_away(root: &Root, target: &Path, source: (u64, u64)) -> Result<bool, String> {
    let name = Path::new(target.file_name().unwrap_or_default());
    let mut under = None;
    for unmounted in 0.. {
        let Some((dir, top)) = shown(root, target, source).map_err(|e| e.to_string())? else {
            break;
        };
        if unmounted == MAX_STACKED {
            return Err(format!(
                "still shows the host's node after {MAX_STACKED} unmounts"
            ));
        }
        nvc_sys::fault::point("detach: umount", target).map_err(|e| e.to_string())?;
        // The mount found, by its id: a mount the container stacks on the name meanwhile is
        // not taken for it (and nvc's under it is said to be left).
        let id = nvc_sys::mount::mount_id(top.as_fd()).ok();
        unmount_ours(&dir, name, target, id, source)?;
        under = Some(dir);
    }
    let Some(dir) = under else {
        return Ok(false);
    };
    // The mountpoint nvc made: an empty file or directory (anything else stays).
    if let Ok(under) = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        let kind = SFlag::from_bits_truncate(under.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFREG && under.st_size == 0 {
            let _ = unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir);
        } else if kind == SFlag::S_IFDIR {
            // Fails, leaving it, unless empty.
            let _ = unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir);
        }
    }
    Ok(true)
}

/// How many binds of the same source stacked at one target a detach takes away.
const MAX_STACKED: usize = 16;
