//! The whole of `configure` as one transaction: mounts, device cgroup, ldconfig — each
//! later step's failure undoes the earlier ones.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::builtin_ldconfig::{CommandLine, NewLibraries, NewLibrary, NewLink};
use crate::cgroup::{DeviceCgroup, DeviceGrant};
use crate::early_update::{Early, EarlyUpdate};
use crate::ldconfig::{Sandbox, sandbox_procs};
use crate::linker_state::LinkerState;
use crate::plan::{MountKind, Op};
use crate::refresh::builtin_or_fallback;
use crate::{
    CompatMode, Container, ContainerDirs, Error, Ldconfig, LdconfigOptions, LdconfigRun, Limits,
    MountPlan, Mounted, Part, PlanOptions, compat_dir, compat_libraries,
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
    /// The linker-cache step ([`Ldconfig::Skip`] by default).
    pub ldconfig: Ldconfig,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// The image's CUDA compat libraries as the caller chose them (container paths, bound
    /// from inside the rootfs); `None`: found with [`compat_libraries`].
    pub compat_libs: Option<Vec<PathBuf>>,
}

/// A prepared `configure`: the mount plan and the `ldconfig` run, printable as a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Configuration {
    /// The mounts, links and device rules.
    pub plan: MountPlan,
    /// The `ldconfig` step (`None` for [`Ldconfig::Skip`]).
    pub ldconfig: Option<LdconfigOptions>,
    /// The container's directories it was planned for.
    pub dirs: ContainerDirs,
    /// The rootfs it was planned for.
    pub rootfs: PathBuf,
}

impl Configuration {
    /// Plans `configure` for the image at `rootfs` whose directories are `dirs` (the
    /// container's, [`Container::dirs`], or [`detect_dirs`](crate::detect_dirs) for a plan without a
    /// container) with the driver `info` (probed in `driver_root`): finds the image's CUDA
    /// compat libraries (with `compute`, unless disabled), builds the [`MountPlan`] and the
    /// `ldconfig` step (in `ldconfig` compat mode with the compat directory added). Changes
    /// nothing.
    ///
    /// # Errors
    ///
    /// A resolution error in the image, [`Error::Container`] when compat libraries live in
    /// several directories in `ldconfig` mode, or [`MountPlan::build`]'s errors.
    pub fn prepare(
        driver_root: &Path,
        info: &DriverInfo,
        rootfs: &Path,
        dirs: &ContainerDirs,
        opts: &ConfigureOptions,
    ) -> Result<Self, Error> {
        let dirs = dirs.clone();
        let compute = opts.plan.capabilities.contains(&Capability::Compute);
        // Only the driver mount and the ldconfig step use them.
        let wanted = matches!(opts.plan.part, None | Some(Part::Driver | Part::Ldcache));
        let compat = match &opts.compat_libs {
            _ if !compute || !wanted || opts.cuda_compat == CompatMode::Disabled => Vec::new(),
            Some(given) => given.clone(),
            None => compat_libraries(rootfs, &dirs.cudart, &info.nvrm_version)?,
        };
        let mut plan_opts = opts.plan.clone();
        let mut cuda_compat_dir = None;
        match opts.cuda_compat {
            CompatMode::Mount => plan_opts.compat_libs = compat,
            CompatMode::Ldconfig => {
                cuda_compat_dir = compat_dir(&compat).map_err(|what| Error::Container { what })?;
            }
            CompatMode::Disabled => {}
        }
        let plan = MountPlan::build(driver_root, info, &dirs, &plan_opts)?;
        let ldconfig = (opts.ldconfig != Ldconfig::Skip).then(|| LdconfigOptions {
            ldconfig: opts.ldconfig.clone(),
            no_pivot: opts.no_pivot,
            extra_dirs: Vec::new(),
            cuda_compat_dir,
            limits: Limits::default(),
        });
        Ok(Configuration {
            plan,
            ldconfig,
            dirs,
            rootfs: rootfs.to_path_buf(),
        })
    }

    /// Applies it to `container` ([`MountPlan::configure`]), which must be the one it was
    /// planned for (same rootfs and directories: the plan, the `ldconfig` run and the
    /// rollback then agree on where things are).
    ///
    /// # Errors
    ///
    /// [`Error::Container`] for another container (or an image whose directories changed
    /// since), else as [`MountPlan::configure`]; nothing is left half-done.
    pub fn apply(&self, container: &Container) -> Result<Configured, Error> {
        if container.rootfs != self.rootfs || container.dirs != self.dirs {
            return Err(Error::Container {
                what: format!(
                    "planned for {} ({:?}), applied to {} ({:?})",
                    self.rootfs.display(),
                    self.dirs,
                    container.rootfs.display(),
                    container.dirs
                ),
            });
        }
        self.plan.configure(container, self.ldconfig.as_ref())
    }
}

