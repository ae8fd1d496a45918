//! NVIDIA driver discovery.
//!
//! This crate holds what libnvidia-container learns about the host before it touches a
//! container. Today: the owned GPU and MIG descriptions ([`Gpu`], [`MigDevice`],
//! [`PciBusId`]), the `--device` selection grammar ([`DeviceRequest`]) and the `--require`
//! requirement DSL ([`Requirement`]), each a pure parser with upstream's error texts. To come:
//! NVML queries (through `nvml-wrapper`, in a confined helper process) into owned
//! `DriverInfo`, the per-capability tables of libraries, binaries, IPC endpoints, firmware and
//! device nodes, and library resolution through `nvc-ldcache` inside a driver root.
// `unsafe` is denied everywhere but in `nvml::instance_ids`, the one raw NVML call.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod discover;
mod driver;
mod error;
mod gpu;
pub mod nvml;
pub mod procfs;
mod require;
mod root;
mod select;
pub mod tables;

pub use discover::{DeviceNode, DiscoverOptions, DriverFiles, discover_files};
pub use driver::{DriverInfo, DriverOptions, find_nvml, probe_driver};
pub use error::Error;
pub use gpu::{CAPS_DIR, Gpu, MigDevice, PciBusId};
pub use require::{Facts, Requirement};
pub use root::resolve_in_root;
pub use select::{DeviceRequest, DeviceSpec, Selection, select_mig_access};
