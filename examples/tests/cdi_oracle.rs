//! nvc's CDI specs and injection against the reference Rust implementation, the
//! `container-device-interface` crate, run as `cdi-oracle/` (outside the workspace: its
//! dependencies are too heavy for nvc's build). `.ci/run` builds it; elsewhere the tests skip,
//! with the command that builds it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nvc_testkit::{DeviceNodes, Host, Scenario};
use serde_json::Value;

/// The oracle's binary: `$NVC_CDI_ORACLE`, or cdi-oracle's debug build.
fn oracle() -> Option<PathBuf> {
    let path = std::env::var_os("NVC_CDI_ORACLE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../cdi-oracle/target/debug/nvc-cdi-oracle"),
        PathBuf::from,
    );
    if path.is_file() {
        Some(path)
    } else {
        nvc_testkit::skip!(
            "the CDI oracle {} is not built (cargo build --manifest-path cdi-oracle/Cargo.toml)",
            path.display()
        );
        None
    }
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn nvc_cdi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nvc-cdi"))
        .args(args)
        .output()
        .unwrap()
}

/// Every spec nvc generates — each scenario with GPUs, each naming strategy, JSON and YAML —
/// is valid for the reference implementation (schema, version, names, edits), and it lists
/// the same devices as `nvc-cdi list`.
#[test]
fn generated_specs_validate_with_the_reference_implementation() {
    let Some(oracle) = oracle() else { return };
    let strategies: &[&[&str]] = &[
        &[],
        &["--device-name-strategy", "uuid"],
        &["--device-name-strategy", "type-index"],
        &[
            "--device-name-strategy",
            "index",
            "--device-name-strategy",
            "uuid",
        ],
    ];
    for name in ["single", "dgx", "mig", "nocache", "legacy32"] {
        let dir = tempfile::tempdir().unwrap();
        let _host = Host::build(&Scenario::builtin(name).unwrap(), dir.path()).unwrap();
        for (i, strategy) in strategies.iter().enumerate() {
            for ext in ["json", "yaml"] {
                let cdi = tempfile::tempdir().unwrap();
                let file = cdi.path().join(format!("nvidia.{ext}"));
                let mut args = vec!["generate", "--driver-root"];
                args.push(dir.path().to_str().unwrap());
                args.extend(["--output", file.to_str().unwrap()]);
                args.extend(strategy.iter());
                ok("nvc-cdi generate", nvc_cdi(&args));
                let what = format!("{name}, strategy {i}, {ext}");
                let theirs = ok(
                    &what,
                    Command::new(&oracle)
                        .arg("validate")
                        .arg(&file)
                        .output()
                        .unwrap(),
                );
                let ours = ok(
                    &what,
                    nvc_cdi(&["list", "--spec-dir", cdi.path().to_str().unwrap()]),
                );
                let mut ours: Vec<&str> = ours.lines().collect();
                ours.sort_unstable();
                assert_eq!(theirs.lines().collect::<Vec<_>>(), ours, "{what}");
            }
        }
    }
}

/// An OCI config as a runtime's `spec` command writes it, with something of each kind the
/// edits replace or add to.
const CONFIG: &str = r#"{
  "ociVersion": "1.0.2",
  "process": {
    "user": {"uid": 0, "gid": 0, "additionalGids": [5]},
    "args": ["sh"],
    "env": ["NVIDIA_VISIBLE_DEVICES=all", "PATH=/usr/bin:/bin"],
    "cwd": "/"
  },
  "root": {"path": "rootfs"},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
    {"destination": "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "type": "bind",
     "source": "/nonexistent", "options": ["ro", "bind"]}
  ],
  "hooks": {"createRuntime": [{"path": "/bin/true"}]},
  "linux": {
    "resources": {"devices": [{"allow": false, "access": "rwm"}]},
    "namespaces": [{"type": "mount"}]
  }
}"#;

/// The environment as the Go reference library (podman, containerd, CRI-O) leaves it: an
/// edit replaces a variable already set, in place. The Rust crate appends instead, so the
/// image's `NVIDIA_VISIBLE_DEVICES=all` would stay first, and first is what `getenv` finds;
/// nvc does what Go does.
fn replaced(env: Value) -> Value {
    let mut out: Vec<String> = Vec::new();
    for var in env
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let key = var.split('=').next();
        match out.iter_mut().find(|v| v.split('=').next() == key) {
            Some(old) => var.clone_into(old),
            None => out.push(var.to_owned()),
        }
    }
    out.into()
}

