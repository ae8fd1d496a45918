//! A simulated NVIDIA host for tests.
//!
//! Nothing in this project's CI has a GPU, so every layer is tested against a host that the
//! production code paths cannot tell from a real one: [`Host::build`] lays out a
//! [`Scenario`] in a directory as a host's `/` would look, with real ELF shared objects
//! (x86-64 and i386) with the driver's SONAMEs at the driver version, the installer's
//! symlinks, executables, GSP firmware, a listening persistenced socket, the MPS pipe
//! directory, `/etc/ld.so.cache` written by glibc's own `ldconfig -r`, `/proc/driver/nvidia`
//! files and `/proc/devices` as the kernel modules write them, and `/dev` nodes made with
//! `mknod` and the real majors (where the caller may make device nodes). The driver's
//! `libnvidia-ml.so.1` is a fake ([`FAKE_NVML`], built from `fake-nvml/nvml.rs`) that
//! answers NVML calls from the scenario with NVML's return codes, so `nvml-wrapper` loads it
//! exactly as it loads the real one.
//!
//! Production crates contain no simulation branches: the simulated host is just a driver
//! root plus what a host has in `/dev` and `/proc`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod cgroup;
pub mod driver_files;
mod host;
mod image;
mod paused;
mod process;
pub mod procfs;
pub mod real_driver;
mod scenario;
pub mod sim_ns;
mod skip;

use std::io;
use std::path::{Path, PathBuf};

pub use cgroup::TestCgroup;
pub use host::{DeviceNode, DeviceNodes, Host};
pub use image::{add_cuda_compat, cached_paths, debian_image};
pub use paused::PausedContainer;
pub use process::ProcessState;
pub use real_driver::{Layout, PackageArch, RealDriver};
pub use scenario::{
    BUILTIN, Files, Gpu, MigDevice, Misbehaviour, NvmlFaults, PciAddress, Scenario,
};
pub use skip::{REQUIRE_PRIVILEGED, privileged_required, skip};

/// The fake `libnvidia-ml.so.1` built from `fake-nvml/nvml.rs` by the build script.
pub const FAKE_NVML: &str = env!("NVC_FAKE_NVML");

/// What can go wrong building a simulated host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Writing a file or directory failed. The message includes the OS error's.
    #[error("cannot write {}: {error}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// glibc's `ldconfig` could not write the cache.
    #[error("ldconfig -r {} failed: {detail}", root.display())]
    Ldconfig {
        /// The host root.
        root: PathBuf,
        /// Exit status and standard error.
        detail: String,
    },
}

impl Error {
    fn io(path: &Path, error: io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// An error with its sources, `: `-separated, as a command-line tool prints it
/// (`mount error: bind-mount /x: Permission denied`).
#[must_use]
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg = format!("{msg}: {c}");
        cause = c.source();
    }
    msg
}
