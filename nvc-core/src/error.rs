//! The one error type of nvc-core: opaque, classified by [`ErrorKind`], its message in
//! libnvidia-container's words, its sources down to the OS error.

use std::fmt;
use std::io;

/// What kind of failure an [`Error`] is, for callers that act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No usable NVIDIA driver (NVML missing or failing to initialise).
    NoDriver,
    /// The driver did not answer in time.
    Timeout,
    /// Not permitted (`EPERM`/`EACCES`: missing capabilities, a read-only or foreign cgroup).
    Permission,
    /// Bad input: a device list, requirement, option, rootfs, or a corrupt file of the host.
    BadInput,
    /// A requirement of the image is not met by the host.
    Unsatisfied,
    /// The container process does not exist (any more).
    NoContainer,
    /// The kernel lacks a feature nvc needs (`ENOSYS`, or `EINVAL` from a call it does not
    /// know, such as `mount_setattr` flags before Linux 5.12).
    UnsupportedKernel,
    /// Anything else.
    Other,
}

/// The step that failed, which also gives upstream's message prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Checking the caller's options.
    Input,
    /// Starting NVML.
    Initialization,
    /// Finding the driver's files and devices.
    Detection,
    /// Selecting devices.
    Device,
    /// Checking the image's requirements.
    Requirement,
    /// `--mig-config` or `--mig-monitor` access.
    Mig(&'static str),
    /// Looking up or planning for the container.
    Container,
    /// Changing the container (mounts, cgroup, ldconfig).
    Configure,
}

#[derive(Debug)]
enum Inner {
    Driver(nvc_driver::Error),
    Mount(nvc_mount::Error),
    Input(String),
    Io { what: String, error: io::Error },
}

/// The error of every nvc operation.
///
/// `Display` is one line in libnvidia-container's words (`device error: 3: unknown
/// device`, `mount error: bind-mount /usr/bin/nvidia-smi`); [`std::error::Error::source`]
/// leads to the cause, down to the `io::Error` of the failing syscall
/// ([`Error::os_error`] gives its errno directly). Print the chain for the whole story.
pub struct Error {
    step: Step,
    inner: Inner,
}

impl Error {
    pub(crate) fn driver(step: Step, e: nvc_driver::Error) -> Self {
        Error {
            step,
            inner: Inner::Driver(e),
        }
    }

    pub(crate) fn mount(step: Step, e: nvc_mount::Error) -> Self {
        Error {
            step,
            inner: Inner::Mount(e),
        }
    }

    pub(crate) fn input(what: impl Into<String>) -> Self {
        Error {
            step: Step::Input,
            inner: Inner::Input(what.into()),
        }
    }

    /// An I/O error of nvc-core's own (writing a CDI spec): `what` names the operation and
    /// the file.
    #[cfg_attr(not(feature = "cdi"), allow(dead_code))]
    pub(crate) fn io(what: String, error: io::Error) -> Self {
        Error {
            step: Step::Input,
            inner: Inner::Io { what, error },
        }
    }