/// The mounts in the order the Go reference library leaves them: sorted, stably, by the
/// number of components of the destination, so that a parent is mounted before what is
/// mounted inside it. The Rust crate leaves them in the spec's order; nvc does what Go does.
fn sorted(mounts: Value) -> Value {
    let mut mounts = mounts.as_array().cloned().unwrap_or_default();
    mounts.sort_by_key(|m| {
        m["destination"]
            .as_str()
            .map_or(0, |d| Path::new(d).components().count())
    });
    mounts.into()
}

/// The lines of two pretty-printed values, `-` nvc's, `+` the reference's, from where they
/// start to differ.
fn diff(ours: &Value, theirs: &Value) -> String {
    let (ours, theirs) = (format!("{ours:#}"), format!("{theirs:#}"));
    let (a, b): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), theirs.lines().collect());
    let same = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let a = a[same..].iter().map(|l| format!("- {l}"));
    let b = b[same..].iter().map(|l| format!("+ {l}"));
    let mut out = format!("(the first {same} lines agree)\n");
    for line in a.chain(b).take(80) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The parts of an OCI config that CDI edits touch.
fn edited(config: &Value) -> Vec<(&'static str, Value)> {
    let at = |p: &str| config.pointer(p).cloned().unwrap_or(Value::Null);
    vec![
        ("env", replaced(at("/process/env"))),
        ("additionalGids", at("/process/user/additionalGids")),
        ("mounts", sorted(at("/mounts"))),
        ("hooks", at("/hooks")),
        ("devices", at("/linux/devices")),
        ("device rules", at("/linux/resources/devices")),
    ]
}

/// `nvc-cdi inject` edits a config exactly as the reference implementation does, for a
/// device by index, by UUID, a MIG device, `all`, and several at once. Root: the spec's
/// device nodes are real nodes on the simulated host, their numbers read by both.
#[test]
fn injection_matches_the_reference_implementation() {
    let Some(oracle) = oracle() else { return };
    if !nix::unistd::geteuid().is_root() {
        nvc_testkit::skip!("the simulated host's device nodes need root");
        return;
    }
    for (name, devices) in [
        ("dgx", &["nvidia.com/gpu=1"][..]),
        ("dgx", &["nvidia.com/gpu=all"]),
        ("dgx", &["nvidia.com/gpu=0", "nvidia.com/gpu=7"]),
        ("mig", &["nvidia.com/gpu=0:1"]),
        ("mig", &["nvidia.com/gpu=all"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::build(&Scenario::builtin(name).unwrap(), dir.path()).unwrap();
        assert!(
            matches!(host.device_nodes_state(), DeviceNodes::Created),
            "root makes the simulated device nodes"
        );
        let cdi = tempfile::tempdir().unwrap();
        ok(
            "nvc-cdi generate",
            nvc_cdi(&[
                "generate",
                "--driver-root",
                dir.path().to_str().unwrap(),
                "--output",
                cdi.path().join("nvidia.json").to_str().unwrap(),
            ]),
        );
        let what = format!("{name} {devices:?}");
        let bundle = tempfile::tempdir().unwrap();
        let config = bundle.path().join("config.json");
        std::fs::write(&config, CONFIG).unwrap();
        let theirs = ok(
            &what,
            Command::new(&oracle)
                .arg("inject")
                .arg(&config)
                .arg(cdi.path())
                .args(devices)
                .output()
                .unwrap(),
        );
        let mut args = vec!["inject", "--spec-dir", cdi.path().to_str().unwrap()];
        for d in devices {
            args.extend(["--device", d]);
        }
        args.push(config.to_str().unwrap());
        ok(&what, nvc_cdi(&args));
        let ours: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        let theirs: Value = serde_json::from_str(&theirs).unwrap();
        for ((part, ours), (_, theirs)) in edited(&ours).into_iter().zip(edited(&theirs)) {
            assert!(
                ours == theirs,
                "{what}: {part} differ:\n{}",
                diff(&ours, &theirs)
            );
        }
    }
}
