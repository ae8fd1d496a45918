//! The C ABI as C programs see it: `include/nvc.h` compiled with `cc` against the built
//! `libnvidia-container.so.1` — struct layouts, exported symbols, `info` on every simulated
//! host, misuse, and (as root, under `nvc-sim run`) upstream's configure flow compared with
//! nvc's `nvidia-container-cli configure`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use nvc_testkit::{BUILTIN, Host, Scenario};
use nvidia_container::types::*;

/// `target/<profile>`, where cargo put the library and the workspace's binaries.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// A directory with `libnvidia-container.so{,.1}` pointing at the built library, for `-l`
/// and the run-time linker.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // `cargo test` leaves the library it built for this test in `deps`, beside the test
        // binary; only `cargo build` copies it up to `target/<profile>`.
        let exe = std::env::current_exe().unwrap();
        let lib = [exe.parent().unwrap().to_path_buf(), target_dir()]
            .map(|dir| dir.join("libnvidia_container.so"))
            .into_iter()
            .find(|lib| lib.is_file())
            .expect("libnvidia_container.so is built with this test (target/<profile>/deps)");
        for name in ["libnvidia-container.so", "libnvidia-container.so.1"] {
            std::os::unix::fs::symlink(&lib, dir.path().join(name)).unwrap();
        }
        dir
    })
    .path()
}

/// Compiles `source` (C, with `nvc.h` on the include path) against the library.
fn compile(name: &str, source: &Path) -> PathBuf {
    let out = lib_dir().join(name);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("cc")
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg("-I")
        .arg(manifest.join("include"))
        .arg("-I")
        .arg(manifest.join("tests/c"))
        .arg(source)
        .arg("-L")
        .arg(lib_dir())
        .arg(format!("-Wl,-rpath,{}", lib_dir().display()))
        .arg("-lnvidia-container")
        .status()
        .expect("cc runs");
    assert!(status.success(), "cc {} failed", source.display());
    out
}

/// `tests/c/<name>.c`, compiled once for all the tests that run it (in parallel: one
/// compiling while another executes the half-written file would fail).
fn c_test(name: &str) -> PathBuf {
    static COMPILED: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut compiled = COMPILED.lock().unwrap();
    compiled
        .entry(name.to_owned())
        .or_insert_with(|| {
            let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
            compile(name, &source)
        })
        .clone()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Rust's view of each field's offset and each struct's size, and C's, from one list.
macro_rules! layout {
    ($($s:ident { $($f:ident),* })*) => {{
        let mut rust = String::new();
        let mut c = String::new();
        $(
            writeln!(rust, "{} {}", stringify!($s), size_of::<$s>()).unwrap();
            writeln!(c, "printf(\"{} %zu\\n\", sizeof(struct {}));", stringify!($s), stringify!($s)).unwrap();
            $(
                writeln!(rust, "{}.{} {}", stringify!($s), stringify!($f), offset_of!($s, $f)).unwrap();
                writeln!(c, "printf(\"{}.{} %zu\\n\", offsetof(struct {}, {}));",
                    stringify!($s), stringify!($f), stringify!($s), stringify!($f)).unwrap();
            )*
        )*
        (rust, c)
    }};
}

#[test]
fn structs_sit_where_c_expects_them() {
    let (rust, body) = layout! {
        nvc_version { major, minor, patch, string }
        nvc_imex_channel { id }
        nvc_imex_info { chans, nchans }
        nvc_config { root, ldcache, uid, gid, imex }
        nvc_device_node { path, id }
        nvc_driver_info { nvrm_version, cuda_version, bins, nbins, libs, nlibs, libs32, nlibs32,
                          ipcs, nipcs, devs, ndevs, firmwares, nfirmwares }
        nvc_mig_device { parent, uuid, gi, ci, gi_caps_path, ci_caps_path }
        nvc_mig_device_info { devices, ndevices }
        nvc_device { model, uuid, busid, arch, brand, node, mig_capable, mig_caps_path, mig_devices }
        nvc_device_info { gpus, ngpus }
        nvc_container_config { pid, rootfs, bins_dir, libs_dir, libs32_dir, cudart_dir, ldconfig }
        nvc_context { initialized, err, cfg, mnt_ns, no_pivot }
        nvc_container { flags, cfg, uid, gid, mnt_ns, dev_cg_version, dev_cg, libs, nlibs,
                        cuda_compat_dir }
    };
    // Upstream's two "opaque" structs as its CLI sees them (tests/c/nvc_internal.h).
    let source = format!(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"nvc_internal.h\"\n\
         int main(void) {{\n{body}return 0;\n}}\n"
    );
    let file = lib_dir().join("layout.c");
    std::fs::write(&file, source).unwrap();
    let out = Command::new(compile("layout", &file)).output().unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out).0, rust);
}

