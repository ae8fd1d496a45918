//! The engines users run, with nvc alone and nothing of NVIDIA's toolkit (tier d: root, the
//! engines fetched by `nvc-testkit/engines/fetch.sh`, which `.ci/run` runs): Docker 26 with
//! nvc's CDI spec (`--device nvidia.com/gpu=N`), with `nvc-hook` installed as
//! `nvidia-container-runtime-hook` (`--gpus`), and with `nvc-runtime` as a runtime of its
//! own (`--runtime=nvc -e NVIDIA_VISIBLE_DEVICES=N`); containerd 1.7 running containers
//! through `nvc-runtime` (`ctr run --runc-binary`), from `NVIDIA_VISIBLE_DEVICES` and from a
//! `cdi.k8s.io/` annotation as Kubernetes' device plugins set them; podman 5.4 (with trixie's
//! glibc, as `fetch.sh` patches it) reading nvc's spec from `/var/run/cdi`. Each container sees its
//! GPU's node alone, the driver's libraries read-only, `libcuda.so.1` in its linker cache; an
//! image with a newer CUDA compat `libcuda` loads that one first.
//!
//! The daemons run on the simulated dgx host (`nvc-sim run`: a private mount namespace
//! whose `/dev` has its nodes), with their own state directories, socket and cgroup parent,
//! and are stopped after; no system service is touched. The toolkit's `config.toml` is the
//! test's own, found through `XDG_CONFIG_HOME` as the toolkit finds it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod e2e;

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::{CgroupTree, SCRIPT, check_gpu, failed, generate, image, libcuda_paths, ok, text};
use nvc_testkit::{DeviceNodes, Host, Scenario};

/// The unpacked engines (`nvc-testkit/engines/fetch.sh`), or `None`, saying why.
fn engines() -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        nvc_testkit::skip!("container engines need root");
        return None;
    }
    if !Path::new("/bin/busybox").exists() {
        nvc_testkit::skip!("no /bin/busybox for the test image (Debian package busybox-static)");
        return None;
    }
    let cache = std::env::var_os("NVC_ENGINES_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("nvc-testkit"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/nvc-testkit"))
        })?;
    let root = cache.join("engines/root");
    if !root.join("usr/sbin/dockerd").is_file() {
        nvc_testkit::skip!(
            "the engines are not in {} (nvc-testkit/engines/fetch.sh fetches them)",
            root.display()
        );
        return None;
    }
    Some(root)
}

