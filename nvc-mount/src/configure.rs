//! The whole of `configure` as one transaction: mounts, device cgroup, ldconfig — each
//! later step's failure undoes the earlier ones.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::apply::{Root, fail, fd_path};
use crate::cgroup::{DeviceCgroup, DeviceGrant};
use crate::ns::in_container_ns;
use crate::plan::Op;
use crate::{
    CompatMode, Container, ContainerDirs, Error, Ldconfig, LdconfigOptions, LdconfigRun, Limits,
    MountPlan, Mounted, PlanOptions, compat_dir, compat_libraries, run_ldconfig,
};
use nvc_driver::DriverInfo;
use nvc_driver::tables::Capability;

/// Everything `configure` was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigureOptions {
    /// Capabilities, devices, flags (its `compat_libs` is filled in by [`Configuration::prepare`]).
    pub plan: PlanOptions,
    /// CUDA forward compatibility (`--cuda-compat-mode`).
    pub cuda_compat: CompatMode,
    /// The `ldconfig` to run; `None`: the image's (`/sbin/ldconfig.real` or `/sbin/ldconfig`).
    pub ldconfig: Option<Ldconfig>,
    /// Do not run `ldconfig` (`--no-ldconfig`).
    pub no_ldconfig: bool,
    /// `--no-pivot`.
    pub no_pivot: bool,
}

/// A prepared `configure`: the mount plan and the `ldconfig` run, printable as a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    /// The mounts, links and device rules.
    pub plan: MountPlan,
    /// The `ldconfig` step (`None` with `no_ldconfig`).
    pub ldconfig: Option<LdconfigOptions>,
    /// The container's directories it was planned for.
    pub dirs: ContainerDirs,
}

impl Configuration {
    /// Plans `configure` for the image at `rootfs` with the driver `info` (probed in
    /// `driver_root`): detects the image's directories, finds its CUDA compat libraries
    /// (with `compute`, unless disabled), builds the [`MountPlan`] and the `ldconfig` step
    /// (in `ldconfig` compat mode with the compat directory added). Changes nothing.
    ///
    /// # Errors
    ///
    /// A detection error in the image, [`Error::Container`] when compat libraries live in
    /// several directories in `ldconfig` mode, or [`MountPlan::build`]'s errors.
    pub fn prepare(
        driver_root: &Path,
        info: &DriverInfo,
        rootfs: &Path,
        opts: &ConfigureOptions,
    ) -> Result<Self, Error> {
        let dirs = ContainerDirs::detect(rootfs)?;
        let compute = opts.plan.capabilities.contains(&Capability::Compute);
        let compat = if compute && opts.cuda_compat != CompatMode::Disabled {
            compat_libraries(rootfs, &dirs.cudart, &info.nvrm_version)?
        } else {
            Vec::new()
        };
        let mut plan_opts = opts.plan.clone();
        let mut extra_dir = None;
        match opts.cuda_compat {
            CompatMode::Mount => plan_opts.compat_libs = compat,
            CompatMode::Ldconfig => {
                extra_dir = compat_dir(&compat).map_err(|what| Error::Container { what })?;
            }
            CompatMode::Disabled => {}
        }
        let plan = MountPlan::build(driver_root, info, &dirs, &plan_opts)?;
        let ldconfig = (!opts.no_ldconfig).then(|| LdconfigOptions {
            ldconfig: opts
                .ldconfig
                .clone()
                .unwrap_or_else(|| Ldconfig::Container(dirs.ldconfig.clone())),
            no_pivot: opts.no_pivot,
            extra_dir,
            limits: Limits::default(),
        });
        Ok(Configuration {
            plan,
            ldconfig,
            dirs,
        })
    }

    /// Applies it to `container` ([`MountPlan::configure`]).
    ///
    /// # Errors
    ///
    /// As [`MountPlan::configure`]; nothing is left half-done.
    pub fn apply(&self, container: &Container) -> Result<Configured, Error> {
        self.plan.configure(container, self.ldconfig.as_ref())
    }
}

impl std::fmt::Display for Configuration {
    /// The plan, one operation a line, then `ldconfig (container|host) PATH DIRS...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.plan)?;
        if let Some(l) = &self.ldconfig {
            let (how, path) = match &l.ldconfig {
                Ldconfig::Container(p) => ("container", p),
                Ldconfig::Host(p) => ("host", p),
            };
            write!(
                f,
                "ldconfig ({how}) {} {} {}",
                path.display(),
                self.dirs.libs.display(),
                self.dirs.libs32.display()
            )?;
            if let Some(extra) = &l.extra_dir {
                write!(f, " {}", extra.display())?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// What `configure` did.
#[derive(Debug)]
pub struct Configured {
    /// The mounts.
    pub mounted: Mounted,
    /// The device cgroup and what was granted there (`None` with `no_cgroups`).
    pub cgroup: Option<(DeviceCgroup, DeviceGrant)>,
    /// The ldconfig run (`None` when skipped).
    pub ldconfig: Option<LdconfigRun>,
}

impl Configured {
    /// Notes for the user: cgroup programs left alone, no device program attached.
    pub fn notes(&self) -> &[String] {
        self.cgroup
            .as_ref()
            .map_or(&[], |(_, g)| g.notes.as_slice())
    }
}

/// The linker state ldconfig changes: the names in the library directories and the cache.
struct LinkerState {
    dirs: Vec<(PathBuf, HashSet<OsString>)>,
    cache: Option<Vec<u8>>,
}

const CACHE: &str = "/etc/ld.so.cache";

fn names(root: &Root, dir: &Path) -> HashSet<OsString> {
    root.open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .ok()
        .and_then(|fd| std::fs::read_dir(fd_path(&fd)).ok())
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.file_name())).collect())
        .unwrap_or_default()
}