#[test]
fn exports_exactly_the_header_api_under_nvc_1_0() {
    let header =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/nvc.h"))
            .unwrap();
    // Every `nvc_name(` in the header is a prototype.
    let segments: Vec<&str> = header.split('(').collect();
    let declared: BTreeSet<String> = segments[..segments.len() - 1]
        .iter()
        .filter_map(|s| {
            let start = s.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            Some(&s[start + 1..])
        })
        .filter(|name| name.starts_with("nvc_"))
        .map(|name| format!("{name}@@NVC_1.0"))
        .collect();
    assert_eq!(declared.len(), 26, "{declared:?}");
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib_dir().join("libnvidia-container.so.1"))
        .output()
        .expect("nm runs");
    let exported: BTreeSet<String> = text(&out)
        .0
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|s| !s.starts_with("NVC_1.0"))
        .map(str::to_owned)
        .collect();
    assert_eq!(exported, declared);
    let dynamic = Command::new("readelf")
        .args(["-d"])
        .arg(lib_dir().join("libnvidia-container.so.1"))
        .output()
        .expect("readelf runs");
    assert!(
        text(&dynamic)
            .0
            .contains("Library soname: [libnvidia-container.so.1]")
    );
}

fn build(s: &Scenario) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(s, dir.path()).unwrap();
    (dir, host)
}