/// The simulated dgx host, nvc's CDI spec for it, the toolkit's configuration naming both.
struct Fixture {
    engines: PathBuf,
    host_dir: tempfile::TempDir,
    _host: Host,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        let engines = engines()?;
        let host_dir = tempfile::tempdir().unwrap();
        let host = Host::build(&Scenario::builtin("dgx").unwrap(), host_dir.path()).unwrap();
        if !matches!(host.device_nodes_state(), DeviceNodes::Created) {
            nvc_testkit::skip!("the simulated host's device nodes could not be made");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture {
            engines,
            host_dir,
            _host: host,
            dir,
        };
        generate(f.host_dir.path(), &f.cdi_dir().join("nvidia.json"), &[]);
        let runc = e2e::runtime("runc")?;
        e2e::toolkit_config(
            &f.dir.path().join("xdg"),
            &format!(
                "[nvidia-container-cli]\nroot = {:?}\n{}",
                f.host_dir.path(),
                e2e::runtime_toml(&runc, "auto", &f.cdi_dir())
            ),
        );
        // `docker --gpus` runs `nvidia-container-runtime-hook` from dockerd's PATH.
        let bin = f.dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_nvc-hook"),
            bin.join("nvidia-container-runtime-hook"),
        )
        .unwrap();
        Some(f)
    }

    fn cdi_dir(&self) -> PathBuf {
        self.dir.path().join("cdi")
    }

    /// A fresh image at `name` under the test's directory; with a CUDA compat `libcuda`
    /// newer than any driver when `compat`.
    fn image(&self, name: &str, compat: bool) -> PathBuf {
        let at = self.dir.path().join(name);
        image(&at);
        if compat {
            nvc_testkit::add_cuda_compat(&at, "999.1").unwrap();
        }
        at
    }

    /// Runs the bash `script` on the simulated host with the engines first in `PATH`, the
    /// toolkit's configuration of the test's own, [`SCRIPT`] in `$NVC_SCRIPT`, and the
    /// unified cgroup hierarchy unmounted (runc and the engines then use the v1 hierarchies
    /// alone, as on a v1 host); a hang fails after five minutes. Returns each `run`'s output
    /// and status, by name (see [`runs`]).
    fn session(&self, script: &str) -> Vec<(String, i32, String)> {
        let e = &self.engines;
        let path = format!(
            "{}:{}:{}:{}",
            self.dir.path().join("bin").display(),
            e.join("usr/bin").display(),
            e.join("usr/sbin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let xdg = self.dir.path().join("xdg");
        e2e::sim_session(
            self.host_dir.path(),
            script,
            &[
                ("PATH", path.as_ref()),
                ("XDG_CONFIG_HOME", xdg.as_os_str()),
                ("NVC_SCRIPT", SCRIPT.as_ref()),
                ("ST", self.dir.path().as_os_str()),
            ],
        )
    }
}

/// The compat image's loader finds its compat `libcuda` before the driver's.
fn check_compat(who: &str, out: &str) {
    assert_eq!(
        libcuda_paths(out),
        [
            "/usr/local/cuda/compat/libcuda.so.1",
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
        ],
        "{who}: {out}"
    );
}

#[test]
fn docker_runs_gpu_containers_through_cdi_the_hook_and_nvc_runtime() {
    let Some(f) = Fixture::new() else { return };
    let cgroup = CgroupTree(format!("nvc-e2e-docker-{}", std::process::id()));
    let daemon = f.dir.path().join("daemon.json");
    std::fs::write(
        &daemon,
        serde_json::json!({
            "features": { "cdi": true },
            "cdi-spec-dirs": [f.cdi_dir()],
            "runtimes": { "nvc": { "path": env!("CARGO_BIN_EXE_nvc-runtime") } },
        })
        .to_string(),
    )
    .unwrap();
    let (plain, compat) = (f.image("plain", false), f.image("compat", true));
    let script = format!(
        r#"dockerd --config-file $ST/daemon.json --data-root $ST/docker --exec-root $ST/exec \
             -H unix://$ST/docker.sock --pidfile $ST/docker.pid --cgroup-parent=/{cg} \
             --bridge=none --iptables=false --ip6tables=false >$ST/dockerd.log 2>&1 &
           trap 'kill $(cat $ST/docker.pid); wait' EXIT
           D="docker -H unix://$ST/docker.sock"
           for i in $(seq 100); do $D version >/dev/null 2>&1 && break; sleep 0.2; done
           $D version >/dev/null || {{ cat $ST/dockerd.log; exit 1; }}
           tar -C {plain} -c . | $D import - nvc-e2e >/dev/null || exit 1
           tar -C {compat} -c . | $D import - nvc-e2e-compat >/dev/null || exit 1
           R="$D run --rm --network=none"
           S="/bin/busybox sh -c"
           run cdi $R --device nvidia.com/gpu=1 nvc-e2e $S "$NVC_SCRIPT"
           run gpus $R --gpus device=2 nvc-e2e $S "$NVC_SCRIPT"
           run runtime $R --runtime=nvc -e NVIDIA_VISIBLE_DEVICES=3 nvc-e2e $S "$NVC_SCRIPT"
           run unknown $R --runtime=nvc -e NVIDIA_VISIBLE_DEVICES=42 nvc-e2e /bin/busybox true
           run compat-cdi $R --device nvidia.com/gpu=1 nvc-e2e-compat $S "$NVC_SCRIPT"
           run compat-gpus $R --gpus device=1 nvc-e2e-compat $S "$NVC_SCRIPT"
           run compat-runtime $R --runtime=nvc -e NVIDIA_VISIBLE_DEVICES=1 nvc-e2e-compat $S "$NVC_SCRIPT""#,
        cg = cgroup.0,
        plain = plain.display(),
        compat = compat.display(),
    );
    let runs = f.session(&script);
    check_gpu("docker --device (CDI)", 1, ok(&runs, "cdi"));
    check_gpu("docker --gpus (nvc-hook)", 2, ok(&runs, "gpus"));
    check_gpu("docker --runtime=nvc", 3, ok(&runs, "runtime"));
    // All or nothing: a device no spec defines fails the create, naming it.
    let out = failed(&runs, "unknown");
    assert!(
        out.contains("unresolvable CDI device nvidia.com/gpu=42"),
        "{out}"
    );
    for name in ["compat-cdi", "compat-gpus", "compat-runtime"] {
        let out = ok(&runs, name);
        check_gpu(name, 1, out);
        check_compat(name, out);
    }
}

#[test]
fn containerd_runs_gpu_containers_through_nvc_runtime() {
    let Some(f) = Fixture::new() else { return };
    let cgroup = CgroupTree(format!("nvc-e2e-containerd-{}", std::process::id()));
    std::fs::write(
        f.dir.path().join("containerd.toml"),
        format!(
            "version = 2\nroot = {:?}\nstate = {:?}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\naddress = {:?}\n",
            f.dir.path().join("containerd"),
            f.dir.path().join("containerd-state"),
            f.dir.path().join("containerd.sock"),
        ),
    )
    .unwrap();
    let images: Vec<PathBuf> = ["env", "annotated", "compat", "unknown"]
        .iter()
        .map(|name| f.image(name, *name == "compat"))
        .collect();
    let script = format!(
        r#"containerd --config $ST/containerd.toml >$ST/containerd.log 2>&1 &
           CPID=$!
           trap 'kill $CPID; wait' EXIT
           C="ctr -a $ST/containerd.sock"
           for i in $(seq 100); do $C version >/dev/null 2>&1 && break; sleep 0.2; done
           $C version >/dev/null || {{ cat $ST/containerd.log; exit 1; }}
           R="$C run --rm --rootfs --runc-binary {runtime}"
           S="/bin/busybox sh -c"
           run env $R --cgroup /{cg}/env --env NVIDIA_VISIBLE_DEVICES=4 {env} env $S "$NVC_SCRIPT"
           run annotated $R --cgroup /{cg}/annotated \
               --annotation cdi.k8s.io/nvidia-device-plugin=nvidia.com/gpu=5 \
               {annotated} annotated $S "$NVC_SCRIPT"
           run compat $R --cgroup /{cg}/compat --env NVIDIA_VISIBLE_DEVICES=1 {compat} compat $S "$NVC_SCRIPT"
           run unknown $R --cgroup /{cg}/unknown --env NVIDIA_VISIBLE_DEVICES=GPU-nonesuch {unknown} unknown /bin/busybox true
           $C containers list -q"#,
        runtime = env!("CARGO_BIN_EXE_nvc-runtime"),
        cg = cgroup.0,
        env = images[0].display(),
        annotated = images[1].display(),
        compat = images[2].display(),
        unknown = images[3].display(),
    );
    let runs = f.session(&script);
    check_gpu("ctr NVIDIA_VISIBLE_DEVICES", 4, ok(&runs, "env"));
    check_gpu("ctr cdi.k8s.io annotation", 5, ok(&runs, "annotated"));
    let out = ok(&runs, "compat");
    check_gpu("ctr compat", 1, out);
    check_compat("ctr compat", out);
    let out = failed(&runs, "unknown");
    assert!(
        out.contains(
            "unresolvable CDI device nvidia.com/gpu=GPU-nonesuch (asked by NVIDIA_VISIBLE_DEVICES)"
        ),
        "{out}"
    );
}

#[test]
fn podman_5_runs_gpu_containers_from_nvcs_spec() {
    let Some(f) = Fixture::new() else { return };
    let cgroup = CgroupTree(format!("nvc-e2e-podman5-{}", std::process::id()));
    // Its helper (netavark) from the engines, conmon from the system's PATH.
    let conf = f.dir.path().join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[engine]\nhelper_binaries_dir = [{:?}]\n",
            f.engines.join("usr/lib/podman")
        ),
    )
    .unwrap();
    let (plain, compat) = (f.image("plain", false), f.image("compat", true));
    let script = format!(
        r#"mkdir -p /var/run/cdi && mount -t tmpfs tmpfs /var/run/cdi || exit 1
           cp {cdi}/nvidia.json /var/run/cdi/ || exit 1
           export CONTAINERS_CONF={conf} PODMAN_IGNORE_CGROUPSV1_WARNING=1
           P="podman --root $ST/podman/storage --runroot $ST/podman/run {args}                --ulimit=nofile=1024:1024 --ulimit=nproc=1024:1024 --cgroup-parent=/{cg}"
           run plain $P --device nvidia.com/gpu=1 --rootfs {plain} /bin/busybox sh -c "$NVC_SCRIPT"
           run compat $P --device nvidia.com/gpu=GPU-{uuid} --rootfs {compat} /bin/busybox sh -c "$NVC_SCRIPT"
           podman --version"#,
        cdi = f.cdi_dir().display(),
        conf = conf.display(),
        args = e2e::PODMAN_RUN.join(" "),
        cg = cgroup.0,
        plain = plain.display(),
        compat = compat.display(),
        uuid = gpu1_uuid(&f),
    );
    let runs = f.session(&script);
    check_gpu("podman 5", 1, ok(&runs, "plain"));
    let out = ok(&runs, "compat");
    check_gpu("podman 5 by UUID", 1, out);
    check_compat("podman 5", out);
}

