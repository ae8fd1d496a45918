//! Which CDI devices a container asks for (features `cdi` and `oci`): what
//! nvidia-container-runtime's CDI mode reads from an OCI spec, for a runtime shim
//! (`nvc-runtime`) that then applies them with [`Registry::inject`](super::Registry::inject).

use oci_spec::runtime::Spec as OciSpec;

use super::spec::qualified_name;
use crate::Error;

/// Where a container's CDI request is read from, as the NVIDIA container toolkit's
/// `[nvidia-container-runtime.modes.cdi]` configures it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestOptions {
    /// The kind an unqualified `NVIDIA_VISIBLE_DEVICES` entry names (`0` is
    /// `nvidia.com/gpu=0`): the toolkit's `default-kind`.
    pub default_kind: String,
    /// Annotations whose key starts with one of these list fully qualified device names,
    /// comma-separated: the toolkit's `annotation-prefixes` (`cdi.k8s.io/`).
    pub annotation_prefixes: Vec<String>,
    /// Honour `NVIDIA_VISIBLE_DEVICES` from unprivileged containers (no `CAP_SYS_ADMIN` in
    /// the bounding set): the toolkit's
    /// `accept-nvidia-visible-devices-envvar-when-unprivileged`. Annotations, set by the
    /// orchestrator rather than the image, are always honoured.
    pub envvar_when_unprivileged: bool,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            default_kind: "nvidia.com/gpu".into(),
            annotation_prefixes: vec!["cdi.k8s.io/".into()],
            envvar_when_unprivileged: true,
        }
    }
}

/// The annotations of `spec` that list CDI devices (keys under
/// [`RequestOptions::annotation_prefixes`]), as (key, value), keys in byte order.
#[must_use]
pub fn cdi_annotations<'s>(
    spec: &'s OciSpec,
    opts: &RequestOptions,
) -> Vec<(&'s String, &'s String)> {
    let mut annotated: Vec<(&String, &String)> = spec
        .annotations()
        .iter()
        .flatten()
        .filter(|(key, _)| opts.annotation_prefixes.iter().any(|p| key.starts_with(p)))
        .collect();
    annotated.sort();
    annotated
}

