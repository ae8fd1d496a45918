//! Reading and writing spec files (JSON, or YAML with feature `yaml`, by extension) and the
//! devices of the specs in the CDI directories.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::spec::{ContainerEdits, Spec};
use crate::Error;

/// The directories consumers read specs from, lowest priority first (`/etc/cdi`, then
/// `/var/run/cdi`, as the reference library).
pub const SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

/// The most a spec file may hold (16 MiB; a spec for 64 GPUs with MIG is well under 1 MiB).
pub const SPEC_LIMIT: u64 = 16 << 20;

#[cfg(not(feature = "yaml"))]
const YAML_NEEDS_FEATURE: &str = "CDI specs in YAML need nvc-core's feature `yaml`";

/// How a spec file is written, from its extension: `.yaml` or `.yml` is YAML (feature
/// `yaml`), anything else JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// JSON (`.json`).
    Json,
    /// YAML (`.yaml`, `.yml`): what nvidia-ctk writes by default. Needs feature `yaml`.
    Yaml,
}

impl Format {
    /// The format a file's name says.
    #[must_use]
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Json,
        }
    }
}

impl Spec {
    /// The spec in `format`, as a file holds it (pretty-printed JSON, or YAML).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) when YAML is asked for without
    /// feature `yaml`, or the serialiser fails.
    pub fn to_bytes(&self, format: Format) -> Result<Vec<u8>, Error> {
        let failed =
            |e: &dyn std::fmt::Display| Error::input(format!("cannot serialise the CDI spec: {e}"));
        match format {
            Format::Json => {
                let mut out = serde_json::to_vec_pretty(self).map_err(|e| failed(&e))?;
                out.push(b'\n');
                Ok(out)
            }
            #[cfg(feature = "yaml")]
            Format::Yaml => yaml_serde::to_string(self)
                .map(String::into_bytes)
                .map_err(|e| failed(&e)),
            #[cfg(not(feature = "yaml"))]
            Format::Yaml => Err(Error::input(YAML_NEEDS_FEATURE)),
        }
    }

    /// Parses and validates a spec held as `format`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput): not a spec (the parser's
    /// message), a spec that breaks a CDI rule, YAML without feature `yaml`.
    pub fn from_bytes(bytes: &[u8], format: Format) -> Result<Spec, Error> {
        Spec::parse(bytes, format).map_err(Error::input)
    }

    fn parse(bytes: &[u8], format: Format) -> Result<Spec, String> {
        let spec: Spec = match format {
            Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            #[cfg(feature = "yaml")]
            Format::Yaml => yaml_serde::from_slice(bytes).map_err(|e| e.to_string()),
            #[cfg(not(feature = "yaml"))]
            Format::Yaml => return Err(YAML_NEEDS_FEATURE.into()),
        }
        .map_err(|e| format!("invalid CDI spec: {e}"))?;
        spec.validate()
            .map_err(|e| format!("invalid CDI spec: {e}"))?;
        Ok(spec)
    }

    /// Reads the spec file `path` (at most [`SPEC_LIMIT`] bytes, format by extension).
    ///
    /// # Errors
    ///
    /// The I/O error naming the file, or [`Spec::from_bytes`]'s, prefixed with the file.
    pub fn read(path: &Path) -> Result<Spec, Error> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let mut bytes = Vec::new();
        file.take(SPEC_LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if bytes.len() as u64 > SPEC_LIMIT {
            return Err(Error::input(format!(
                "{}: larger than {SPEC_LIMIT} bytes",
                path.display()
            )));
        }
        Spec::parse(&bytes, Format::of(path))
            .map_err(|e| Error::input(format!("{}: {e}", path.display())))
    }
}

/// Writes `spec` to `path` (JSON, or YAML for a `.yaml`/`.yml` name), atomically:
/// validated first, then written to a temporary file beside it, synced and renamed over
/// `path`, so a runtime reading the CDI directory sees the old spec or the new one, never
/// half of one. A missing directory is made (`/var/run/cdi` is a tmpfs directory that
/// exists only once something made it after boot), as `nvidia-ctk cdi generate` does.
///
/// # Errors
///
/// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) for a spec that breaks a CDI rule
/// or YAML without feature `yaml`; the I/O error naming the file or directory.
pub fn write(spec: &Spec, path: &Path) -> Result<(), Error> {
    spec.validate()
        .map_err(|e| Error::input(format!("invalid CDI spec: {e}")))?;
    let bytes = spec.to_bytes(Format::of(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    crate::atomic::write(path, &bytes)
}

/// The specs of the CDI directories, as a consumer sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    /// (file, spec), lowest priority first: directories in the order given, files by name.
    specs: Vec<(PathBuf, Spec)>,
}

impl Registry {
    /// Reads every `*.json` (and `*.yaml`/`*.yml`) spec in `dirs`; a later directory has
    /// priority over an earlier one, as in the reference library. A missing directory is
    /// empty. The directories are the host's (root-owned configuration): files are read as
    /// they are, each capped at [`SPEC_LIMIT`].
    ///
    /// # Errors
    ///
    /// The first file that cannot be read or is no valid spec, named.
    pub fn load<P: AsRef<Path>>(dirs: &[P]) -> Result<Registry, Error> {
        let mut specs = Vec::new();
        for dir in dirs {
            let dir = dir.as_ref();
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(Error::io(format!("cannot read {}", dir.display()), e));
                }
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("json" | "yaml" | "yml")
                    )
                })
                .collect();
            files.sort();
            for file in files {
                let spec = Spec::read(&file)?;
                specs.push((file, spec));
            }
        }
        Ok(Registry { specs })
    }

    /// A registry of the given specs, lowest priority first (for specs not from files).
    #[must_use]
    pub fn from_specs(specs: Vec<Spec>) -> Registry {
        Registry {
            specs: specs.into_iter().map(|s| (PathBuf::new(), s)).collect(),
        }
    }

    /// The fully qualified names of the devices (`nvidia.com/gpu=0`), in file order.
    #[must_use]
    pub fn devices(&self) -> Vec<String> {
        self.specs
            .iter()
            .flat_map(|(_, s)| {
                s.devices
                    .iter()
                    .map(move |d| format!("{}={}", s.kind, d.name))
            })
            .collect()
    }

    /// The edits a request for the devices `names` (fully qualified, `vendor/class=name`)
    /// makes, in order: for each spec used, its own edits once, then each requested
    /// device's. A device defined in several specs comes from the one with priority.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) naming a malformed name or an
    /// unknown device.
    pub fn edits<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<&ContainerEdits>, Error> {
        let mut spec_edits: Vec<usize> = Vec::new();
        let mut device_edits: Vec<&ContainerEdits> = Vec::new();
        for name in names {
            let name = name.as_ref();
            let (kind, device) = name.split_once('=').ok_or_else(|| {
                Error::input(format!(
                    "{name:?}: not a qualified CDI device name (vendor/class=name)"
                ))
            })?;
            let (at, found) = self
                .specs
                .iter()
                .enumerate()
                .rev()
                .filter(|(_, (_, s))| s.kind == kind)
                .find_map(|(at, (_, s))| Some((at, s.devices.iter().find(|d| d.name == device)?)))
                .ok_or_else(|| Error::input(format!("unresolvable CDI device {name}")))?;
            if !spec_edits.contains(&at) {
                spec_edits.push(at);
            }
            device_edits.push(&found.container_edits);
        }
        Ok(spec_edits
            .into_iter()
            .filter_map(|at| self.specs.get(at).map(|(_, s)| &s.container_edits))
            .chain(device_edits)
            .collect())
    }
}
