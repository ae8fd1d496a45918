//! CDI (feature `cdi`): a Container Device Interface spec for the host's driver, the path
//! containerd, CRI-O, podman and Docker ≥ 25 take — the runtime applies the spec itself, no
//! hook rewrites mounts behind its back, and starting a container costs no NVML call.
//!
//! ```no_run
//! use nvc_core::Context;
//! use nvc_core::cdi::CdiOptions;
//!
//! let driver = Context::new()?.driver()?;
//! let spec = driver.cdi_spec(&CdiOptions::default())?;
//! nvc_core::cdi::write(&spec, "/etc/cdi/nvidia.json".as_ref())?;
//! # Ok::<(), nvc_core::Error>(())
//! ```
//!
//! [`Registry`] reads the specs of the CDI directories (JSON; YAML with feature `yaml`), and
//! with feature `oci` applies a request's edits to an OCI spec ([`Registry::inject`]) for
//! runtimes that do not read CDI themselves (runc, crun, youki).

mod generate;
#[cfg(feature = "oci")]
mod inject;
mod registry;
#[cfg(feature = "oci")]
mod request;
mod spec;

pub use generate::{CdiOptions, DeviceNameStrategy};
pub use registry::{Format, Registry, SPEC_DIRS, SPEC_LIMIT, write};
#[cfg(feature = "oci")]
pub use request::{RequestOptions, cdi_annotations, requested_devices};
pub use spec::{ContainerEdits, Device, DeviceNode, Hook, Invalid, Mount, Spec};
