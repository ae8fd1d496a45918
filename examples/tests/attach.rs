//! GPUs into and out of running containers (tier d: root, runc and podman installed by
//! `.ci/run`), on the simulated dgx host: a runc container and a podman container started
//! without GPUs, then `nvidia-container-cli attach --pid=PID --device=1` and
//! `detach --pid=PID --device=1`, each step looked at from inside the container with
//! `runc exec` / `podman exec`:
//!
//! - before: no NVIDIA node; a node the container makes itself (`mknod c 195:N`) cannot be
//!   opened (`EPERM`: the device cgroup refuses it);
//! - attached: `/dev/nvidia1` and the driver-wide nodes, opening GPU 1 reaches the device
//!   (`ENXIO` on the simulated host: the cgroup let it through), GPU 0 still refused,
//!   `libcuda.so.1` in `ldconfig -p`; a second attach adds nothing;
//! - detached: no NVIDIA node, GPU 1 refused again; the driver's files stay;
//! - throughout: every mount the container had stays as it was, its process lives on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod e2e;

use std::path::Path;

use e2e::{CgroupTree, failed, image, ok, section};
use nvc_testkit::{DeviceNodes, Host, Scenario};

/// What the container shows: its NVIDIA nodes, what opening GPU 0 and 1 says through a node
/// of its own, its linker cache, its init's mounts (all on stdout: `podman exec` passes
/// stderr on apart, out of order).
const PROBE: &str = "exec 2>&1; \
echo '## nodes'; /bin/busybox ls /dev | /bin/busybox grep nvidia; \
echo '## open'; for m in 0 1; do \
  /bin/busybox mknod /tmp/nvc-probe c 195 $m || echo 'mknod failed'; \
  if /bin/busybox head -c1 /tmp/nvc-probe >/dev/null 2>/tmp/nvc-err; then echo \"nvidia$m: read\"; \
  else echo \"nvidia$m: $(/bin/busybox cat /tmp/nvc-err)\"; fi; \
  /bin/busybox rm -f /tmp/nvc-probe /tmp/nvc-err; done; \
echo '## cache'; /sbin/ldconfig -p; \
echo '## mounts'; /bin/busybox cat /proc/1/mountinfo; \
echo '## end'";

/// Runs the bash `script` on the simulated host ([`e2e::sim_session`]) with `$CLI`, `$HOST`,
/// `$PROBE` and `$ST` (a directory of the test's own) set.
fn session(host: &Path, state: &Path, script: &str) -> Vec<(String, i32, String)> {
    e2e::sim_session(
        host,
        script,
        &[
            ("CLI", env!("CARGO_BIN_EXE_nvidia-container-cli").as_ref()),
            ("HOST", host.as_os_str()),
            ("PROBE", PROBE.as_ref()),
            ("ST", state.as_os_str()),
        ],
    )
}

/// The attach/detach steps on the container whose init is `$pid`, each probed with `exec`
/// (a command line that runs `$PROBE` in the container), named `{who}-{step}`.
fn steps(who: &str, exec: &str) -> String {
    format!(
        r#"run {who}-before {exec}
           run {who}-attach $CLI --root=$HOST attach --pid=$pid --device=1 --compute --utility
           run {who}-attached {exec}
           run {who}-again $CLI --root=$HOST attach --pid=$pid --device=1 --compute --utility
           run {who}-again-probe {exec}
           run {who}-detach $CLI --root=$HOST detach --pid=$pid --device=1
           run {who}-detached {exec}
           run {who}-unknown $CLI --root=$HOST detach --pid=$pid --device=42
           run {who}-alive kill -0 $pid
"#
    )
}