/// The fully qualified CDI devices the container `spec` describes asks for, each once, in
/// the order asked:
///
/// 1. the annotations under [`RequestOptions::annotation_prefixes`] (keys in byte order),
///    when any is set — these alone;
/// 2. else `NVIDIA_VISIBLE_DEVICES` of the container's environment: `all` or a
///    comma-separated list, each entry a qualified name or a device of
///    [`RequestOptions::default_kind`] (`0` → `nvidia.com/gpu=0`, `all` →
///    `nvidia.com/gpu=all`); unset on an image with `CUDA_VERSION` (a legacy CUDA image)
///    means `all`; `void`, `none` or empty ask for nothing.
///
/// Either way a container names devices of the default kind's vendor or its subdomains
/// (`nvidia.com/...`, `k8s.device-plugin.nvidia.com/...`) only, where the NVIDIA toolkit
/// passes any qualified name on: the environment is the image's, annotations are the pod
/// author's as much as the device plugin's, and another vendor's spec may mount host paths.
///
/// An empty list asks for nothing: the spec is to be left as it is.
///
/// # Errors
///
/// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput): an annotation entry that is not a
/// qualified name, a list entry that is no valid device name or names another vendor's
/// device, each named with where it came from.
pub fn requested_devices(spec: &OciSpec, opts: &RequestOptions) -> Result<Vec<String>, Error> {
    let mut devices: Vec<String> = Vec::new();
    let mut add = |name: String| {
        if !devices.contains(&name) {
            devices.push(name);
        }
    };
    let annotated = cdi_annotations(spec, opts);
    // The container's spec names devices of the default kind's vendor (or its subdomains:
    // `k8s.device-plugin.nvidia.com/gpu`) only: another vendor's spec on the host (its mounts,
    // its hooks) is not the container's to ask for.
    let vendor = opts
        .default_kind
        .split_once('/')
        .map_or(opts.default_kind.as_str(), |(v, _)| v);
    let subdomain = format!(".{vendor}");
    // A name as asked `from` somewhere, checked: qualified, and of the vendor.
    let check = |name: String, from: &str| {
        if !qualified_name(&name) {
            return Err(Error::input(format!(
                "invalid CDI device name {name:?} {from}"
            )));
        }
        match name.split_once('/') {
            Some((v, _)) if v == vendor || v.ends_with(&subdomain) => Ok(name),
            _ => Err(Error::input(format!(
                "CDI device {name:?} {from}: a container names devices of {vendor} only"
            ))),
        }
    };
    if !annotated.is_empty() {
        for (key, value) in annotated {
            for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                add(check(name.to_owned(), &format!("in annotation {key:?}"))?);
            }
        }
        return Ok(devices);
    }

    let env = crate::oci::environment(spec);
    let list = match (env.get("NVIDIA_VISIBLE_DEVICES"), env.get("CUDA_VERSION")) {
        (Some(list), _) => *list,
        (None, Some(_)) => "all",
        (None, None) => return Ok(devices),
    };
    if matches!(list.trim(), "" | "void" | "none") {
        return Ok(devices);
    }
    if !opts.envvar_when_unprivileged && !crate::oci::privileged(spec) {
        return Ok(devices);
    }
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let name = if entry.contains('=') {
            entry.to_owned()
        } else {
            format!("{}={entry}", opts.default_kind)
        };
        add(check(
            name,
            &format!("from NVIDIA_VISIBLE_DEVICES={list:?}"),
        )?);
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec(env: &[&str], annotations: &[(&str, &str)], privileged: bool) -> OciSpec {
        let caps = if privileged {
            r#""capabilities": { "bounding": ["CAP_SYS_ADMIN"] },"#
        } else {
            ""
        };
        let env = serde_json::to_string(env).unwrap();
        let annotations: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect();
        let annotations = serde_json::to_string(&annotations).unwrap();
        serde_json::from_str(&format!(
            r#"{{ "ociVersion": "1.0.2", "process": {{ {caps} "cwd": "/", "env": {env},
                  "user": {{ "uid": 0, "gid": 0 }} }},
                  "annotations": {annotations} }}"#
        ))
        .unwrap()
    }

    fn devices(spec: &OciSpec) -> Vec<String> {
        requested_devices(spec, &RequestOptions::default()).unwrap()
    }

    #[test]
    fn visible_devices_name_devices_of_the_default_kind_each_once() {
        let s = spec(
            &["NVIDIA_VISIBLE_DEVICES=0, GPU-8a1b,nvidia.com/gpu=0,nvidia.com/mig=1:0,0"],
            &[],
            false,
        );
        assert_eq!(
            devices(&s),
            [
                "nvidia.com/gpu=0",
                "nvidia.com/gpu=GPU-8a1b",
                "nvidia.com/mig=1:0"
            ]
        );
        // Another vendor's device is not the container's to ask for, from its environment
        // or its annotations; NVIDIA's device plugin's own kind is.
        let other = spec(&["NVIDIA_VISIBLE_DEVICES=0,vendor.com/x=y"], &[], true);
        let e = requested_devices(&other, &RequestOptions::default()).unwrap_err();
        assert!(e.to_string().contains("\"vendor.com/x=y\""), "{e}");
        let annotated = spec(&[], &[("cdi.k8s.io/x", "vendor.com/x=y")], false);
        let e = requested_devices(&annotated, &RequestOptions::default()).unwrap_err();
        assert!(e.to_string().contains("annotation \"cdi.k8s.io/x\""), "{e}");
        let plugin = spec(
            &[],
            &[("cdi.k8s.io/p", "k8s.device-plugin.nvidia.com/gpu=GPU-1")],
            false,
        );
        assert_eq!(devices(&plugin), ["k8s.device-plugin.nvidia.com/gpu=GPU-1"]);
        let lookalike = spec(&[], &[("cdi.k8s.io/p", "evilnvidia.com/gpu=0")], false);
        requested_devices(&lookalike, &RequestOptions::default()).unwrap_err();
        let all = spec(&["NVIDIA_VISIBLE_DEVICES=all"], &[], false);
        assert_eq!(devices(&all), ["nvidia.com/gpu=all"]);
        let opts = RequestOptions {
            default_kind: "example.com/device".into(),
            ..RequestOptions::default()
        };
        assert_eq!(
            requested_devices(&all, &opts).unwrap(),
            ["example.com/device=all"]
        );
    }

    #[test]
    fn nothing_is_asked_by_void_none_empty_or_an_image_without_cuda() {
        for env in [
            &["NVIDIA_VISIBLE_DEVICES=void"][..],
            &["NVIDIA_VISIBLE_DEVICES=none"],
            &["NVIDIA_VISIBLE_DEVICES="],
            &["PATH=/bin"],
        ] {
            assert!(devices(&spec(env, &[], true)).is_empty(), "{env:?}");
        }
        // A legacy CUDA image (CUDA_VERSION, no NVIDIA_VISIBLE_DEVICES) asks for all.
        assert_eq!(
            devices(&spec(&["CUDA_VERSION=12.2.0"], &[], false)),
            ["nvidia.com/gpu=all"]
        );
    }

    #[test]
    fn annotations_alone_count_when_set_and_must_be_qualified() {
        let s = spec(
            &["NVIDIA_VISIBLE_DEVICES=all"],
            &[
                ("cdi.k8s.io/b", "nvidia.com/gpu=1"),
                ("cdi.k8s.io/a", "nvidia.com/gpu=0,nvidia.com/gpu=1"),
                ("other/x", "nvidia.com/gpu=7"),
            ],
            false,
        );
        assert_eq!(devices(&s), ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]);
        let bad = spec(&[], &[("cdi.k8s.io/x", "0")], false);
        let e = requested_devices(&bad, &RequestOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains(r#""0" in annotation "cdi.k8s.io/x""#),
            "{e}"
        );
    }

    #[test]
    fn an_unprivileged_containers_environment_is_ignored_when_so_configured() {
        let opts = RequestOptions {
            envvar_when_unprivileged: false,
            ..RequestOptions::default()
        };
        let env = ["NVIDIA_VISIBLE_DEVICES=1"];
        assert!(
            requested_devices(&spec(&env, &[], false), &opts)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            requested_devices(&spec(&env, &[], true), &opts).unwrap(),
            ["nvidia.com/gpu=1"]
        );
        // The orchestrator's annotations are not the image's environment.
        let annotated = spec(&env, &[("cdi.k8s.io/x", "nvidia.com/gpu=2")], false);
        assert_eq!(
            requested_devices(&annotated, &opts).unwrap(),
            ["nvidia.com/gpu=2"]
        );
    }

    #[test]
    fn a_malformed_entry_is_refused_naming_the_variable() {
        let s = spec(&["NVIDIA_VISIBLE_DEVICES=0,../x"], &[], false);
        let e = requested_devices(&s, &RequestOptions::default()).unwrap_err();
        assert!(e.to_string().contains("nvidia.com/gpu=../x"), "{e}");
        assert!(e.to_string().contains("NVIDIA_VISIBLE_DEVICES"), "{e}");
    }
}