    /// The kind of failure.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        use nvc_driver::Error as D;
        use nvc_mount::Error as M;
        let by_errno = || match self.os_error() {
            Some(libc::EPERM | libc::EACCES) => Some(ErrorKind::Permission),
            Some(libc::ENOSYS) => Some(ErrorKind::UnsupportedKernel),
            _ => None,
        };
        let driver = |e: &D| match e {
            D::Nvml { .. } | D::DriverProc { .. } => ErrorKind::NoDriver,
            D::NvmlTimeout { .. } => ErrorKind::Timeout,
            D::Unsatisfied { .. } => ErrorKind::Unsatisfied,
            D::UnknownDevice { .. }
            | D::InvalidBusId { .. }
            | D::InvalidRequirement { .. }
            | D::InvalidMigAccess { .. }
            | D::MigAccessWithMigDevices { .. }
            | D::NeedsNvml { .. }
            | D::Ldcache { .. }
            | D::Elf { .. } => ErrorKind::BadInput,
            _ => by_errno().unwrap_or(ErrorKind::Other),
        };
        match (&self.inner, self.failed_change()) {
            (Inner::Input(_), _) => ErrorKind::BadInput,
            (Inner::Driver(e), _) | (_, Some(M::Driver(e))) => driver(e),
            (_, Some(M::BadRootfs { .. } | M::Device { .. } | M::Container { .. })) => {
                ErrorKind::BadInput
            }
            (_, Some(M::NoProcess { .. })) => ErrorKind::NoContainer,
            _ => by_errno().unwrap_or(ErrorKind::Other),
        }
    }

    /// What a failed change could not take back and left in the container (a mount nvc
    /// could not identify any more, a file a container process replaced; for
    /// [`ContainerSetup::detach`](crate::ContainerSetup::detach), the mounts it could not take
    /// away), one line each; empty when the container was left exactly as it was (or the
    /// failure came before anything changed).
    #[must_use]
    pub fn left_in_container(&self) -> &[String] {
        match &self.inner {
            Inner::Mount(
                nvc_mount::Error::UndoIncomplete { left, .. }
                | nvc_mount::Error::DetachIncomplete { left },
            ) => left,
            _ => &[],
        }
    }

    /// Whether the container was left exactly as it was: nothing in
    /// [`Error::left_in_container`].
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.left_in_container().is_empty()
    }

    /// The errno of the syscall that failed, where one did.
    #[must_use]
    pub fn os_error(&self) -> Option<i32> {
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<io::Error>()
                && let Some(errno) = io.raw_os_error()
            {
                return Some(errno);
            }
            cause = c.source();
        }
        None
    }

    /// The message without upstream's step prefix (`3: unknown device` for `device error:
    /// 3: unknown device`): what libnvidia-container's `nvc_error` returns, its callers
    /// adding the prefix of the step they ran.
    #[must_use]
    pub fn detail(&self) -> String {
        match &self.inner {
            Inner::Driver(e) => e.to_string(),
            Inner::Mount(e) => e.to_string(),
            Inner::Input(what) | Inner::Io { what, .. } => what.clone(),
        }
    }

    /// The engine's error of what failed — not the undo that followed it, which
    /// [`Error::left_in_container`] reports — or `None` for an error of another layer.
    fn failed_change(&self) -> Option<&nvc_mount::Error> {
        match &self.inner {
            Inner::Mount(nvc_mount::Error::UndoIncomplete { error, .. }) => Some(error),
            Inner::Mount(e) => Some(e),
            _ => None,
        }
    }

    /// Upstream's message prefix: the one place it is decided. A change to the container
    /// is named by what failed (an undo's failure by the step it undid); everything else by
    /// the step.
    fn prefix(&self) -> &'static str {
        use nvc_mount::Error as M;
        if let Inner::Io { .. } = self.inner {
            return "";
        }
        match (self.failed_change(), self.step) {
            // Reading the image while planning is the container's step, not a mount.
            (Some(M::Apply { .. }), Step::Container) => "container error: ",
            (Some(M::Apply { .. }), _) => "mount error: ",
            (Some(M::Cgroup { .. }), _) => "cgroup error: ",
            (Some(M::Ldconfig { .. }), _) => "ldcache error: ",
            (Some(M::Device { .. }), _) => "device error: ",
            (Some(M::Container { .. } | M::DetachIncomplete { .. }), _) => "container error: ",
            (Some(M::BadRootfs { .. }), _) => "",
            (_, Step::Input) => "input error: ",
            (_, Step::Initialization) => "initialization error: ",
            (_, Step::Detection) => "detection error: ",
            (_, Step::Device) => "device error: ",
            (_, Step::Requirement) => "requirement error: ",
            (_, Step::Mig("mig-monitor")) => "mig-monitor error: ",
            (_, Step::Mig(_)) => "mig-config error: ",
            (_, Step::Container | Step::Configure) => "container error: ",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.prefix(), self.detail())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind())
            .field("message", &self.to_string())
            .field("source", &std::error::Error::source(self))
            .finish()
    }
}

impl std::error::Error for Error {
    /// The cause of the wrapped error (its own text is this error's message).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner {
            Inner::Driver(e) => e.source(),
            Inner::Mount(_) => self.failed_change().and_then(|e| e.source()),
            Inner::Input(_) => None,
            Inner::Io { error, .. } => Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure whose undo left something is classified by the failure, and what was left
    /// is data.
    #[test]
    fn the_kind_is_the_failures_and_what_the_undo_left_is_data() {
        let gone = nvc_mount::Error::NoProcess {
            pid: 7,
            source: io::Error::from_raw_os_error(libc::ESRCH),
        };
        let left = vec!["/dev/nvidia0: hidden under a mount nvc did not make".to_owned()];
        let e = Error::mount(
            Step::Configure,
            nvc_mount::Error::UndoIncomplete {
                error: Box::new(gone),
                left: left.clone(),
            },
        );
        assert_eq!(e.kind(), ErrorKind::NoContainer);
        assert_eq!(e.left_in_container(), left);
        assert!(!e.is_clean());
        let bad = nvc_mount::Error::Container {
            what: "compat libraries in two directories".into(),
        };
        let e = Error::mount(
            Step::Configure,
            nvc_mount::Error::UndoIncomplete {
                error: Box::new(bad),
                left,
            },
        );
        assert_eq!(e.kind(), ErrorKind::BadInput);
        let clean = Error::input("no device to detach");
        assert!(clean.is_clean() && clean.left_in_container().is_empty());
    }
}
