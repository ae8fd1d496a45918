//! NVIDIA's real driver files (535, Debian's packages, unpacked by
//! `nvc-testkit/real-driver/fetch.sh`) in every layout real hosts install them, under the
//! simulated kernel side (tier d: root; CI fetches the packages and none of these may skip
//! there). For each layout: `list` prints what upstream 1.17's prints for the same root (the
//! listings committed under `nvc-testkit/real-driver/upstream/`), and in containers
//! configured by `nvidia-container-cli`, by `nvc-hook` in runc and by an `nvc-cdi` spec in
//! podman, NVIDIA's own `nvidia-smi` runs (and says it cannot reach the driver: no kernel
//! module here), NVIDIA's `libcuda.so.1` answers `cuDriverGetVersion` = 12020 and the
//! container's `ldconfig -p` lists the real libraries. NVIDIA's NVML is the real one: with
//! no kernel module it fails `nvmlInit`, which `info` reports with a way out, and `--no-nvml`
//! configures without it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod e2e;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e::{CgroupTree, SystemSpec, bundle, run, runtime, section, text};
use nvc_testkit::{DeviceNodes, Host, Layout, PackageArch, RealDriver, Scenario};

/// What every container prints: NVIDIA's nvidia-smi, a libcuda client, the linker cache.
const SCRIPT: &str = "\
echo '## smi'; /usr/bin/nvidia-smi 2>&1; echo \"exit $?\"; \
echo '## cuda'; /cuda-version 2>&1; \
echo '## cache'; /sbin/ldconfig -p; \
echo '## end'";

/// Where `configure` mounts the driver's libraries in a Debian image.
const IMAGE_LIBS: &str = "/usr/lib/x86_64-linux-gnu";

/// A `libcuda.so.1` client: the driver API version (no device needed), `cuInit`'s result
/// (100, no device, without a kernel module) and which file the loader took.
const CUDA_VERSION_C: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
int main(void) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h) { printf("dlopen: %s\n", dlerror()); return 2; }
    int (*version)(int *) = (int (*)(int *))dlsym(h, "cuDriverGetVersion");
    int (*init)(unsigned) = (int (*)(unsigned))dlsym(h, "cuInit");
    if (!version || !init) { printf("dlsym: %s\n", dlerror()); return 3; }
    int v = 0, rc = version(&v);
    Dl_info info;
    dladdr((void *)version, &info);
    printf("cuDriverGetVersion %d %d\ncuInit %d\nlibcuda %s\n", rc, v, init(0), info.dli_fname);
    return 0;
}
"#;

/// The real driver and a compiled client, or `None` (skipped with the reason; a failure
/// under `NVC_REQUIRE_PRIVILEGED=1`).
fn prerequisites() -> Option<(RealDriver, PathBuf)> {
    if !nix::unistd::geteuid().is_root() {
        nvc_testkit::skip!("real-driver containers need root");
        return None;
    }
    let driver = match RealDriver::find() {
        Ok(d) => d,
        Err(why) => {
            nvc_testkit::skip!("{why}");
            return None;
        }
    };
    if !Path::new("/bin/busybox").exists() {
        nvc_testkit::skip!("no /bin/busybox for the test image (Debian package busybox-static)");
        return None;
    }
    Some((driver, cuda_client()?))
}

/// The client, compiled once per test process.
fn cuda_client() -> Option<PathBuf> {
    static CLIENT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("nvc-cuda-client-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let src = dir.join("cuda-version.c");
            std::fs::write(&src, CUDA_VERSION_C).unwrap();
            let out = dir.join("cuda-version");
            let cc = Command::new("cc")
                .arg("-o")
                .arg(&out)
                .arg(&src)
                .arg("-ldl")
                .output();
            match cc {
                Ok(o) if o.status.success() => Some(out),
                Ok(o) => panic!("cc failed: {}", text(&o.stderr)),
                Err(e) => {
                    nvc_testkit::skip!("no C compiler for the libcuda client: {e}");
                    None
                }
            }
        })
        .clone()
}

