//! Configuring one container: what to give it, then [`ContainerSetup::mount`].

use std::path::{Path, PathBuf};

use nvc_driver::tables::Capability;
use nvc_mount::{
    CompatMode, Configuration, ConfigureOptions, Container, ContainerDirs, Ldconfig, LdconfigRun,
    MigCapability,
};

use crate::error::{Error, Step};
use crate::{Devices, Driver, Note, Operation, Plan, Requirement, Selection};

/// What one container gets, set with builder methods; [`ContainerSetup::plan`] shows it,
/// [`ContainerSetup::mount`] applies it.
///
/// Defaults: no devices, no capabilities, the device cgroup granted, the linker cache updated
/// in process ([`Ldconfig::Builtin`]: where nvc cannot prove the result is what glibc's
/// `ldconfig` writes, the host's `ldconfig` runs, sandboxed — no program of the image runs
/// either way), CUDA compat libraries mounted when newer than the driver.
#[derive(Debug, Clone)]
pub struct ContainerSetup<'d> {
    pub(crate) driver: &'d Driver,
    rootfs: PathBuf,
    pub(crate) container: Option<Container>,
    pub(crate) devices: Devices,
    requirements: Vec<Requirement>,
    mig_access: [Option<String>; 2],
    pub(crate) options: ConfigureOptions,
    part: Option<Part>,
    /// [`ContainerSetup::device_cgroup`].
    pub(crate) device_cgroup: bool,
    /// [`ContainerSetup::image_ldconfig`]: the image's program, from the directories.
    image_ldconfig: bool,
    /// Directories set with [`ContainerSetup::dirs`] for a setup without a container.
    chosen_dirs: Option<ContainerDirs>,
}

/// One part of a configure, as libnvidia-container's C API makes each a call of its own
/// (`nvc_driver_mount`, `nvc_device_mount`, ...): [`ContainerSetup::only`] plans and mounts
/// just that part, as its own transaction. GPUs and MIG devices are named by their NVML
/// index ([`Gpu::index`](crate::Gpu), [`MigDevice::index`](crate::MigDevice)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Part {
    /// The driver (`nvc_driver_mount`): `/proc/driver/nvidia`, the binaries and libraries
    /// of the capabilities, the image's CUDA compat libraries, firmware, IPC, the
    /// driver-wide device nodes.
    Driver,
    /// One GPU (`nvc_device_mount`): its node, its `/proc` directory, its cgroup rule.
    Gpu {
        /// NVML index.
        index: u32,
    },
    /// One MIG device (`nvc_mig_device_access_caps_mount`): its access files and nodes.
    MigAccess {
        /// The parent GPU's NVML index.
        gpu: u32,
        /// The MIG device's index on its parent.
        mig: u32,
    },
    /// The MIG configuration capability (`nvc_mig_config_global_caps_mount`).
    MigConfig,
    /// The MIG monitoring capability (`nvc_mig_monitor_global_caps_mount`).
    MigMonitor,
    /// Every MIG capability of one GPU (`nvc_device_mig_caps_mount`).
    GpuMigCaps {
        /// NVML index.
        gpu: u32,
    },
    /// One IMEX channel (`nvc_imex_channel_mount`).
    Imex {
        /// The channel number.
        channel: u32,
    },
    /// The linker cache update only (`nvc_ldcache_update`).
    Ldcache,
}

impl<'d> ContainerSetup<'d> {
    pub(crate) fn new(driver: &'d Driver, rootfs: &Path, container: Option<Container>) -> Self {
        ContainerSetup {
            driver,
            rootfs: rootfs.to_path_buf(),
            container,
            devices: Devices::default(),
            requirements: Vec::new(),
            mig_access: [None, None],
            options: ConfigureOptions {
                ldconfig: Ldconfig::Builtin,
                ..ConfigureOptions::default()
            },
            part: None,
            device_cgroup: true,
            image_ldconfig: false,
            chosen_dirs: None,
        }
    }

