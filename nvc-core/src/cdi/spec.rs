//! The CDI specification's types (<https://github.com/cncf-tags/container-device-interface>,
//! SPEC.md 0.8.0), written from the specification with serde; validation of the rules a
//! consumer checks; and the minimum version the content needs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A CDI spec: one vendor/class of devices and the edits that give them to a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// The CDI version the content needs ([`Spec::minimum_version`]).
    pub cdi_version: String,
    /// `vendor/class` (`nvidia.com/gpu`).
    pub kind: String,
    /// Key-value pairs for consumers (CDI 0.6.0).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The devices, by name.
    pub devices: Vec<Device>,
    /// Edits applied whenever any device of the spec is requested.
    #[serde(default, skip_serializing_if = "ContainerEdits::is_empty")]
    pub container_edits: ContainerEdits,
}

/// A device a user can request (`nvidia.com/gpu=0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Its name: alphanumerics, `-`, `_`, `.` and `:`, starting and ending alphanumeric.
    pub name: String,
    /// Key-value pairs for consumers (CDI 0.6.0).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Edits applied when this device is requested.
    pub container_edits: ContainerEdits,
}

/// Edits to a container's OCI spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEdits {
    /// `NAME=VALUE` entries appended to the environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Device nodes to create and allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_nodes: Vec<DeviceNode>,
    /// OCI hooks to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<Hook>,
    /// Mounts to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Supplementary groups for the container process (CDI 0.7.0; 0 is ignored).
    #[serde(
        default,
        rename = "additionalGids",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_gids: Vec<u32>,
}

impl ContainerEdits {
    /// Whether there is no edit at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.device_nodes.is_empty()
            && self.hooks.is_empty()
            && self.mounts.is_empty()
            && self.additional_gids.is_empty()
    }
}

/// A device node in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    /// Its path in the container.
    pub path: PathBuf,
    /// Its path on the host when it differs (CDI 0.5.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<PathBuf>,
    /// `c`, `b`, `u` or `p`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Major number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    /// Minor number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    /// File mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    /// Cgroup permissions (`rw`, `rwm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    /// Owner in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// A mount in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// Source on the host.
    pub host_path: PathBuf,
    /// Destination in the container.
    pub container_path: PathBuf,
    /// Filesystem type (CDI 0.4.0).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// OCI mount options (`ro`, `nosuid`, `nodev`, `bind`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// An OCI hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    /// `createRuntime`, `createContainer`, `startContainer`, `poststart`, `poststop`
    /// (or `prestart`).
    pub hook_name: String,
    /// Absolute path of the program.
    pub path: PathBuf,
    /// Its arguments, `argv[0]` first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Its environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Seconds before the runtime gives up on it (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
}

/// A rule of the CDI specification a spec breaks, naming where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub(crate) String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hook names OCI runtimes run.
const HOOK_NAMES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// A device name: alphanumerics and `-`, `_`, `.`, `:`, beginning and ending with an
/// alphanumeric (the reference library's `ValidateDeviceName`).
fn valid_device_name(name: &str) -> bool {
    name.starts_with(alnum)
        && name.ends_with(alnum)
        && name
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.' | ':'))
}

