//! The OCI hook flow as a library (feature `oci`): from the runtime's state and the bundle's
//! spec to a configured container, in the caller's process — what `nvc-hook` does as a
//! `createRuntime` hook, for a runtime such as youki to call without exec'ing anything.
//!
//! ```no_run
//! use nvc_core::Context;
//! use nvc_core::oci::{self, HookOptions};
//!
//! let state = oci::read_state(std::io::stdin())?;
//! let spec = oci::read_spec(state.bundle())?;
//! let driver = Context::new()?.driver()?;
//! if let Some(done) = driver.configure_oci(&state, &spec, &HookOptions::default())? {
//!     println!("{} mounts", done.mounts().len());
//! }
//! # Ok::<(), nvc_core::Error>(())
//! ```
//!
//! The image's `NVIDIA_VISIBLE_DEVICES`, `NVIDIA_DRIVER_CAPABILITIES` and `NVIDIA_REQUIRE_*`
//! are read as nvidia-container-toolkit's legacy hook reads them ([`request`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The `oci-spec` crate this module's signatures use (0.10), re-exported so that a runtime
/// names the same types without pinning it itself. Version policy: nvc-core moves to a new
/// `oci-spec` release only in a release that is breaking for nvc-core (its minor version
/// while it is 0.x), and says so in that release's notes.
pub use oci_spec;
use oci_spec::runtime::{Capability as OciCapability, Spec, State};

use crate::error::Error;
use crate::{Capability, CompatMode, Configured, Devices, Driver, Ldconfig, Requirement};

/// The most bytes of OCI state read.
pub const STATE_LIMIT: u64 = 1 << 20;

/// The most bytes of the bundle's `config.json` read.
pub const CONFIG_LIMIT: u64 = 16 << 20;

/// How the hook flow configures a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOptions {
    /// The linker-cache step; by default updated in process ([`Ldconfig::Builtin`]), with the
    /// host's `ldconfig` sandboxed where nvc cannot prove its result equal — no program of
    /// the image runs.
    pub ldconfig: Ldconfig,
    /// Leave the device cgroup alone.
    pub no_cgroups: bool,
    /// Honour `NVIDIA_VISIBLE_DEVICES` from unprivileged containers (no `CAP_SYS_ADMIN` in
    /// the bounding set); the toolkit's
    /// `accept-nvidia-visible-devices-envvar-when-unprivileged`, on by default.
    pub envvar_when_unprivileged: bool,
    /// Ignore the image's `NVIDIA_REQUIRE_*` (and `CUDA_VERSION`'s implied requirement): the
    /// toolkit's `disable-require`.
    pub disable_require: bool,
    /// The driver capabilities given at most: an image's request is cut to these (`all`
    /// means these). The toolkit's `supported-driver-capabilities`; all by default.
    pub supported_capabilities: Vec<Capability>,
    /// Give the 32-bit libraries to an image that asks (`compat32` in
    /// `supported-driver-capabilities`); on by default.
    pub compat32: bool,
    /// How the image's CUDA forward-compatibility libraries are used: the toolkit's
    /// `nvidia-container-runtime.modes.legacy.cuda-compat-mode`, `ldconfig` by default as in
    /// its 1.17.8.
    pub cuda_compat: CompatMode,
}

impl Default for HookOptions {
    fn default() -> Self {
        HookOptions {
            ldconfig: Ldconfig::Builtin,
            no_cgroups: false,
            envvar_when_unprivileged: true,
            disable_require: false,
            supported_capabilities: Capability::ALL.to_vec(),
            compat32: true,
            cuda_compat: CompatMode::Ldconfig,
        }
    }
}

/// What the image asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRequest {
    /// The devices.
    pub devices: Devices,
    /// The driver capabilities.
    pub capabilities: Vec<Capability>,
    /// The 32-bit libraries too (`compat32` in `NVIDIA_DRIVER_CAPABILITIES`, or `all`).
    pub compat32: bool,
    /// The requirements to check.
    pub requirements: Vec<Requirement>,
}

/// Reads all of `from`, refusing more than `limit` bytes; `what` names it in errors.
fn read_capped(from: impl Read, limit: u64, what: &str) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    from.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::input(format!("cannot read {what}: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(Error::input(format!("{what} is larger than {limit} bytes")));
    }
    Ok(bytes)
}

