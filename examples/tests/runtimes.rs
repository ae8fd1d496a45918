//! End to end with real consumers on the simulated dgx host (tier d: root, the runtimes
//! installed by `.ci/run`): podman reading nvc's CDI spec from a CDI directory, as root and
//! rootless (an unprivileged user with subordinate ids); runc, crun and youki with the spec
//! applied by `nvc-cdi inject`; and runc, crun and youki running `nvc-hook` as the legacy
//! `createRuntime` hook. From inside each container: the nodes of the selected GPU only,
//! the driver's libraries mounted read-only, the `libcuda.so` development link, and
//! `ldconfig -p` listing `libcuda.so.1` (the hooks ran).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use nvc_testkit::{DeviceNodes, Host, Scenario};

/// What the container prints, section by section.
const SCRIPT: &str = "\
echo '## nodes'; /bin/busybox ls /dev | /bin/busybox grep nvidia; \
echo '## mounts'; /bin/busybox grep ' /usr/lib/x86_64-linux-gnu/libcuda.so.' /proc/self/mountinfo; \
echo '## link'; /bin/busybox readlink /usr/lib/x86_64-linux-gnu/libcuda.so; \
echo '## cache'; /sbin/ldconfig -p; \
echo '## gpus'; /bin/busybox ls /proc/driver/nvidia/gpus 2>/dev/null; \
echo '## end'";

/// The simulated dgx host and nvc's CDI spec for it.
struct Fixture {
    host_dir: tempfile::TempDir,
    _host: Host,
    cdi_dir: tempfile::TempDir,
}

fn fixture() -> Option<Fixture> {
    if !nix::unistd::geteuid().is_root() {
        nvc_testkit::skip!("container runtimes need root");
        return None;
    }
    if !Path::new("/bin/busybox").exists() {
        nvc_testkit::skip!("no /bin/busybox for the test image (Debian package busybox-static)");
        return None;
    }
    let host_dir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin("dgx").unwrap(), host_dir.path()).unwrap();
    if !matches!(host.device_nodes_state(), DeviceNodes::Created) {
        nvc_testkit::skip!("the simulated host's device nodes could not be made");
        return None;
    }
    let cdi_dir = tempfile::tempdir().unwrap();
    generate(host_dir.path(), &cdi_dir.path().join("nvidia.json"), &[]);
    Some(Fixture {
        host_dir,
        _host: host,
        cdi_dir,
    })
}

/// `nvc-cdi generate` for the host at `root` into `out`, with nvc's hooks.
fn generate(root: &Path, out: &Path, extra: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_nvc-cdi"))
        .arg("generate")
        .arg("--driver-root")
        .arg(root)
        .arg("--hook")
        .arg(env!("CARGO_BIN_EXE_nvc-hook"))
        .arg("--output")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A runtime on this machine: its path, or `None` (skipped, with the reason).
fn runtime(name: &str) -> Option<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|c| c.join("bin"));
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(cargo_bin)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        nvc_testkit::skip!("{name} is not installed (.ci/run installs it)");
    }
    found
}

/// A fresh image: busybox, the host's static `ldconfig`, a Debian layout, no linker cache.
fn image(at: &Path) {
    nvc_testkit::debian_image(at, &["bin", "dev", "proc", "sys", "tmp"], true).unwrap();
    std::fs::copy("/bin/busybox", at.join("bin/busybox")).unwrap();
}

