//! The namespace mount engine.
//!
//! Today: the container's facts ([`Container`], [`ContainerDirs`]) and the [`MountPlan`] —
//! every operation of `configure` in upstream's order, as plain data (printable for
//! `--dry-run`, testable without privileges). To come: its executor (a dedicated thread that
//! enters the container's mount namespace, resolves every path inside the container root and
//! mounts by file descriptor, rolling back on failure), device cgroup rules (v1
//! `devices.allow`, v2 eBPF), the sandboxed `ldconfig` run and CUDA forward compatibility.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod container;
mod error;
mod plan;

pub use container::{Container, ContainerDirs};
pub use error::Error;
pub use plan::{MountFlags, MountKind, MountPlan, Op, PlanOptions};
