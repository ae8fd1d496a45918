//! The namespace mount engine: everything `configure` does to one container.
//!
//! **Stability:** an implementation crate of `nvc-core`, published for it: its API changes
//! whenever nvc-core needs it to, in any release, without a deprecation period. Depend on
//! `nvc-core`.
//!
//! - [`Container`]: the container's facts from its pid (supervised, with a pidfd check) or
//!   from the rootfs's `/proc` (standalone); [`ContainerDirs`]: where its libraries,
//!   binaries and `ldconfig` are.
//! - [`MountPlan`]: every operation in upstream's order, as plain data (printable for
//!   `--dry-run`, testable without privileges); [`MountPlan::apply`] runs it in the
//!   container's mount namespace on a dedicated thread ([`in_mount_ns`]), resolving every path
//!   inside the container root, binding by descriptor, rolling back on failure.
//! - [`cgroup`]: the container's device cgroup (v1 `devices.allow`, v2 eBPF splice with a pure
//!   program generator).
//! - [`run_ldconfig`]: the container's (or the host's) `ldconfig` in a sandbox;
//!   [`update_ldcache`]: the linker cache after a runtime's mounts (the CDI hook), in process
//!   where that is provably `ldconfig`'s result.
//! - [`compat_libraries`]: CUDA forward compatibility.
//! - [`Configuration`] / [`MountPlan::configure`]: all of it as one transaction.
//!
//! # Kernel requirements
//!
//! Linux 5.6 (`openat2`); the new mount API is used from 5.2/5.12 with a fallback; cgroup v2
//! device control needs `bpf(2)` with `BPF_PROG_TYPE_CGROUP_DEVICE` (4.15), `BPF_F_REPLACE`
//! (5.6, with a fallback); the ldconfig sandbox needs seccomp filters (4.14). All of it needs
//! root (`CAP_SYS_ADMIN` and friends).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod apply;
mod builtin_ldconfig;
pub mod cgroup;
mod compat;
mod configure;
mod container;
mod detach;
mod early_update;
mod error;
mod inroot;
mod kernfs;
pub mod ldconf;
mod ldconfig;
mod linker_state;
mod ns;
mod plan;
mod propagation;
mod refresh;
mod userns;

pub use apply::Mounted;
pub use compat::{CompatMode, compat_dir, compat_libraries};
pub use configure::{Configuration, ConfigureOptions, Configured};
pub use container::{Container, ContainerDirs, detect_dirs, detect_dirs_for};
pub use detach::Detached;
pub use error::Error;
pub use ldconfig::{Ldconfig, LdconfigOptions, LdconfigRun, Limits, run_ldconfig};
pub use ns::in_mount_ns;
pub use plan::{MigCapability, MountApi, MountFlags, MountKind, MountPlan, Op, Part, PlanOptions};
pub use refresh::update_ldcache;