impl Configuration {
    /// The directories the `ldconfig` step scans, in its order (none when it is skipped).
    #[must_use]
    pub fn ldconfig_dirs(&self) -> Vec<&Path> {
        self.ldconfig
            .iter()
            .flat_map(|l| l.scanned(&self.dirs))
            .map(PathBuf::as_path)
            .collect()
    }
}

impl std::fmt::Display for Configuration {
    /// The plan, one operation a line, then `ldconfig (container|host|builtin|auto) PATH
    /// DIRS...` (`-` for the built-in update's path).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.plan)?;
        if let Some(l) = &self.ldconfig {
            let (how, path) = match &l.ldconfig {
                Ldconfig::Image(p) => ("container", p.as_path()),
                Ldconfig::Auto(p) => ("auto", p.as_path()),
                Ldconfig::Host(p) => ("host", p.as_path()),
                Ldconfig::Builtin => ("builtin", Path::new("-")),
                Ldconfig::Skip => return Ok(()),
            };
            write!(f, "ldconfig ({how}) {}", path.display())?;
            for dir in l.scanned(&self.dirs) {
                write!(f, " {}", dir.display())?;
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
    pub fn notes(&self) -> &[crate::cgroup::Note] {
        self.cgroup
            .as_ref()
            .map_or(&[], |(_, g)| g.notes.as_slice())
    }
}

impl MountPlan {
    /// Configures `container` as upstream's `configure` does, as one transaction:
    ///
    /// 1. finds the container's device cgroup when the plan has device rules (before any
    ///    change, so a bad cgroup changes nothing);
    /// 2. [`MountPlan::apply`];
    /// 3. grants the plan's devices in the cgroup ([`DeviceCgroup::allow`]);
    /// 4. unless `ldconfig` is `None`, updates the linker cache: in process for
    ///    [`Ldconfig::Builtin`] (and [`Ldconfig::Auto`] where the image's cache names a
    ///    proven glibc, looked up before step 2) where it can prove the result — proven on a
    ///    second thread while step 2 runs (the new cache written beside the image's and its
    ///    links made), put in place after step 3; where that proof is unsure, proven again
    ///    after step 3 or a new cache built — or with the sandboxed `ldconfig`
    ///    ([`run_ldconfig`](crate::run_ldconfig)), whose first process is forked before step
    ///    2: for a v1 device cgroup it joins it while the mounts are made (a cgroup join
    ///    waits for an RCU grace period); for a cgroup2 one the program is created in it
    ///    (`clone3(CLONE_INTO_CGROUP)`, Linux 5.7) and nothing waits.
    ///
    /// When step 2, 3 or 4 fails, what the earlier steps did is undone: the grant revoked,
    /// the mounts and created files removed; the built-in update's staged cache and links
    /// removed; after a failed `ldconfig`, the links it added to the library directories are
    /// removed and the container's `/etc/ld.so.cache` is put back.
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
        let cmd = ldconfig.map(|opts| CommandLine::of(opts, &container.dirs));
        std::thread::scope(|scope| {
            // The built-in update is proven on a second thread while the mounts are made
            // (crate::early_update); for Auto, that thread first says whether it stands
            // for the image's program.
            let mut early = match (ldconfig, &cmd) {
                (Some(opts), Some(cmd))
                    if matches!(opts.ldconfig, Ldconfig::Builtin | Ldconfig::Auto(_)) =>
                {
                    let plan = || self.new_and_other(container);
                    Some(EarlyUpdate::start(
                        scope,
                        container,
                        &opts.ldconfig,
                        cmd,
                        plan,
                    )?)
                }
                _ => None,
            };
            // Every failure from here on tells the early update, which then writes nothing.
            let rules = self.device_rules();
            let cgroup = if rules.is_empty() {
                None
            } else {
                Some(
                    DeviceCgroup::of_process(container.pid, &container.proc_root)
                        .map_err(|e| abandon(early.take(), e))?,
                )
            };
            // The bind sources cloned in the caller's namespace while the early update
            // starts (and, for Auto, decides).
            let apply = self
                .prepare_apply(container)
                .map_err(|e| abandon(early.take(), e))?;
            let builtin = early.as_mut().is_some_and(EarlyUpdate::built_in);
            // The sandboxed ldconfig's first process is forked now. A v1 device cgroup (the
            // cgroup found for the grant, not looked up again) it joins while the mounts are
            // made: the join waits for an RCU grace period, as long as all the mounts here. In
            // a cgroup2 one the program is created at the run, with no wait. The built-in
            // update needs none (a fallback prepares one when it gets there).
            let sandbox = match ldconfig {
                Some(opts) if !builtin => Some(
                    sandbox_procs(container, cgroup.as_ref())
                        .and_then(|procs| Sandbox::prepare(container, opts, procs))
                        .map_err(|e| abandon(early.take(), e))?,
                ),
                _ => None,
            };
            let mounted = apply.run(container).map_err(|e| abandon(early.take(), e))?;
            let granted = match cgroup {
                Some(cg) => match cg.allow(&rules) {
                    Ok(grant) => Some((cg, grant)),
                    Err(e) => {
                        let e = abandon(early.take(), e);
                        return Err(undo(container, &mounted, None, e));
                    }
                },
                None => None,
            };
            let (Some(opts), Some(cmd)) = (ldconfig, &cmd) else {
                return Ok(Configured {
                    mounted,
                    cgroup: granted,
                    ldconfig: None,
                });
            };
            let auto = matches!(opts.ldconfig, Ldconfig::Auto(_));
            let mut spent = Duration::ZERO;
            match early.map(|early| early.finish(true)) {
                Some(Ok(Early::Updated { added })) => {
                    return Ok(Configured {
                        mounted,
                        cgroup: granted,
                        ldconfig: Some(LdconfigRun::Builtin { added }),
                    });
                }
                Some(Err(e)) if !auto => return Err(undo(container, &mounted, granted, e)),
                // Unsure before the mounts: the update after them decides, in the time left.
                Some(Ok(Early::Unsure(early))) => spent = early,
                // Auto: the update after the mounts fails again, or is unsure, and the
                // image's program runs.
                _ => {}
            }
            let saved = match LinkerState::save(container, &cmd.dirs) {
                Ok(saved) => saved,
                Err(e) => return Err(undo(container, &mounted, granted, e)),
            };
            let run = match sandbox {
                Some(sandbox) => sandbox.run(),
                None => {
                    // The driver root's files, read here: the update runs in the container's
                    // mount namespace.
                    let new = self.new_libraries(container);
                    builtin_or_fallback(
                        container,
                        opts,
                        cmd,
                        move |_| new,
                        granted.as_ref().map(|(cg, _)| cg),
                        spent,
                    )
                }
            };
            match saved.settle(container, run) {
                Ok(run) => Ok(Configured {
                    mounted,
                    cgroup: granted,
                    ldconfig: Some(run),
                }),
                Err(e) => Err(undo(container, &mounted, granted, e)),
            }
        })
    }
}

impl MountPlan {
    /// [`MountPlan::new_libraries`], and the container paths of the plan's other steps.
    fn new_and_other(&self, container: &Container) -> (Result<NewLibraries, String>, Vec<PathBuf>) {
        let new = self.new_libraries(container);
        let mine = |p: &Path| {
            new.as_ref().is_ok_and(|n| {
                n.libraries.iter().any(|l| l.target == p) || n.links.iter().any(|l| l.path == p)
            })
        };
        let other = self
            .ops
            .iter()
            .filter_map(Op::container_path)
            .filter(|p| !mine(p))
            .map(Path::to_path_buf)
            .collect();
        (new, other)
    }

