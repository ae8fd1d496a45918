//! Configuring one container: what to give it, then [`ContainerSetup::mount`].

use nvc_driver::tables::Capability;
use nvc_mount::{CompatMode, Configuration, ConfigureOptions, Configured, Container, Ldconfig};

use crate::{Driver, Error};

/// What one container gets, set with builder methods; [`ContainerSetup::mount`] applies it.
/// Defaults: no devices, no capabilities, device cgroups on, the host's `ldconfig`
/// ([`Ldconfig::host_default`]: no program of the image runs), CUDA compat libraries mounted
/// when newer than the driver.
#[derive(Debug, Clone)]
pub struct ContainerSetup<'d> {
    driver: &'d Driver,
    container: Container,
    devices: String,
    requirements: Vec<String>,
    options: ConfigureOptions,
}

impl<'d> ContainerSetup<'d> {
    pub(crate) fn new(driver: &'d Driver, container: Container) -> Self {
        ContainerSetup {
            driver,
            container,
            devices: String::new(),
            requirements: Vec::new(),
            options: ConfigureOptions {
                ldconfig: Some(Ldconfig::host_default()),
                ..ConfigureOptions::default()
            },
        }
    }

    /// The container looked up.
    #[must_use]
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// The devices, in `--device` syntax (`all`, indices, UUIDs, bus ids, `gpu:mig`).
    #[must_use]
    pub fn devices(mut self, devices: &str) -> Self {
        self.devices = devices.to_owned();
        self
    }

    /// The driver capabilities (`compute`, `utility`, ...).
    #[must_use]
    pub fn capabilities(mut self, caps: &[Capability]) -> Self {
        self.options.plan.capabilities = caps.to_vec();
        self
    }

    /// A requirement of the image (`NVIDIA_REQUIRE_*` syntax), checked before anything is
    /// changed.
    #[must_use]
    pub fn require(mut self, expr: &str) -> Self {
        self.requirements.push(expr.to_owned());
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

    /// IMEX channels to expose.
    #[must_use]
    pub fn imex_channels(mut self, channels: &[u32]) -> Self {
        self.options.plan.imex_channels = channels.to_vec();
        self
    }

    /// Which `ldconfig` to run (`None`: do not run one).
    #[must_use]
    pub fn ldconfig(mut self, ldconfig: Option<Ldconfig>) -> Self {
        self.options.no_ldconfig = ldconfig.is_none();
        self.options.ldconfig = ldconfig;
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

    /// What [`ContainerSetup::mount`] would do, changing nothing (printable).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) for an unknown device,
    /// [`ErrorKind::Unsatisfied`](crate::ErrorKind::Unsatisfied) for a requirement the host
    /// does not meet, a detection error in the image.
    pub fn plan(&self) -> Result<Configuration, Error> {
        let selection = self.driver.select(&self.devices)?;
        for expr in &self.requirements {
            self.driver.check(expr, &selection)?;
        }
        let mut options = self.options.clone();
        options.plan.gpus = selection.gpus;
        options.plan.migs = selection.migs;
        Ok(Configuration::prepare(
            self.driver.root(),
            self.driver.info(),
            &self.container.rootfs,
            &options,
        )?)
    }

    /// Configures the container: mounts in its mount namespace, device cgroup grant,
    /// sandboxed `ldconfig`. A failing step undoes the earlier ones.
    ///
    /// # Errors
    ///
    /// [`ContainerSetup::plan`]'s errors, then the failing step's.
    pub fn mount(self) -> Result<Configured, Error> {
        Ok(self.plan()?.apply(&self.container)?)
    }
}