    /// The container's init process (`None` for [`Driver::image`]).
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.container.as_ref().map(|c| c.pid)
    }

    /// The container's owner, uid and gid of its init process (`None` for
    /// [`Driver::image`]): who owns the mountpoints nvc creates.
    #[must_use]
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.container.as_ref().map(|c| (c.uid, c.gid))
    }

    /// The container's root filesystem (a host path).
    #[must_use]
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// The devices to give it (`"all".parse()?`, `Devices::all()`).
    #[must_use]
    pub fn devices(mut self, devices: Devices) -> Self {
        self.devices = devices;
        self
    }

    /// The driver capabilities (`compute`, `utility`, ...).
    #[must_use]
    pub fn capabilities(mut self, caps: &[Capability]) -> Self {
        self.options.plan.capabilities = caps.to_vec();
        self
    }

    /// A requirement of the image, checked before anything is changed.
    #[must_use]
    pub fn require(mut self, requirement: Requirement) -> Self {
        self.requirements.push(requirement);
        self
    }

    /// Also mount the 32-bit libraries.
    #[must_use]
    pub fn compat32(mut self, on: bool) -> Self {
        self.options.plan.compat32 = on;
        self
    }

    /// Do not bind device nodes (the runtime creates them).
    #[must_use]
    pub fn no_devbind(mut self, on: bool) -> Self {
        self.options.plan.no_devbind = on;
        self
    }

    /// Whether nvc grants the devices in the container's device cgroup (on by default).
    /// Off (upstream's `--no-cgroups`), the cgroup is left alone: a runtime that owns it
    /// applies [`Plan::device_rules`] itself.
    #[must_use]
    pub fn device_cgroup(mut self, on: bool) -> Self {
        self.device_cgroup = on;
        self
    }

    /// `--mig-config`: give the container the MIG configuration capability of every
    /// selected MIG-capable GPU (only `all` is accepted, as upstream; checked by
    /// [`ContainerSetup::plan`]). Replaces the access files of selected MIG devices.
    #[must_use]
    pub fn mig_config(mut self, value: Option<&str>) -> Self {
        self.mig_access[0] = value.map(str::to_owned);
        self
    }

    /// `--mig-monitor`: the MIG monitoring capability, as [`ContainerSetup::mig_config`].
    #[must_use]
    pub fn mig_monitor(mut self, value: Option<&str>) -> Self {
        self.mig_access[1] = value.map(str::to_owned);
        self
    }

    /// IMEX channels to expose.
    #[must_use]
    pub fn imex_channels(mut self, channels: &[u32]) -> Self {
        self.options.plan.imex_channels = channels.to_vec();
        self
    }

    /// The linker-cache step: [`Ldconfig::Skip`], the built-in update (the default, with the
    /// host's program as its fallback), the host's program, or a program of the image
    /// ([`Ldconfig::Image`]); a program runs sandboxed: new namespaces, no capabilities, the
    /// container's device cgroup, a `nodev` root, seccomp.
    #[must_use]
    pub fn ldconfig(mut self, ldconfig: Ldconfig) -> Self {
        self.options.ldconfig = ldconfig;
        self.image_ldconfig = false;
        self
    }

    /// What the image's own `ldconfig` writes — [`ContainerDirs::ldconfig`] when the plan is
    /// made: `/sbin/ldconfig.real` where the image has it, else `/sbin/ldconfig`
    /// ([`Ldconfig::Auto`]): written in process where the image's cache, or where it has none
    /// the program itself, names a glibc the built-in update is proven equal to (2.36 to
    /// 2.43), else that program run sandboxed —
    /// upstream's default, for drop-in compatibility, without its cost where nvc can prove
    /// the result.
    #[must_use]
    pub fn image_ldconfig(mut self) -> Self {
        self.image_ldconfig = true;
        self
    }

    /// Move the rootfs instead of `pivot_root` for `ldconfig` (rootfs on a ramfs).
    #[must_use]
    pub fn no_pivot(mut self, on: bool) -> Self {
        self.options.no_pivot = on;
        self
    }

    /// CUDA forward-compatibility handling.
    #[must_use]
    pub fn cuda_compat(mut self, mode: CompatMode) -> Self {
        self.options.cuda_compat = mode;
        self
    }

    /// Plan and mount only `part`, as its own transaction (the C API's calls). The devices,
    /// requirements and MIG access set with the other methods are then ignored: the part
    /// names what it mounts; capabilities, `compat32`, `no_devbind`, `device_cgroup`, CUDA
    /// compat and `ldconfig` apply where the part uses them, and only [`Part::Ldcache`] runs
    /// `ldconfig`.
    #[must_use]
    pub fn only(mut self, part: Part) -> Self {
        self.part = Some(part);
        self
    }

    /// The image's directories: detected from the image, or as set with
    /// [`ContainerSetup::dirs`].
    ///
    /// # Errors
    ///
    /// A detection error in the image (`container error: ...`) for a setup made with
    /// [`Driver::image`] (the others detected them when made).
    pub fn image_dirs(&self) -> Result<ContainerDirs, Error> {
        match (&self.container, &self.chosen_dirs) {
            (Some(c), _) => Ok(c.dirs.clone()),
            (None, Some(dirs)) => Ok(dirs.clone()),
            (None, None) => {
                nvc_mount::detect_dirs(&self.rootfs).map_err(|e| Error::mount(Step::Container, e))
            }
        }
    }

    /// Use these directories of the image instead of the detected ones (upstream's
    /// `nvc_container_config` `bins_dir`, `libs_dir`, `libs32_dir`, `cudart_dir` and
    /// `ldconfig`). Every path is a container path, resolved inside the rootfs when used.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) for a relative path.
    pub fn dirs(mut self, dirs: ContainerDirs) -> Result<Self, Error> {
        let all = [
            &dirs.bins,
            &dirs.libs,
            &dirs.libs32,
            &dirs.cudart,
            &dirs.ldconfig,
        ];
        if let Some(relative) = all.into_iter().find(|p| !p.is_absolute()) {
            return Err(Error::input(format!(
                "invalid container directory: {} is not an absolute path",
                relative.display()
            )));
        }
        match &mut self.container {
            Some(c) => c.dirs = dirs,
            None => self.chosen_dirs = Some(dirs),
        }
        Ok(self)
    }

    /// The image's CUDA compat libraries that [`CompatMode::Mount`] would mount and
    /// [`CompatMode::Ldconfig`] would add to the linker cache (container paths, found under
    /// `<cudart>/compat` inside the rootfs, newer than the driver), whatever the mode.
    ///
    /// # Errors
    ///
    /// A resolution error inside the image (`container error: ...`).
    pub fn compat_libraries(&self) -> Result<Vec<PathBuf>, Error> {
        let dirs = self.image_dirs()?;
        nvc_mount::compat_libraries(&self.rootfs, &dirs.cudart, &self.driver.info().nvrm_version)
            .map_err(|e| Error::mount(Step::Container, e))
    }

    /// Use these CUDA compat libraries (container paths, as
    /// [`ContainerSetup::compat_libraries`] gives them, possibly filtered further) instead of
    /// looking for them.
    #[must_use]
    pub fn with_compat_libraries(mut self, libs: Vec<PathBuf>) -> Self {
        self.options.compat_libs = Some(libs);
        self
    }

    /// What [`ContainerSetup::mount`] would do, changing nothing (printable: one
    /// operation a line). Selects the devices, checks the requirements, and reads the image
    /// (its directories and CUDA compat libraries, resolved inside the rootfs).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) for a device not on this host,
    /// [`ErrorKind::Unsatisfied`](crate::ErrorKind::Unsatisfied) for a requirement the
    /// host does not meet, a detection error in the image (`container error: ...`).
    pub fn plan(&self) -> Result<Plan, Error> {
        let (mut options, selection) = match self.part {
            Some(part) => (self.part_options(part)?, Selection::default()),
            None => self.whole_options()?,
        };
        let dirs = self.image_dirs()?;
        // The last of `ldconfig()` and `image_ldconfig()` decides; a part other than the
        // linker cache runs none.
        if self.image_ldconfig && matches!(self.part, None | Some(Part::Ldcache)) {
            options.ldconfig = Ldconfig::Auto(dirs.ldconfig.clone());
        }
        let mut configuration = Configuration::prepare(
            self.driver.root(),
            self.driver.info(),
            &self.rootfs,
            &dirs,
            &options,
        )
        .map_err(|e| Error::mount(Step::Container, e))?;
        let device_rules = configuration.plan.device_rules();
        if !self.device_cgroup {
            // The runtime applies the rules: the operations are what nvc does.
            let ops = &mut configuration.plan.ops;
            ops.retain(|op| !matches!(op, Operation::AllowDevice { .. }));
        }
        Ok(Plan {
            configuration,
            device_rules,
            selection,
        })
    }

    /// The options of a whole configure: devices selected, requirements checked.
    fn whole_options(&self) -> Result<(ConfigureOptions, Selection), Error> {
        let selection = self.driver.select(&self.devices)?;
        for requirement in &self.requirements {
            self.driver.check(requirement, &selection)?;
        }
        let mut options = self.options.clone();
        let access = |option: &'static str, value: &Option<String>| match value {
            Some(v) => nvc_driver::select_mig_access(option, v, &selection)
                .map_err(|e| Error::driver(Step::Mig(option), e)),
            None => Ok(Vec::new()),
        };
        options.plan.mig_config = access("mig-config", &self.mig_access[0])?;
        options.plan.mig_monitor = access("mig-monitor", &self.mig_access[1])?;
        // Upstream mounts the selected MIG devices' access files only without MIG
        // configuration or monitoring.
        options.plan.devices = if self.mig_access.iter().all(Option::is_none) {
            selection.clone()
        } else {
            selection.clone().without_migs()
        };
        Ok((options, selection))
    }

    /// The options of one part: its GPU looked up, `ldconfig` only for [`Part::Ldcache`].
    fn part_options(&self, part: Part) -> Result<ConfigureOptions, Error> {
        let gpu = |index: u32| {
            let found = self.driver.info().gpus.iter().find(|g| g.index == index);
            found.ok_or_else(|| Error::input(format!("no GPU with index {index}")))
        };
        let mig = |gpu_index: u32, index: u32| {
            let g = gpu(gpu_index)?;
            let found = g.mig_devices.iter().find(|m| m.index == index);
            let m =
                found.ok_or_else(|| Error::input(format!("no MIG device {gpu_index}:{index}")))?;
            Ok::<_, Error>((g.clone(), m.clone()))
        };
        let mut options = self.options.clone();
        options.plan.part = Some(match part {
            Part::Driver => nvc_mount::Part::Driver,
            Part::Gpu { index } => nvc_mount::Part::Gpu(gpu(index)?.clone()),
            Part::MigAccess { gpu, mig: m } => {
                let (g, m) = mig(gpu, m)?;
                nvc_mount::Part::MigAccess(g, m)
            }
            Part::MigConfig => nvc_mount::Part::MigGlobal(MigCapability::Config),
            Part::MigMonitor => nvc_mount::Part::MigGlobal(MigCapability::Monitor),
            Part::GpuMigCaps { gpu: index } => nvc_mount::Part::GpuMigCaps(gpu(index)?.clone()),
            Part::Imex { channel } => nvc_mount::Part::Imex(channel),
            Part::Ldcache => nvc_mount::Part::Ldcache,
        });
        if part != Part::Ldcache {
            options.ldconfig = Ldconfig::Skip;
        }
        Ok(options)
    }

    /// Configures the container: mounts in its mount namespace, device cgroup grant,
    /// sandboxed `ldconfig`. A failing step undoes the earlier ones: the container is left
    /// as it was, except what the error lists as left (entries that were no longer what
    /// nvc made).
    ///
    /// # Effects on the calling process
    ///
    /// Spawns one thread that unshares its filesystem context and enters the container's
    /// mount namespace (the caller's threads, cwd and namespace never change) and ends
    /// before this returns; forks one sandbox process for `ldconfig` (new pid, IPC and
    /// mount namespaces) and reaps it. Needs `CAP_SYS_ADMIN` (mounts, `setns`),
    /// `CAP_SYS_CHROOT`, `CAP_SETUID`/`CAP_SETGID`, `CAP_DAC_OVERRIDE`, and for the device
    /// cgroup `CAP_SYS_ADMIN` over it (v1) or `CAP_BPF` and `CAP_NET_ADMIN` (v2). Uses
    /// `openat2` (Linux 5.6); the new mount API and `mount_setattr` when present (5.12).
    ///
    /// # Errors
    ///
    /// [`ContainerSetup::plan`]'s errors, [`ErrorKind::BadInput`](crate::ErrorKind::BadInput)
    /// for a setup made with [`Driver::image`], [`ErrorKind::NoContainer`](crate::ErrorKind::NoContainer)
    /// when the process exited, then the failing step's (`mount error: ...`,
    /// `cgroup error: ...`, `ldcache error: ...`).
    pub fn mount(self) -> Result<Configured, Error> {
        let plan = self.plan()?;
        self.apply(plan)
    }

    /// Applies `plan` — the one [`ContainerSetup::plan`] returned, possibly shown, checked
    /// or stored in between — to the container, exactly as [`ContainerSetup::mount`] does,
    /// without planning again: what was shown is what is done.
    ///
    /// Everything the plan does was decided when it was made: its devices, capabilities and
    /// linker-cache step, not this setup's. Of this setup, `apply` takes the container — it
    /// must have the plan's rootfs and image directories — and checks that its
    /// [`ContainerSetup::device_cgroup`] choice is the plan's, so that a runtime that owns
    /// the cgroup never has nvc grant in it. A plan read back with `serde` must come from a
    /// trusted place: its sources are host paths bound into the container.
    ///
    /// # Effects on the calling process
    ///
    /// As [`ContainerSetup::mount`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) for a setup made with
    /// [`Driver::image`], a plan made with the other `device_cgroup` choice, or a plan made
    /// for another rootfs or other image directories (`container error: planned for ...`),
    /// then as [`ContainerSetup::mount`].
    pub fn apply(self, plan: Plan) -> Result<Configured, Error> {
        let grants = plan
            .operations()
            .iter()
            .any(|op| matches!(op, Operation::AllowDevice { .. }));
        if !plan.device_rules().is_empty() && grants != self.device_cgroup {
            return Err(Error::input(format!(
                "the plan was made with device_cgroup({grants}), the setup applying it has \
                 device_cgroup({})",
                self.device_cgroup
            )));
        }
        let container = self.container.as_ref().ok_or_else(|| {
            Error::input(format!(
                "no container process for {}: a plan only",
                self.rootfs.display()
            ))
        })?;
        let done = plan
            .configuration
            .apply(container)
            .map_err(|e| Error::mount(Step::Configure, e))?;
        Ok(Configured {
            done,
            selection: plan.selection,
        })
    }
}

