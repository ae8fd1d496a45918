//! `nvidia-container-cli info` and `list` on every simulated host: upstream's layout, order
//! and exit codes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nvc_testkit::{BUILTIN, Host, NvmlFaults, Scenario};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nvidia-container-cli"))
        .args(args)
        .output()
        .unwrap()
}

/// `nvc-sim`, built next to this package's binaries (it belongs to nvc-testkit).
fn sim_bin() -> String {
    env!("CARGO_BIN_EXE_nvidia-container-cli").replace("nvidia-container-cli", "nvc-sim")
}

fn build(s: &Scenario) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(s, dir.path()).unwrap();
    (dir, host)
}

/// What upstream's `info` prints for a scenario, written out independently.
fn expected_info(s: &Scenario) -> String {
    let mut t = format!(
        "NVRM version:   {}\nCUDA version:   12.4\n",
        s.driver_version
    );
    for g in &s.gpus {
        let (major, minor) = g.compute_capability;
        write!(
            t,
            "\nDevice Index:   {}\nDevice Minor:   {}\nModel:          {}\nBrand:          {}\n\
             GPU UUID:       {}\nBus Location:   {}\nArchitecture:   {major}.{minor}\n",
            g.index,
            g.minor,
            g.name,
            g.upstream_brand(),
            g.uuid,
            g.pci.bus_id()
        )
        .unwrap();
    }
    t
}

#[test]
fn info_prints_every_scenario_exactly() {
    for name in BUILTIN {
        let s = Scenario::builtin(name).unwrap();
        let (dir, _host) = build(&s);
        let root = dir.path().to_str().unwrap();
        let out = cli(&["--root", root, "info"]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text, expected_info(&s), "{name}");
        if *name == "dgx" {
            // H100s: NVML brand 14, which CUDA images' `brand=nvidia` requirements name.
            assert!(text.contains("Brand:          Nvidia\n"), "{text}");
            let rootfs = tempfile::tempdir().unwrap();
            let ok = cli(&[
                "--root",
                root,
                "configure",
                "--dry-run",
                "--device=0",
                "--require=brand=nvidia,driver>=470",
                "--pid=1",
                rootfs.path().to_str().unwrap(),
            ]);
            assert!(
                ok.status.success(),
                "{}",
                String::from_utf8_lossy(&ok.stderr)
            );
        }

        // The NVML helper runs as whoever `--user` names (nobody, as upstream's default).
        let csv = cli(&[
            &format!("--root={root}"),
            "--user=65534:65534",
            "info",
            "--csv",
        ]);
        let mut want = "NVRM version,CUDA version\n550.54.14,12.4\n\n\
                        Device Index,Device Minor,Model,Brand,GPU UUID,Bus Location,Architecture\n"
            .to_owned();
        for g in &s.gpus {
            let (major, minor) = g.compute_capability;
            writeln!(
                want,
                "{},{},{},{},{},{},{major}.{minor}",
                g.index,
                g.minor,
                g.name,
                g.upstream_brand(),
                g.uuid,
                g.pci.bus_id()
            )
            .unwrap();
        }
        assert_eq!(String::from_utf8(csv.stdout).unwrap(), want, "{name}");
    }
}