/// A kind's vendor (a DNS subdomain: labels of alphanumerics and `-`, dot-separated, at
/// most 253 characters) and class (at most 63 characters of alphanumerics, `-`, `_`, `.`,
/// beginning and ending alphanumeric).
fn valid_kind(kind: &str) -> bool {
    let Some((vendor, class)) = kind.split_once('/') else {
        return false;
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.starts_with(alnum)
            && l.ends_with(alnum)
            && l.chars().all(|c| alnum(c) || c == '-')
    };
    vendor.len() <= 253
        && vendor.split('.').all(label_ok)
        && !class.is_empty()
        && class.len() <= 63
        && class.starts_with(alnum)
        && class.ends_with(alnum)
        && class
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// A fully qualified device name, `vendor/class=name` (`nvidia.com/gpu=0`), each part valid.
#[cfg(feature = "oci")]
pub(crate) fn qualified_name(name: &str) -> bool {
    name.split_once('=')
        .is_some_and(|(kind, device)| valid_kind(kind) && valid_device_name(device))
}

impl Spec {
    /// The lowest CDI version whose consumers understand this content, as the reference
    /// Go library decides it: 0.7.0 for additional GIDs, 0.6.0 for annotations or a dot in
    /// the class, 0.5.0 for device node host paths or a device name starting with a digit,
    /// 0.4.0 for mount types, else 0.3.0. (podman 4.3 reads up to 0.5.0.)
    #[must_use]
    pub fn minimum_version(&self) -> &'static str {
        let edits: Vec<&ContainerEdits> = std::iter::once(&self.container_edits)
            .chain(self.devices.iter().map(|d| &d.container_edits))
            .collect();
        let class_has_dot = self
            .kind
            .split_once('/')
            .is_some_and(|(_, c)| c.contains('.'));
        if edits.iter().any(|e| !e.additional_gids.is_empty()) {
            "0.7.0"
        } else if !self.annotations.is_empty()
            || self.devices.iter().any(|d| !d.annotations.is_empty())
            || class_has_dot
        {
            "0.6.0"
        } else if edits
            .iter()
            .any(|e| e.device_nodes.iter().any(|n| n.host_path.is_some()))
            || self
                .devices
                .iter()
                .any(|d| d.name.starts_with(|c: char| c.is_ascii_digit()))
        {
            "0.5.0"
        } else if edits
            .iter()
            .any(|e| e.mounts.iter().any(|m| m.kind.is_some()))
        {
            "0.4.0"
        } else {
            "0.3.0"
        }
    }

    /// Checks the rules a CDI consumer checks: the version is one the content allows, the
    /// kind and every device name are well formed and the names unique, at least one
    /// device, absolute paths everywhere, known hook names, `NAME=VALUE` environment
    /// entries, positive hook timeouts.
    ///
    /// # Errors
    ///
    /// The first rule broken, naming the device or path.
    pub fn validate(&self) -> Result<(), Invalid> {
        let bad = |what: String| Err(Invalid(what));
        let known = ["0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0"];
        if !known.contains(&self.cdi_version.as_str()) {
            return bad(format!("unknown cdiVersion {:?}", self.cdi_version));
        }
        if self.cdi_version.as_str() < self.minimum_version() {
            return bad(format!(
                "cdiVersion {} is too old for this content (it needs {})",
                self.cdi_version,
                self.minimum_version()
            ));
        }
        if !valid_kind(&self.kind) {
            return bad(format!(
                "invalid kind {:?} (expected vendor.com/class)",
                self.kind
            ));
        }
        if self.devices.is_empty() {
            return bad("no device".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for d in &self.devices {
            if !valid_device_name(&d.name) {
                return bad(format!("invalid device name {:?}", d.name));
            }
            if !names.insert(d.name.as_str()) {
                return bad(format!("device {:?} defined twice", d.name));
            }
            validate_edits(&d.container_edits)
                .map_err(|e| Invalid(format!("device {:?}: {e}", d.name)))?;
        }
        validate_edits(&self.container_edits)
    }
}

fn validate_edits(e: &ContainerEdits) -> Result<(), Invalid> {
    let bad = |what: String| Err(Invalid(what));
    for env in &e.env {
        if env.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            return bad(format!("environment entry {env:?} is not NAME=VALUE"));
        }
    }
    for n in &e.device_nodes {
        if !n.path.is_absolute() || n.host_path.as_ref().is_some_and(|h| !h.is_absolute()) {
            return bad(format!(
                "device node {} is not an absolute path",
                n.path.display()
            ));
        }
        if let Some(kind) = &n.kind
            && !matches!(kind.as_str(), "c" | "b" | "u" | "p")
        {
            return bad(format!(
                "device node {}: invalid type {kind:?}",
                n.path.display()
            ));
        }
        if n.permissions
            .as_ref()
            .is_some_and(|p| p.is_empty() || !p.chars().all(|c| matches!(c, 'r' | 'w' | 'm')))
        {
            return bad(format!(
                "device node {}: invalid permissions",
                n.path.display()
            ));
        }
    }
    for m in &e.mounts {
        if !m.host_path.is_absolute() || !m.container_path.is_absolute() {
            return bad(format!(
                "mount {} -> {} is not between absolute paths",
                m.host_path.display(),
                m.container_path.display()
            ));
        }
    }
    for h in &e.hooks {
        if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
            return bad(format!("unknown hook name {:?}", h.hook_name));
        }
        if !h.path.is_absolute() {
            return bad(format!("hook {} is not an absolute path", h.path.display()));
        }
        if h.timeout == Some(0) {
            return bad(format!("hook {}: timeout 0", h.path.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_kinds_follow_the_rules() {
        for ok in ["0", "gpu0", "GPU-1a2b", "0:1", "mig0:1", "a.b_c-d"] {
            assert!(valid_device_name(ok), "{ok}");
        }
        for bad in ["", "-0", "0-", "a/b", "a b", "é"] {
            assert!(!valid_device_name(bad), "{bad}");
        }
        for ok in ["nvidia.com/gpu", "foo.bar.baz/foo-bar123.B_az", "x/y"] {
            assert!(valid_kind(ok), "{ok}");
        }
        for bad in [
            "foo",
            "vendor.com/foo/",
            "vendor.com/foo/bar",
            "-a.com/x",
            "a..b/x",
            "a.com/",
        ] {
            assert!(!valid_kind(bad), "{bad}");
        }
    }
}