/// A bundle made by the runtime's own `spec`, running [`SCRIPT`] with `env` added, and
/// (for the legacy hook) the host's `/proc` in place of a new procfs: on the simulated host
/// `/proc/driver/nvidia` exists only in `nvc-sim run`'s view of the host's procfs.
fn bundle(runtime: &Path, env: &[&str], host_proc: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    image(&dir.path().join("rootfs"));
    let out = Command::new(runtime)
        .arg("spec")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["args"] = serde_json::json!(["/bin/busybox", "sh", "-c", SCRIPT]);
    config["process"]["terminal"] = false.into();
    config["root"] = serde_json::json!({ "path": "rootfs", "readonly": false });
    for e in env {
        config["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push((*e).into());
    }
    if host_proc {
        let mounts = config["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/proc");
        mounts.insert(
            0,
            serde_json::json!({ "destination": "/proc", "type": "bind", "source": "/proc",
                "options": ["rbind", "nosuid", "nodev", "noexec"] }),
        );
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    dir
}

/// Runs the bundle with `runtime` (its state under a directory of the test's own), under
/// `nvc-sim run` when `sim` names the host, and deletes the container after.
fn run(runtime: &Path, bundle: &Path, sim: Option<&Path>) -> String {
    // A runtime that hangs (youki 0.7 now and then misses its container's exit and waits
    // for ever, the container a zombie) is stopped after a minute and run once more; a
    // second hang fails the test.
    for attempt in 0..2 {
        let out = run_once(runtime, bundle, sim);
        let timed_out = matches!(out.status.code(), Some(124 | 137));
        if timed_out && attempt == 0 {
            eprintln!(
                "{} hung (killed after 60 s), running it again: {}",
                runtime.display(),
                text(&out.stdout)
            );
            continue;
        }
        assert!(
            out.status.success(),
            "{} failed: {}{}",
            runtime.display(),
            text(&out.stdout),
            text(&out.stderr)
        );
        return text(&out.stdout);
    }
    unreachable!("the second attempt returns or fails")
}

fn run_once(runtime: &Path, bundle: &Path, sim: Option<&Path>) -> Output {
    let state = tempfile::tempdir().unwrap();
    // Unique per run: the tests run in parallel, and the id names the container's cgroup.
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let id = format!("nvc-e2e-{}-{n}", std::process::id());
    let rt = runtime.display();
    let (st, b) = (state.path().display(), bundle.display());
    // crun refuses hybrid cgroups while the unified hierarchy holds a controller: its
    // private mount namespace goes without that hierarchy. A runtime killed on a hang may
    // leave the container's processes and cgroups (youki's `:youki:ID` in each v1
    // hierarchy) behind `delete -f`: they are killed and removed too.
    let script = format!(
        "umount -l /sys/fs/cgroup/unified 2>/dev/null; \
         timeout -k 5 60 {rt} --root {st} run --bundle {b} {id}; rc=$?; \
         {rt} --root {st} delete -f {id} 2>/dev/null; \
         for cg in /sys/fs/cgroup/*/:youki:{id} /sys/fs/cgroup/*/{id}; do \
             [ -d \"$cg\" ] || continue; \
             xargs -r kill -9 <\"$cg/cgroup.procs\" 2>/dev/null; sleep 0.2; rmdir \"$cg\"; \
         done 2>/dev/null; exit $rc"
    );
    let mut cmd = match sim {
        Some(host) => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_nvc-cdi").replace("nvc-cdi", "nvc-sim"));
            c.arg("run").arg(host).args(["--", "sh", "-c", &script]);
            c
        }
        None => {
            let mut c = Command::new("unshare");
            c.args(["-m", "sh", "-c", &script]);
            c
        }
    };
    cmd.output().unwrap()
}

/// The lines of one section of [`SCRIPT`]'s output.
fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.split(&format!("## {name}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} section in:\n{out}"))
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .collect()
}

/// What every container given GPU 1 of the dgx host shows.
fn check_gpu1(who: &str, out: &str) {
    let nodes = section(out, "nodes");
    assert!(
        nodes.contains(&"nvidia1") && nodes.contains(&"nvidiactl"),
        "{who}: {nodes:?}"
    );
    let gpus: Vec<&&str> = nodes
        .iter()
        .filter(|n| n.trim_start_matches("nvidia").parse::<u32>().is_ok())
        .collect();
    assert_eq!(gpus, [&"nvidia1"], "{who}: only the selected GPU");
    let mounts = section(out, "mounts");
    assert!(!mounts.is_empty(), "{who}: libcuda is not mounted:\n{out}");
    for m in &mounts {
        let opts = m.split(' ').nth(5).unwrap();
        assert!(
            opts.split(',').any(|o| o == "ro") && opts.contains("nosuid"),
            "{who}: {m}"
        );
    }
    assert_eq!(section(out, "link"), ["libcuda.so.1"], "{who}");
    assert!(
        section(out, "cache").iter().any(|l| l
            .trim_start()
            .starts_with("libcuda.so.1 (libc6,x86-64) => ")),
        "{who}: ldconfig -p does not list libcuda.so.1:\n{out}"
    );
}

