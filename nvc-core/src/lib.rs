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
//!     .devices("all".parse()?)
//!     .capabilities(&[Capability::Compute, Capability::Utility])
//!     .mount()?;
//! println!("{} mounts", done.mounts().len());
//! # Ok::<(), nvc_core::Error>(())
//! ```
//!
//! [`Context::driver`] probes the driver (NVML in an isolated helper, the driver's files);
//! [`Driver::container`] looks the container up; [`ContainerSetup::mount`] mounts the driver
//! and devices in the container's mount namespace, grants the devices in its cgroup and
//! updates its linker cache (in process where that is provably what glibc's `ldconfig`
//! writes, else with the host's `ldconfig` in a sandbox), undoing everything if a step fails; [`ContainerSetup::plan`]
//! shows what it would do. Errors say what kind of failure they are ([`Error::kind`]) so
//! callers can tell "no driver" from "bad input" without matching internals.
//!
//! [`ContainerSetup::plan`] returns the [`Plan`] as data — the [`Operation`]s in order, the
//! device rules (also when [`ContainerSetup::device_cgroup`] leaves the cgroup to the
//! runtime), the linker-cache step ([`Ldconfig`]) — and [`ContainerSetup::apply`] executes
//! exactly that plan; [`ContainerSetup::mount`] is the two in one.
//!
//! # Stability
//!
//! This crate is the API to depend on; nvc-sys, nvc-ldcache, nvc-driver and nvc-mount are
//! its implementation, with no stability promise of their own. The data types it re-exports
//! from them — [`DriverInfo`], [`Gpu`], [`MigDevice`], [`DeviceNode`], [`DriverFiles`],
//! [`ProcFile`], [`Selection`], [`KmodReport`], [`ContainerDirs`], [`Operation`],
//! [`MountKind`], [`MountFlags`],
//! [`Ldconfig`], [`Capability`], [`CompatMode`], [`Note`] — are part of *this* crate's API and
//! follow its semver: nvc-core pins those crates to one exact version, each type is
//! `#[non_exhaustive]` (fields can be added; construct them by discovery, `Default` or
//! `serde`, not by literal), and `nvc-core/public-api.txt` — checked in CI — lists every
//! public item, the re-exported ones with their fields. Facts NVML did not give are `None`,
//! never `""`. [`PciBusId`] and [`Identity`] are plain, exhaustive data: an address and a
//! uid/gid pair do not grow. The `oci` feature's `oci_spec` re-export is the version nvc
//! speaks; a new major version of `oci-spec` is a new major version of nvc-core.
//!
//! # Threads
//!
//! Every type of the flow — [`Context`], [`Driver`], [`ContainerSetup`], [`Plan`],
//! [`Configured`], [`Detached`] and [`Error`] — is `Send` and `Sync`, and stays so (a change
//! is a breaking release; the crate checks it at compile time): a runtime can probe the
//! driver once and configure containers from any thread or async task. nvc never changes
//! the calling thread's namespaces, working directory or credentials; work inside a
//! container's mount namespace runs on a thread of its own.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(any(feature = "cdi", feature = "oci"))]
mod atomic;
mod attach;
#[cfg(feature = "cdi")]
#[cfg_attr(docsrs, doc(cfg(feature = "cdi")))]
pub mod cdi;
mod container;
mod error;
mod input;
mod list;
#[cfg(feature = "oci")]
#[cfg_attr(docsrs, doc(cfg(feature = "oci")))]
pub mod oci;
mod plan;

pub use attach::Detached;
pub use container::{Configured, ContainerSetup, Part};
pub use error::{Error, ErrorKind};
pub use input::{Devices, Requirement};
pub use list::ListOptions;
pub use nvc_driver::kmods::KmodReport;
pub use nvc_driver::tables::Capability;
pub use nvc_driver::{
    DeviceNode, DriverFiles, DriverInfo, Gpu, MigDevice, PciBusId, ProcFile, Selection,
    nvml::Identity,
};
pub use nvc_mount::cgroup::Note;
pub use nvc_mount::{CompatMode, ContainerDirs, Ldconfig, MountFlags, MountKind, Op as Operation};
pub use plan::Plan;

