//! The namespace mount engine.
//!
//! Today: the container's facts ([`Container`], [`ContainerDirs`]), the [`MountPlan`] —
//! every operation of `configure` in upstream's order, as plain data (printable for
//! `--dry-run`, testable without privileges) — and [`MountPlan::apply`], which runs it in the
//! container's mount namespace on a dedicated thread ([`in_mount_ns`]), resolving every path
//! inside the container root and rolling back on failure. To come: device cgroup rules (v1
//! `devices.allow`, v2 eBPF), the sandboxed `ldconfig` run and CUDA forward compatibility.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod apply;
pub mod cgroup;
mod compat;
mod configure;
mod container;
mod error;
mod ldconfig;
mod ns;
mod plan;

pub use apply::Mounted;
pub use compat::{CompatMode, compat_dir, compat_libraries};
pub use configure::{Configuration, ConfigureOptions, Configured};
pub use container::{Container, ContainerDirs};
pub use error::Error;
pub use ldconfig::{Ldconfig, LdconfigOptions, LdconfigRun, Limits, run_ldconfig};
pub use ns::in_mount_ns;
pub use plan::{MountApi, MountFlags, MountKind, MountPlan, Op, PlanOptions};