/// What nvc's `nvidia-container-cli info` prints for the driver root.
fn cli_info(root: &Path) -> String {
    let driver = nvc_core::Context::builder()
        .root(root)
        .build()
        .unwrap()
        .driver()
        .unwrap();
    let mut out = Vec::new();
    nvc_examples::render::info(driver.info(), false, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn info_through_the_abi_equals_the_cli_on_every_scenario() {
    let info = c_test("info");
    for name in BUILTIN {
        let s = Scenario::builtin(name).unwrap();
        let (dir, _host) = build(&s);
        let out = Command::new(&info).arg(dir.path()).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{name}: {stderr}");
        assert_eq!(stdout, cli_info(dir.path()), "{name}");
    }
    // No driver: upstream's words, exit 1.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(&info).arg(empty.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.starts_with("initialization error: "),
        "{}",
        text(&out).1
    );
}

/// An image with a CUDA compat `libcuda` newer than the simulated driver (550).
fn image_with_compat(rootfs: &Path) {
    nvc_testkit::debian_image(rootfs, &[], true).unwrap();
    let compat = rootfs.join("usr/local/cuda/compat");
    std::fs::create_dir_all(&compat).unwrap();
    let so = nvc_ldcache::elf::SharedObject::x86(nvc_ldcache::elf::Class::Elf64, b"libcuda.so.1");
    std::fs::write(
        compat.join("libcuda.so.999.1"),
        nvc_ldcache::elf::write_shared_object(&so),
    )
    .unwrap();
}

/// Runs the C test `name` as `name ROOT ROOTFS` on the dgx host and an image made by
/// `image`; its standard output, and the rootfs.
fn run_on_dgx(name: &str, image: fn(&Path)) -> (String, tempfile::TempDir) {
    let program = c_test(name);
    let (dir, _host) = build(&Scenario::builtin("dgx").unwrap());
    let rootfs = tempfile::tempdir().unwrap();
    image(rootfs.path());
    let out = Command::new(program)
        .arg(dir.path())
        .arg(rootfs.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{name}: {stderr}");
    (stdout, rootfs)
}

#[test]
fn upstreams_cli_reaches_into_the_opaque_structs() {
    let (stdout, rootfs) = run_on_dgx("internals", image_with_compat);
    // supervised | compute (bins, libs) | utility (bins, libs) | cuda-compat-mode=mount
    let flags = 1 | (1 << 12) | (1 << 6) | (1 << 11) | (1 << 5) | (1 << 16);
    assert_eq!(
        stdout,
        format!(
            "no_pivot 1\nflags {flags}\nrootfs {}\nlib /usr/local/cuda/compat/libcuda.so.999.1\n",
            rootfs.path().display()
        )
    );
}

#[test]
fn misuse_gets_errors_never_a_crash() {
    let plain = |rootfs: &Path| nvc_testkit::debian_image(rootfs, &[], true).unwrap();
    assert_eq!(run_on_dgx("misuse", plain).0, "ok\n");
}

/// Frees racing calls on the same configuration or container from other threads
/// (`tests/c/race.c`): every call runs before the free or is refused, never a crash.
#[test]
fn frees_racing_calls_on_configurations_and_containers_are_refused_not_a_crash() {
    let plain = |rootfs: &Path| nvc_testkit::debian_image(rootfs, &[], true).unwrap();
    assert_eq!(run_on_dgx("race", plain).0, "ok\n");
}

#[test]
fn the_debug_log_records_the_calls() {
    let info = c_test("info");
    let (dir, _host) = build(&Scenario::builtin("single").unwrap());
    let log = dir.path().join("nvc.log");
    let out = Command::new(info)
        .arg(dir.path())
        .env("NVC_DEBUG_FILE", &log)
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("-- WARNING, the following logs are for debugging purposes only --"));
    let line = log
        .lines()
        .find(|l| l.contains("initializing library context"))
        .unwrap();
    // `I<MMDD> <HH:MM:SS>.<usec> <tid> <file>:<line>] <message>`
    let (head, _) = line.split_once("] ").unwrap();
    let fields: Vec<&str> = head.split(' ').collect();
    assert_eq!(fields.len(), 4, "{line}");
    assert!(fields[0].starts_with('I') && fields[0].len() == 5, "{line}");
    assert!(fields[3].starts_with("context.rs:"), "{line}");
}

/// The mounts under `rootfs` in a mountinfo, each as (mount point, its parent's mount
/// point), rootfs-relative and sorted: the tree, whatever order the kernel lists it in.
fn mounts_under(mountinfo: &str, rootfs: &str) -> Vec<(String, String)> {
    let fields: Vec<Vec<&str>> = mountinfo.lines().map(|l| l.split(' ').collect()).collect();
    let point = |id: &str| fields.iter().find(|f| f[0] == id).map(|f| f[4]);
    let mut tree: Vec<(String, String)> = fields
        .iter()
        .filter_map(|f| {
            let at = f[4].strip_prefix(rootfs)?;
            let parent = point(f[1]).unwrap_or_default();
            Some((
                at.to_owned(),
                parent.strip_prefix(rootfs).unwrap_or(parent).to_owned(),
            ))
        })
        .collect();
    tree.sort();
    tree
}

/// A configure's result: the mount tree, the device cgroup's list, the linker cache.
type Outcome = (Vec<(String, String)>, String, Vec<CacheEntry>);

/// A linker cache entry: SONAME, path, flags.
type CacheEntry = (std::ffi::OsString, PathBuf, nvc_ldcache::Flags);

/// One configure on a fresh paused container, image and device cgroup: `run` gets the
/// container's pid and rootfs and returns the program's output; then the container's
/// mounts, its cgroup's device list and its linker cache.
fn configure_one(
    root: &Path,
    image: fn(&Path),
    run: impl FnOnce(u32, &str) -> Output,
) -> Option<Outcome> {
    let container = nvc_testkit::PausedContainer::start()?;
    let rootfs = tempfile::tempdir().unwrap();
    image(rootfs.path());
    let cgroup = nvc_testkit::TestCgroup::v1_devices();
    if let Some(cg) = &cgroup {
        std::fs::write(cg.path().join("devices.deny"), "a").unwrap();
        std::fs::write(cg.path().join("devices.allow"), "c 1:3 rwm").unwrap();
        cg.add(container.pid()).unwrap();
    }
    let rfs = rootfs.path().to_str().unwrap();
    let out = run(container.pid(), rfs);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "{stdout}{stderr} (root {})",
        root.display()
    );
    let mounts = mounts_under(&container.mountinfo(), rfs);
    let devices = cgroup
        .as_ref()
        .map(|cg| std::fs::read_to_string(cg.path().join("devices.list")).unwrap())
        .unwrap_or_default();
    let cache = cache_entries(&std::fs::read(rootfs.path().join("etc/ld.so.cache")).unwrap());
    drop(container);
    Some((mounts, devices, cache))
}

/// What a linker cache lists, in its order: the entries a loader finds. (The CLI's configure
/// writes it in process where glibc's `ldconfig` is proven to write the same; the C API's
/// separate ldcache step runs the image's `ldconfig`: the same entries, not the same bytes.)
fn cache_entries(bytes: &[u8]) -> Vec<CacheEntry> {
    nvc_ldcache::LdCache::parse(bytes)
        .unwrap()
        .entries()
        .map(|e| {
            let e = e.unwrap();
            (e.soname().to_owned(), e.path().to_owned(), e.flags())
        })
        .collect()
}

