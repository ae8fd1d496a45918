//! Granting and revoking device access in a cgroup.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
use nvc_sys::bpf;

use super::program::{self, Access, DeviceRule, DeviceType};
use super::{CgroupVersion, DeviceCgroup};
use crate::Error;

/// License string of the programs nvc loads (no GPL-only helper is used).
const LICENSE: &std::ffi::CStr = c"Apache";

/// Something the caller of a successful grant should know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Note {
    /// A cgroup v2 device program that nvc may not read (another owner's, or a kernel that
    /// hides it): left as it is, it may still deny the devices.
    UnreadableProgram {
        /// The program's id.
        id: u32,
        /// The cgroup directory.
        cgroup: std::path::PathBuf,
        /// Why it could not be read: the `errno` of `bpf(2)` (`EPERM`, `EACCES`), as
        /// [`std::io::Error::from_raw_os_error`] takes it.
        errno: i32,
    },
    /// A cgroup v2 directory without a device program: it filters no device, so there was
    /// nothing to allow.
    NoDeviceProgram {
        /// The cgroup directory.
        cgroup: std::path::PathBuf,
    },
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::UnreadableProgram { id, cgroup, errno } => write!(
                f,
                "device program {id} on {} cannot be read ({}); left as it is, it may still deny these devices",
                cgroup.display(),
                std::io::Error::from_raw_os_error(*errno)
            ),
            Note::NoDeviceProgram { cgroup } => write!(
                f,
                "no device program attached to {}: this cgroup filters no device, nothing to allow",
                cgroup.display()
            ),
        }
    }
}

/// What [`DeviceCgroup::allow`] (or [`DeviceCgroup::deny`]) did, and how to take it back.
#[derive(Debug, Default)]
pub struct DeviceGrant {
    /// Devices granted (or denied) now.
    pub added: Vec<(u32, u32)>,
    /// Devices the cgroup already allowed (a second `configure`, or an unrestricted cgroup);
    /// for a denial, devices it already denied.
    pub already: Vec<(u32, u32)>,
    /// What the caller should know: programs the kernel would not show us, a cgroup v2
    /// directory with no device program (no device filtering in force there).
    pub notes: Vec<Note>,
    /// v1: the cgroup, the control file that takes back the rules added (`devices.deny`
    /// for a grant, `devices.allow` for a denial) and the lines to write there (a denied
    /// device gets back exactly the access it had).
    v1_undo: Option<(DeviceCgroup, &'static str, Vec<String>)>,
    /// v2: the cgroup directory, and (cgroup, our program, the runtime's program it
    /// replaced) for each swap.
    v2_path: std::path::PathBuf,
    v2_swaps: Vec<(OwnedFd, OwnedFd, OwnedFd)>,
    /// v2: the cgroup and the program attached where none was (a denial).
    v2_attached: Option<(OwnedFd, OwnedFd)>,
}

/// Refuses device numbers beyond Linux's range before anything is written: the kernel reads
/// an all-ones number as `*`.
fn checked(cg: &DeviceCgroup, devices: &[(u32, u32)]) -> Result<(), Error> {
    match devices
        .iter()
        .find(|&&(major, minor)| major > 0xfff || minor > 0xf_ffff)
    {
        Some((major, minor)) => Err(Error::Cgroup {
            path: cg.path.clone(),
            what: format!("invalid device number {major}:{minor}"),
            error: None,
        }),
        None => Ok(()),
    }
}

/// Whether a v1 `devices.list` lets `c <major>:<minor>` be opened at all (read or write;
/// runtimes allow `mknod` of every node, `c *:* m`, which opens none).
fn v1_opens(list: &str, major: u32, minor: u32) -> bool {
    v1_allows(list, major, minor, "r") || v1_allows(list, major, minor, "w")
}

/// Whether a v1 `devices.list` allows `c <major>:<minor>` with every access in `access`.
fn v1_allows(list: &str, major: u32, minor: u32, access: &str) -> bool {
    list.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (Some(kind), Some(nums), Some(has)) = (f.next(), f.next(), f.next()) else {
            return false;
        };
        let (maj, min) = nums.split_once(':').unwrap_or(("", ""));
        let num_ok = |s: &str, n: u32| s == "*" || s.parse() == Ok(n);
        (kind == "a" || kind == "c")
            && num_ok(maj, major)
            && num_ok(min, minor)
            && access.chars().all(|c| has.contains(c))
    })
}