/// What the steps of [`steps`] showed, checked.
fn check(who: &str, runs: &[(String, i32, String)]) {
    let step = |s: &str| ok(runs, &format!("{who}-{s}"));
    let opens = |out: &str| section(out, "open").join("\n");
    let nodes = |out: &str| section(out, "nodes").join(" ");
    let mounts = |out: &str| -> Vec<String> {
        section(out, "mounts")
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let refused = "Operation not permitted";
    let reached = "No such device or address";

    let before = step("before");
    assert_eq!(nodes(before), "", "{who}: no NVIDIA node before");
    let o = opens(before);
    assert!(
        o.contains(&format!("nvidia0: head: /tmp/nvc-probe: {refused}"))
            && o.contains(&format!("nvidia1: head: /tmp/nvc-probe: {refused}")),
        "{who}: the cgroup refuses both GPUs before:\n{o}"
    );

    step("attach");
    let attached = step("attached");
    assert_eq!(
        nodes(attached),
        "nvidia-uvm nvidia-uvm-tools nvidia1 nvidiactl",
        "{who}: GPU 1 and the driver-wide nodes after attach"
    );
    let o = opens(attached);
    assert!(
        o.contains(&format!("nvidia1: head: /tmp/nvc-probe: {reached}")),
        "{who}: GPU 1 opens past the cgroup (reaching the simulated device):\n{o}"
    );
    assert!(
        o.contains(&format!("nvidia0: head: /tmp/nvc-probe: {refused}")),
        "{who}: GPU 0 stays refused:\n{o}"
    );
    assert!(
        e2e::libcuda_paths(attached).contains(&"/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
        "{who}: ldconfig -p lists libcuda.so.1:\n{attached}"
    );
    let (before_mounts, attached_mounts) = (mounts(before), mounts(attached));
    for m in &before_mounts {
        assert!(
            attached_mounts.contains(m),
            "{who}: attach changed the container's mount {m}; after:\n{}",
            attached_mounts.join("\n")
        );
    }

    step("again");
    let again = step("again-probe");
    assert_eq!(
        mounts(again),
        attached_mounts,
        "{who}: a second attach adds nothing"
    );

    step("detach");
    let detached = step("detached");
    assert_eq!(
        nodes(detached),
        "",
        "{who}: the nodes are gone after detach"
    );
    let o = opens(detached);
    assert!(
        o.contains(&format!("nvidia1: head: /tmp/nvc-probe: {refused}")),
        "{who}: GPU 1 is refused again after detach:\n{o}"
    );
    assert!(
        e2e::libcuda_paths(detached).contains(&"/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
        "{who}: the driver's files stay after detach"
    );
    let detached_mounts = mounts(detached);
    for m in &before_mounts {
        assert!(
            detached_mounts.contains(m),
            "{who}: detach changed the container's mount {m}"
        );
    }
    assert!(
        !detached_mounts.iter().any(|m| m.contains(" /dev/nvidia")),
        "{who}: no node mount left:\n{}",
        detached_mounts.join("\n")
    );
    let unknown = failed(runs, &format!("{who}-unknown"));
    assert!(unknown.contains("42"), "{who}: {unknown}");
    step("alive");
}

/// The simulated dgx host, or `None` (skipped, with the reason).
fn host(dir: &Path) -> Option<Host> {
    if !nix::unistd::geteuid().is_root() {
        nvc_testkit::skip!("attaching to running containers needs root");
        return None;
    }
    if !Path::new("/bin/busybox").exists() {
        nvc_testkit::skip!("no /bin/busybox for the test image (Debian package busybox-static)");
        return None;
    }
    let host = Host::build(&Scenario::builtin("dgx").unwrap(), dir).unwrap();
    if !matches!(host.device_nodes_state(), DeviceNodes::Created) {
        nvc_testkit::skip!("the simulated host's device nodes could not be made");
        return None;
    }
    Some(host)
}

#[test]
fn a_gpu_is_attached_to_and_detached_from_a_running_runc_container() {
    let host_dir = tempfile::tempdir().unwrap();
    let Some(_host) = host(host_dir.path()) else {
        return;
    };
    let Some(runc) = e2e::runtime("runc") else {
        return;
    };
    let b = e2e::bundle(&runc, image, "exec /bin/busybox sleep 600", &[], false);
    // The container may make nodes (runc allows `mknod` of any in its cgroup), so that the
    // probe can ask the cgroup about GPUs it was not given a node of.
    let path = b.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for set in ["bounding", "effective", "permitted"] {
        config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push("CAP_MKNOD".into());
    }
    std::fs::write(&path, config.to_string()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let id = format!("nvc-attach-{}", std::process::id());
    let script = format!(
        r#"R="runc --root $ST/runc"
           $R run -d --bundle {bundle} {id} </dev/null >/dev/null 2>&1 || echo "runc run failed"
           pid=$($R state {id} | grep '"pid"' | tr -dc 0-9)
           {steps}
           $R delete -f {id} >/dev/null 2>&1"#,
        bundle = b.path().display(),
        steps = steps(
            "runc",
            &format!("$R exec {id} /bin/busybox sh -c \"$PROBE\"")
        ),
    );
    check("runc", &session(host_dir.path(), state.path(), &script));
}

#[test]
fn a_gpu_is_attached_to_and_detached_from_a_running_podman_container() {
    let host_dir = tempfile::tempdir().unwrap();
    let Some(_host) = host(host_dir.path()) else {
        return;
    };
    let Some(podman) = e2e::runtime("podman") else {
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let rootfs = state.path().join("rootfs");
    image(&rootfs);
    let cgroup = CgroupTree(format!("nvc-e2e-attach-{}", std::process::id()));
    let name = format!("nvc-attach-{}", std::process::id());
    let script = format!(
        r#"P="{podman} --root $ST/storage --runroot $ST/run --storage-driver=vfs --cgroup-manager=cgroupfs --events-backend=file --runtime=runc"
           $P run -d --name {name} --network=none --cap-add=MKNOD --ulimit=nofile=1024:1024 --ulimit=nproc=1024:1024 --cgroup-parent=/{cg} --rootfs {rootfs} /bin/busybox sleep 600 >/dev/null || echo "podman run failed"
           pid=$($P inspect --format '{{{{.State.Pid}}}}' {name})
           {steps}
           $P rm -f -t 0 {name} >/dev/null 2>&1"#,
        podman = podman.display(),
        cg = cgroup.0,
        rootfs = rootfs.display(),
        steps = steps(
            "podman",
            &format!("$P exec {name} /bin/busybox sh -c \"$PROBE\"")
        ),
    );
    check("podman", &session(host_dir.path(), state.path(), &script));
}

/// The runtime of `youki-embed/` (youki's published `libcontainer` with nvc-core in process):
/// `$NVC_YOUKI_EMBED`, or its debug build.
fn youki_embed() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("NVC_YOUKI_EMBED").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../youki-embed/target/debug/nvc-youki-embed")
        },
        std::path::PathBuf::from,
    );
    if path.is_file() {
        Some(path)
    } else {
        nvc_testkit::skip!(
            "{} is not built (cargo build --manifest-path youki-embed/Cargo.toml)",
            path.display()
        );
        None
    }
}

/// A runtime built on youki's `libcontainer` gives its container GPU 1 through nvc-core in
/// process, after `libcontainer` created it (pivoted, waiting) and before it starts: the
/// container's first process sees the GPU, the driver and its linker cache. An unknown GPU
/// fails the run before the container's process runs, and the container is deleted.
#[test]
fn a_runtime_on_libcontainer_gives_gpus_in_process_between_create_and_start() {
    let host_dir = tempfile::tempdir().unwrap();
    let Some(_host) = host(host_dir.path()) else {
        return;
    };
    let (Some(embed), Some(runc)) = (youki_embed(), e2e::runtime("runc")) else {
        return;
    };
    let b = e2e::bundle(&runc, image, e2e::SCRIPT, &[], false);
    let state = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let script = format!(
        "run embed {embed} $ST/youki $HOST 1 nvc-embed-{pid} {bundle}\n\
         run unknown {embed} $ST/youki $HOST 42 nvc-embed-{pid}-2 {bundle}\n\
         run gone ls $ST/youki",
        embed = embed.display(),
        bundle = b.path().display(),
    );
    let runs = session(host_dir.path(), state.path(), &script);
    e2e::check_gpu("libcontainer + nvc-core", 1, ok(&runs, "embed"));
    let out = failed(&runs, "unknown");
    assert!(out.contains("42") && !out.contains("## nodes"), "{out}");
    assert_eq!(ok(&runs, "gone").trim(), "", "both containers deleted");
}
