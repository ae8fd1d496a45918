//! The OCI hook's reading of its inputs: the runtime's state on stdin, the bundle's
//! `config.json`, and the image's `NVIDIA_*` environment, as nvidia-container-toolkit's
//! legacy hook interprets them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use nvc_core::Capability;
use serde_json::Value;

/// The most bytes of OCI state read from stdin.
pub const STATE_LIMIT: u64 = 1 << 20;

/// The most bytes of the bundle's `config.json` read.
pub const CONFIG_LIMIT: u64 = 16 << 20;

/// Reads all of `from` (named `what` in errors), refusing more than `limit` bytes.
///
/// # Errors
///
/// A message naming `what`: a read error, or more than `limit` bytes.
pub fn read_capped(from: impl Read, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    from.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{what} is larger than {limit} bytes"));
    }
    Ok(bytes)
}

/// What the runtime and the bundle say about the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookInput {
    /// The container's init process.
    pub pid: u32,
    /// Its root filesystem on the host (`root.path`, relative paths taken from the bundle).
    pub rootfs: PathBuf,
    /// The container process's environment (`process.env`).
    pub env: BTreeMap<String, String>,
    /// Whether the container is privileged: `CAP_SYS_ADMIN` in
    /// `process.capabilities.bounding`, as the toolkit decides it.
    pub privileged: bool,
}

/// What the image asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRequest {
    /// `--device` syntax.
    pub devices: String,
    /// Driver capabilities.
    pub capabilities: Vec<Capability>,
    /// Requirements to check.
    pub requirements: Vec<String>,
}

fn field<'v>(v: &'v Value, path: &[&str], what: &str) -> Result<&'v Value, String> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .ok_or_else(|| format!("{what}: no {}", path.join(".")))
}

impl HookInput {
    /// Reads the OCI state (`{"pid": ..., "bundle": ...}`) and the bundle's `config.json`.
    ///
    /// # Errors
    ///
    /// A message naming the document and the field that is missing or malformed.
    pub fn read(state: &[u8]) -> Result<Self, String> {
        let state: Value = serde_json::from_slice(state)
            .map_err(|e| format!("invalid OCI state on stdin: {e}"))?;
        let pid = field(&state, &["pid"], "OCI state")?
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p > 0)
            .ok_or("OCI state: pid is not a process id")?;
        let bundle = PathBuf::from(
            field(&state, &["bundle"], "OCI state")?
                .as_str()
                .ok_or("OCI state: bundle is not a string")?,
        );
        let config_path = bundle.join("config.json");
        let what = config_path.display().to_string();
        let text = std::fs::File::open(&config_path)
            .map_err(|e| format!("cannot read {what}: {e}"))
            .and_then(|f| read_capped(f, CONFIG_LIMIT, &what))?;
        let config: Value =
            serde_json::from_slice(&text).map_err(|e| format!("invalid {what}: {e}"))?;
        let root = field(&config, &["root", "path"], &what)?
            .as_str()
            .ok_or_else(|| format!("{what}: root.path is not a string"))?;
        let rootfs = if Path::new(root).is_absolute() {
            PathBuf::from(root)
        } else {
            bundle.join(root)
        };
        let mut env = BTreeMap::new();
        if let Some(list) = config.pointer("/process/env").and_then(Value::as_array) {
            for entry in list.iter().filter_map(Value::as_str) {
                let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        let privileged = config
            .pointer("/process/capabilities/bounding")
            .and_then(Value::as_array)
            .is_some_and(|caps| caps.iter().any(|c| c.as_str() == Some("CAP_SYS_ADMIN")));
        Ok(HookInput {
            pid,
            rootfs,
            env,
            privileged,
        })
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
    /// An unknown capability name, naming it.
    pub fn request(&self) -> Result<Option<GpuRequest>, String> {
        let env = |k: &str| self.env.get(k).map(String::as_str);
        let devices = match (env("NVIDIA_VISIBLE_DEVICES"), env("CUDA_VERSION")) {
            (None, Some(_)) => "all",
            (None | Some("" | "void"), _) => return Ok(None),
            (Some(list), _) => list,
        };
        let capabilities = match env("NVIDIA_DRIVER_CAPABILITIES").unwrap_or("") {
            "" => vec![Capability::Utility, Capability::Compute],
            "all" => Capability::ALL.to_vec(),
            list => list
                .split(',')
                .filter(|c| !c.is_empty())
                .map(|c| {
                    Capability::from_name(c).ok_or_else(|| {
                        format!("unknown driver capability {c:?} in NVIDIA_DRIVER_CAPABILITIES")
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let disabled = env("NVIDIA_DISABLE_REQUIRE")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
        let mut requirements: Vec<String> = if disabled {
            Vec::new()
        } else {
            self.env
                .iter()
                .filter(|(k, v)| k.starts_with("NVIDIA_REQUIRE_") && !v.is_empty())
                .map(|(_, v)| v.clone())
                .collect()
        };
        if !disabled
            && env("NVIDIA_REQUIRE_CUDA").is_none()
            && let Some(version) = env("CUDA_VERSION")
        {
            let mut parts = version.split('.');
            if let (Some(major), Some(minor)) = (parts.next(), parts.next()) {
                requirements.push(format!("cuda>={major}.{minor}"));
            }
        }
        Ok(Some(GpuRequest {
            devices: devices.to_owned(),
            capabilities,
            requirements,
        }))
    }
}
