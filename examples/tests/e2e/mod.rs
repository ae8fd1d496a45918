//! What the end-to-end tests share: real runtimes found on this machine, bundles made by
//! their own `spec`, runs under `nvc-sim run` with their state cleaned up, nvc's CDI specs.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// `nvc-cdi generate` for the host at `root` into `out`, with nvc's hooks.
pub fn generate(root: &Path, out: &Path, extra: &[&str]) {
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

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A runtime on this machine: its path, or `None` (skipped, with the reason).
pub fn runtime(name: &str) -> Option<PathBuf> {
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

/// A bundle made by the runtime's own `spec`, its rootfs made by `image`, running `script`
/// with `sh` (the image's busybox) with `env` added, and
/// (for the legacy hook) the host's `/proc` in place of a new procfs: on the simulated host
/// `/proc/driver/nvidia` exists only in `nvc-sim run`'s view of the host's procfs.
pub fn bundle(
    runtime: &Path,
    image: impl FnOnce(&Path),
    script: &str,
    env: &[&str],
    host_proc: bool,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    image(&dir.path().join("rootfs"));
    let out = Command::new(runtime)
        // Cargo sets it for tests; the hooks run without it, as runtimes run them.
        .env_remove("LD_LIBRARY_PATH")
        .arg("spec")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["args"] = serde_json::json!(["/bin/busybox", "sh", "-c", script]);
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
pub fn run(runtime: &Path, bundle: &Path, sim: Option<&Path>) -> String {
    run_with(runtime, bundle, sim, &[])
}

/// [`run`] with `env` added to the runtime's environment.
pub fn run_with(
    runtime: &Path,
    bundle: &Path,
    sim: Option<&Path>,
    env: &[(&str, &Path)],
) -> String {
    // A runtime that hangs (youki 0.7 now and then misses its container's exit and waits
    // for ever, the container a zombie) is stopped after a minute and run once more; a
    // second hang fails the test.
    for attempt in 0..2 {
        let out = run_once(runtime, bundle, sim, env);
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

fn run_once(runtime: &Path, bundle: &Path, sim: Option<&Path>, env: &[(&str, &Path)]) -> Output {
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
    // Cargo sets it for tests; the hooks run without it, as runtimes run them.
    cmd.env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The lines of one `## name` section of a container script's output.
pub fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.split(&format!("## {name}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} section in:\n{out}"))
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .collect()
}

/// Removes a spec from a system CDI directory, also when the test fails.
pub struct SystemSpec(pub PathBuf);

impl Drop for SystemSpec {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Removes a cgroup tree of the test's own (podman's parent for its containers and
/// conmon) from every hierarchy, children first, also when the test fails.
pub struct CgroupTree(pub String);

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

/// `podman run` as the tests run it, rootful and rootless: storage and events in files of
/// the test's own, cgroups without systemd, runc (crun refuses hybrid cgroups), no network.
pub const PODMAN_RUN: &[&str] = &[
    "--storage-driver=vfs",
    "--cgroup-manager=cgroupfs",
    "--events-backend=file",
    "--runtime=runc",
    "run",
    "--rm",
    "--network=none",
];

/// `podman run` (as root, under `timeout`: a hang fails after two minutes) of `script` in
/// `rootfs` with CDI device `device`, its storage under `state`, its cgroups under
/// `cgroup`.
pub fn podman_run(
    podman: &Path,
    state: &Path,
    cgroup: &CgroupTree,
    device: &str,
    rootfs: &Path,
    script: &str,
) -> Output {
    Command::new("timeout")
        // Cargo sets it for tests; the hooks run without it, as runtimes run them.
        .env_remove("LD_LIBRARY_PATH")
        .args(["-k", "5", "120"])
        .arg(podman)
        .arg("--root")
        .arg(state.join("storage"))
        .arg("--runroot")
        .arg(state.join("run"))
        .args(PODMAN_RUN)
        .args(["--ulimit=nofile=1024:1024", "--ulimit=nproc=1024:1024"])
        .arg(format!("--cgroup-parent=/{}", cgroup.0))
        .arg(format!("--device={device}"))
        .arg("--rootfs")
        .arg(rootfs)
        .args(["/bin/busybox", "sh", "-c", script])
        .output()
        .unwrap()
}

/// What the container prints, section by section.
pub const SCRIPT: &str = "\
echo '## nodes'; /bin/busybox ls /dev | /bin/busybox grep nvidia; \
echo '## mounts'; /bin/busybox grep ' /usr/lib/x86_64-linux-gnu/libcuda.so.' /proc/self/mountinfo; \
echo '## link'; /bin/busybox readlink /usr/lib/x86_64-linux-gnu/libcuda.so; \
echo '## cache'; /sbin/ldconfig -p; \
echo '## gpus'; /bin/busybox ls /proc/driver/nvidia/gpus 2>/dev/null; \
echo '## end'";

/// A fresh image: busybox, the host's static `ldconfig`, a Debian layout, no linker cache.
pub fn image(at: &Path) {
    nvc_testkit::debian_image(at, &["bin", "dev", "proc", "sys", "tmp"], true).unwrap();
    std::fs::copy("/bin/busybox", at.join("bin/busybox")).unwrap();
}

/// What a container given GPU `gpu` (alone) of the dgx host shows running [`SCRIPT`]: that
/// GPU's node and no other, libcuda mounted read-only and `nosuid`, the `libcuda.so`
/// development link, `libcuda.so.1` in `ldconfig -p`.
pub fn check_gpu(who: &str, gpu: u32, out: &str) {
    let nodes = section(out, "nodes");
    let node = format!("nvidia{gpu}");
    assert!(
        nodes.contains(&node.as_str()) && nodes.contains(&"nvidiactl"),
        "{who}: {nodes:?}"
    );
    let gpus: Vec<&&str> = nodes
        .iter()
        .filter(|n| n.trim_start_matches("nvidia").parse::<u32>().is_ok())
        .collect();
    assert_eq!(gpus, [&node.as_str()], "{who}: only the selected GPU");
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
        !libcuda_paths(out).is_empty(),
        "{who}: ldconfig -p does not list libcuda.so.1:\n{out}"
    );
}

/// The paths `ldconfig -p` lists for `libcuda.so.1` in [`SCRIPT`]'s output, in its order
/// (the loader takes the first).
pub fn libcuda_paths(out: &str) -> Vec<&str> {
    section(out, "cache")
        .into_iter()
        .filter_map(|l| {
            l.trim_start()
                .strip_prefix("libcuda.so.1 (libc6,x86-64) => ")
        })
        .collect()
}

/// Writes the toolkit's `config.toml` where `nvc-runtime` and `nvc-hook` find it with
/// `XDG_CONFIG_HOME=xdg`.
pub fn toolkit_config(xdg: &Path, toml: &str) {
    let dir = xdg.join("nvidia-container-runtime");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), toml).unwrap();
}

/// `config.toml` for `nvc-runtime`: the runtime it executes, its mode, one CDI spec directory.
pub fn runtime_toml(runtime: &Path, mode: &str, spec_dir: &Path) -> String {
    format!(
        "[nvidia-container-runtime]\nruntimes = [{runtime:?}]\nmode = {mode:?}\n\
         [nvidia-container-runtime.modes.cdi]\nspec-dirs = [{spec_dir:?}]\n"
    )
}

/// Runs the bash `script` on the simulated host at `host` (`nvc-sim run`: its private
/// mount namespace, whose `/dev` has the host's nodes) with `env` set, the unified cgroup
/// hierarchy unmounted (runc and the engines then use the v1 hierarchies alone, as on a v1
/// host) and `run NAME CMD...` defined; a hang fails after five minutes. Returns each
/// `run`'s output and status, by name (see [`runs`]).
pub fn sim_session(
    host: &Path,
    script: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> Vec<(String, i32, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_nvc-cdi").replace("nvc-cdi", "nvc-sim"))
        .arg("run")
        .arg(host)
        .args(["--", "timeout", "-k", "10", "300", "bash", "-c"])
        .arg(format!(
            "umount -l /sys/fs/cgroup/unified 2>/dev/null\n\
             run() {{ name=$1; shift; echo \"=== run $name\"; \"$@\" 2>&1; echo \"=== rc $?\"; }}\n\
             {script}"
        ))
        // Cargo sets it for tests; the engines are started as a service manager would.
        .env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "the session failed: {stdout}{}",
        text(&out.stderr)
    );
    runs(&stdout)
}

/// The `run NAME CMD...` outputs of a session: `=== run NAME`, the output, `=== rc N`.
pub fn runs(out: &str) -> Vec<(String, i32, String)> {
    out.split("=== run ")
        .skip(1)
        .map(|part| {
            let (name, rest) = part.split_once('\n').unwrap();
            let (body, rc) = rest.rsplit_once("=== rc ").unwrap();
            let rc = rc.lines().next().unwrap().trim().parse().unwrap();
            (name.to_owned(), rc, body.to_owned())
        })
        .collect()
}

/// The output of run `name`, which must have succeeded.
pub fn ok<'a>(runs: &'a [(String, i32, String)], name: &str) -> &'a str {
    let (rc, out) = run_of(runs, name);
    assert_eq!(rc, 0, "{name}: {out}");
    out
}

/// The output of run `name`, which must have failed.
pub fn failed<'a>(runs: &'a [(String, i32, String)], name: &str) -> &'a str {
    let (rc, out) = run_of(runs, name);
    assert_ne!(rc, 0, "{name}: {out}");
    out
}

pub fn run_of<'a>(runs: &'a [(String, i32, String)], name: &str) -> (i32, &'a str) {
    let (_, rc, out) = runs
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no run {name} in {runs:?}"));
    (*rc, out)
}
