//! `nvc-hook` as a process: its arguments, capped inputs, and a real `createRuntime` run on a
//! paused container under `nvc-sim run` (tier c). The reading of the state, bundle and image
//! environment is tested in `nvc-core/tests/oci.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A bundle whose `config.json` has `root.path` = `root` and `process.env` = `env`.
fn bundle(root: &str, env: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.2.0",
        "root": { "path": root },
        "process": { "env": env, "args": ["sh"], "cwd": "/", "user": { "uid": 0, "gid": 0 } },
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

fn state(pid: u32, bundle: &Path) -> String {
    serde_json::json!({
        "ociVersion": "1.2.0", "id": "c1", "status": "creating",
        "pid": pid, "bundle": bundle,
    })
    .to_string()
}

/// Runs the hook under `nvc-sim run DIR` with `state` on stdin.
fn hook(dir: &Path, state: &str) -> std::process::Output {
    hook_bin(Path::new(env!("CARGO_BIN_EXE_nvc-hook")), &[], dir, state)
}

/// Runs the hook program `bin` with `options` under `nvc-sim run DIR`, `state` on stdin.
fn hook_bin(bin: &Path, options: &[&str], dir: &Path, state: &str) -> std::process::Output {
    let sim = env!("CARGO_BIN_EXE_nvc-hook").replace("nvc-hook", "nvc-sim");
    let root = format!("--root={}", dir.display());
    let mut child = Command::new(sim)
        // Cargo sets it for tests; the hooks run without it, as runtimes run them.
        .env_remove("LD_LIBRARY_PATH")
        .args(["run", dir.to_str().unwrap(), "--"])
        .arg(bin)
        .arg(&root)
        .args(options)
        .arg("createRuntime")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(state.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A paused container, the simulated single-GPU host and a Debian image for it.
struct Gpu {
    container: nvc_testkit::PausedContainer,
    dir: tempfile::TempDir,
    _host: nvc_testkit::Host,
    rootfs: tempfile::TempDir,
}

impl Gpu {
    fn start() -> Option<Self> {
        let container = nvc_testkit::PausedContainer::start()?;
        let dir = tempfile::tempdir().unwrap();
        let scenario = nvc_testkit::Scenario::builtin("single").unwrap();
        let _host = nvc_testkit::Host::build(&scenario, dir.path()).unwrap();
        let rootfs = tempfile::tempdir().unwrap();
        nvc_testkit::debian_image(rootfs.path(), &[], false).unwrap();
        Some(Gpu {
            container,
            dir,
            _host,
            rootfs,
        })
    }

    /// Whether the container has its GPU's node mounted.
    fn mounted(&self) -> bool {
        let rfs = self.rootfs.path().display();
        self.container
            .mountinfo()
            .contains(&format!("{rfs}/dev/nvidia0 "))
    }
}

#[test]
fn a_create_runtime_hook_gives_the_container_its_gpus() {
    let Some(g) = Gpu::start() else {
        return;
    };
    let (container, dir, rootfs) = (&g.container, &g.dir, &g.rootfs);
    let rfs = rootfs.path().to_str().unwrap();

    // An image that asks for nothing is left alone; one whose requirement fails is refused
    // with nothing changed.
    let plain = bundle(rfs, &["PATH=/bin"]);
    let out = hook(dir.path(), &state(container.pid(), plain.path()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!g.mounted());
    let too_new = bundle(
        rfs,
        &[
            "NVIDIA_VISIBLE_DEVICES=all",
            "NVIDIA_REQUIRE_CUDA=cuda>=99.0",
        ],
    );
    let out = hook(dir.path(), &state(container.pid(), too_new.path()));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsatisfied condition: cuda>=99.0"));
    assert!(!g.mounted());

    let gpu = bundle(
        rfs,
        &[
            "NVIDIA_VISIBLE_DEVICES=all",
            "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
            "NVIDIA_REQUIRE_CUDA=cuda>=12.0",
        ],
    );
    let out = hook(dir.path(), &state(container.pid(), gpu.path()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(g.mounted());
    assert!(container.mountinfo().contains(&format!(
        "{rfs}/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14 "
    )));
    // The host's ldconfig refreshed the image's cache.
    let cache = std::fs::read(rootfs.path().join("etc/ld.so.cache")).unwrap();
    let cache = nvc_ldcache::LdCache::parse(&cache).unwrap();
    assert!(
        cache
            .entries()
            .any(|e| e.unwrap().soname() == "libcuda.so.1")
    );
}

/// Runs the hook binary itself (no simulated host) with `args` and `stdin`.
fn hook_direct(args: &[&str], stdin: &[u8]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nvc-hook"))
        // Cargo sets it for tests; the hooks run without it, as runtimes run them.
        .env_remove("LD_LIBRARY_PATH")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The hook may stop reading early (a refused name, an oversized state).
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_hook_runs_only_before_the_image_can_reach_it() {
    let (code, err) = hook_direct(&["createContainer"], b"");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("refusing to run as the \"createContainer\" hook"),
        "{err}"
    );
    let (code, err) = hook_direct(&["poststart"], b"");
    assert_eq!(code, Some(1), "{err}");
    let (code, err) = hook_direct(&["--no-cgroups"], b"");
    assert_eq!(code, Some(1));
    assert!(err.contains("missing the hook's name"), "{err}");
    let (code, err) = hook_direct(&["--bogus", "createRuntime"], b"");
    assert_eq!(code, Some(1));
    assert!(err.contains("--bogus"), "{err}");
}

#[test]
fn options_take_values_both_ways_and_inputs_are_capped() {
    // Both forms parse: the run gets as far as reading the state.
    for args in [
        &[
            "--root",
            "/nonexistent",
            "--ldconfig",
            "@/sbin/ldconfig",
            "createRuntime",
        ][..],
        &[
            "--root=/nonexistent",
            "--ldconfig=@/sbin/ldconfig",
            "prestart",
        ][..],
    ] {
        let (code, err) = hook_direct(args, b"{");
        assert_eq!(code, Some(1));
        assert!(err.contains("invalid OCI state"), "{args:?}: {err}");
    }
    let huge = vec![b' '; (1 << 20) + 1];
    let (code, err) = hook_direct(&["createRuntime"], &huge);
    assert_eq!(code, Some(1));
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
    let b = tempfile::tempdir().unwrap();
    let config = std::fs::File::create(b.path().join("config.json")).unwrap();
    config.set_len((16 << 20) + 1).unwrap();
    let (code, err) = hook_direct(&["createRuntime"], state(1, b.path()).as_bytes());
    assert_eq!(code, Some(1));
    assert!(
        err.contains("config.json is larger than 16777216 bytes"),
        "{err}"
    );
}

#[test]
fn unprivileged_images_can_be_denied_the_environment() {
    // With the opt-out, the unprivileged image's request is ignored: nothing is probed, the
    // hook succeeds without a driver. Without it, the request is honoured (and fails here,
    // on a root without a driver).
    // A process in a mount namespace of its own: the hook refuses to run in the container's.
    let Some(container) = nvc_testkit::PausedContainer::start() else {
        return;
    };
    let unprivileged = bundle("rootfs", &["NVIDIA_VISIBLE_DEVICES=all"]);
    let empty = tempfile::tempdir().unwrap();
    let root = empty.path().to_str().unwrap();
    let st = state(container.pid(), unprivileged.path());
    let args = [
        "--root",
        root,
        "--no-envvar-when-unprivileged",
        "createRuntime",
    ];
    assert_eq!(hook_direct(&args, st.as_bytes()), (Some(0), String::new()));
    let (code, _) = hook_direct(&["--root", root, "createRuntime"], st.as_bytes());
    assert_eq!(code, Some(1));
}

#[test]
fn update_ldcache_refreshes_the_cache_over_the_cdi_mounted_folder() {
    let Some(container) = nvc_testkit::PausedContainer::start() else {
        return;
    };
    let host_dir = tempfile::tempdir().unwrap();
    let _host = nvc_testkit::Host::build(
        &nvc_testkit::Scenario::builtin("single").unwrap(),
        host_dir.path(),
    )
    .unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &[], false).unwrap();
    // What a runtime's CDI mounts leave: the driver's library in a folder of its own.
    let folder = rootfs.path().join("opt/nvidia/lib");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(
        host_dir
            .path()
            .join("usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14"),
        folder.join("libcuda.so.550.54.14"),
    )
    .unwrap();
    let b = bundle(
        rootfs.path().to_str().unwrap(),
        &["LD_PRELOAD=/tmp/evil.so"],
    );
    // The spec's bind of it, which the built-in update reads the library's host file from.
    let config = b.path().join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    spec["mounts"] = serde_json::json!([{
        "destination": "/opt/nvidia/lib/libcuda.so.550.54.14",
        "source": host_dir.path().join("usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14"),
        "options": ["ro", "nosuid", "nodev", "bind"],
    }]);
    std::fs::write(&config, spec.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nvc-hook"))
        // Cargo sets it for tests; the hooks run without it, as runtimes run them.
        .env_remove("LD_LIBRARY_PATH")
        .args(["update-ldcache", "--folder", "/opt/nvidia/lib"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(state(container.pid(), b.path()).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cache = std::fs::read(rootfs.path().join("etc/ld.so.cache")).unwrap();
    let cache = nvc_ldcache::LdCache::parse(&cache).unwrap();
    assert!(
        cache.entries().any(|e| {
            let e = e.unwrap();
            e.soname() == "libcuda.so.1" && e.path() == Path::new("/opt/nvidia/lib/libcuda.so.1")
        }),
        "libcuda.so.1 not in the container's cache"
    );
    assert_eq!(
        std::fs::read_link(folder.join("libcuda.so.1")).unwrap(),
        Path::new("libcuda.so.550.54.14"),
        "the SONAME link"
    );

    // CUDA forward compatibility: an image whose compat libcuda (999) is newer than the
    // driver gets it first in its cache with --host-driver-version, as nvc-cdi's spec runs
    // the hook; not without it, nor when the driver is the newer one.
    let compat = nvc_testkit::add_cuda_compat(rootfs.path(), "999.1").unwrap();
    let first_libcuda = |version: Option<&str>| {
        let mut args = vec!["update-ldcache", "--folder", "/opt/nvidia/lib"];
        let flag = version.map(|v| format!("--host-driver-version={v}"));
        args.extend(flag.as_deref());
        let mut child = Command::new(env!("CARGO_BIN_EXE_nvc-hook"))
            .env_remove("LD_LIBRARY_PATH")
            .args(&args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let st = state(container.pid(), b.path());
        child
            .stdin
            .take()
            .unwrap()
            .write_all(st.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        nvc_testkit::cached_paths(rootfs.path(), "libcuda.so.1").unwrap()[0].clone()
    };
    let compat_link = compat.with_file_name("libcuda.so.1");
    assert_eq!(
        first_libcuda(Some("550.54.14")),
        compat_link.to_str().unwrap()
    );
    assert_eq!(first_libcuda(None), "/opt/nvidia/lib/libcuda.so.1");
    assert_eq!(
        first_libcuda(Some("1000.1")),
        "/opt/nvidia/lib/libcuda.so.1"
    );
}

/// Runs the hook binary with `args`, the state on stdin, `env` added to its environment and
/// `cwd` as its working directory: as a runtime that lists it under the wrong hook would.
fn hook_misplaced(args: &[&str], state: &str, env: &[(&str, &str)], cwd: &Path) -> String {
    hook_misplaced_bin(
        Path::new(env!("CARGO_BIN_EXE_nvc-hook")),
        args,
        state,
        env,
        cwd,
    )
}

/// Runs the hook program `bin` with `args`, `env` and working directory `cwd`; it must
/// refuse. Returns its error output.
fn hook_misplaced_bin(
    bin: &Path,
    args: &[&str],
    state: &str,
    env: &[(&str, &str)],
    cwd: &Path,
) -> String {
    let mut child = Command::new(bin)
        // Cargo sets it for tests; the hooks run without it, as runtimes run them.
        .env_remove("LD_LIBRARY_PATH")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(state.as_bytes());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?} {env:?}: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every subcommand checks where it runs, not only the name in argv: the image's
/// environment (`LD_*`), the container's mount namespace (a `createContainer` hook), the
/// container's rootfs as working directory.
#[test]
fn every_subcommand_refuses_to_run_where_the_image_reaches_it() {
    let rootfs = tempfile::tempdir().unwrap();
    let b = bundle(
        rootfs.path().to_str().unwrap(),
        &["NVIDIA_VISIBLE_DEVICES=all"],
    );
    let subcommands: [&[&str]; 3] = [
        &["createRuntime"],
        &["update-ldcache", "--folder", "/usr/lib/x86_64-linux-gnu"],
        &[
            "create-symlinks",
            "--link",
            "libcuda.so.1::/usr/lib/libcuda.so",
        ],
    ];
    let elsewhere = tempfile::tempdir().unwrap();
    // The test's own process shares the hook's mount namespace: as a container process does
    // for a hook the runtime runs in the container's namespace.
    let same_ns = state(std::process::id(), b.path());
    for args in subcommands {
        let err = hook_misplaced(
            args,
            &same_ns,
            &[("LD_PRELOAD", "/nonexistent/libx.so")],
            elsewhere.path(),
        );
        assert!(
            err.contains("refusing to run: LD_PRELOAD is set"),
            "{args:?}: {err}"
        );
        let err = hook_misplaced(args, &same_ns, &[], elsewhere.path());
        assert!(
            err.contains("refusing to run: it runs in the mount namespace of the container"),
            "{args:?}: {err}"
        );
    }
    let Some(container) = nvc_testkit::PausedContainer::start() else {
        return;
    };
    let other_ns = state(container.pid(), b.path());
    for args in subcommands {
        let err = hook_misplaced(args, &other_ns, &[], rootfs.path());
        assert!(
            err.contains("refusing to run: its working directory is in the container's rootfs"),
            "{args:?}: {err}"
        );
        std::fs::create_dir_all(rootfs.path().join("lib")).unwrap();
        let err = hook_misplaced(args, &other_ns, &[], &rootfs.path().join("lib"));
        assert!(
            err.contains("refusing to run: its working directory is in the container's rootfs"),
            "{args:?}: {err}"
        );
        // The image's library directory, through a path that reaches it by a link.
        let link = elsewhere.path().join("to-rootfs");
        let _ = std::os::unix::fs::symlink(rootfs.path(), &link);
        for value in [
            format!("/opt/containerd/lib:{}/lib", link.display()),
            "lib".to_owned(),
            format!("/proc/{}/root/lib", container.pid()),
        ] {
            let env = [("LD_LIBRARY_PATH", value.as_str())];
            let err = hook_misplaced(args, &other_ns, &env, elsewhere.path());
            assert!(
                err.contains("refusing to run: LD_LIBRARY_PATH names"),
                "{args:?} {value}: {err}"
            );
        }
    }
}

/// containerd (its `opt` plugin) runs shims, runc and so every hook with
/// `LD_LIBRARY_PATH=/opt/containerd/lib:` — as Docker's `--gpus` and every CDI hook under
/// containerd see it: the runtime's environment, not the image's, and accepted.
#[test]
fn containerds_library_path_is_the_runtimes_and_accepted() {
    let rootfs = tempfile::tempdir().unwrap();
    let b = bundle(
        rootfs.path().to_str().unwrap(),
        &["NVIDIA_VISIBLE_DEVICES=void"],
    );
    let Some(container) = nvc_testkit::PausedContainer::start() else {
        return;
    };
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nvc-hook"))
        .env("LD_LIBRARY_PATH", "/opt/containerd/lib:")
        .arg("createRuntime")
        .current_dir(elsewhere.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            let state = state(container.pid(), b.path());
            child.stdin.take().unwrap().write_all(state.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    // `void`: nothing asked, so nothing probed; the checks passed.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The release hook as `examples/static-hook.sh` builds it, from `NVC_STATIC_HOOK` (which
/// `.ci/run` sets); `None`, saying why, where it was not built.
fn static_hook() -> Option<PathBuf> {
    let Some(path) = std::env::var_os("NVC_STATIC_HOOK") else {
        nvc_testkit::skip!("NVC_STATIC_HOOK is not set (build it with examples/static-hook.sh)");
        return None;
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "NVC_STATIC_HOOK={}: no such file",
        path.display()
    );
    Some(path)
}

/// Whether an ELF file asks for a program interpreter (`PT_INTERP`: the dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    let field = |at: usize, len: usize| -> u64 {
        let bytes = &elf[at..at + len];
        bytes.iter().rev().fold(0, |n, b| (n << 8) | u64::from(*b))
    };
    assert_eq!(&elf[..5], b"\x7fELF\x02", "not a 64-bit ELF file");
    let (phoff, phentsize, phnum) = (field(0x20, 8), field(0x36, 2), field(0x38, 2));
    (0..phnum).any(|i| {
        let at = usize::try_from(phoff + i * phentsize).unwrap();
        field(at, 4) == 3
    })
}

/// A shared object whose constructor creates `marker`, `None` without a C compiler.
fn preload_marker(dir: &Path, marker: &Path) -> Option<PathBuf> {
    let src = dir.join("marker.c");
    std::fs::write(
        &src,
        format!(
            "#include <fcntl.h>\n__attribute__((constructor)) static void mark(void) \
             {{ open(\"{}\", O_CREAT | O_WRONLY, 0600); }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let so = dir.join("marker.so");
    match Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .output()
    {
        Ok(o) if o.status.success() => Some(so),
        Ok(o) => panic!("cc failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            nvc_testkit::skip!("no C compiler for the preloaded library: {e}");
            None
        }
    }
}

/// CVE-2025-23266 as the image plays it: a hook run with the image's `LD_PRELOAD=./x.so`
/// and the rootfs as its working directory. A dynamically linked hook loads the image's
/// library before its first line runs — its own check comes too late; the static release
/// build has no loader to do it.
#[test]
fn the_static_hook_loads_nothing_an_image_preloads() {
    let Some(bin) = static_hook() else {
        return;
    };
    assert!(
        !has_interpreter(&std::fs::read(&bin).unwrap()),
        "{} asks for a dynamic loader",
        bin.display()
    );
    assert!(has_interpreter(
        &std::fs::read(env!("CARGO_BIN_EXE_nvc-hook")).unwrap()
    ));
    let rootfs = tempfile::tempdir().unwrap();
    let marker = rootfs.path().join("preloaded");
    if preload_marker(rootfs.path(), &marker).is_none() {
        return;
    }
    let b = bundle(
        rootfs.path().to_str().unwrap(),
        &["NVIDIA_VISIBLE_DEVICES=all"],
    );
    let st = state(std::process::id(), b.path());
    let preload = [("LD_PRELOAD", "./marker.so")];
    // The control: the debug build is dynamically linked; the image's code runs in it.
    let err = hook_misplaced(&["createRuntime"], &st, &preload, rootfs.path());
    assert!(err.contains("refusing to run: LD_PRELOAD is set"), "{err}");
    assert!(marker.exists(), "the control did not load the library");
    std::fs::remove_file(&marker).unwrap();
    for args in [
        &["createRuntime"][..],
        &["update-ldcache", "--folder", "/usr/lib/x86_64-linux-gnu"],
    ] {
        let err = hook_misplaced_bin(&bin, args, &st, &preload, rootfs.path());
        assert!(err.contains("refusing to run: LD_PRELOAD is set"), "{err}");
        assert!(
            !marker.exists(),
            "{args:?}: the static hook ran the image's library"
        );
    }
}

/// The static hook probes NVML through `nvc-nvml`, executed with an empty environment: the
/// CUDA version it reports decides a `cuda>=` requirement both ways, and a missing helper is
/// an error naming it, with nothing configured.
#[test]
fn the_static_hook_gives_the_container_its_gpus_through_its_nvml_helper() {
    let Some(bin) = static_hook() else {
        return;
    };
    let Some(g) = Gpu::start() else {
        return;
    };
    let (container, dir, rootfs) = (&g.container, &g.dir, &g.rootfs);
    let rfs = rootfs.path().to_str().unwrap();
    let asks = |cuda: &str| {
        bundle(
            rfs,
            &[
                "NVIDIA_VISIBLE_DEVICES=all",
                "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
                &format!("NVIDIA_REQUIRE_CUDA=cuda>={cuda}"),
            ],
        )
    };
    let helper = format!("--nvml-helper={}", env!("CARGO_BIN_EXE_nvc-nvml"));

    // Without --nvml-helper: nvc-nvml beside the hook, which this build directory lacks.
    let (too_new, fits) = (asks("99.0"), asks("12.0"));
    let beside = bin.with_file_name("nvc-nvml");
    if !beside.exists() {
        let out = hook_bin(&bin, &[], dir.path(), &state(container.pid(), fits.path()));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "cannot start the NVML helper {}",
                beside.display()
            )),
            "{err}"
        );
        assert!(!g.mounted());
    }
    let out = hook_bin(
        &bin,
        &[&helper],
        dir.path(),
        &state(container.pid(), too_new.path()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unsatisfied condition: cuda>=99.0"), "{err}");
    assert!(!g.mounted());
    let out = hook_bin(
        &bin,
        &[&helper],
        dir.path(),
        &state(container.pid(), fits.path()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(g.mounted());
}