    /// The libraries and links this plan makes in the library directories, for
    /// [`Ldconfig::Builtin`], or why the built-in update cannot account for them.
    fn new_libraries(&self, container: &Container) -> Result<NewLibraries, String> {
        let dirs = &container.dirs;
        let in_lib_dir = |p: &Path| {
            p.parent()
                .is_some_and(|d| d == dirs.libs || d == dirs.libs32)
        };
        let mut new = NewLibraries::default();
        for op in &self.ops {
            match op {
                Op::BindFromImage { .. } => {
                    return Err("CUDA compat libraries of the image".into());
                }
                Op::Bind {
                    source,
                    target,
                    kind: MountKind::File,
                } if in_lib_dir(target) => new.libraries.push(NewLibrary::read(target, source)?),
                Op::Symlink { path, target } if in_lib_dir(path) => new.links.push(NewLink {
                    path: path.clone(),
                    target: target.clone(),
                }),
                _ => {}
            }
        }
        Ok(new)
    }
}

/// Tells the early update that the mounts failed with `error`; the error, with what the
/// early update could not remove of what it wrote (its error, if it had one, is moot: the
/// configure fails anyway).
fn abandon(early: Option<EarlyUpdate<'_>>, error: Error) -> Error {
    match early.map(|early| early.finish(false)) {
        Some(Ok(Early::Abandoned { left })) if !left.is_empty() => error.with_undo_left(left),
        _ => error,
    }
}

/// Revokes a grant and removes the mounts after `error` (best effort, on a failure path);
/// the error, with what the undo left.
fn undo(
    container: &Container,
    mounted: &Mounted,
    granted: Option<(DeviceCgroup, DeviceGrant)>,
    error: Error,
) -> Error {
    let mut left = Vec::new();
    if let Some((_, grant)) = granted
        && let Err(e) = grant.revoke()
    {
        left.push(format!("device grant not revoked: {e}"));
    }
    match mounted.unapply(container) {
        Ok(more) => left.extend(more),
        Err(e) => left.push(format!("mounts not undone: {e}")),
    }
    error.with_undo_left(left)
}