/// A real driver host of `layout` (one GPU, NVIDIA's NVML), `None` without device nodes.
fn host(driver: &RealDriver, layout: Layout) -> Option<(tempfile::TempDir, PathBuf, Host)> {
    let dir = tempfile::tempdir().unwrap();
    // A driver container's root is seen from the host at /run/nvidia/driver.
    let root = match layout {
        Layout::DriverContainer => dir.path().join("run/nvidia/driver"),
        _ => dir.path().join("host"),
    };
    let scenario = Scenario::builtin("single").unwrap();
    let host =
        Host::build_real(&scenario, &root, driver, PackageArch::Amd64, layout, false).unwrap();
    if !matches!(host.device_nodes_state(), DeviceNodes::Created) {
        nvc_testkit::skip!("the simulated host's device nodes could not be made");
        return None;
    }
    Some((dir, root, host))
}

/// A glibc image: busybox, this machine's glibc and static `ldconfig`, the libcuda client
/// at `/cuda-version`, a Debian layout, no linker cache.
fn image(at: &Path, client: &Path) {
    let dirs = ["bin", "dev", "proc", "sys", "tmp", "usr/bin", "lib64"];
    nvc_testkit::debian_image(at, &dirs, true).unwrap();
    std::fs::copy("/bin/busybox", at.join("bin/busybox")).unwrap();
    std::fs::copy(client, at.join("cuda-version")).unwrap();
    let libs = at.join("lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&libs).unwrap();
    for lib in nvc_testkit::real_driver::GLIBC {
        std::fs::copy(Path::new("/lib/x86_64-linux-gnu").join(lib), libs.join(lib)).unwrap();
    }
    std::fs::copy(
        "/lib64/ld-linux-x86-64.so.2",
        at.join("lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
}

/// `nvc-sim`, built next to this package's binaries (it belongs to nvc-testkit).
fn sim_bin() -> String {
    env!("CARGO_BIN_EXE_nvidia-container-cli").replace("nvidia-container-cli", "nvc-sim")
}

/// `nvidia-container-cli --root ROOT ARGS` under `nvc-sim run ROOT`, with the layout's PATH.
fn cli(root: &Path, layout: Layout, args: &[&str]) -> Output {
    Command::new(sim_bin())
        // Cargo sets it for tests; the hooks run without it, as runtimes run them.
        .env_remove("LD_LIBRARY_PATH")
        .arg("run")
        .arg(root)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_nvidia-container-cli"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("PATH", layout.path())
        .output()
        .unwrap()
}

/// What every container on a real-driver host shows: NVIDIA's nvidia-smi failing to reach
/// the driver in its own words, libcuda's driver API version, the real libraries cached in
/// `libs` (the image's library directory where `configure` mounts them; the host's
/// directory, inside the driver root, where a CDI spec does, as nvidia-ctk's).
fn check(who: &str, out: &str, libs: &str) {
    let smi = section(out, "smi").join("\n");
    assert!(
        smi.contains(
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver"
        ) && smi.ends_with("exit 9"),
        "{who}: nvidia-smi:\n{out}"
    );
    let cuda = section(out, "cuda");
    assert!(
        cuda.contains(&"cuDriverGetVersion 0 12020") && cuda.contains(&"cuInit 100"),
        "{who}: the libcuda client:\n{out}"
    );
    let loaded = format!("libcuda {libs}/libcuda.so.1");
    assert!(
        cuda.contains(&loaded.as_str()),
        "{who}: libcuda not loaded from {libs}:\n{out}"
    );
    let cache = section(out, "cache");
    for lib in [
        "libcuda.so.1",
        "libnvidia-ml.so.1",
        "libnvidia-ptxjitcompiler.so.1",
    ] {
        let want = format!("{lib} (libc6,x86-64) => {libs}/{lib}");
        assert!(
            cache.iter().any(|l| l.trim() == want),
            "{who}: ldconfig -p does not list {lib}:\n{out}"
        );
    }
}

/// The listing upstream 1.17 printed for `layout`'s root (`@VERSION@` for the driver
/// version), `None` where upstream cannot list it.
fn upstream_listing(layout: Layout, version: &str) -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../nvc-testkit/real-driver/upstream")
        .join(format!("{}.list", layout.name()));
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.replace("@VERSION@", version))
}

#[test]
fn list_prints_what_upstream_prints_on_every_layout() {
    let Some((driver, _)) = prerequisites() else {
        return;
    };
    for layout in Layout::ALL {
        let Some((_dir, root, _host)) = host(&driver, layout) else {
            return;
        };
        // NVIDIA's NVML without a kernel module: the way out is named. (Not on NixOS,
        // whose NVML finds glibc through a RUNPATH into the store that Debian's files lack:
        // there the library itself does not load.)
        let out = cli(&root, layout, &["list"]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{}: {err}", layout.name());
        assert!(
            layout == Layout::NixOs
                || (err.contains("NVIDIA driver is not loaded") && err.contains("--no-nvml")),
            "{}: {err}",
            layout.name()
        );
        let out = cli(&root, layout, &["--no-nvml", "list"]);
        assert!(
            out.status.success(),
            "{}: {}",
            layout.name(),
            text(&out.stderr)
        );
        let ours = text(&out.stdout);
        let smi = layout.nvidia_smi(&driver);
        assert!(ours.lines().any(|l| l == smi), "{}: {ours}", layout.name());
        match upstream_listing(layout, driver.version()) {
            Some(theirs) => assert_eq!(ours, theirs, "{}: nvc's list, upstream's", layout.name()),
            None => {
                // NixOS: upstream cannot load NVML without a linker cache; nvc finds the
                // store through /run/opengl-driver/lib and PATH.
                assert_eq!(layout, Layout::NixOs);
                let lib = format!(
                    "{}/libcuda.so.{}",
                    layout.library_dir(&driver, PackageArch::Amd64),
                    driver.version()
                );
                assert!(ours.lines().any(|l| l == lib), "{ours}");
            }
        }
    }
}

#[test]
fn nvidias_programs_run_in_containers_the_cli_configured() {
    let Some((driver, client)) = prerequisites() else {
        return;
    };
    for layout in Layout::ALL {
        let Some((_dir, root, _host)) = host(&driver, layout) else {
            return;
        };
        let Some(container) = nvc_testkit::PausedContainer::start() else {
            return;
        };
        let rootfs = tempfile::tempdir().unwrap();
        image(rootfs.path(), &client);
        let rfs = rootfs.path().to_str().unwrap();
        let pid = format!("--pid={}", container.pid());
        let args = [
            "--no-nvml",
            "configure",
            "--device=all",
            "--compute",
            "--utility",
        ];
        let out = cli(&root, layout, &[&args[..], &[&pid, rfs]].concat());
        assert!(
            out.status.success(),
            "{}: {}",
            layout.name(),
            text(&out.stderr)
        );
        let run = Command::new("nsenter")
            // Cargo sets it for tests; the hooks run without it, as runtimes run them.
            .env_remove("LD_LIBRARY_PATH")
            .arg(format!("--target={}", container.pid()))
            .args(["--mount", "chroot", rfs, "/bin/busybox", "sh", "-c", SCRIPT])
            .output()
            .unwrap();
        check(
            &format!("cli/{}", layout.name()),
            &text(&run.stdout),
            IMAGE_LIBS,
        );
    }
}

#[test]
fn nvidias_programs_run_in_runc_with_nvc_hook() {
    let Some((driver, client)) = prerequisites() else {
        return;
    };
    let Some(runc) = runtime("runc") else { return };
    for layout in Layout::ALL {
        let Some((_dir, root, _host)) = host(&driver, layout) else {
            return;
        };
        let env = [
            "NVIDIA_VISIBLE_DEVICES=all",
            "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
        ];
        let b = bundle(&runc, |at| image(at, &client), SCRIPT, &env, true);
        let path = b.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["hooks"] = serde_json::json!({ "createRuntime": [{
            "path": env!("CARGO_BIN_EXE_nvc-hook"),
            "args": ["nvc-hook", format!("--root={}", root.display()), "--no-nvml", "createRuntime"],
            "env": [format!("PATH={}", layout.path())],
        }]});
        std::fs::write(&path, config.to_string()).unwrap();
        check(
            &format!("nvc-hook/{}", layout.name()),
            &run(&runc, b.path(), Some(&root)),
            IMAGE_LIBS,
        );
    }
}

#[test]
fn nvidias_programs_run_in_podman_with_nvc_cdi_specs() {
    let Some((driver, client)) = prerequisites() else {
        return;
    };
    let Some(podman) = runtime("podman") else {
        return;
    };
    let cgroup = CgroupTree(format!("nvc-e2e-real-{}", std::process::id()));
    for layout in Layout::ALL {
        let Some((_dir, root, _host)) = host(&driver, layout) else {
            return;
        };
        let vendor = format!("nvc-real-{}-{}.example", layout.name(), std::process::id());
        std::fs::create_dir_all("/var/run/cdi").unwrap();
        let spec = SystemSpec(PathBuf::from(format!("/var/run/cdi/{vendor}.json")));
        let out = Command::new(env!("CARGO_BIN_EXE_nvc-cdi"))
            .arg("generate")
            .arg("--driver-root")
            .arg(&root)
            .args(["--no-nvml", "--vendor", &vendor])
            .arg("--hook")
            .arg(env!("CARGO_BIN_EXE_nvc-hook"))
            .arg("--output")
            .arg(&spec.0)
            .env("PATH", layout.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            layout.name(),
            text(&out.stderr)
        );
        let state = tempfile::tempdir().unwrap();
        let rootfs = state.path().join("rootfs");
        image(&rootfs, &client);
        let device = format!("{vendor}/gpu=0");
        let out = e2e::podman_run(&podman, state.path(), &cgroup, &device, &rootfs, SCRIPT);
        assert!(
            out.status.success(),
            "{}: {}",
            layout.name(),
            text(&out.stderr)
        );
        let libs = layout.library_dir(&driver, PackageArch::Amd64);
        check(
            &format!("podman/{}", layout.name()),
            &text(&out.stdout),
            &libs,
        );
    }
}

#[test]
fn mig_listings_with_capability_nodes_equal_upstreams() {
    let Some((driver, _)) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("host");
    let scenario = Scenario::builtin("mig").unwrap();
    // The fake NVML reporting the real version: MIG devices are NVML's to enumerate.
    let layout = Layout::RunInstaller;
    Host::build_real(&scenario, &root, &driver, PackageArch::Amd64, layout, true).unwrap();
    let listings =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../nvc-testkit/real-driver/upstream");
    let mut compared = 0;
    for i in 0.. {
        let Ok(theirs) = std::fs::read_to_string(listings.join(format!("mig-{i}.list"))) else {
            break;
        };
        let (args, theirs) = theirs.split_once('\n').unwrap();
        let args: Vec<&str> = ["list"].into_iter().chain(args.split(' ')).collect();
        let out = cli(&root, layout, &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let theirs = theirs.replace("@VERSION@", driver.version());
        assert_eq!(
            text(&out.stdout),
            theirs,
            "list {args:?}: nvc's, upstream's"
        );
        compared += 1;
    }
    assert_eq!(compared, 6, "the committed MIG listings");
}

/// A runc container started without GPUs gets the real driver by `attach` (its root is its
/// process's, no rootfs path): NVIDIA's nvidia-smi and libcuda then run in it, as in a
/// container configured at start (Debian's layout).
#[test]
fn nvidias_programs_run_in_a_running_container_after_attach() {
    let Some((driver, client)) = prerequisites() else {
        return;
    };
    let Some(runc) = runtime("runc") else { return };
    let layout = Layout::Debian;
    let Some((_dir, root, _host)) = host(&driver, layout) else {
        return;
    };
    let b = bundle(
        &runc,
        |at| image(at, &client),
        "exec /bin/busybox sleep 600",
        &[],
        true,
    );
    let state = tempfile::tempdir().unwrap();
    let id = format!("nvc-real-attach-{}", std::process::id());
    let script = format!(
        r#"umount -l /sys/fs/cgroup/unified 2>/dev/null
           R="{runc} --root {state}"
           $R run -d --bundle {bundle} {id} </dev/null >/dev/null 2>&1 || echo "runc run failed"
           pid=$($R state {id} | grep '"pid"' | tr -dc 0-9)
           {cli} --root={root} --no-nvml attach --pid=$pid --device=all --compute --utility || echo "attach failed"
           $R exec {id} /bin/busybox sh -c "$SCRIPT"
           $R delete -f {id} >/dev/null 2>&1"#,
        runc = runc.display(),
        state = state.path().display(),
        bundle = b.path().display(),
        cli = env!("CARGO_BIN_EXE_nvidia-container-cli"),
        root = root.display(),
    );
    let out = Command::new(sim_bin())
        .env_remove("LD_LIBRARY_PATH")
        .arg("run")
        .arg(&root)
        .args(["--", "timeout", "-k", "10", "120", "bash", "-c", &script])
        .env("PATH", layout.path())
        .env("SCRIPT", SCRIPT)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains("runc run failed") && !stdout.contains("attach failed"),
        "{stdout}{}",
        text(&out.stderr)
    );
    check("attach/debian", &stdout, IMAGE_LIBS);
}