use error::Step;

/// The promise of the crate's "Threads" section, checked by the compiler.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Context>();
    send_sync::<Driver>();
    send_sync::<ContainerSetup<'static>>();
    send_sync::<Plan>();
    send_sync::<Configured>();
    send_sync::<Detached>();
    send_sync::<Error>();
    send_sync::<ErrorKind>();
};

/// The environment variable the CLI reads the NVML timeout from, in seconds
/// (`NVC_NVML_TIMEOUT`; [`ContextBuilder::nvml_timeout`] sets it in code).
pub const NVML_TIMEOUT_ENV: &str = nvc_driver::nvml::TIMEOUT_ENV;

/// The `main` of an NVML helper program ([`ContextBuilder::nvml_helper`]): reads
/// `ROOT LIBRARY UID:GID|-` from the process's arguments, confines itself (as root: chroot
/// into `ROOT` unless it is `/`, drop to `UID:GID`, 65534:65534 for `-`), loads `LIBRARY`
/// and writes what NVML says to standard output in the helper's line format. Returns the
/// process's exit code (2 for bad arguments). The program must be dynamically linked.
#[must_use]
pub fn nvml_helper_main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    nvc_driver::nvml::helper_main(&args)
}

/// Options of a [`Context`].
#[derive(Debug, Clone)]
pub struct ContextBuilder {
    discover: nvc_driver::DiscoverOptions,
    nvml_timeout: Duration,
    nvml_user: Option<Identity>,
    nvml: bool,
    nvml_helper: Option<PathBuf>,
    kmods: Option<(Vec<u32>, bool)>,
}

impl Default for ContextBuilder {
    fn default() -> Self {
        let mut discover = nvc_driver::DiscoverOptions::new("/");
        discover.ldcache = nvc_ldcache::DEFAULT_PATH.into();
        ContextBuilder {
            discover,
            nvml_timeout: nvc_driver::nvml::DEFAULT_TIMEOUT,
            nvml_user: None,
            nvml: true,
            nvml_helper: None,
            kmods: None,
        }
    }
}