fn io_err(path: &Path, what: &str) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    let what = what.to_owned();
    move |e| Error::Cgroup {
        path,
        what,
        error: Some(e),
    }
}

/// A fault point of the grant (tests make it fail with a chosen errno), as a cgroup error.
fn point(op: &str, path: &Path) -> Result<(), Error> {
    nvc_sys::fault::point(op, path).map_err(|errno| Error::Cgroup {
        path: path.to_path_buf(),
        what: format!("cannot {}", op.trim_start_matches("undo: ")),
        error: Some(crate::error::os(errno)),
    })
}

fn bpf_err(path: &Path) -> impl FnOnce(nvc_sys::Error) -> Error {
    let path = path.to_path_buf();
    move |e| Error::Cgroup {
        path,
        what: e.operation(),
        error: Some(e.io_error()),
    }
}

impl DeviceCgroup {
    /// Allows `c <major>:<minor> rw` for each of `devices`, as upstream's
    /// `setup_device_cgroup`.
    ///
    /// - v1: appends the rule to `devices.allow`, unless `devices.list` already allows it.
    /// - v2: for each device program attached to the cgroup, loads a copy with the allow
    ///   rules in front ([`program::prepend`]) and swaps it in with `BPF_F_REPLACE`
    ///   (atomic; on kernels without it: attach the new one, then detach the old one, so
    ///   there is never a moment without the runtime's rules). A program that already starts
    ///   with the same rules is left alone. Programs the kernel will not show
    ///   (`EPERM`/`EACCES`, LSM-labelled ones such as systemd's) are skipped, as upstream
    ///   does: another attached program can only narrow access, so the grant may still be
    ///   refused by it — noted in [`DeviceGrant::notes`]. With no program attached the
    ///   cgroup filters no device and nothing is done (noted); upstream's newest code
    ///   synthesises a program there that the verifier refuses (#209).
    ///
    /// On failure everything done so far is revoked. Device numbers beyond Linux's range
    /// (major > 4095, minor > 1048575) are refused before anything is written: v1 would read
    /// an all-ones major as `*`.
    ///
    /// # Errors
    ///
    /// [`Error::Cgroup`] naming the cgroup and the failing write or `bpf(2)` call (with the
    /// verifier log when a program is refused).
    ///
    /// # Kernel requirements
    ///
    /// v1: write access to the cgroup (`CAP_SYS_ADMIN` over it). v2: `CAP_BPF` (or
    /// `CAP_SYS_ADMIN`) and `CAP_NET_ADMIN`; `BPF_F_REPLACE` needs Linux 5.6.
    pub fn allow(&self, devices: &[(u32, u32)]) -> Result<DeviceGrant, Error> {
        self.change(devices, true)
    }

    /// Denies `c <major>:<minor> rwm` for each of `devices` — what detaching a GPU from a
    /// running container takes back, whoever granted it (nvc, or the runtime from its
    /// configuration). The returned [`DeviceGrant`] lists the devices denied now
    /// (`added`) and those already denied (`already`); its [`DeviceGrant::revoke`] allows
    /// them again.
    ///
    /// - v1: writes the rule to `devices.deny` for each device `devices.list` allows, then
    ///   reads the list again: a device still allowed there (by a wider rule the runtime
    ///   wrote, `c 195:* rwm`, which v1 cannot narrow) fails the denial. A cgroup that
    ///   allows everything (`a *:* rwm`) keeps the denials as exceptions the list does not show.
    /// - v2: splices deny rules in front of each device program, as [`DeviceCgroup::allow`]
    ///   splices allow rules (so they win over any earlier grant); a cgroup with no device
    ///   program gets one that denies these devices and allows everything else.
    ///
    /// A process that already has a device open keeps its descriptor: the device cgroup
    /// checks `open(2)` and `mknod(2)`, not later reads, writes or `ioctl`s. On failure
    /// everything done so far is undone.
    ///
    /// # Errors
    ///
    /// As [`DeviceCgroup::allow`]; [`Error::Cgroup`] ("still allowed by a wider rule")
    /// when v1 cannot deny a device alone.
    ///
    /// # Kernel requirements
    ///
    /// As [`DeviceCgroup::allow`].
    pub fn deny(&self, devices: &[(u32, u32)]) -> Result<DeviceGrant, Error> {
        self.change(devices, false)
    }

