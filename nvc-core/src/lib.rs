//! nvc: make NVIDIA GPUs usable inside Linux containers.
//!
//! The public API is a consuming flow, each step owning what the next needs:
//!
//! ```no_run
//! use nvc_core::{Capability, Context};
//!
//! // A runtime hook: the container's init process and its rootfs, before pivot_root.
//! let (pid, rootfs) = (4242, "/run/containers/c1/rootfs");
//! let driver = Context::new()?.driver()?;
//! println!("NVRM {} with {} GPUs", driver.info().nvrm_version, driver.info().gpus.len());
//! let done = driver
//!     .container(pid, rootfs)?
//!     .devices("all")
//!     .capabilities(&[Capability::Compute, Capability::Utility])
//!     .mount()?;
//! println!("{} mounts", done.mounted.mounts.len());
//! # Ok::<(), nvc_core::Error>(())
//! ```
//!
//! [`Context::driver`] probes the driver (NVML in an isolated helper, the driver's files);
//! [`Driver::container`] looks the container up; [`ContainerSetup::mount`] mounts the driver
//! and devices in the container's mount namespace, grants the devices in its cgroup and runs
//! the host's `ldconfig` for it in a sandbox, undoing everything if a step fails; [`ContainerSetup::plan`]
//! shows what it would do. Errors say what kind of failure they are ([`Error::kind`]) so
//! callers can tell "no driver" from "bad input" without matching internals.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

mod container;

pub use container::ContainerSetup;
pub use nvc_driver::tables::Capability;
pub use nvc_driver::{
    DeviceRequest, DriverFiles, DriverInfo, Facts, Gpu, MigDevice, PciBusId, Requirement, Selection,
};
pub use nvc_mount::{CompatMode, Configuration, Configured, Ldconfig, LdconfigRun};

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No usable NVIDIA driver (NVML missing or failing to initialise).
    NoDriver,
    /// The driver did not answer in time.
    Timeout,
    /// Not permitted.
    Permission,
    /// Bad input: a device list, requirement, bus id, or a corrupt file of the host.
    BadInput,
    /// A requirement of the image is not met by the host.
    Unsatisfied,
    /// Anything else.
    Other,
}

/// The error of every nvc operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Driver discovery, device selection or requirement checking failed.
    #[error(transparent)]
    Driver(#[from] nvc_driver::Error),
    /// Looking up, planning or configuring the container failed (nothing was left changed).
    #[error(transparent)]
    Mount(#[from] nvc_mount::Error),
    /// An option of the context is unusable.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// The kind of failure.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Driver(e) | Error::Mount(nvc_mount::Error::Driver(e)) => driver_kind(e),
            Error::Mount(e) => match e {
                nvc_mount::Error::BadRootfs { .. }
                | nvc_mount::Error::Device { .. }
                | nvc_mount::Error::Container { .. } => ErrorKind::BadInput,
                nvc_mount::Error::Namespace { error, .. }
                | nvc_mount::Error::Apply { error, .. }
                    if error.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    ErrorKind::Permission
                }
                _ => ErrorKind::Other,
            },
            Error::InvalidOption { .. } => ErrorKind::BadInput,
        }
    }
}

fn driver_kind(e: &nvc_driver::Error) -> ErrorKind {
    use nvc_driver::Error as D;
    match e {
        D::Nvml { .. } => ErrorKind::NoDriver,
        D::NvmlTimeout { .. } => ErrorKind::Timeout,
        D::UnknownDevice { .. } | D::InvalidBusId { .. } | D::InvalidRequirement { .. } => {
            ErrorKind::BadInput
        }
        D::Ldcache { .. } | D::Elf { .. } => ErrorKind::BadInput,
        D::Unsatisfied { .. } => ErrorKind::Unsatisfied,
        D::Resolve { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            ErrorKind::Permission
        }
        _ => ErrorKind::Other,
    }
}

/// Options of a [`Context`].
#[derive(Debug, Clone)]
pub struct ContextBuilder {
    root: PathBuf,
    ldcache: PathBuf,
    nvml_timeout: Duration,
    nvml_user: Option<(u32, u32)>,
}

impl Default for ContextBuilder {
    fn default() -> Self {
        ContextBuilder {
            root: "/".into(),
            ldcache: nvc_ldcache::DEFAULT_PATH.into(),
            nvml_timeout: nvc_driver::nvml::DEFAULT_TIMEOUT,
            nvml_user: None,
        }
    }
}