impl LinkerState {
    fn save(container: &Container, dirs: &[&Path]) -> Result<Self, Error> {
        in_container_ns(container, || {
            let root = Root::of(container)?;
            let cache = root
                .open(Path::new(CACHE), OFlag::O_RDONLY)
                .ok()
                .and_then(|fd| {
                    let mut bytes = Vec::new();
                    File::from(fd).read_to_end(&mut bytes).ok().map(|_| bytes)
                });
            Ok(LinkerState {
                dirs: dirs
                    .iter()
                    .map(|d| (d.to_path_buf(), names(&root, d)))
                    .collect(),
                cache,
            })
        })
    }

    /// Removes the links ldconfig added and puts the old cache back. Best effort.
    fn restore(&self, container: &Container) -> Result<(), Error> {
        in_container_ns(container, || {
            let root = Root::of(container)?;
            for (dir, before) in &self.dirs {
                let Ok(fd) = root.open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY) else {
                    continue;
                };
                for name in names(&root, dir).difference(before) {
                    let is_link =
                        fstatat(fd.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                            .is_ok_and(|st| {
                                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
                                    == SFlag::S_IFLNK
                            });
                    if is_link {
                        let _ = unlinkat(fd.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir);
                    }
                }
            }
            let etc = root
                .open(Path::new("/etc"), OFlag::O_PATH | OFlag::O_DIRECTORY)
                .map_err(fail("open", Path::new("/etc")))?;
            match &self.cache {
                None => {
                    let _ = unlinkat(etc.as_fd(), "ld.so.cache", UnlinkatFlags::NoRemoveDir);
                }
                Some(bytes) => {
                    let tmp = ".ld.so.cache.nvc-restore";
                    let _ = unlinkat(etc.as_fd(), tmp, UnlinkatFlags::NoRemoveDir);
                    let flags =
                        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW;
                    let out = openat(etc.as_fd(), tmp, flags, Mode::from_bits_truncate(0o644))
                        .map_err(fail("create", Path::new(CACHE)))?;
                    File::from(out).write_all(bytes).map_err(|e| {
                        fail("write", Path::new(CACHE))(Errno::from_raw(
                            e.raw_os_error().unwrap_or(0),
                        ))
                    })?;
                    renameat(etc.as_fd(), tmp, etc.as_fd(), "ld.so.cache")
                        .map_err(fail("rename", Path::new(CACHE)))?;
                }
            }
            Ok(())
        })
    }
}

impl MountPlan {
    /// Configures `container` as upstream's `configure` does, as one transaction:
    ///
    /// 1. finds the container's device cgroup when the plan has device rules (before any
    ///    change, so a bad cgroup changes nothing);
    /// 2. [`MountPlan::apply`];
    /// 3. grants the plan's devices in the cgroup ([`DeviceCgroup::allow`]);
    /// 4. runs the sandboxed `ldconfig` unless `ldconfig` is `None` ([`run_ldconfig`]).
    ///
    /// When step 3 or 4 fails, what the earlier steps did is undone: the grant revoked, the
    /// mounts and created files removed; after a failed `ldconfig`, the links it added to the
    /// library directories are removed and the container's `/etc/ld.so.cache` is put back.
    ///
    /// # Errors
    ///
    /// The failing step's error ([`Error::Cgroup`], [`Error::Apply`], [`Error::Ldconfig`],
    /// [`Error::Namespace`]).
    pub fn configure(
        &self,
        container: &Container,
        ldconfig: Option<&LdconfigOptions>,
    ) -> Result<Configured, Error> {
        let wants_cgroup = self
            .ops
            .iter()
            .any(|op| matches!(op, Op::AllowDevice { .. }));
        let cgroup = if wants_cgroup {
            let mountinfo = if container.proc_root == Path::new("/") {
                PathBuf::from("/proc/self/mountinfo")
            } else {
                container
                    .proc_root
                    .join(format!("proc/{}/mountinfo", container.pid))
            };
            Some(DeviceCgroup::of_process(
                container.pid,
                &container.proc_root,
                &mountinfo,
            )?)
        } else {
            None
        };
        let mounted = self.apply(container)?;
        let granted = match cgroup {
            Some(cg) => match cg.allow(&mounted.device_rules) {
                Ok(grant) => Some((cg, grant)),
                Err(e) => {
                    let _ = mounted.unapply(container);
                    return Err(e);
                }
            },
            None => None,
        };
        let Some(opts) = ldconfig else {
            return Ok(Configured {
                mounted,
                cgroup: granted,
                ldconfig: None,
            });
        };
        let dirs = [
            container.dirs.libs.as_path(),
            container.dirs.libs32.as_path(),
        ];
        let saved = match LinkerState::save(container, &dirs) {
            Ok(saved) => saved,
            Err(e) => {
                undo(container, &mounted, granted);
                return Err(e);
            }
        };
        match run_ldconfig(container, opts) {
            Ok(run) => Ok(Configured {
                mounted,
                cgroup: granted,
                ldconfig: Some(run),
            }),
            Err(e) => {
                let _ = saved.restore(container);
                undo(container, &mounted, granted);
                Err(e)
            }
        }
    }
}

/// Revokes a grant and removes the mounts (best effort, on a failure path).
fn undo(container: &Container, mounted: &Mounted, granted: Option<(DeviceCgroup, DeviceGrant)>) {
    if let Some((_, grant)) = granted {
        let _ = grant.revoke();
    }
    let _ = mounted.unapply(container);
}