#[test]
fn upstreams_configure_flow_through_the_abi_equals_the_cli() {
    if !nix::unistd::geteuid().is_root() {
        nvc_testkit::skip!("configuring a container needs root");
        return;
    }
    let sim = target_dir().join("nvc-sim");
    let cli = target_dir().join("nvidia-container-cli");
    if !sim.is_file() || !cli.is_file() {
        nvc_testkit::skip!(
            "nvc-sim and nvidia-container-cli are not built (cargo test --workspace builds them)"
        );
        return;
    }
    let flow = c_test("flow");
    let plain = |rootfs: &Path| nvc_testkit::debian_image(rootfs, &[], true).unwrap();
    // (scenario, CLI global options, configure options, the flow's environment, IMEX
    // channel)
    let cases = [
        ("dgx", None, vec![], None, None),
        ("mig", None, vec![], None, None),
        // The image's CUDA compat libcuda, bound over the driver's.
        ("single", None, vec![], Some("FLOW_COMPAT"), None),
        (
            "mig",
            Some("--load-kmods"),
            vec!["--mig-config=all", "--mig-monitor=all", "--imex-channel=0"],
            Some("FLOW_MIG_CAPS"),
            Some("0"),
        ),
    ];
    for (name, global, cli_opts, flow_env, imex) in cases {
        let (dir, host) = build(&Scenario::builtin(name).unwrap());
        if !matches!(host.device_nodes_state(), nvc_testkit::DeviceNodes::Created) {
            nvc_testkit::skip!("no device nodes");
            return;
        }
        let root = dir.path();
        // `nvc-sim run ROOT -- PROGRAM ARGS... ROOTFS [TAIL]` (the simulated host as the host).
        let sim_run = |program: &Path, args: Vec<String>, rfs: &str, tail: Option<&str>| {
            let mut cmd = Command::new(&sim);
            cmd.arg("run")
                .arg(root)
                .arg("--")
                .arg(program)
                .args(args)
                .arg(rfs);
            cmd.args(tail);
            if flow_env == Some("FLOW_MIG_CAPS") {
                cmd.env("FLOW_MIG_CAPS", "1")
                    .env("FLOW_INIT_OPTS", "load-kmods");
            }
            cmd.output().unwrap()
        };
        let root_arg = root.display().to_string();
        let image = if flow_env == Some("FLOW_COMPAT") {
            image_with_compat
        } else {
            plain
        };
        let Some(abi) = configure_one(root, image, |pid, rfs| {
            let opts = "supervised compute utility".to_owned();
            sim_run(
                &flow,
                vec![root_arg.clone(), pid.to_string(), opts],
                rfs,
                imex,
            )
        }) else {
            return;
        };
        let Some(cli_result) = configure_one(root, image, |pid, rfs| {
            let args = ["configure", "--device=all", "--compute", "--utility"];
            let mut argv = vec![format!("--root={root_arg}")];
            argv.extend(global.map(str::to_owned));
            argv.extend(args.map(str::to_owned));
            argv.extend(cli_opts.iter().map(|o| (*o).to_owned()));
            argv.push(format!("--pid={pid}"));
            sim_run(&cli, argv, rfs, None)
        }) else {
            return;
        };
        let libcuda = "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14";
        assert!(
            abi.0.iter().any(|(m, _)| m == libcuda),
            "{name}: {:?}",
            abi.0
        );
        assert_eq!(abi.0, cli_result.0, "{name} {cli_opts:?}: mounts");
        assert_eq!(abi.1, cli_result.1, "{name} {cli_opts:?}: device cgroup");
        assert_eq!(abi.2, cli_result.2, "{name} {cli_opts:?}: ld.so.cache");
        let compat = "/usr/lib/x86_64-linux-gnu/libcuda.so.999.1";
        assert_eq!(
            abi.0.iter().any(|(m, _)| m == compat),
            flow_env == Some("FLOW_COMPAT")
        );
        if flow_env == Some("FLOW_MIG_CAPS") {
            let caps = "/proc/driver/nvidia/capabilities";
            assert!(abi.0.iter().any(|(m, _)| m == caps), "{:?}", abi.0);
            let channel = "/dev/nvidia-caps-imex-channels/channel0";
            assert!(abi.0.iter().any(|(m, _)| m == channel), "{:?}", abi.0);
        }
    }
    // The caller's filter is honoured: a compat list emptied through the struct, as
    // upstream's CLI filter does, mounts none.
    let (dir, _host) = build(&Scenario::builtin("single").unwrap());
    let root = dir.path();
    let Some(dropped) = configure_one(root, image_with_compat, |pid, rfs| {
        let opts = "supervised compute utility";
        Command::new(&sim)
            .arg("run")
            .arg(root)
            .arg("--")
            .arg(&flow)
            .args([&root.display().to_string(), &pid.to_string(), opts, rfs])
            .env("FLOW_DROP_COMPAT", "1")
            .output()
            .unwrap()
    }) else {
        return;
    };
    assert!(
        !dropped
            .0
            .iter()
            .any(|(m, _)| m.ends_with("libcuda.so.999.1"))
    );
    assert!(
        dropped
            .0
            .iter()
            .any(|(m, _)| m.ends_with("libcuda.so.550.54.14"))
    );
}