/// Reads the runtime's state (`{"pid": ..., "bundle": ...}`), at most [`STATE_LIMIT`]
/// bytes, and checks it has a process id.
///
/// # Errors
///
/// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) naming what is wrong
/// (`invalid OCI state: ...`, `OCI state: no pid`).
pub fn read_state(from: impl Read) -> Result<State, Error> {
    let bytes = read_capped(from, STATE_LIMIT, "the OCI state")?;
    let state: State = serde_json::from_slice(&bytes)
        .map_err(|e| Error::input(format!("invalid OCI state: {e}")))?;
    pid(&state)?;
    Ok(state)
}

/// `<bundle>/config.json` parsed as `T`, at most [`CONFIG_LIMIT`] bytes, with its path for
/// errors.
fn read_config<T: serde::de::DeserializeOwned>(bundle: &Path) -> Result<(T, String), Error> {
    let what = bundle.join("config.json").display().to_string();
    let file =
        std::fs::File::open(&what).map_err(|e| Error::input(format!("cannot read {what}: {e}")))?;
    let bytes = read_capped(file, CONFIG_LIMIT, &what)?;
    let value =
        serde_json::from_slice(&bytes).map_err(|e| Error::input(format!("invalid {what}: {e}")))?;
    Ok((value, what))
}

/// Reads `<bundle>/config.json`, at most [`CONFIG_LIMIT`] bytes.
///
/// # Errors
///
/// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) naming the file.
pub fn read_spec(bundle: &Path) -> Result<Spec, Error> {
    read_config(bundle).map(|(spec, _)| spec)
}

/// What of `<bundle>/config.json` says whether the container asks for devices — its
/// environment, `CAP_SYS_ADMIN` in its bounding set, its annotations — read without the
/// rest: for [`request`] and, with feature `cdi`, `cdi::requested_devices` before a shim
/// knows the container asks for anything, so that a spec with fields or values `oci-spec`'s
/// types do not know (a capability newer than they are) passes through a container that asks
/// for nothing.
///
/// # Errors
///
/// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) naming the file: unreadable, larger
/// than [`CONFIG_LIMIT`], not JSON, or those parts malformed.
pub fn read_request_view(bundle: &Path) -> Result<Spec, Error> {
    let (full, what): (serde_json::Value, _) = read_config(bundle)?;
    let at = |pointer: &str| full.pointer(pointer).cloned().unwrap_or_default();
    let admin: Option<Vec<&str>> = full
        .pointer("/process/capabilities/bounding")
        .and_then(serde_json::Value::as_array)
        .map(|caps| {
            caps.iter()
                .filter_map(serde_json::Value::as_str)
                .filter(|c| *c == "CAP_SYS_ADMIN")
                .collect()
        });
    let view = serde_json::json!({
        "ociVersion": at("/ociVersion"),
        "process": {
            "cwd": "/",
            "user": { "uid": 0, "gid": 0 },
            "env": at("/process/env"),
            "capabilities": { "bounding": admin },
        },
        "annotations": at("/annotations"),
    });
    serde_json::from_value(view).map_err(|e| Error::input(format!("invalid {what}: {e}")))
}

/// Replaces `<bundle>/config.json` with `spec`, atomically (a temporary file renamed over
/// it), e.g. after `cdi::Registry::inject` (feature `cdi`). What the file holds
/// that `oci-spec`'s types do not know (a newer runtime-spec's fields, an engine's
/// extensions) is kept: `spec` is merged into the file's JSON, every key `spec` has replacing
/// the file's, objects merged key by key.
///
/// # Errors
///
/// The I/O error naming the file; a serialiser error as
/// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput).
pub fn write_spec(bundle: &Path, spec: &Spec) -> Result<(), Error> {
    let path = bundle.join("config.json");
    let ours = serde_json::to_value(spec)
        .map_err(|e| Error::input(format!("cannot serialise the OCI spec: {e}")))?;
    // The file as it is, where it is JSON (a missing or unreadable one: `spec` alone).
    let merged = match read_config::<serde_json::Value>(bundle) {
        Ok((mut theirs, _)) => {
            merge(&mut theirs, ours);
            theirs
        }
        Err(_) => ours,
    };
    let mut bytes = serde_json::to_vec_pretty(&merged)
        .map_err(|e| Error::input(format!("cannot serialise the OCI spec: {e}")))?;
    bytes.push(b'\n');
    crate::atomic::write(&path, &bytes)
}

