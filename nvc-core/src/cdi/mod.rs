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

mod generate;
mod spec;

use std::io::Write;
use std::path::Path;

pub use generate::{CdiOptions, DeviceNameStrategy};
pub use spec::{ContainerEdits, Device, DeviceNode, Hook, Invalid, Mount, Spec};

use crate::Error;

/// Writes `spec` to `path` as JSON, atomically: validated first, then written to a
/// temporary file beside it, synced and renamed over `path`, so a runtime reading the CDI
/// directory sees the old spec or the new one, never half of one.
///
/// # Errors
///
/// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) for a spec that breaks a CDI rule;
/// the I/O error naming the file.
pub fn write(spec: &Spec, path: &Path) -> Result<(), Error> {
    spec.validate()
        .map_err(|e| Error::input(format!("invalid CDI spec: {e}")))?;
    let json = serde_json::to_vec_pretty(spec)
        .map_err(|e| Error::input(format!("cannot serialise the CDI spec: {e}")))?;
    let name = path
        .file_name()
        .ok_or_else(|| Error::input(format!("{}: not a file name", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let io = |what: &str, p: &Path| {
        let what = format!("cannot {what} {}", p.display());
        move |e: std::io::Error| Error::io(what, e)
    };
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(&json).map_err(io("write", &tmp))?;
        f.write_all(b"\n").map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("rename onto", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
