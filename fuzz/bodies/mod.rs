//! The bodies of the fuzz targets over nvc's parsers of bytes it does not control (the
//! image's configuration, the container's `/proc` files, the user's options, CDI specs),
//! shared by `fuzz/fuzz_targets/*` and the stable replay of the corpora
//! (`examples/tests/fuzz_corpus.rs`), so that `cargo test` runs exactly what the fuzzer ran.
//! Each body may see its input rejected; it may not panic, and what it accepts keeps the
//! properties asserted here. (The ld.so.cache and ELF bodies live with nvc-ldcache.)

use std::path::{Component, Path};

use nvc_core::cdi::{Format, Registry, Spec};
use nvc_core::oci;
use nvc_core::oci::oci_spec::runtime::Spec as OciSpec;
use nvc_driver::procfs::{
    cap_device_minor, char_major, device_file_mode, gpu_information, mig_minors, nvrm_version,
};
use nvc_driver::{DeviceRequest, DeviceSpec, Facts, Requirement};
use nvc_mount::cgroup::DeviceCgroup;

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A device list (`--device`, `NVIDIA_VISIBLE_DEVICES`): nvc-core and nvc-driver agree;
/// every non-empty token is kept; on a host without GPUs only `all`, `none` and `void`
/// select (nothing), anything else is an unknown device.
pub fn device_list(data: &[u8]) {
    let Some(list) = text(data) else { return };
    let parsed = DeviceRequest::parse(list);
    assert_eq!(
        parsed.is_ok(),
        list.parse::<nvc_core::Devices>().is_ok(),
        "{list:?}"
    );
    let Ok(request) = parsed else { return };
    let tokens = list.split(',').filter(|t| !t.is_empty()).count();
    assert_eq!(request.specs().count(), tokens, "{list:?}");
    let only_all_or_none = request
        .specs()
        .all(|s| matches!(s, DeviceSpec::All | DeviceSpec::Nothing));
    match request.select(&[]) {
        Ok(selection) => {
            assert!(only_all_or_none, "{list:?}");
            assert!(selection.gpus.is_empty(), "{list:?}");
        }
        Err(_) => assert!(!only_all_or_none, "{list:?}"),
    }
}

/// A requirement (`--require`, `NVIDIA_REQUIRE_*`): what parses is satisfied when no fact is
/// known (upstream's rule), and checks against real facts without panicking.
pub fn requirement(data: &[u8]) {
    let Some(expr) = text(data) else { return };
    let Ok(req) = Requirement::parse(expr) else {
        return;
    };
    assert!(req.check(&Facts::default()).is_ok(), "{expr:?}");
    let _ = req.check(&Facts {
        cuda: Some("12.4"),
        driver: Some("550.54.14"),
        arch: Some("9.0"),
        brand: Some("Nvidia"),
    });
}

/// A `/proc/<pid>/cgroup` file and a `mountinfo` table (split at the first NUL byte): the
/// device cgroup found is below the hierarchy's mount, never above it.
pub fn proc_cgroup(data: &[u8]) {
    let (cgroup, mountinfo) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(cg) = DeviceCgroup::parse(cgroup, mountinfo, Path::new("/")) {
        assert!(cg.path.is_absolute(), "{:?}", cg.path);
        assert!(
            cg.path.components().all(|c| c != Component::ParentDir),
            "{:?}",
            cg.path
        );
    }
}

/// The driver's `/proc` files (`version`, `/proc/devices`, capability files, `mig-minors`,
/// GPU `information`):
/// what is read is well formed, and a capability file named by `mig-minors` stays inside the
/// capabilities directory.
pub fn procfs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(version) = nvrm_version(&text) {
        assert!(version.contains('.'), "{version:?}");
        assert!(version.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    }
    let _ = char_major(&text, "nvidia-caps");
    let _ = char_major(&text, "nvidia-caps-imex-channels");
    let _ = cap_device_minor(&text);
    let _ = device_file_mode(&text);
    if let Some(gpu) = gpu_information(&text) {
        // Values are trimmed, whole lines' ends: the probe without NVML uses them as is.
        for v in [&gpu.model, &gpu.uuid, &gpu.bus_location] {
            assert_eq!(v.trim(), v.as_str(), "{v:?}");
            assert!(!v.contains('\n'), "{v:?}");
        }
    }
    for (file, _) in mig_minors(&text, 64) {
        assert!(
            Path::new(&file)
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "{file:?}"
        );
    }
}

/// The OCI state on a hook's stdin: what is accepted has a process id.
pub fn oci_state(data: &[u8]) {
    if let Ok(state) = oci::read_state(data) {
        assert!(state.pid().is_some_and(|p| p > 0), "{state:?}");
    }
}

/// An image's `config.json` as the hook reads it: privilege, the GPU request from its
/// environment, and the rootfs, which is absolute.
pub fn oci_config(data: &[u8]) {
    let Ok(spec) = serde_json::from_slice::<OciSpec>(data) else {
        return;
    };
    let _ = oci::privileged(&spec);
    let _ = oci::request(&spec);
    if let Ok(rootfs) = oci::rootfs(Path::new("/run/bundle"), &spec) {
        assert!(rootfs.is_absolute(), "{rootfs:?}");
    }
}

/// A CDI spec, JSON and YAML: what parses is valid, serialises and parses back to itself,
/// and every device it names resolves to its edits.
pub fn cdi_spec(data: &[u8]) {
    for format in [Format::Json, Format::Yaml] {
        let Ok(spec) = Spec::from_bytes(data, format) else {
            continue;
        };
        let bytes = spec.to_bytes(format).expect("a valid spec serialises");
        assert_eq!(
            Spec::from_bytes(&bytes, format).expect("and parses back"),
            spec
        );
        let registry = Registry::from_specs(vec![spec]);
        for name in registry.devices() {
            assert!(registry.edits(&[&name]).is_ok(), "{name}");
        }
    }
}

/// An image's `ld.so.conf` (or an included file): every directory line is absolute, and
/// each `include` pattern matches names (and, split at its first NUL, the input itself)
/// exactly as a table-driven reference matcher does.
pub fn ld_so_conf(data: &[u8]) {
    use nvc_mount::ldconf::{Line, parse, wildcard};
    let (text, name) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"x86_64-linux-gnu.conf"[..]),
    };
    let Ok(lines) = parse(text) else { return };
    for line in lines {
        match line {
            Line::Dir(dir) => assert!(dir.starts_with(b"/"), "{dir:?}"),
            Line::Include(pattern) => {
                let last = pattern.rsplit(|&b| b == b'/').next().unwrap_or_default();
                for name in [name, b"libc.conf", b"", b"aaaaaaaaaaaaaaaaaaaaaaaab"] {
                    if last.len() * name.len() <= 1 << 16 {
                        assert_eq!(
                            wildcard(last, name),
                            reference_wildcard(last, name),
                            "{last:?} {name:?}"
                        );
                    }
                }
            }
        }
    }
}

/// `*` and `?` matching by dynamic programming over (pattern, name) prefixes.
fn reference_wildcard(pattern: &[u8], name: &[u8]) -> bool {
    // matched[j]: the pattern prefix so far matches name[..j].
    let mut matched = vec![false; name.len() + 1];
    matched[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        for j in 0..=name.len() {
            next[j] = match p {
                b'*' => matched[j] || (j > 0 && next[j - 1]),
                b'?' => j > 0 && matched[j - 1],
                c => j > 0 && matched[j - 1] && name[j - 1] == c,
            };
        }
        matched = next;
    }
    matched[name.len()]
}