    /// Allows (`c M:m rw`) or denies (`c M:m rwm`) `devices`, everything done taken back on
    /// failure.
    fn change(&self, devices: &[(u32, u32)], allow: bool) -> Result<DeviceGrant, Error> {
        checked(self, devices)?;
        let mut grant = DeviceGrant::default();
        let result = match self.version {
            CgroupVersion::V1 if allow => self.allow_v1(devices, &mut grant),
            CgroupVersion::V1 => self.deny_v1(devices, &mut grant),
            CgroupVersion::V2 => {
                let rules: Vec<DeviceRule> = devices
                    .iter()
                    .map(|&(major, minor)| match allow {
                        true => DeviceRule::allow_char_rw(major, minor),
                        false => DeviceRule {
                            allow: false,
                            kind: DeviceType::Char,
                            major: Some(major),
                            minor: Some(minor),
                            access: Access::ALL,
                        },
                    })
                    .collect();
                self.splice_v2(&rules, devices, &mut grant)
            }
        };
        match result {
            Ok(()) => Ok(grant),
            Err(e) => {
                let _ = grant.revoke();
                Err(e)
            }
        }
    }

    /// Whether the cgroup lets its processes open character device `major:minor` (read or
    /// write), as the kernel keeps it: v1's `devices.list`. `None` for v2, whose programs
    /// answer only when run.
    ///
    /// # Errors
    ///
    /// [`Error::Cgroup`] when `devices.list` cannot be read.
    pub fn allows(&self, major: u32, minor: u32) -> Result<Option<bool>, Error> {
        match self.version {
            CgroupVersion::V1 => {
                let list = self.list_v1(&self.open_dir()?)?;
                Ok(Some(v1_opens(&list, major, minor)))
            }
            CgroupVersion::V2 => Ok(None),
        }
    }

    /// The cgroup's `devices.list` (v1).
    fn list_v1(&self, dir: &OwnedFd) -> Result<String, Error> {
        let mut list = String::new();
        self.open_file_in(dir, "devices.list", OFlag::O_RDONLY)?
            .take(crate::kernfs::READ_LIMIT)
            .read_to_string(&mut list)
            .map_err(io_err(&self.path.join("devices.list"), "cannot read"))?;
        Ok(list)
    }

    /// Writes one rule to the v1 control file `file` (the kernel parses one rule a write).
    fn write_v1(&self, dir: &OwnedFd, file: &str, rule: &str) -> Result<(), Error> {
        let path = self.path.join(file);
        point(&format!("write {file}"), &path)?;
        self.open_file_in(dir, file, OFlag::O_WRONLY)?
            .write_all(rule.as_bytes())
            .map_err(io_err(&path, &format!("cannot write {rule}")))
    }

    /// A v1 device allowed by a wider rule (`c 195:* rw`), which no denial narrows.
    fn wider_rule(&self, major: u32, minor: u32) -> Error {
        Error::Cgroup {
            path: self.path.join("devices.list"),
            what: format!(
                "c {major}:{minor} is still allowed by a wider rule, which a v1 device cgroup \
                 cannot narrow"
            ),
            error: None,
        }
    }