/// `ours` over `theirs`: each key of `ours` replaces `theirs`'s, objects merged key by key;
/// keys only `theirs` has stay.
fn merge(theirs: &mut serde_json::Value, ours: serde_json::Value) {
    match (theirs, ours) {
        (serde_json::Value::Object(theirs), serde_json::Value::Object(ours)) => {
            for (key, value) in ours {
                match theirs.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        theirs.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

fn pid(state: &State) -> Result<u32, Error> {
    let pid = state
        .pid()
        .ok_or_else(|| Error::input("OCI state: no pid"))?;
    u32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| Error::input("OCI state: pid is not a process id"))
}

/// The container's root filesystem on the host: `root.path`, a relative one taken from
/// the bundle.
///
/// # Errors
///
/// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) when the spec has no `root.path`.
pub fn rootfs(bundle: &Path, spec: &Spec) -> Result<PathBuf, Error> {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path())
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| {
            Error::input(format!(
                "{}: no root.path",
                bundle.join("config.json").display()
            ))
        })?;
    Ok(if root.is_absolute() {
        root.clone()
    } else {
        bundle.join(root)
    })
}

/// Whether the container is privileged as the toolkit decides it: `CAP_SYS_ADMIN` in
/// `process.capabilities.bounding`.
#[must_use]
pub fn privileged(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .is_some_and(|b| b.contains(&OciCapability::SysAdmin))
}

/// The container process's environment (`process.env`), `KEY=VALUE` split at the first
/// `=` (a bare `KEY` is empty).
pub(crate) fn environment(spec: &Spec) -> BTreeMap<&str, &str> {
    spec.process()
        .as_ref()
        .and_then(|p| p.env().as_ref())
        .into_iter()
        .flatten()
        .map(|entry| entry.split_once('=').unwrap_or((entry, "")))
        .collect()
}

/// The image's request, or `None` when it asks for no GPU at all
/// (`NVIDIA_VISIBLE_DEVICES` unset on a non-CUDA image, empty, or `void`):
///
/// - `NVIDIA_VISIBLE_DEVICES`: `all`, `none` (the driver without devices), or a list;
///   unset on an image with `CUDA_VERSION` means `all` (legacy CUDA images).
/// - `NVIDIA_DRIVER_CAPABILITIES`: a list, `all`, or unset/empty for `utility,compute`.
/// - `NVIDIA_REQUIRE_*` (each a requirement), and for legacy images with `CUDA_VERSION`
///   but no `NVIDIA_REQUIRE_CUDA`, `cuda>=MAJOR.MINOR`; none with
///   `NVIDIA_DISABLE_REQUIRE` set to a true value.
///
/// # Errors
///
/// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput): an unknown capability name, a
/// device list or requirement that does not parse, each named.
pub fn request(spec: &Spec) -> Result<Option<GpuRequest>, Error> {
    let env = environment(spec);
    let var = |k: &str| env.get(k).copied();
    let devices = match (var("NVIDIA_VISIBLE_DEVICES"), var("CUDA_VERSION")) {
        (None, Some(_)) => Devices::all(),
        (None | Some("" | "void"), _) => return Ok(None),
        // `none`: the driver, no device.
        (Some(list), _) => list.parse()?,
    };
    let mut compat32 = false;
    let capabilities = match var("NVIDIA_DRIVER_CAPABILITIES").unwrap_or("") {
        "" => vec![Capability::Utility, Capability::Compute],
        "all" => {
            compat32 = true;
            Capability::ALL.to_vec()
        }
        list => list
            .split(',')
            .filter(|&c| {
                let is_compat32 = c == "compat32";
                compat32 |= is_compat32;
                !c.is_empty() && !is_compat32
            })
            .map(|c| {
                Capability::from_name(c).ok_or_else(|| {
                    Error::input(format!(
                        "unknown driver capability {c:?} in NVIDIA_DRIVER_CAPABILITIES"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let disabled = var("NVIDIA_DISABLE_REQUIRE")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
    let mut requirements = Vec::new();
    if !disabled {
        for (_, expr) in env
            .iter()
            .filter(|(k, v)| k.starts_with("NVIDIA_REQUIRE_") && !v.is_empty())
        {
            requirements.push(expr.parse()?);
        }
        if var("NVIDIA_REQUIRE_CUDA").is_none()
            && let Some(version) = var("CUDA_VERSION")
        {
            let mut parts = version.split('.');
            if let (Some(major), Some(minor)) = (parts.next(), parts.next()) {
                requirements.push(format!("cuda>={major}.{minor}").parse()?);
            }
        }
    }
    Ok(Some(GpuRequest {
        devices,
        capabilities,
        compat32,
        requirements,
    }))
}

/// The CDI spec's `update-ldcache` hook (`nvc_core::cdi`, feature `cdi`): refreshes the linker cache of the
/// container `state` names as `ldconfig` run over the image's library directories and
/// `folders` (where the spec mounted the driver's libraries) would
/// ([`nvc_mount::update_ldcache`]): with [`Ldconfig::Builtin`] (nvc-hook's default) in
/// process where nvc can prove the result is glibc's — the cache, and the SONAME links of the
/// libraries the spec bound into those directories — else, and with [`Ldconfig::Host`], the
/// host's `ldconfig`, sandboxed as [`ContainerSetup::mount`](crate::ContainerSetup::mount)
/// runs it. A failed run leaves the image's cache and links as they were. Returns why the
/// built-in update fell back to the host's `ldconfig`, where it did (`None`: it did not, or
/// another `ldconfig` was asked for). Run it as a
/// `createRuntime` hook: the runtime has made the spec's mounts, `pivot_root` has not
/// happened, and the hook gets the runtime's environment, not the image's. No driver probe.
///
/// With `host_driver_version` (the spec's driver, `550.54.14`), CUDA forward compatibility as
/// `configure --cuda-compat-mode=ldconfig` does it: where the image's
/// `/usr/local/cuda/compat` holds a `libcuda` of a newer major version than the driver
/// ([`compat_libraries`](nvc_mount::compat_libraries)), that directory is scanned first,
/// so the image's compat `libcuda.so.1` is the one its programs load.
///
/// # Errors
///
/// [`ErrorKind::NoContainer`](crate::ErrorKind::NoContainer), the rootfs errors of
/// [`Driver::container`], compat libraries in several directories, or the `ldconfig`
/// run's (`ldcache error: ...`).
pub fn update_ldcache(
    state: &State,
    spec: &Spec,
    ldconfig: Ldconfig,
    folders: &[PathBuf],
    host_driver_version: Option<&str>,
) -> Result<Option<String>, Error> {
    let rootfs = rootfs(state.bundle(), spec)?;
    let container = nvc_mount::Container::from_pid(pid(state)?, &rootfs)
        .map_err(|e| Error::mount(crate::error::Step::Container, e))?;
    let cuda_compat_dir = match host_driver_version {
        Some(version) => {
            let libs = nvc_mount::compat_libraries(&rootfs, &container.dirs.cudart, version)
                .map_err(|e| Error::mount(crate::error::Step::Container, e))?;
            nvc_mount::compat_dir(&libs).map_err(Error::input)?
        }
        None => None,
    };
    let opts = nvc_mount::LdconfigOptions {
        ldconfig,
        no_pivot: false,
        extra_dirs: folders.to_vec(),
        cuda_compat_dir,
        limits: nvc_mount::Limits::default(),
    };
    let run = nvc_mount::update_ldcache(&container, &opts, &bound(spec))
        .map_err(|e| Error::mount(crate::error::Step::Configure, e))?;
    Ok(match run {
        nvc_mount::LdconfigRun::Fallback { reason, .. } => Some(reason),
        _ => None,
    })
}

/// Where the spec binds files (the runtime made them: the spec's own binds and those a CDI
/// spec added): the libraries [`update_ldcache`]'s built-in update may account for.
fn bound(spec: &Spec) -> Vec<PathBuf> {
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    mounts
        .iter()
        .filter(|m| {
            m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind")
        })
        .map(|m| m.destination().clone())
        .collect()
}

/// A symlink for the `create-symlinks` hook of nvc's CDI specs, spelled `TARGET::PATH` as
/// nvidia-ctk's hook takes it: `libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Symlink {
    /// What the link points to (any text, typically a relative file name).
    pub target: PathBuf,
    /// Where the link is made: an absolute container path.
    pub path: PathBuf,
}

impl std::str::FromStr for Symlink {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.split_once("::") {
            Some((target, path))
                if !target.is_empty() && Path::new(path).is_absolute() && !s.contains('\0') =>
            {
                Ok(Symlink {
                    target: target.into(),
                    path: path.into(),
                })
            }
            _ => Err(Error::input(format!(
                "invalid link {s:?} (expected TARGET::/ABSOLUTE/PATH)"
            ))),
        }
    }
}

/// The `create-symlinks` hook of nvc's CDI specs: makes `links` in the container `state`
/// names, each only where nothing is there yet (an image's own file or link stays), as
/// [`ContainerSetup::mount`](crate::ContainerSetup::mount) makes the development links
/// (`libcuda.so -> libcuda.so.1`). Run it as a `createRuntime` hook. Every path is resolved
/// inside the rootfs in the container's mount namespace (a symlink of the image cannot
/// lead it out), missing directories are created as the container's owner, and a failure
/// removes what was made.
///
/// Side effects: a thread of the calling process enters the container's mount namespace.
///
/// # Errors
///
/// [`ErrorKind::NoContainer`](crate::ErrorKind::NoContainer), the rootfs errors of
/// [`Driver::container`], or the step that failed, naming the path.
pub fn create_symlinks(state: &State, spec: &Spec, links: &[Symlink]) -> Result<(), Error> {
    let rootfs = rootfs(state.bundle(), spec)?;
    let container = nvc_mount::Container::from_pid(pid(state)?, &rootfs)
        .map_err(|e| Error::mount(crate::error::Step::Container, e))?;
    let plan = nvc_mount::MountPlan {
        ops: links
            .iter()
            .map(|l| nvc_mount::Op::Symlink {
                path: l.path.clone(),
                target: l.target.clone(),
            })
            .collect(),
        ..nvc_mount::MountPlan::default()
    };
    plan.apply(&container)
        .map(drop)
        .map_err(|e| Error::mount(crate::error::Step::Configure, e))
}

impl Driver {
    /// The hook flow: reads what the image asks for from `spec` and configures the
    /// container `state` names (its pid, the rootfs from the bundle) as
    /// [`Driver::container`] + [`ContainerSetup::mount`](crate::ContainerSetup::mount)
    /// would. `None` when the image asks for no GPU, or is unprivileged and `opts` does
    /// not honour its environment.
    ///
    /// Call it where a `createRuntime` hook runs: the container's namespaces and rootfs
    /// exist, `pivot_root` has not happened.
    ///
    /// # Errors
    ///
    /// [`read_state`]'s and [`request`]'s input errors, then [`Driver::container`]'s and
    /// [`ContainerSetup::mount`](crate::ContainerSetup::mount)'s.
    pub fn configure_oci(
        &self,
        state: &State,
        spec: &Spec,
        opts: &HookOptions,
    ) -> Result<Option<Configured>, Error> {
        if !opts.envvar_when_unprivileged && !privileged(spec) {
            return Ok(None);
        }
        let Some(mut request) = request(spec)? else {
            return Ok(None);
        };
        if opts.disable_require {
            request.requirements.clear();
        }
        request
            .capabilities
            .retain(|c| opts.supported_capabilities.contains(c));
        let rootfs = rootfs(state.bundle(), spec)?;
        let setup = request.requirements.into_iter().fold(
            self.container(pid(state)?, &rootfs)?
                .devices(request.devices)
                .capabilities(&request.capabilities)
                .compat32(request.compat32 && opts.compat32)
                .device_cgroup(!opts.no_cgroups)
                .cuda_compat(opts.cuda_compat)
                .ldconfig(opts.ldconfig.clone()),
            crate::ContainerSetup::require,
        );
        setup.mount().map(Some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The hook accounts for the spec's binds (by type or option) and nothing else of its
    /// mounts.
    #[test]
    fn the_bound_files_are_the_specs_binds() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "mounts": [
                { "destination": "/proc", "type": "proc", "source": "proc" },
                { "destination": "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14",
                  "source": "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14",
                  "options": ["ro", "nosuid", "nodev", "bind"] },
                { "destination": "/opt/lib/libnvidia-ml.so.550.54.14", "type": "bind",
                  "source": "lib/libnvidia-ml.so.550.54.14" },
                { "destination": "/data", "source": "/srv/data", "options": ["rbind"] },
                { "destination": "/run/nvidia-persistenced/socket",
                  "options": ["bind"] },
            ],
        }))
        .unwrap();
        assert_eq!(
            bound(&spec),
            [
                "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14",
                "/opt/lib/libnvidia-ml.so.550.54.14",
                "/data",
                "/run/nvidia-persistenced/socket",
            ]
            .map(PathBuf::from)
        );
    }
}