#[test]
fn runc_crun_and_youki_run_a_container_with_the_spec_injected() {
    let Some(f) = fixture() else { return };
    for name in ["runc", "crun", "youki"] {
        let Some(rt) = runtime(name) else { continue };
        let b = bundle(&rt, &[], false);
        let config = b.path().join("config.json");
        let out = Command::new(env!("CARGO_BIN_EXE_nvc-cdi"))
            .args(["inject", "--spec-dir"])
            .arg(f.cdi_dir.path())
            .args(["--device", "nvidia.com/gpu=1"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        check_gpu1(name, &run(&rt, b.path(), None));
    }
}

#[test]
fn runc_crun_and_youki_run_nvc_hook_as_create_runtime() {
    let Some(f) = fixture() else { return };
    let root = format!("--root={}", f.host_dir.path().display());
    for name in ["runc", "crun", "youki"] {
        let Some(rt) = runtime(name) else { continue };
        let b = bundle(
            &rt,
            &[
                "NVIDIA_VISIBLE_DEVICES=1",
                "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
            ],
            true,
        );
        let path = b.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["hooks"] = serde_json::json!({ "createRuntime": [{
            "path": env!("CARGO_BIN_EXE_nvc-hook"),
            "args": ["nvc-hook", root, "createRuntime"],
        }]});
        std::fs::write(&path, config.to_string()).unwrap();
        let out = run(&rt, b.path(), Some(f.host_dir.path()));
        check_gpu1(name, &out);
        // The hook path also gives the GPU's /proc directory (GPU 1 of dgx is at 2a:00.0).
        assert_eq!(section(&out, "gpus"), ["0000:2a:00.0"], "{name}");
    }
}

/// Removes a spec from a system CDI directory, also when the test fails.
struct SystemSpec(PathBuf);

impl Drop for SystemSpec {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Removes a cgroup tree of the test's own (podman's parent for its containers and
/// conmon) from every hierarchy, children first, also when the test fails.
struct CgroupTree(String);

impl Drop for CgroupTree {
    fn drop(&mut self) {
        fn remove(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        remove(&e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            roots.extend(entries.flatten().map(|e| e.path()));
        }
        for root in roots {
            remove(&root.join(&self.0));
        }
    }
}

#[test]
fn podman_reads_the_spec_from_the_cdi_directory() {
    let Some(f) = fixture() else { return };
    let Some(podman) = runtime("podman") else {
        return;
    };
    // A vendor of the test's own, so no real spec is touched or shadowed.
    let vendor = format!("nvc-e2e-{}.example", std::process::id());
    std::fs::create_dir_all("/var/run/cdi").unwrap();
    let spec = SystemSpec(PathBuf::from(format!("/var/run/cdi/{vendor}.json")));
    generate(f.host_dir.path(), &spec.0, &["--vendor", &vendor]);
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    image(&rootfs);
    let cgroup = CgroupTree(format!("nvc-e2e-podman-{}", std::process::id()));
    for device in ["1", "all"] {
        let _ = std::fs::remove_file(rootfs.join("etc/ld.so.cache"));
        let _ = std::fs::remove_file(rootfs.join("usr/lib/x86_64-linux-gnu/libcuda.so"));
        // A hang fails the test after two minutes instead of holding CI.
        let out = Command::new("timeout")
            .args(["-k", "5", "120"])
            .arg(&podman)
            .arg("--root")
            .arg(dir.path().join("storage"))
            .arg("--runroot")
            .arg(dir.path().join("run"))
            .args(PODMAN_RUN)
            .args(["--ulimit=nofile=1024:1024", "--ulimit=nproc=1024:1024"])
            .arg(format!("--cgroup-parent=/{}", cgroup.0))
            .arg(format!("--device={vendor}/gpu={device}"))
            .arg("--rootfs")
            .arg(&rootfs)
            .args(["/bin/busybox", "sh", "-c", SCRIPT])
            .output()
            .unwrap();
        check_podman("podman", device, &out);
    }
}

/// `podman run` as the tests run it, rootful and rootless: storage and events in files of
/// the test's own, cgroups without systemd, runc (crun refuses hybrid cgroups), no network.
const PODMAN_RUN: &[&str] = &[
    "--storage-driver=vfs",
    "--cgroup-manager=cgroupfs",
    "--events-backend=file",
    "--runtime=runc",
    "run",
    "--rm",
    "--network=none",
];

/// What a podman run of [`SCRIPT`] with `--device .../gpu={device}` (`1` or `all`) shows.
fn check_podman(who: &str, device: &str, out: &Output) {
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{who}: {stdout}{}", text(&out.stderr));
    if device == "1" {
        check_gpu1(who, &stdout);
    } else {
        let nodes = section(&stdout, "nodes");
        for i in 0..8 {
            assert!(
                nodes.contains(&format!("nvidia{i}").as_str()),
                "{who}: {nodes:?}"
            );
        }
    }
}

/// The unprivileged user of the rootless test; `.ci/run` creates it (`useradd`, which gives
/// it subordinate ids).
const ROOTLESS_USER: &str = "nvc-rootless";

/// Makes `path` and everything below it the user's (their rootless container's root).
fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() && !path.is_symlink() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

/// Stops the user's rootless podman (the pause process holding its user namespace) and
/// removes what it stored, also when the test fails.
struct RootlessPodman(PathBuf);

impl Drop for RootlessPodman {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join("xdg/libpod/tmp/pause.pid"))
            && let Ok(pid) = pid.trim().parse()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn rootless_podman_reads_the_spec_from_the_cdi_directory() {
    let Some(f) = fixture() else { return };
    let Some(podman) = runtime("podman") else {
        return;
    };
    let Ok(Some(user)) = nix::unistd::User::from_name(ROOTLESS_USER) else {
        nvc_testkit::skip!("no user {ROOTLESS_USER} for rootless podman (.ci/run creates it)");
        return;
    };
    let has_subids = |file: &str| {
        std::fs::read_to_string(file).is_ok_and(|t| {
            t.lines()
                .any(|l| l.starts_with(&format!("{ROOTLESS_USER}:")))
        })
    };
    if !has_subids("/etc/subuid") || !has_subids("/etc/subgid") {
        nvc_testkit::skip!("{ROOTLESS_USER} has no subordinate ids in /etc/subuid, /etc/subgid");
        return;
    }
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    // What the user reaches: the simulated host (read), the hook (run), a home, a runtime
    // directory and a container root of their own.
    let open = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    open(f.host_dir.path());
    let dir = tempfile::tempdir().unwrap();
    open(dir.path());
    let podman_state = RootlessPodman(dir.path().to_path_buf());
    let hook = dir.path().join("nvc-hook");
    std::fs::copy(env!("CARGO_BIN_EXE_nvc-hook"), &hook).unwrap();
    let vendor = format!("nvc-e2e-rootless-{}.example", std::process::id());
    std::fs::create_dir_all("/var/run/cdi").unwrap();
    let spec = SystemSpec(PathBuf::from(format!("/var/run/cdi/{vendor}.json")));
    let out = Command::new(env!("CARGO_BIN_EXE_nvc-cdi"))
        .arg("generate")
        .arg("--driver-root")
        .arg(f.host_dir.path())
        .arg("--hook")
        .arg(&hook)
        .args(["--vendor", &vendor, "--output"])
        .arg(&spec.0)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for sub in ["home", "xdg", "storage"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let rootfs = dir.path().join("rootfs");
    image(&rootfs);
    chown_tree(dir.path(), uid, gid);
    std::fs::set_permissions(
        dir.path().join("xdg"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let d = dir.path().display();
    for device in ["1", "all"] {
        let _ = std::fs::remove_file(rootfs.join("etc/ld.so.cache"));
        let _ = std::fs::remove_file(rootfs.join("usr/lib/x86_64-linux-gnu/libcuda.so"));
        // Under `nvc-sim run`, whose /dev has the simulated nodes (a rootless runtime
        // bind-mounts a device from its container path on the host). Its /proc has the
        // simulated driver's files over the kernel's, and a user namespace may not mount a
        // procfs where part of one is covered: the container gets the host's, bound.
        let out = Command::new(env!("CARGO_BIN_EXE_nvc-cdi").replace("nvc-cdi", "nvc-sim"))
            .arg("run")
            .arg(f.host_dir.path())
            .args(["--", "runuser", "-u", ROOTLESS_USER, "--", "env"])
            .arg(format!("HOME={d}/home"))
            .arg(format!("XDG_RUNTIME_DIR={d}/xdg"))
            .args(["timeout", "-k", "5", "120"])
            .arg(&podman)
            .arg(format!("--root={d}/storage"))
            .args(PODMAN_RUN)
            .arg("--volume=/proc:/proc:rbind")
            .arg(format!("--device={vendor}/gpu={device}"))
            .arg("--rootfs")
            .arg(&rootfs)
            .args(["/bin/busybox", "sh", "-c", SCRIPT])
            .output()
            .unwrap();
        check_podman("rootless podman", device, &out);
    }
    drop(podman_state);
}
