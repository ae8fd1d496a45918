//! Configuring one container: what to give it, then [`ContainerSetup::mount`].

use std::fmt;
use std::path::{Path, PathBuf};

use nvc_driver::tables::Capability;
use nvc_mount::{
    CompatMode, Configuration, ConfigureOptions, Container, ContainerDirs, Ldconfig, LdconfigRun,
};

use crate::error::{Error, Step};
use crate::{Devices, Driver, Note, Requirement, Selection};

/// What one container gets, set with builder methods; [`ContainerSetup::plan`] shows it,
/// [`ContainerSetup::mount`] applies it.
///
/// Defaults: no devices, no capabilities, device cgroups on, the host's `ldconfig`
/// ([`Ldconfig::host_default`]: no program of the image runs), CUDA compat libraries
/// mounted when newer than the driver.
#[derive(Debug, Clone)]
pub struct ContainerSetup<'d> {
    driver: &'d Driver,
    rootfs: PathBuf,
    container: Option<Container>,
    devices: Devices,
    requirements: Vec<Requirement>,
    mig_access: [Option<String>; 2],
    options: ConfigureOptions,
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
                ldconfig: Some(Ldconfig::host_default()),
                ..ConfigureOptions::default()
            },
        }
    }

    /// The container's init process (`None` for [`Driver::image`]).
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.container.as_ref().map(|c| c.pid)
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

    /// Leave the device cgroup alone (the runtime's rules apply).
    #[must_use]
    pub fn no_cgroups(mut self, on: bool) -> Self {
        self.options.plan.no_cgroups = on;
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

    /// Which `ldconfig` to run (`None`: do not run one). The image's own
    /// ([`Ldconfig::Image`]) runs sandboxed: new namespaces, no capabilities, the
    /// container's device cgroup, a `nodev` root, seccomp.
    #[must_use]
    pub fn ldconfig(mut self, ldconfig: Option<Ldconfig>) -> Self {
        self.options.no_ldconfig = ldconfig.is_none();
        self.options.ldconfig = ldconfig;
        self
    }

    /// Run the image's own `ldconfig` (`/sbin/ldconfig.real` where the image has it, else
    /// `/sbin/ldconfig`), sandboxed: upstream's default, for drop-in compatibility.
    #[must_use]
    pub fn image_ldconfig(mut self) -> Self {
        self.options.no_ldconfig = false;
        self.options.ldconfig = None;
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
        let container_err = |e| Error::mount(Step::Container, e);
        let detected;
        let dirs = match &self.container {
            Some(c) => &c.dirs,
            None => {
                detected = ContainerDirs::detect(&self.rootfs).map_err(container_err)?;
                &detected
            }
        };
        let configuration = Configuration::prepare(
            self.driver.root(),
            self.driver.info(),
            &self.rootfs,
            dirs,
            &options,
        )
        .map_err(container_err)?;
        Ok(Plan {
            configuration,
            selection,
        })
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

/// What [`ContainerSetup::mount`] will do; `Display` prints it one operation a line
/// (`bind ro,nosuid,nodev TARGET <- SOURCE`, `cgroup allow c 195:0 rw`, `ldconfig ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    configuration: Configuration,
    selection: Selection,
}

impl Plan {
    /// The devices selected.
    #[must_use]
    pub fn selection(&self) -> &Selection {
        &self.selection
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.configuration.fmt(f)
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

    /// The `ldconfig` run's output, when one ran (`None` when skipped or when the image
    /// has no such program).
    #[must_use]
    pub fn ldconfig_output(&self) -> Option<&str> {
        match &self.done.ldconfig {
            Some(LdconfigRun::Ran { output }) => Some(output),
            _ => None,
        }
    }
}