/// What [`ContainerSetup::mount`] did.
#[derive(Debug)]
pub struct Configured {
    done: nvc_mount::Configured,
    selection: Selection,
}

impl Configured {
    /// Container paths mounted, in order.
    #[must_use]
    pub fn mounts(&self) -> &[PathBuf] {
        &self.done.mounted.mounts
    }

    /// Container paths created (mountpoints, directories, links), in order.
    #[must_use]
    pub fn created(&self) -> &[PathBuf] {
        &self.done.mounted.created
    }

    /// Steps found done already (a second configure of the same container).
    #[must_use]
    pub fn already(&self) -> &[PathBuf] {
        &self.done.mounted.already
    }

    /// Directories of the container's procfs it does not have, and so were not masked:
    /// `/proc/driver/nvidia` in a procfs made where the NVIDIA module is not loaded (a new
    /// procfs, as Docker gives each container, on a host whose driver is only simulated).
    #[must_use]
    pub fn skipped(&self) -> &[PathBuf] {
        &self.done.mounted.skipped
    }

    /// Character devices (major, minor) granted in the device cgroup now.
    #[must_use]
    pub fn granted(&self) -> &[(u32, u32)] {
        self.done.cgroup.as_ref().map_or(&[], |(_, g)| &g.added)
    }

    /// The devices selected.
    #[must_use]
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// What the caller should know (device programs left alone, no device filtering).
    #[must_use]
    pub fn notes(&self) -> &[Note] {
        self.done.notes()
    }

    /// Why the built-in linker cache update ([`Ldconfig::Builtin`], the default) could not
    /// prove its result equal to glibc's `ldconfig`'s and ran the host's instead (for
    /// [`Ldconfig::Auto`], the image's), when it did
    /// (`None` when it updated the cache itself, or another [`Ldconfig`] was chosen).
    #[must_use]
    pub fn ldconfig_fallback(&self) -> Option<&str> {
        match &self.done.ldconfig {
            Some(LdconfigRun::Fallback { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    /// The `ldconfig` run's output, when one ran (`None` when skipped or when the image
    /// has no such program).
    #[must_use]
    pub fn ldconfig_output(&self) -> Option<&str> {
        match &self.done.ldconfig {
            Some(LdconfigRun::Ran { output } | LdconfigRun::Fallback { output, .. }) => {
                Some(output)
            }
            _ => None,
        }
    }
}
