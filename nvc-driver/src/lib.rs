//! NVIDIA driver discovery.
//!
//! **Stability:** an implementation crate of `nvc-core`, published for it: its API changes
//! whenever nvc-core needs it to, in any release, without a deprecation period. Depend on
//! `nvc-core`.
//!
//! What libnvidia-container learns about the host before it touches a container, as owned
//! data ([`probe_driver`] → [`DriverInfo`]):
//! - GPUs and MIG devices from NVML ([`nvml`]), queried in a forked helper process that is
//!   chrooted into the driver root, runs unprivileged, and is killed on timeout;
//! - the driver's files inside the driver root ([`discover_files`]): libraries through the
//!   root's `ld.so.cache` (with upstream's version, TLS-note and legacy-GL checks) or a
//!   documented fallback path when it has none, binaries along `PATH`, IPC endpoints, GSP
//!   firmware, device nodes, and the caps/IMEX majors; every path resolved inside the root
//!   ([`resolve_in_root`]) so links cannot lead out of it;
//! - the `--device` selection grammar ([`DeviceRequest`], [`select_mig_access`]) and the
//!   `--require` DSL ([`Requirement`]), pure parsers with upstream's error texts.
//!
//! [`kmods`] loads the kernel modules and makes their device nodes (`--load-kmods`). The
//! per-capability tables are in [`tables`]. No NVML type leaves this crate.
// Unsafe code is denied everywhere but in `nvml`: the raw GI/CI call and the helper fork.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod discover;
mod driver;
mod error;
mod gpu;
pub mod kmods;
pub mod nvml;
pub mod procfs;
mod require;
mod root;
mod select;
pub mod tables;

pub use discover::{DeviceNode, DiscoverOptions, DriverFiles, ProcFile, discover_files};
pub use driver::{DriverInfo, DriverOptions, find_nvml, probe_driver};
pub use error::Error;
pub use gpu::{CAPS_DIR, Gpu, MigDevice, PciBusId};
pub use require::{Facts, Requirement};
pub use root::{host_path, resolve_in_root};
pub use select::{DeviceRequest, DeviceSpec, Selection, select_mig_access};