    fn deny_v1(&self, devices: &[(u32, u32)], grant: &mut DeviceGrant) -> Result<(), Error> {
        let dir = self.open_dir()?;
        let list = self.list_v1(&dir)?;
        let unrestricted = list.lines().any(|l| l.trim() == "a *:* rwm");
        for &(major, minor) in devices {
            if !v1_opens(&list, major, minor) {
                grant.already.push((major, minor));
                continue;
            }
            let wider = list
                .lines()
                .filter(|l| !l.starts_with(&format!("c {major}:{minor} ")))
                .any(|l| v1_opens(l, major, minor));
            if wider && !unrestricted {
                return Err(self.wider_rule(major, minor));
            }
            // What it had: every access of its own rule, or all of them where the cgroup
            // allows everything (the denial is then an exception, taken out whole).
            let own = format!("c {major}:{minor} ");
            let had: String = "rwm"
                .chars()
                .filter(|&a| {
                    unrestricted
                        || list
                            .lines()
                            .filter_map(|l| l.strip_prefix(&own))
                            .any(|access| access.contains(a))
                })
                .collect();
            self.write_v1(&dir, "devices.deny", &format!("c {major}:{minor} rwm"))?;
            grant
                .v1_undo
                .get_or_insert_with(|| (self.clone(), "devices.allow", Vec::new()))
                .2
                .push(format!("c {major}:{minor} {had}"));
            grant.added.push((major, minor));
        }
        // The kernel's own account: nothing it still lets be opened.
        let after = self.list_v1(&dir)?;
        if let Some(&(major, minor)) = grant
            .added
            .iter()
            .find(|&&(major, minor)| !unrestricted && v1_opens(&after, major, minor))
        {
            return Err(self.wider_rule(major, minor));
        }
        Ok(())
    }

    fn allow_v1(&self, devices: &[(u32, u32)], grant: &mut DeviceGrant) -> Result<(), Error> {
        let dir = self.open_dir()?;
        let list = self.list_v1(&dir)?;
        for &(major, minor) in devices {
            if v1_allows(&list, major, minor, "rw") {
                grant.already.push((major, minor));
                continue;
            }
            self.write_v1(&dir, "devices.allow", &format!("c {major}:{minor} rw"))?;
            grant
                .v1_undo
                .get_or_insert_with(|| (self.clone(), "devices.deny", Vec::new()))
                .2
                .push(format!("c {major}:{minor} rw"));
            grant.added.push((major, minor));
        }
        Ok(())
    }

    /// Splices `rules` (for `devices`) in front of every device program of the v2 cgroup.
    fn splice_v2(
        &self,
        rules: &[DeviceRule],
        devices: &[(u32, u32)],
        grant: &mut DeviceGrant,
    ) -> Result<(), Error> {
        let path = &self.path;
        let open_dir = || self.open_dir();
        let dir = open_dir()?;
        let _memlock = Memlock::raise();
        let prefix = program::prefix(rules);
        let ids = bpf::prog_query_cgroup_device(dir.as_fd()).map_err(bpf_err(path))?;
        let mut seen = 0;
        for id in ids {
            let hidden = |e: &nvc_sys::Error| {
                matches!(
                    e,
                    nvc_sys::Error::Syscall {
                        errno: Errno::EPERM | Errno::EACCES,
                        ..
                    }
                )
            };
            let fetched = bpf::prog_get_fd_by_id(id)
                .and_then(|fd| bpf::prog_instructions(fd.as_fd()).map(|insns| (fd, insns)));
            let (old, insns) = match fetched {
                Ok(found) => found,
                Err(e) if hidden(&e) => {
                    grant.notes.push(Note::UnreadableProgram {
                        id,
                        cgroup: path.clone(),
                        errno: e.errno() as i32,
                    });
                    continue;
                }
                Err(e) => return Err(bpf_err(path)(e)),
            };
            seen += 1;
            if insns.starts_with(&prefix) {
                continue;
            }
            point("load a device program", path)?;
            let new = bpf::prog_load_cgroup_device(&program::prepend(rules, &insns), LICENSE)
                .map_err(bpf_err(path))?;
            point("attach a device program", path)?;
            swap(&dir, &old, &new).map_err(bpf_err(path))?;
            grant.v2_path.clone_from(path);
            grant.v2_swaps.push((open_dir()?, new, old));
        }
        let denying = rules.iter().any(|r| !r.allow);
        if seen == 0 && denying {
            // Nothing filters this cgroup: a program of its own denies the devices.
            point("load a device program", path)?;
            let new = bpf::prog_load_cgroup_device(&program::program(rules, true), LICENSE)
                .map_err(bpf_err(path))?;
            point("attach a device program", path)?;
            bpf::prog_attach_cgroup_device(new.as_fd(), dir.as_fd(), None)
                .map_err(bpf_err(path))?;
            grant.v2_path.clone_from(path);
            grant.v2_attached = Some((open_dir()?, new));
        } else if seen == 0 {
            grant.notes.push(Note::NoDeviceProgram {
                cgroup: path.clone(),
            });
        }
        if grant.v2_swaps.is_empty() && grant.v2_attached.is_none() {
            grant.already.extend_from_slice(devices);
        } else {
            grant.added.extend_from_slice(devices);
        }
        Ok(())
    }
}