/// GPU 1's UUID on the simulated dgx host, as nvc's spec names it.
fn gpu1_uuid(f: &Fixture) -> String {
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.cdi_dir().join("nvidia.json")).unwrap()).unwrap();
    let devices = spec["devices"].as_array().unwrap();
    let node_of = |d: &serde_json::Value| d["containerEdits"]["deviceNodes"][0]["path"].clone();
    let gpu1 = devices.iter().find(|d| d["name"] == "1").unwrap();
    let by_uuid = devices
        .iter()
        .find(|d| d["name"].as_str().unwrap().starts_with("GPU-") && node_of(d) == node_of(gpu1))
        .unwrap();
    by_uuid["name"]
        .as_str()
        .unwrap()
        .trim_start_matches("GPU-")
        .to_owned()
}

/// `nvc-runtime` fails a `create` it cannot serve before the runtime runs: the bundle's
/// `config.json` byte for byte as it was, the error on stderr and in runc's JSON log (where
/// containerd reads it); and it passes every other command through.
#[test]
fn nvc_runtime_fails_a_create_whole_and_passes_other_commands_through() {
    let Some(runc) = e2e::runtime("runc") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec_dir = dir.path().join("cdi");
    e2e::toolkit_config(dir.path(), &e2e::runtime_toml(&runc, "cdi", &spec_dir));
    let nvc_runtime = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nvc-runtime"))
            .env("XDG_CONFIG_HOME", dir.path())
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .args(args)
            .output()
            .unwrap()
    };
    let version = nvc_runtime(&["--version"]);
    let theirs = Command::new(&runc).arg("--version").output().unwrap();
    assert!(version.status.success(), "{}", text(&version.stderr));
    assert_eq!(version.stdout, theirs.stdout, "runc's own answer");

    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": { "cwd": "/", "args": ["true"], "user": { "uid": 0, "gid": 0 },
                     "env": ["NVIDIA_VISIBLE_DEVICES=0,42"] },
        "root": { "path": "rootfs" },
    })
    .to_string();
    std::fs::write(bundle.join("config.json"), &config).unwrap();
    let log = dir.path().join("log.json");
    let state = dir.path().join("state");
    let out = nvc_runtime(&[
        "--root",
        state.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        bundle.to_str().unwrap(),
        "gpu-test",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("unresolvable CDI device nvidia.com/gpu=0"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("config.json")).unwrap(),
        config
    );
    assert!(!state.exists(), "runc ran");
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(
        line["msg"].as_str().unwrap().contains("nvidia.com/gpu=0"),
        "{line}"
    );
    // `auto` with no spec of the default kind is the legacy mode, whose hook must exist.
    e2e::toolkit_config(dir.path(), &e2e::runtime_toml(&runc, "auto", &spec_dir));
    let out = nvc_runtime(&["create", "--bundle", bundle.to_str().unwrap(), "gpu-test"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("legacy mode: the hook nvidia-container-runtime-hook is not found"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("config.json")).unwrap(),
        config
    );
}

/// `nvc-runtime`'s legacy mode adds the toolkit's hook, once; its CDI mode removes the hook
/// Docker's `--gpus` added (the GPUs come from the spec alone). The runtime executed is a
/// script that keeps the `config.json` it was given and its arguments.
#[test]
fn nvc_runtime_adds_the_hook_in_legacy_mode_and_removes_it_in_cdi_mode() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fake = d.join("fake-runc");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncp {b}/config.json {d}/seen.json && echo \"$@\" >{d}/args\n",
            b = d.join("bundle").display(),
            d = d.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let hook = bin.join("nvidia-container-runtime-hook");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nvc-hook"), &hook).unwrap();
    let bundle = d.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let run = |mode: &str, hooks: serde_json::Value| -> serde_json::Value {
        e2e::toolkit_config(d, &e2e::runtime_toml(&fake, mode, &d.join("cdi")));
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": { "cwd": "/", "args": ["true"], "user": { "uid": 0, "gid": 0 },
                         "env": ["NVIDIA_VISIBLE_DEVICES=0"] },
            "root": { "path": "rootfs" },
            "hooks": hooks,
        });
        std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_nvc-runtime"))
            .env("XDG_CONFIG_HOME", d)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .args(["--root", "/run/x", "create", "--bundle"])
            .arg(&bundle)
            .arg("c1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", text(&out.stderr));
        assert_eq!(
            std::fs::read_to_string(d.join("args")).unwrap().trim(),
            format!("--root /run/x create --bundle {} c1", bundle.display()),
            "the runtime gets the arguments as they were"
        );
        serde_json::from_slice(&std::fs::read(d.join("seen.json")).unwrap()).unwrap()
    };
    // A container that asks for nothing passes through whatever its spec holds: fields and
    // values nvc's OCI types do not know, its bytes unchanged.
    e2e::toolkit_config(
        d,
        &format!("[nvidia-container-runtime]\nruntimes = [{fake:?}]\n"),
    );
    let unknown = r#"{"ociVersion": "1.2.0", "process": {"cwd": "/", "args": ["true"],
        "user": {"uid": 0, "gid": 0}, "capabilities": {"bounding": ["CAP_FUTURE"]}},
        "root": {"path": "rootfs"}, "linux": {"netDevices": {"eth9": {}}}, "x-new": 1}"#;
    std::fs::write(bundle.join("config.json"), unknown).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nvc-runtime"))
        .env("XDG_CONFIG_HOME", d)
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg("c0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(d.join("seen.json")).unwrap(),
        unknown
    );
    let toolkit_hook = serde_json::json!({
        "path": hook, "args": ["nvidia-container-runtime-hook", "prestart"],
    });
    let other = serde_json::json!({ "path": "/usr/bin/true" });
    let seen = run("legacy", serde_json::json!({ "prestart": [other] }));
    assert_eq!(
        seen["hooks"]["prestart"],
        serde_json::json!([other, toolkit_hook])
    );
    // Docker's --gpus added it already: not twice.
    let seen = run("legacy", serde_json::json!({ "prestart": [toolkit_hook] }));
    assert_eq!(seen["hooks"]["prestart"], serde_json::json!([toolkit_hook]));
    // CDI mode: the spec gives the GPU; the hook Docker's --gpus added is removed.
    let host = tempfile::tempdir().unwrap();
    let _host = Host::build(&Scenario::builtin("single").unwrap(), host.path()).unwrap();
    generate(host.path(), &d.join("cdi/nvidia.json"), &[]);
    let seen = run(
        "cdi",
        serde_json::json!({ "prestart": [toolkit_hook, other] }),
    );
    assert_eq!(seen["hooks"]["prestart"], serde_json::json!([other]));
    let devices = seen["linux"]["devices"].as_array().unwrap();
    assert!(
        devices.iter().any(|n| n["path"] == "/dev/nvidia0"),
        "{seen}"
    );
}
