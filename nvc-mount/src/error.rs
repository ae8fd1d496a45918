//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// What can go wrong preparing or applying a mount plan.
///
/// Messages carry no step prefix: nvc-core adds libnvidia-container's (`mount error: `,
/// `cgroup error: `, ...) in one place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The rootfs is relative or `/` (upstream: "invalid rootfs directory").
    #[error("invalid rootfs directory: {}", rootfs.display())]
    BadRootfs {
        /// The rootfs given.
        rootfs: PathBuf,
    },
    /// The container process does not exist (any more).
    #[error("container process {pid} not found")]
    NoProcess {
        /// Its pid.
        pid: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The container's image cannot be configured as asked (CUDA compat libraries spread over
    /// several directories in `ldconfig` mode).
    #[error("{what}")]
    Container {
        /// What is wrong.
        what: String,
    },
    /// A selected device is not known to the driver (an index with no GPU, a missing node).
    #[error("{what}")]
    Device {
        /// What is missing.
        what: String,
    },
    /// Entering the container's mount namespace failed.
    #[error("{step} {}", path.display())]
    Namespace {
        /// The step (`open`, `unshare(CLONE_FS)`, `setns(CLONE_NEWNS)`).
        step: &'static str,
        /// The namespace file.
        path: PathBuf,
        /// The OS error (`raw_os_error` gives the errno).
        #[source]
        error: io::Error,
    },
    /// An operation of the plan failed (the container was left as it was).
    #[error("{op} {}", path.display())]
    Apply {
        /// The operation.
        op: &'static str,
        /// The container (or host source) path.
        path: PathBuf,
        /// The OS error (`raw_os_error` gives the errno).
        #[source]
        error: io::Error,
    },
    /// Finding or changing the container's device cgroup failed.
    #[error("{}: {what}", path.display())]
    Cgroup {
        /// The cgroup file or directory.
        path: PathBuf,
        /// What went wrong (the operation, or what the cgroup lacks; the verifier log).
        what: String,
        /// The OS error, when a syscall failed (`raw_os_error` gives the errno).
        #[source]
        error: Option<io::Error>,
    },
    /// The container's `ldconfig` failed, was killed, or could not be confined.
    #[error("process {} {what}{}", program.display(), if output.is_empty() { String::new() } else { format!(":\n{output}") })]
    Ldconfig {
        /// The program.
        program: PathBuf,
        /// What happened.
        what: String,
        /// Its output.
        output: String,
        /// The OS error, when a step of starting or confining it failed.
        #[source]
        error: Option<io::Error>,
    },
    /// A step failed, and undoing the earlier ones left something in the container: entries
    /// that were no longer what nvc made (so not touched), or undo steps that failed.
    #[error("{error}; undo left: {}", left.join("; "))]
    UndoIncomplete {
        /// The failure that started the undo.
        error: Box<Error>,
        /// What was left, each with why.
        left: Vec<String>,
    },
    /// [`crate::MountPlan::detach`] denied the devices but could not take every mount away
    /// (a mount the container stacked on nvc's, an unmount that failed).
    #[error("detach left mounts in place (the device rules are denied): {}", left.join("; "))]
    DetachIncomplete {
        /// The mounts left, each with why.
        left: Vec<String>,
    },
    /// Discovery-level error (path resolution inside a root).
    #[error(transparent)]
    Driver(#[from] nvc_driver::Error),
}

impl Error {
    /// This error, or [`Error::UndoIncomplete`] when the undo it caused left `left`.
    #[must_use]
    pub(crate) fn with_undo_left(self, left: Vec<String>) -> Self {
        match self {
            _ if left.is_empty() => self,
            Error::UndoIncomplete {
                error,
                left: mut before,
            } => {
                before.extend(left);
                Error::UndoIncomplete {
                    error,
                    left: before,
                }
            }
            other => Error::UndoIncomplete {
                error: Box::new(other),
                left,
            },
        }
    }
}

/// The `io::Error` of an errno, for the variants above.
pub(crate) fn os(errno: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}