/// Puts `new` in the place of `old` on the cgroup `dir`.
fn swap(dir: &OwnedFd, old: &OwnedFd, new: &OwnedFd) -> Result<(), nvc_sys::Error> {
    match bpf::prog_attach_cgroup_device(new.as_fd(), dir.as_fd(), Some(old.as_fd())) {
        Err(nvc_sys::Error::Syscall {
            errno: Errno::EINVAL,
            ..
        }) => {
            bpf::prog_attach_cgroup_device(new.as_fd(), dir.as_fd(), None)?;
            bpf::prog_detach_cgroup_device(old.as_fd(), dir.as_fd())
        }
        other => other,
    }
}

impl DeviceGrant {
    /// Takes the grant back: v1 denies the rules added, v2 puts the runtime's programs back
    /// in place of ours. Best effort over every step; the first error is returned.
    ///
    /// # Errors
    ///
    /// [`Error::Cgroup`] for a write or `bpf(2)` call that failed.
    pub fn revoke(mut self) -> Result<(), Error> {
        let mut first = None;
        if let Some((cg, file, lines)) = self.v1_undo.take() {
            let path = cg.path.join(file);
            match cg.open_dir() {
                Err(e) => first = first.or(Some(e)),
                Ok(dir) => {
                    for line in &lines {
                        let r = point(&format!("undo: write {file}"), &path)
                            .and_then(|()| cg.open_file_in(&dir, file, OFlag::O_WRONLY))
                            .and_then(|mut f| {
                                f.write_all(line.as_bytes())
                                    .map_err(io_err(&path, "cannot write"))
                            });
                        first = first.or(r.err());
                    }
                }
            }
        }
        if let Some((dir, new)) = self.v2_attached.take()
            && let Err(e) = bpf::prog_detach_cgroup_device(new.as_fd(), dir.as_fd())
        {
            first = first.or(Some(bpf_err(&self.v2_path)(e)));
        }
        for (dir, new, old) in self.v2_swaps.drain(..).rev() {
            if let Err(e) = swap(&dir, &new, &old) {
                first = first.or(Some(bpf_err(&self.v2_path)(e)));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Before Linux 5.11 a BPF program's memory counts against `RLIMIT_MEMLOCK` (since, against
/// the memory cgroup): on those kernels the limit is raised while nvc loads its program and
/// put back when this is dropped, so the process that embeds nvc keeps its own limit; newer
/// kernels are left alone.
struct Memlock(Option<(u64, u64)>);

impl Memlock {
    fn raise() -> Self {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        if release_at_least(&release, (5, 11)) {
            return Memlock(None);
        }
        let old = getrlimit(Resource::RLIMIT_MEMLOCK).ok();
        if old.is_some() {
            let _ = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY);
        }
        Memlock(old)
    }
}

impl Drop for Memlock {
    fn drop(&mut self) {
        if let Some((soft, hard)) = self.0 {
            let _ = setrlimit(Resource::RLIMIT_MEMLOCK, soft, hard);
        }
    }
}

/// Whether a kernel release (`6.1.0-28-amd64`) is at least `(major, minor)`; an unreadable
/// one is not.
fn release_at_least(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::release_at_least;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(release_at_least("6.1.0-28-amd64", (5, 11)));
        assert!(release_at_least("5.11.0", (5, 11)));
        assert!(!release_at_least("5.10.226-1", (5, 11)));
        assert!(!release_at_least("4.19.0", (5, 11)));
        assert!(!release_at_least("", (5, 11)));
    }
}