impl ContextBuilder {
    /// The driver root (`--root`): where the driver is installed, `/` by default.
    #[must_use]
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.discover.root = root.into();
        self
    }

    /// The `ld.so.cache` inside the driver root (`--ldcache`), `/etc/ld.so.cache` by default.
    #[must_use]
    pub fn ldcache(mut self, path: impl Into<PathBuf>) -> Self {
        self.discover.ldcache = path.into();
        self
    }

    /// The directories searched for the driver's binaries, as in `PATH` (inside the
    /// driver root); upstream's default list by default.
    #[must_use]
    pub fn search_path(mut self, path: impl Into<OsString>) -> Self {
        self.discover.path = path.into();
        self
    }

    /// Adds a directory (inside the driver root) searched for the driver's libraries that its
    /// `ld.so.cache` does not list, or, where the root has no cache, before the built-in
    /// library directories (`nvc-cdi generate --library-search-path`, as `nvidia-ctk`'s).
    /// Candidates are checked as the cache's are: ELF of the host's architecture, the
    /// driver's version. None by default.
    #[must_use]
    pub fn library_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.discover.library_search_path.push(dir.into());
        self
    }

    /// Where MPS keeps its pipes (`CUDA_MPS_PIPE_DIRECTORY`), `/tmp/nvidia-mps` by default.
    #[must_use]
    pub fn mps_pipe_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.discover.mps_pipe_dir = Some(dir.into());
        self
    }

    /// Whether to give containers the persistence daemon's socket (on by default;
    /// `--no-persistenced` turns it off).
    #[must_use]
    pub fn persistenced(mut self, on: bool) -> Self {
        self.discover.persistenced = on;
        self
    }

    /// Whether to give containers the fabric manager's socket (on by default;
    /// `--no-fabricmanager` turns it off).
    #[must_use]
    pub fn fabricmanager(mut self, on: bool) -> Self {
        self.discover.fabricmanager = on;
        self
    }

    /// Whether to give containers the MPS binaries and pipe directory (on by default;
    /// upstream's driver option `no-mps` turns it off).
    #[must_use]
    pub fn mps(mut self, on: bool) -> Self {
        self.discover.mps = on;
        self
    }

    /// Whether to give containers the GSP firmware (on by default; `no-gsp-firmware`
    /// turns it off).
    #[must_use]
    pub fn gsp_firmware(mut self, on: bool) -> Self {
        self.discover.gsp_firmware = on;
        self
    }

    /// Whether to use the GLVND vendor libraries for graphics (on by default; `no-glvnd`
    /// selects the legacy GL set).
    #[must_use]
    pub fn glvnd(mut self, on: bool) -> Self {
        self.discover.glvnd = on;
        self
    }

    /// Whether to ask NVML (on by default; `--no-nvml` turns it off). Off, no helper process
    /// runs and NVML's initialisation — hundreds of milliseconds on hosts without the
    /// persistence daemon — is skipped: the GPUs come from `/proc/driver/nvidia` (model,
    /// UUID, bus id, minor: all that configuring a container by index, UUID or bus id
    /// needs, with the same result as with NVML). Unknown then: the CUDA version, brands,
    /// architectures and MIG devices — [`Context::driver`] fails on a GPU with MIG devices,
    /// and a `cuda`, `arch` or `brand` requirement fails the configure
    /// ([`ErrorKind::BadInput`], "... needs NVML").
    #[must_use]
    pub fn nvml(mut self, on: bool) -> Self {
        self.nvml = on;
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
        self.nvml_user = Some(Identity { uid, gid });
        self
    }

    /// Executes `program` as the NVML helper process — with an empty environment, `/` as its
    /// working directory, then chrooted and dropped as the forked helper is — instead of
    /// forking the caller. `program` is a dynamically linked build of
    /// `nvc_driver::nvml::helper_main` (the workspace's `nvc-nvml`) at a path the image
    /// cannot reach. A statically linked caller needs it: it cannot load NVML's shared
    /// library (`nvc-hook`'s release build runs `nvc-nvml` from beside itself). Forking by
    /// default. A program that cannot be started fails [`Context::driver`] naming it.
    #[must_use]
    pub fn nvml_helper(mut self, program: impl Into<PathBuf>) -> Self {
        self.nvml_helper = Some(program.into());
        self
    }

    /// Load the NVIDIA kernel modules and make their missing device nodes before probing
    /// (`--load-kmods`, the toolkit's default `load-kmods = true`): see [`KmodReport`] and
    /// [`Driver::kmods`]. `imex_channels` are the IMEX channel nodes to make, when
    /// `create_imex_channels` (`--no-create-imex-channels` clears it).
    #[must_use]
    pub fn load_kmods(mut self, imex_channels: &[u32], create_imex_channels: bool) -> Self {
        self.kmods = Some((imex_channels.to_vec(), create_imex_channels));
        self
    }

    /// Checks the options and makes the context. No I/O happens here.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`] for a relative driver root.
    pub fn build(self) -> Result<Context, Error> {
        if !self.discover.root.is_absolute() {
            return Err(Error::input(format!(
                "invalid driver root: {} is not an absolute path",
                self.discover.root.display()
            )));
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
    /// # Effects on the calling process
    ///
    /// Forks one helper process (upstream's `nvc:[driver]` service) that, as root,
    /// chroots into the driver root (unless it is `/`) and drops to
    /// [`ContextBuilder::nvml_user`] (65534:65534 by default), then loads
    /// `libnvidia-ml.so.1` and calls NVML: the driver root's libraries never load into the
    /// caller. Between fork and its end the helper only makes system calls, allocates,
    /// `dlopen`s and writes to a pipe — safe after `fork` in a multithreaded process with
    /// glibc (the safety argument assumes glibc's fork handlers for `malloc` and the
    /// dynamic loader; musl gives no such promise). The caller waits at most the timeout,
    /// then kills and reaps the helper: no process is left behind. Needs no capability as
    /// non-root; as root, `CAP_SYS_CHROOT`, `CAP_SETUID` and `CAP_SETGID`. Reads the driver
    /// root's `ld.so.cache`, its driver files, `/proc/driver/nvidia` and `/dev`. With
    /// [`ContextBuilder::load_kmods`], first runs the root's `modprobe` (a child process,
    /// chrooted; `CAP_SYS_MODULE`) and makes device nodes under the root's `/dev`
    /// (`CAP_MKNOD`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoDriver`] (`initialization error: ...`), [`ErrorKind::Timeout`], or a
    /// discovery error (`detection error: ...`).
    pub fn driver(self) -> Result<Driver, Error> {
        let (info, kmods) = self.probe(true)?;
        let mut driver = self.with_info(info);
        driver.kmods = kmods;
        Ok(driver)
    }

    /// The driver's versions and GPUs alone — what `nvidia-container-cli info` prints: as
    /// [`Context::driver`] (the same NVML helper, modules loaded where asked, the same
    /// errors), but the driver's files are not looked for ([`DriverInfo::files`] is empty) and
    /// neither are the GPUs' `/proc` directories and MIG access minors. For reporting only:
    /// such an info plans no container ([`Context::with_info`] wants a whole probe).
    ///
    /// # Errors
    ///
    /// As [`Context::driver`].
    pub fn driver_info(self) -> Result<DriverInfo, Error> {
        self.probe(false).map(|(info, _)| info)
    }

    /// Loads the modules where asked, then probes the driver, its files only with `files`.
    fn probe(&self, files: bool) -> Result<(DriverInfo, Option<KmodReport>), Error> {
        let kmods = self.options.kmods.as_ref().map(|(channels, create)| {
            let mut k = nvc_driver::kmods::KmodOptions::new(&self.options.discover.root);
            k.proc_devices
                .clone_from(&self.options.discover.proc_devices);
            k.imex_channels.clone_from(channels);
            k.create_imex_channels = *create;
            nvc_driver::kmods::load_kernel_modules(&k)
        });
        let mut opts = nvc_driver::DriverOptions::new(&self.options.discover.root);
        opts.discover.clone_from(&self.options.discover);
        opts.nvml_timeout = self.options.nvml_timeout;
        opts.nvml_identity = self.options.nvml_user;
        opts.nvml = self.options.nvml;
        opts.nvml_helper.clone_from(&self.options.nvml_helper);
        opts.files = files;
        let info = nvc_driver::probe_driver(&opts).map_err(|e| {
            let step = match e {
                nvc_driver::Error::Nvml { .. }
                | nvc_driver::Error::NvmlTimeout { .. }
                | nvc_driver::Error::DriverProc { .. } => Step::Initialization,
                _ => Step::Detection,
            };
            Error::driver(step, e)
        })?;
        Ok((info, kmods))
    }

    /// A driver probed before, possibly elsewhere (a [`DriverInfo`] read back with the
    /// `serde` feature): planning ([`ContainerSetup::plan`], [`Driver::list`]) needs nothing
    /// more, so plans can be made and printed on a machine without the driver. No I/O.
    #[must_use]
    pub fn with_info(self, info: DriverInfo) -> Driver {
        Driver {
            context: self,
            info,
            kmods: None,
        }
    }
}

/// A context with its driver probed.
#[derive(Debug, Clone)]
pub struct Driver {
    context: Context,
    info: DriverInfo,
    kmods: Option<KmodReport>,
}

impl Driver {
    /// What discovery found.
    #[must_use]
    pub fn info(&self) -> &DriverInfo {
        &self.info
    }

    /// What loading the kernel modules did, when [`ContextBuilder::load_kmods`] asked for it:
    /// modules loaded, nodes made, and what failed (upstream only logs those).
    #[must_use]
    pub fn kmods(&self) -> Option<&KmodReport> {
        self.kmods.as_ref()
    }

    /// The driver root it was probed in.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.context.options.discover.root
    }

    /// Resolves `devices` against the GPUs. On a host without GPUs nothing is selected and
    /// nothing is an error (upstream's rule: selection happens only when there are GPUs).
    /// Selecting a MIG device selects its parent GPU too. No I/O.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`] naming the token that is no device here
    /// (`device error: 3: unknown device`).
    pub fn select(&self, devices: &Devices) -> Result<Selection, Error> {
        if self.info.gpus.is_empty() {
            return Ok(Selection::default());
        }
        devices
            .request
            .select(&self.info.gpus)
            .map_err(|e| Error::driver(Step::Device, e))
    }

    /// Checks an image requirement for every selected GPU (and once without a device when
    /// none is selected), as upstream. No I/O.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unsatisfied`] with upstream's message (`requirement error: unsatisfied
    /// condition: ...`).
    pub fn check(&self, requirement: &Requirement, selection: &Selection) -> Result<(), Error> {
        requirement
            .parsed
            .check_selection(&self.info, selection)
            .map_err(|e| Error::driver(Step::Requirement, e))
    }

    /// The container whose init process is `pid` and whose root filesystem is `rootfs` (a
    /// host path, before `pivot_root`), as a runtime hook sees it (upstream's supervised
    /// mode). Keeps a pidfd on the process so a reused pid cannot redirect the later steps.
    ///
    /// Reads `/proc/<pid>` (owner, namespace) and probes the image's directories (`lstat`
    /// inside the rootfs); opens a pidfd (Linux 5.3, else the pid is trusted as upstream
    /// does), held until the setup is dropped. Changes nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`] for a relative or `/` rootfs (`input error: invalid rootfs
    /// directory: /`), [`ErrorKind::NoContainer`] when the process does not exist.
    pub fn container(
        &self,
        pid: u32,
        rootfs: impl AsRef<Path>,
    ) -> Result<ContainerSetup<'_>, Error> {
        let rootfs = checked_rootfs(rootfs.as_ref())?;
        let container = nvc_mount::Container::from_pid(pid, rootfs)
            .map_err(|e| Error::mount(Step::Container, e))?;
        Ok(ContainerSetup::new(self, rootfs, Some(container)))
    }

    /// Upstream's standalone mode (`configure` without `--pid`): the container process is
    /// the caller's parent, and its `/proc` is the one mounted under `rootfs` (the caller
    /// runs in the container's pid namespace). That `/proc` and the cgroup files under
    /// `<rootfs>/sys` are resolved inside the rootfs and checked to be procfs and cgroupfs.
    /// Reads them; changes nothing.
    ///
    /// # Errors
    ///
    /// As [`Driver::container`], for `<rootfs>/proc/<ppid>`.
    pub fn standalone(&self, rootfs: impl AsRef<Path>) -> Result<ContainerSetup<'_>, Error> {
        let rootfs = checked_rootfs(rootfs.as_ref())?;
        let container = nvc_mount::Container::standalone(rootfs)
            .map_err(|e| Error::mount(Step::Container, e))?;
        Ok(ContainerSetup::new(self, rootfs, Some(container)))
    }

    /// The image at `rootfs` without a container process: for [`ContainerSetup::plan`]
    /// (a dry run) only. No I/O until [`ContainerSetup::plan`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`] for a relative or `/` rootfs.
    pub fn image(&self, rootfs: impl AsRef<Path>) -> Result<ContainerSetup<'_>, Error> {
        let rootfs = checked_rootfs(rootfs.as_ref())?;
        Ok(ContainerSetup::new(self, rootfs, None))
    }
}

/// `rootfs`, refused when relative or `/` (upstream: "invalid rootfs directory").
fn checked_rootfs(rootfs: &Path) -> Result<&Path, Error> {
    if !rootfs.is_absolute() || rootfs == Path::new("/") {
        return Err(Error::input(format!(
            "invalid rootfs directory: {}",
            rootfs.display()
        )));
    }
    Ok(rootfs)
}