#[test]
fn info_without_nvml_says_what_only_nvml_knows_is_not_known() {
    let s = Scenario::builtin("dgx").unwrap();
    let (dir, _host) = build(&s);
    let root = dir.path().to_str().unwrap();
    let out = cli(&["--root", root, "--no-nvml", "info"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // The same report with N/A where NVML's answers were.
    let expected = expected_info(&s)
        .replace("CUDA version:   12.4", "CUDA version:   N/A")
        .replace("Brand:          Nvidia", "Brand:          N/A")
        .replace("Architecture:   9.0", "Architecture:   N/A");
    assert_eq!(text, expected);
}

#[test]
fn list_prints_devices_then_files_in_upstreams_order() {
    let s = Scenario::builtin("mig").unwrap();
    let (dir, host) = build(&s);
    let root = dir.path().to_str().unwrap();
    let out = cli(&["-r", root, "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let devices_created = matches!(host.device_nodes_state(), nvc_testkit::DeviceNodes::Created);
    let mut want: Vec<String> = vec!["/dev/nvidiactl".into()];
    if devices_created {
        want.extend(
            [
                "/dev/nvidia-uvm",
                "/dev/nvidia-uvm-tools",
                "/dev/nvidia-modeset",
            ]
            .map(String::from),
        );
    }
    want.extend(["/dev/nvidia0", "/dev/nvidia1"].map(String::from));
    for m in &s.gpus[0].mig_devices {
        want.push(format!(
            "/proc/driver/nvidia/capabilities/gpu0/mig/gi{}/access",
            m.gi
        ));
        want.push(format!(
            "/proc/driver/nvidia/capabilities/gpu0/mig/gi{}/ci{}/access",
            m.gi, m.ci
        ));
    }
    assert_eq!(&lines[..want.len()], want.as_slice());
    let rest = &lines[want.len()..];
    assert_eq!(rest[0], "/usr/bin/nvidia-smi");
    let first_lib = rest
        .iter()
        .position(|l| l.starts_with("/usr/lib/"))
        .unwrap();
    assert_eq!(
        rest[first_lib],
        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.14"
    );
    assert_eq!(
        &rest[rest.len() - 4..],
        [
            "/var/run/nvidia-persistenced/socket",
            "/tmp/nvidia-mps",
            "/lib/firmware/nvidia/550.54.14/gsp_ga10x.bin",
            "/lib/firmware/nvidia/550.54.14/gsp_tu10x.bin"
        ]
    );

    // One MIG device by index: its parent's node and its two capability files only.
    let out = cli(&["-r", root, "list", "--device=0:2", "--ipcs"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("/dev/nvidia0\n/proc/driver/nvidia/capabilities/gpu0/mig/gi2/access\n"));
    assert!(!text.contains("/dev/nvidia1\n"));
    assert!(text.ends_with("/var/run/nvidia-persistenced/socket\n/tmp/nvidia-mps\n"));
}

#[test]
fn errors_have_upstreams_prefixes_and_exit_1() {
    let s = Scenario::builtin("single").unwrap();
    let (dir, _host) = build(&s);
    let root = dir.path().to_str().unwrap();
    let out = cli(&["--root", root, "list", "--device", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "nvidia-container-cli: device error: 3: unknown device\n"
    );

    let empty = tempfile::tempdir().unwrap();
    let out = cli(&["--root", empty.path().to_str().unwrap(), "info"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .starts_with("nvidia-container-cli: initialization error: NVML error: nvmlInit:")
    );

    let cache = dir.path().join("etc/ld.so.cache");
    std::fs::write(&cache, b"glibc-ld.so.cache1.1 but then nothing").unwrap();
    let out = cli(&["--root", root, "info"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("nvidia-container-cli: "), "{err}");
    assert!(err.contains(&cache.display().to_string()), "{err}");

    let out = cli(&["--root", root, "--user=no-such-user-here", "info"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .starts_with("nvidia-container-cli: invalid user: no-such-user-here\n")
    );

    let out = cli(&["--bogus", "info"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("unrecognized option or command '--bogus'")
    );
}

#[test]
fn a_hanging_nvml_times_out_and_the_process_exits() {
    let mut s = Scenario::builtin("single").unwrap();
    s.nvml_faults = NvmlFaults {
        init_result: 0,
        init_delay_ms: 30_000,
        ..NvmlFaults::default()
    };
    let (dir, _host) = build(&s);
    let start = Instant::now();
    let out = cli(&[
        "--root",
        dir.path().to_str().unwrap(),
        "--nvml-timeout=0.3",
        "info",
    ]);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "nvidia-container-cli: initialization error: NVML timed out in nvmlInit after 0.3s; \
         raise the limit with --nvml-timeout=SECONDS or NVC_NVML_TIMEOUT\n"
    );
}

#[test]
fn under_nvc_sim_run_the_simulated_host_is_the_host() {
    if !nix::unistd::geteuid().is_root() {
        nvc_testkit::skip!("nvc-sim run needs root");
        return;
    }
    let sim = sim_bin();
    if !std::path::Path::new(&sim).exists() {
        nvc_testkit::skip!("nvc-sim is not built next to nvidia-container-cli");
        return;
    }
    for name in BUILTIN {
        let s = Scenario::builtin(name).unwrap();
        let (dir, _host) = build(&s);
        let root = dir.path().to_str().unwrap();
        let cli = env!("CARGO_BIN_EXE_nvidia-container-cli");
        let out = Command::new(&sim)
            .args(["run", root, "--", cli, "--root", root, "info"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            expected_info(&s),
            "{name}"
        );
    }
}

#[test]
fn mig_config_monitor_and_imex_channels() {
    let s = Scenario::builtin("mig").unwrap();
    let (dir, _host) = build(&s);
    let root = dir.path().to_str().unwrap();
    let out = cli(&[
        "-r",
        root,
        "list",
        "--device=1",
        "--mig-monitor=all",
        "--imex-channel=2,0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Both GPUs can do MIG; only the visible one gets the monitor capability.
    assert!(text.ends_with(
        "/dev/nvidia1\n/dev/nvidia-caps-imex-channels/channel2\n/dev/nvidia-caps-imex-channels/channel0\n\
         /proc/driver/nvidia/capabilities/mig/monitor\n/proc/driver/nvidia/capabilities/gpu1\n"
    ));
    // With MIG config on, the per-MIG access files are not listed.
    let out = cli(&["-r", root, "list", "--device=all", "--mig-config=all"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("/access\n"));
    assert!(text.ends_with("/proc/driver/nvidia/capabilities/mig/config\n/proc/driver/nvidia/capabilities/gpu0\n/proc/driver/nvidia/capabilities/gpu1\n"));

    let out = cli(&["-r", root, "list", "--device=0:0", "--mig-config=all"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "nvidia-container-cli: mig-config error: cannot enable mig-config with specific MIG devices selected\n"
    );
    let out = cli(&["-r", root, "list", "--mig-monitor=0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .starts_with("nvidia-container-cli: mig-monitor error: invalid mig-monitor value")
    );
}

#[test]
fn configure_dry_run_prints_the_plan_and_checks_requirements() {
    let s = Scenario::builtin("single").unwrap();
    let (dir, _host) = build(&s);
    let root = dir.path().to_str().unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &[], false).unwrap();
    let rfs = rootfs.path().to_str().unwrap();
    let out = cli(&[
        "--root",
        root,
        "configure",
        "--dry-run",
        "--device=all",
        "--compute",
        "--utility",
        "--require=cuda>=12.0",
        "--pid=1",
        rfs,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = String::from_utf8(out.stdout).unwrap();
    assert!(plan.starts_with("tmpfs /proc/driver/nvidia mode=0555\n"));
    assert!(plan.contains(&format!(
        "bind ro,nosuid,nodev /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14 <- {root}/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14\n"
    )));
    assert!(plan.contains("cgroup allow c 195:0 rw\n"));
    assert!(!plan.contains("libGLX_nvidia"));
    // nvc's in-process linker cache update.
    let builtin = cli(&[
        "--root",
        root,
        "configure",
        "--dry-run",
        "--ldconfig=builtin",
        "--pid=1",
        rfs,
    ]);
    let builtin = String::from_utf8(builtin.stdout).unwrap();
    assert!(
        builtin
            .ends_with("ldconfig (builtin) - /usr/lib/x86_64-linux-gnu /usr/lib/i386-linux-gnu\n"),
        "{builtin}"
    );
    // argp's other spellings of the same options give the same plan.
    let short = cli(&[
        "-r",
        root,
        "configure",
        "--dry-run",
        "-d",
        "all",
        "-cu",
        "-rcuda>=12.0",
        "-p",
        "1",
        rfs,
    ]);
    assert_eq!(String::from_utf8(short.stdout).unwrap(), plan);

    let out = cli(&[
        "--root",
        root,
        "configure",
        "--dry-run",
        "--require=cuda>=13.0",
        rfs,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr).unwrap().starts_with(
            "nvidia-container-cli: requirement error: unsatisfied condition: cuda>=13.0"
        )
    );
    let out = cli(&["--root", root, "configure", "--dry-run", "/"]);
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "nvidia-container-cli: input error: invalid rootfs directory: /\n"
    );
    // Standalone mode (no --pid): the rootfs has no procfs at /proc.
    let out = cli(&["--root", root, "configure", rfs]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&format!(
            "nvidia-container-cli: container error: open procfs {rfs}/proc: "
        )),
        "{err}"
    );
    let out = cli(&[
        "--root",
        root,
        "configure",
        "--cuda-compat-mode=sometimes",
        rfs,
    ]);
    assert!(String::from_utf8(out.stderr).unwrap().starts_with(
        "nvidia-container-cli: input error: invalid cuda-compat-mode \"sometimes\" (expected mount, ldconfig or disabled)\n"
    ));
    // The ldconfig step is part of the plan: the image's, or the host's with `@`.
    let out = cli(&[
        "--root",
        root,
        "configure",
        "--dry-run",
        "--ldconfig=@/sbin/ldconfig",
        rfs,
    ]);
    let plan = String::from_utf8(out.stdout).unwrap();
    assert!(
        plan.ends_with(
            "ldconfig (host) /sbin/ldconfig /usr/lib/x86_64-linux-gnu /usr/lib/i386-linux-gnu\n"
        ),
        "{plan}"
    );
}

#[test]
fn configure_mounts_into_a_paused_container_under_nvc_sim_run() {
    let Some(container) = nvc_testkit::PausedContainer::start() else {
        return;
    };
    let pid = container.pid();
    let sim = sim_bin();
    let s = Scenario::builtin("dgx").unwrap();
    let (dir, _host) = build(&s);
    let root = dir.path().to_str().unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &[], true).unwrap();
    // A runtime-like device cgroup: everything denied but /dev/null.
    let cgroup = nvc_testkit::TestCgroup::v1_devices();
    if let Some(cg) = &cgroup {
        std::fs::write(cg.path().join("devices.deny"), "a").unwrap();
        std::fs::write(cg.path().join("devices.allow"), "c 1:3 rwm").unwrap();
        cg.add(pid).unwrap();
    }
    let rfs = rootfs.path().to_str().unwrap();
    let pid_arg = format!("--pid={pid}");
    let cli_bin = env!("CARGO_BIN_EXE_nvidia-container-cli");
    let out = Command::new(&sim)
        .args([
            "run",
            root,
            "--",
            cli_bin,
            "--root",
            root,
            "configure",
            "--device=all",
            "--compute",
            "--utility",
            &pid_arg,
            rfs,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = container.mountinfo();
    for n in 0..8 {
        assert!(
            theirs.contains(&format!("{rfs}/dev/nvidia{n} ")),
            "nvidia{n} not mounted"
        );
    }
    assert!(theirs.contains(&format!(
        "{rfs}/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14 "
    )));
    // The container's ldconfig ran: its cache lists the mounted driver.
    let cache = std::fs::read(rootfs.path().join("etc/ld.so.cache")).unwrap();
    let cache = nvc_ldcache::LdCache::parse(&cache).unwrap();
    assert!(cache.entries().any(
        |e| e.unwrap().path() == std::path::Path::new("/usr/lib/x86_64-linux-gnu/libcuda.so.1")
    ));
    // The device cgroup allows every GPU node, and nothing else was opened up.
    if let Some(cg) = &cgroup {
        let list = std::fs::read_to_string(cg.path().join("devices.list")).unwrap();
        for n in 0..8 {
            assert!(list.lines().any(|l| l == format!("c 195:{n} rw")), "{list}");
        }
        assert!(list.lines().any(|l| l == "c 195:255 rw"), "{list}");
        assert!(!list.contains("a *:*"), "{list}");
    }
    drop(container);
}

/// `--cuda-compat-mode=ldconfig` on an image whose compat `libcuda` is newer than the driver:
/// the compat directory is scanned before the library directories, so glibc's cache lists
/// the compat `libcuda.so.1` first and the image's programs load it (before, it came after
/// the driver's and was never loaded).
#[test]
fn cuda_compat_in_ldconfig_mode_puts_the_compat_libcuda_first() {
    let Some(container) = nvc_testkit::PausedContainer::start() else {
        return;
    };
    let (dir, _host) = build(&Scenario::builtin("single").unwrap());
    let root = dir.path().to_str().unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &[], false).unwrap();
    let compat = nvc_testkit::add_cuda_compat(rootfs.path(), "999.1").unwrap();
    let rfs = rootfs.path().to_str().unwrap();
    let pid = format!("--pid={}", container.pid());
    let out = Command::new(sim_bin())
        .args([
            "run",
            root,
            "--",
            env!("CARGO_BIN_EXE_nvidia-container-cli"),
        ])
        .args([
            "--root",
            root,
            "configure",
            "--device=0",
            "--compute",
            "--utility",
        ])
        .args([
            "--no-cgroups",
            "--cuda-compat-mode=ldconfig",
            "--ldconfig=@/sbin/ldconfig",
        ])
        .args([&pid, rfs])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = nvc_testkit::cached_paths(rootfs.path(), "libcuda.so.1").unwrap();
    assert_eq!(
        found,
        [
            compat.with_file_name("libcuda.so.1").to_str().unwrap(),
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
        ]
    );
}

/// A supervised `ldconfig` (the image's, named: run in the sandbox, not written in process)
/// whose container's device cgroup cannot be found (here: nvc's mount namespace has no cgroup
/// filesystem) fails the configure rather than run in nvc's own cgroup, outside the
/// container's device rules; the container is left as it was.
#[test]
fn a_sandbox_whose_device_cgroup_cannot_be_found_fails_closed() {
    let Some(container) = nvc_testkit::PausedContainer::start() else {
        return;
    };
    let (dir, _host) = build(&Scenario::builtin("single").unwrap());
    let root = dir.path().to_str().unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &[], true).unwrap();
    let rfs = rootfs.path().to_str().unwrap();
    let configure = |unmount: &str| {
        sh_in_own_namespace(
            root,
            &format!(
                "{unmount} exec {} --root {root} configure --device=all --compute --no-cgroups \
                 --ldconfig=/sbin/ldconfig --pid={} {rfs}",
                env!("CARGO_BIN_EXE_nvidia-container-cli"),
                container.pid()
            ),
        )
    };
    let out = configure("umount -R /sys/fs/cgroup &&");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cgroup"), "{err}");
    assert!(
        !container
            .mountinfo()
            .contains(&format!("{rfs}/dev/nvidia0 "))
    );
    assert!(!rootfs.path().join("etc/ld.so.cache").exists());
    // The control: with the hierarchy there, the same configure runs its ldconfig.
    let out = configure("");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        container
            .mountinfo()
            .contains(&format!("{rfs}/dev/nvidia0 "))
    );
    assert!(rootfs.path().join("etc/ld.so.cache").exists());
}

/// Runs `script` with `sh` in a mount namespace of its own, under `nvc-sim run ROOT` (as a
/// container's process would run a hook in standalone mode).
fn sh_in_own_namespace(root: &str, script: &str) -> Output {
    Command::new(sim_bin())
        .args([
            "run",
            root,
            "--",
            "unshare",
            "--mount",
            "--propagation",
            "private",
        ])
        .args(["sh", "-c", script])
        .output()
        .unwrap()
}

/// The `single` simulated host and a Debian image with `dirs`, for standalone `configure`;
/// `None` (skipped) without root.
fn standalone_fixture(dirs: &[&str]) -> Option<(tempfile::TempDir, Host, tempfile::TempDir)> {
    if !nix::unistd::geteuid().is_root() {
        nvc_testkit::skip!("configure needs root");
        return None;
    }
    let (dir, host) = build(&Scenario::builtin("single").unwrap());
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), dirs, false).unwrap();
    Some((dir, host, rootfs))
}

#[test]
fn configure_in_standalone_mode_uses_the_rootfs_proc() {
    let Some((dir, _host, rootfs)) = standalone_fixture(&["proc", "sys"]) else {
        return;
    };
    let root = dir.path().to_str().unwrap();
    let rfs = rootfs.path().to_str().unwrap();
    // As a hook inside the container would: the container's /proc and /sys under the rootfs
    // (here the simulated host's, with its /proc/driver), the CLI started by the container's
    // process (a shell in its own mount namespace).
    let script = format!(
        "mount --rbind /proc {rfs}/proc && mount --rbind /sys {rfs}/sys && {cli} --root {root} configure --device=0 --compute --utility --no-ldconfig {rfs} && grep -c ' {rfs}/' /proc/self/mountinfo",
        cli = env!("CARGO_BIN_EXE_nvidia-container-cli"),
    );
    let out = sh_in_own_namespace(root, &script);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // /proc itself plus the driver's mounts, seen from the shell's namespace.
    let count: usize = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(count > 20, "{count}");
    // Nothing reached this namespace.
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(rfs)
    );
}

#[test]
fn standalone_mode_writes_no_device_rule_where_the_image_points() {
    let Some((dir, _host, rootfs)) = standalone_fixture(&["proc"]) else {
        return;
    };
    let root = dir.path().to_str().unwrap();
    let rfs = rootfs.path().to_str().unwrap();
    // The image's /sys is a link to a tree of its own, shaped like the cgroup filesystem at
    // the container's cgroup, whose devices.allow links to a host file.
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let devices = cgroup
        .lines()
        .find_map(|l| l.split_once(":devices:").map(|(_, p)| p.to_owned()))
        .unwrap_or_else(|| {
            let (_, p) = cgroup.lines().find_map(|l| l.split_once("::")).unwrap();
            p.to_owned()
        });
    let fake = rootfs
        .path()
        .join("fake-sys/fs/cgroup/devices")
        .join(devices.trim_start_matches('/'));
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("devices.list"), "").unwrap();
    let canary = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(canary.path(), "host file").unwrap();
    std::os::unix::fs::symlink(canary.path(), fake.join("devices.allow")).unwrap();
    std::os::unix::fs::symlink("/fake-sys", rootfs.path().join("sys")).unwrap();
    let script = format!(
        "mount --rbind /proc {rfs}/proc && {cli} --root {root} configure --device=0 --compute --utility --no-ldconfig {rfs}",
        cli = env!("CARGO_BIN_EXE_nvidia-container-cli"),
    );
    let out = sh_in_own_namespace(root, &script);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("not the kernel filesystem expected there"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(canary.path()).unwrap(), "host file");
}

#[test]
fn hostile_arguments_get_errors_never_a_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let run = |args: &[&OsStr], env: Option<(&str, &str)>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nvidia-container-cli"));
        cmd.args(args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let os = |s: &'static str| OsStr::new(s);
    // A short option whose letter is multi-byte, and variants.
    for arg in ["-é", "-éx", "-\u{1F600}", "--é=ü", "-"] {
        let (code, err) = run(&[os(arg), os("info")], None);
        assert_eq!(code, Some(1), "{arg}: {err}");
        assert!(err.starts_with("nvidia-container-cli: "), "{arg}: {err}");
    }
    // argp's wording and status for usage errors, whatever the spelling of the option.
    for (args, message) in [
        (&["list", "-d"][..], "option '-d' requires an argument"),
        (
            &["list", "--device"][..],
            "option '--device' requires an argument",
        ),
        (
            &["info", "--csv=yes"][..],
            "option '--csv' doesn't allow an argument",
        ),
        (&["list", "--bogus"][..], "unrecognized option '--bogus'"),
        (&["configure", "-x", "/r"][..], "unrecognized option '-x'"),
        (&["configure", "/a", "/b"][..], "unexpected argument '/b'"),
        (&["--root"][..], "option '--root' requires an argument"),
    ] {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let (code, err) = run(&args, None);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert_eq!(
            err,
            format!(
                "nvidia-container-cli: {message}\n\
                 Try `nvidia-container-cli --help' for more information.\n"
            ),
            "{args:?}"
        );
    }
    // Timeouts that overflow a Duration.
    for t in ["1e300", "inf", "NaN", "-1", "0"] {
        let (code, err) = run(&[os("info")], Some(("NVC_NVML_TIMEOUT", t)));
        assert_eq!(code, Some(1), "{t}: {err}");
        assert!(err.contains("invalid NVML timeout"), "{t}: {err}");
        let flag = format!("--nvml-timeout={t}");
        let (code, err) = run(&[OsStr::new(&flag), os("info")], None);
        assert_eq!(code, Some(1), "{t}: {err}");
    }
    // A non-UTF-8 rootfs is used as given, not altered: the error names its exact bytes.
    let rootfs = OsStr::from_bytes(b"/nonexistent/\xff\xfe");
    let (code, err) = run(&[os("configure"), os("--pid=1"), rootfs], None);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        !err.contains('\u{FFFD}') || err.contains("\\xFF") || err.contains("/nonexistent/"),
        "{err}"
    );
    // Text options refuse non-UTF-8 instead of altering it.
    let (code, err) = run(
        &[os("list"), os("--device"), OsStr::from_bytes(b"\xff")],
        None,
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("not UTF-8"), "{err}");
}

/// Runs `nvidia-container-cli <global> configure <args> --pid=PID ROOTFS` under `nvc-sim run`
/// on a fresh paused container and image, as nvidia-container-toolkit's legacy hook execs
/// it; returns the output, the container's mountinfo and the rootfs path.
fn as_the_toolkit_runs_it(
    scenario: &str,
    global: &[&str],
    args: &[&str],
) -> Option<(Output, String, String)> {
    let container = nvc_testkit::PausedContainer::start()?;
    let (dir, host) = build(&Scenario::builtin(scenario).unwrap());
    if !matches!(host.device_nodes_state(), nvc_testkit::DeviceNodes::Created) {
        nvc_testkit::skip!("no device nodes");
        return None;
    }
    let root = dir.path().to_str().unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &[], true).unwrap();
    let rfs = rootfs.path().to_str().unwrap().to_owned();
    let root_arg = format!("--root={root}");
    let pid_arg = format!("--pid={}", container.pid());
    let cli_bin = env!("CARGO_BIN_EXE_nvidia-container-cli");
    let mut argv = vec!["run", root, "--", cli_bin, root_arg.as_str()];
    argv.extend_from_slice(global);
    argv.push("configure");
    argv.extend_from_slice(args);
    argv.push(&pid_arg);
    argv.push(&rfs);
    let out = Command::new(sim_bin()).args(&argv).output().unwrap();
    let mounts = container.mountinfo();
    Some((out, mounts, rfs))
}

#[test]
fn the_toolkit_hooks_argument_vectors_configure_the_container() {
    let toolkit_global = ["--load-kmods", "--ldcache=/etc/ld.so.cache"];
    let ok = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Compute and utility on every GPU, with CUDA compat in ldconfig mode, the host's
    // ldconfig and the image's requirement.
    let Some((out, mounts, rfs)) = as_the_toolkit_runs_it(
        "dgx",
        &toolkit_global,
        &[
            "--cuda-compat-mode=ldconfig",
            "--ldconfig=@/sbin/ldconfig",
            "--device=all",
            "--compute",
            "--utility",
            "--require=cuda>=12.0 brand=nvidia,driver>=535",
        ],
    ) else {
        return;
    };
    ok(&out);
    for n in 0..8 {
        assert!(
            mounts.contains(&format!("{rfs}/dev/nvidia{n} ")),
            "nvidia{n}"
        );
    }
    assert!(mounts.contains(&format!("{rfs}/usr/bin/nvidia-smi ")));

    // One MIG device, by index, with the global --no-pivot.
    let (out, mounts, rfs) = as_the_toolkit_runs_it(
        "mig",
        &["--load-kmods", "--no-pivot"],
        &[
            "--ldconfig=@/sbin/ldconfig",
            "--device=0:1",
            "--compute",
            "--utility",
        ],
    )
    .unwrap();
    ok(&out);
    assert!(mounts.contains(&format!("{rfs}/dev/nvidia0 ")));
    assert!(!mounts.contains(&format!("{rfs}/dev/nvidia1 ")));
    assert!(mounts.contains(&format!(
        "{rfs}/proc/driver/nvidia/capabilities/gpu0/mig/gi1/ci1/access "
    )));

    // MIG configuration and monitoring on every MIG-capable GPU: the capabilities tree and
    // /dev/nvidia-caps, no per-device access files.
    let (out, mounts, rfs) = as_the_toolkit_runs_it(
        "mig",
        &toolkit_global,
        &[
            "--ldconfig=@/sbin/ldconfig",
            "--no-cgroups",
            "--device=all",
            "--mig-config=all",
            "--mig-monitor=all",
            "--utility",
        ],
    )
    .unwrap();
    ok(&out);
    assert!(mounts.contains(&format!("{rfs}/proc/driver/nvidia/capabilities ")));
    assert!(mounts.contains(&format!("{rfs}/dev/nvidia-caps ")));
    assert!(!mounts.contains("/access "));

    // An image that asks for no GPU (NVIDIA_VISIBLE_DEVICES=none): the driver's utility
    // files, no device of any GPU.
    let (out, mounts, rfs) = as_the_toolkit_runs_it(
        "dgx",
        &toolkit_global,
        &["--ldconfig=@/sbin/ldconfig", "--utility"],
    )
    .unwrap();
    ok(&out);
    assert!(mounts.contains(&format!("{rfs}/usr/bin/nvidia-smi ")));
    assert!(!mounts.contains(&format!("{rfs}/dev/nvidia0 ")));

    // An image whose requirement the host does not meet: refused, nothing mounted.
    let (out, mounts, rfs) = as_the_toolkit_runs_it(
        "dgx",
        &toolkit_global,
        &["--device=all", "--compute", "--require=cuda>=99.0"],
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(
            "nvidia-container-cli: requirement error: unsatisfied condition: cuda>=99.0"
        )
    );
    assert!(!mounts.contains(&rfs));
}

/// `attach` and `detach` take a running container by its pid alone: no ROOTFS, `detach`
/// only the options that say what to take back; a pid with no process is named in the
/// error; `configure` keeps upstream's rule (`--pid` still needs ROOTFS).
#[test]
fn attach_and_detach_take_a_running_container_by_pid_alone() {
    for (args, message) in [
        (
            &["attach", "--device=0"][..],
            "input error: attach needs the container's --pid=PID",
        ),
        (
            &["detach"][..],
            "input error: detach needs the container's --pid=PID",
        ),
        (
            &["attach", "--pid=1", "/rootfs"][..],
            "unexpected argument '/rootfs'",
        ),
        (
            &["detach", "--pid=1", "--compute"][..],
            "unrecognized option '--compute'",
        ),
        (
            &["detach", "--pid=1", "--ldconfig=/sbin/ldconfig"][..],
            "unrecognized option '--ldconfig'",
        ),
    ] {
        let out = cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!("nvidia-container-cli: {message}\n")),
            "{args:?}: {err}"
        );
    }
    let (dir, _host) = build(&Scenario::builtin("dgx").unwrap());
    let root = dir.path().to_str().unwrap();
    for command in ["attach", "detach"] {
        let out = cli(&["--root", root, command, "--pid=999999999", "--device=0"]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("container process 999999999 not found"),
            "{command}: {err}"
        );
    }
    let out = cli(&["--root", root, "configure", "--pid=1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("input error: missing ROOTFS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
