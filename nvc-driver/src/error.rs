//! The crate's one error type.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong in driver discovery and device selection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `--device` token that names no device (upstream's wording).
    #[error("{token}: unknown device")]
    UnknownDevice {
        /// The token as given.
        token: String,
    },
    /// A `--mig-config`/`--mig-monitor` value other than `all`.
    #[error("invalid {option} value {value:?}: only 'all' is supported")]
    InvalidMigAccess {
        /// `mig-config` or `mig-monitor`.
        option: &'static str,
        /// The value given.
        value: String,
    },
    /// MIG configuration or monitoring asked for while specific MIG devices are selected.
    #[error("cannot enable {option} with specific MIG devices selected")]
    MigAccessWithMigDevices {
        /// `mig-config` or `mig-monitor`.
        option: &'static str,
    },
    /// A PCI bus id that does not parse.
    #[error("invalid PCI bus id {input:?} (expected [domain:]bus:device[.0] in hex)")]
    InvalidBusId {
        /// The text given.
        input: String,
    },
    /// A requirement expression that does not parse (upstream: "invalid expression").
    #[error("invalid expression: {expr:?}: {reason}")]
    InvalidRequirement {
        /// The whole expression.
        expr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A requirement the host does not meet.
    #[error(
        "unsatisfied condition: {condition}{}",
        if *hint { ", please update your driver to a newer version, or use an earlier cuda container" } else { "" }
    )]
    Unsatisfied {
        /// The expression's first group, as upstream quotes it.
        condition: String,
        /// Whether it is a `cuda>=` condition (upstream adds advice).
        hint: bool,
    },
    /// Resolving a path inside the driver root failed.
    #[error("cannot resolve {} inside {}", path.display(), root.display())]
    Resolve {
        /// The driver root.
        root: PathBuf,
        /// The path inside it.
        path: PathBuf,
        /// The OS error (`ELOOP` for a symlink loop).
        #[source]
        source: io::Error,
    },
    /// The driver root's `ld.so.cache` exists but cannot be read or parsed.
    #[error("cannot use the driver's ld.so.cache")]
    Ldcache {
        /// The reader's error, naming the file.
        #[source]
        source: nvc_ldcache::Error,
    },
    /// A library to check (`libnvidia-tls`, legacy GL) is not a readable ELF object.
    #[error("cannot check a driver library")]
    Elf {
        /// The reader's error, naming the file.
        #[source]
        source: nvc_ldcache::Error,
    },
    /// An NVML call failed (a library that cannot be loaded fails `nvmlInit`).
    #[error("NVML error: {call}: {message}")]
    Nvml {
        /// The NVML function.
        call: &'static str,
        /// NVML's message.
        message: String,
    },
    /// A driver file of `/proc/driver/nvidia` is missing or unreadable (probing without
    /// NVML).
    #[error("cannot read the driver's {}: {what}", path.display())]
    DriverProc {
        /// The file or directory, inside the driver root.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// What was asked needs NVML, and the driver was probed without it.
    #[error("{what} needs NVML: probe the driver with NVML (without --no-nvml)")]
    NeedsNvml {
        /// What needs it (`a cuda requirement`, `the MIG devices of GPU 0000:07:00.0`).
        what: String,
    },
    /// NVML did not answer in time.
    #[error(
        "NVML timed out in {call} after {}s; raise the limit with --nvml-timeout=SECONDS or NVC_NVML_TIMEOUT",
        timeout.as_secs_f32()
    )]
    NvmlTimeout {
        /// The NVML function that did not return.
        call: &'static str,
        /// The limit.
        timeout: Duration,
    },
}

impl From<nvc_ldcache::Error> for Error {
    fn from(source: nvc_ldcache::Error) -> Self {
        Error::Ldcache { source }
    }
}
