//! The system calls nvc makes without a safe wrapper elsewhere, behind safe, typed functions.
//!
//! **Stability:** an implementation crate of `nvc-core`, published for it: its API changes
//! whenever nvc-core needs it to, in any release, without a deprecation period. Depend on
//! `nvc-core`.
//!
//! - [`fork_with_pipe`]: the process split behind upstream's isolated NVML service.
//! - [`clone_into_cgroup`]: a fork whose child starts in a cgroup2 cgroup
//!   (`clone3(CLONE_INTO_CGROUP)`), never migrated.
//! - [`bpf`]: the `bpf(2)` calls of cgroup v2 device control (load with the verifier log,
//!   query, fetch by id, read instructions back, attach/replace, detach).
//! - [`seccomp`]: an allow-list filter.
//! - [`confine`]: running one program in new pid/IPC/mount namespaces under a new root, with
//!   masked kernel filesystems, rlimits, no capabilities, another identity, no-new-privs and
//!   seccomp (upstream's `ldconfig` sandbox).
//! - [`mount`]: `open_tree` + `mount_setattr` + `move_mount`, binds by descriptor.
//! - [`pidfd_open`]: a process handle that cannot be confused with a reused pid.
//! - [`set_fs_owner`]: one thread creating files as the container's owner.
//! - [`chrooted`]: a host program run with the driver root as its root.
//! - [`fault`]: named fault points for tests (feature `fault-injection`).
//!
//! Each error names the syscall or step and the `errno`. Every other nvc crate is
//! `#![forbid(unsafe_code)]` but nvc-capi (its C boundary) and nvc-driver (its NVML module: the
//! helper fork and the raw GPU/compute-instance id calls).
#![deny(missing_docs)]

pub mod bpf;
mod cgroup_clone;
mod chroot;
pub mod confine;
mod creds;
mod deadline;
pub mod fault;
mod fork;
pub mod kernel_mounts;
pub mod mount;
mod pidfd;
pub mod seccomp;
pub mod statmount;

pub use cgroup_clone::{cgroup_clone_supported, cgroup_clone_unsupported, clone_into_cgroup};
pub use chroot::chrooted;
pub use creds::set_fs_owner;
pub use deadline::deadline;
pub use fork::{Ended, Forked, fork_with_pipe};
pub use pidfd::{pidfd_alive, pidfd_open};

use nix::errno::Errno;

/// A syscall that failed, with its errno.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A syscall failed.
    #[error("{call}: {errno}")]
    Syscall {
        /// The syscall.
        call: &'static str,
        /// Its errno.
        errno: Errno,
    },
    /// The kernel's verifier refused a BPF program.
    #[error("bpf(BPF_PROG_LOAD): {errno}; verifier log:\n{log}")]
    Verifier {
        /// `EACCES` or `EINVAL`.
        errno: Errno,
        /// The verifier's log.
        log: String,
    },
    /// A step of [`confine::run_confined`] failed in the child.
    #[error("process confinement failed: {step}: {errno}")]
    Confinement {
        /// The step.
        step: &'static str,
        /// Its errno.
        errno: Errno,
    },
    /// The confined program could not be executed (`ENOENT`: no such program).
    #[error("exec: {errno}")]
    Exec {
        /// The errno of `execve`.
        errno: Errno,
    },
}

impl Error {
    /// The errno.
    #[must_use]
    pub fn errno(&self) -> Errno {
        match self {
            Error::Syscall { errno, .. }
            | Error::Verifier { errno, .. }
            | Error::Confinement { errno, .. }
            | Error::Exec { errno } => *errno,
        }
    }

    /// What failed, without the errno: the syscall, the confinement step, or the
    /// verifier's refusal with its log.
    #[must_use]
    pub fn operation(&self) -> String {
        match self {
            Error::Syscall { call, .. } => (*call).to_owned(),
            Error::Verifier { log, .. } => format!("bpf(BPF_PROG_LOAD); verifier log:\n{log}"),
            Error::Confinement { step, .. } => format!("process confinement failed: {step}"),
            Error::Exec { .. } => "exec".to_owned(),
        }
    }

    /// The errno as an `io::Error`, for error sources.
    #[must_use]
    pub fn io_error(&self) -> std::io::Error {
        std::io::Error::from_raw_os_error(self.errno() as i32)
    }
}