impl ContextBuilder {
    /// The driver root (`--root`): where the driver is installed, `/` by default.
    #[must_use]
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = root.into();
        self
    }

    /// The `ld.so.cache` inside the driver root (`--ldcache`), `/etc/ld.so.cache` by default.
    #[must_use]
    pub fn ldcache(mut self, path: impl Into<PathBuf>) -> Self {
        self.ldcache = path.into();
        self
    }

    /// How long NVML may take (10 s by default).
    #[must_use]
    pub fn nvml_timeout(mut self, timeout: Duration) -> Self {
        self.nvml_timeout = timeout;
        self
    }

    /// Who the NVML helper process runs as when the caller is root (`--user`); the
    /// overflow ids 65534:65534 by default, as upstream.
    #[must_use]
    pub fn nvml_user(mut self, uid: u32, gid: u32) -> Self {
        self.nvml_user = Some((uid, gid));
        self
    }

    /// Checks the options and makes the context. No I/O happens here.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`] for a relative driver root.
    pub fn build(self) -> Result<Context, Error> {
        if !self.root.is_absolute() {
            return Err(Error::InvalidOption {
                option: "root",
                reason: format!("{} is not an absolute path", self.root.display()),
            });
        }
        Ok(Context { options: self })
    }
}

/// The start of the flow: options, no I/O.
#[derive(Debug, Clone)]
pub struct Context {
    options: ContextBuilder,
}

impl Context {
    /// A context with the defaults (driver root `/`).
    ///
    /// # Errors
    ///
    /// None today; the signature leaves room for option checks.
    pub fn new() -> Result<Self, Error> {
        ContextBuilder::default().build()
    }

    /// Options for a context.
    #[must_use]
    pub fn builder() -> ContextBuilder {
        ContextBuilder::default()
    }

    /// Probes the driver once: NVML (with the timeout) and the driver's files, into owned
    /// data.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoDriver`], [`ErrorKind::Timeout`], or a discovery error.
    pub fn driver(self) -> Result<Driver, Error> {
        let mut opts = nvc_driver::DriverOptions::new(&self.options.root);
        opts.discover.ldcache = self.options.ldcache.clone();
        opts.nvml_timeout = self.options.nvml_timeout;
        opts.nvml_identity = self
            .options
            .nvml_user
            .map(|(uid, gid)| nvc_driver::nvml::Identity { uid, gid });
        let info = nvc_driver::probe_driver(&opts)?;
        Ok(Driver {
            context: self,
            info,
        })
    }
}

/// A context with its driver probed.
#[derive(Debug, Clone)]
pub struct Driver {
    context: Context,
    info: DriverInfo,
}

impl Driver {
    /// What discovery found.
    #[must_use]
    pub fn info(&self) -> &DriverInfo {
        &self.info
    }

    /// The driver root it was probed in.
    #[must_use]
    pub fn root(&self) -> &std::path::Path {
        &self.context.options.root
    }

    /// Resolves a `--device` list against the GPUs.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`] naming the token that is no device.
    pub fn select(&self, devices: &str) -> Result<Selection, Error> {
        Ok(DeviceRequest::parse(devices)?.select(&self.info.gpus)?)
    }

    /// Checks an image requirement (`NVIDIA_REQUIRE_*`) for every selected GPU (and once
    /// without a device when none is selected), as upstream.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unsatisfied`] with upstream's message, or [`ErrorKind::BadInput`].
    pub fn check(&self, requirement: &str, selection: &Selection) -> Result<(), Error> {
        Ok(self
            .info
            .check_requirement(&Requirement::parse(requirement)?, selection)?)
    }

    /// The container whose init process is `pid` and whose root filesystem is `rootfs` (a
    /// host path, before `pivot_root`), as a runtime hook sees it. Keeps a pidfd on the
    /// process so a reused pid cannot redirect the later steps.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`] for a relative or `/` rootfs, [`ErrorKind::Other`] when the
    /// process does not exist.
    pub fn container(
        &self,
        pid: u32,
        rootfs: impl AsRef<std::path::Path>,
    ) -> Result<ContainerSetup<'_>, Error> {
        Ok(ContainerSetup::new(
            self,
            nvc_mount::Container::from_pid(pid, rootfs.as_ref())?,
        ))
    }
}
