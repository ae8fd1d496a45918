//! `Context::builder().root(..).build()?.driver()?` on simulated hosts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nvc_core::{Context, Devices, ErrorKind, Requirement};
use nvc_testkit::{Host, Scenario};

mod common;

fn build(name: &str) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin(name).unwrap(), dir.path()).unwrap();
    (dir, host)
}

/// A paused container, the single-GPU host (with its device nodes) and a Debian image;
/// `None`, with the reason printed, where the machine cannot give them.
fn paused_debian() -> Option<(
    nvc_testkit::PausedContainer,
    tempfile::TempDir,
    Host,
    tempfile::TempDir,
)> {
    let paused = nvc_testkit::PausedContainer::start()?;
    let (dir, host) = build("single");
    if !matches!(host.device_nodes_state(), nvc_testkit::DeviceNodes::Created) {
        nvc_testkit::skip!("no device nodes");
        return None;
    }
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &[], true).unwrap();
    Some((paused, dir, host, rootfs))
}

#[test]
fn the_flow_reaches_the_driver_and_selects_and_checks() {
    let (dir, host) = build("legacy32");
    let driver = common::driver(dir.path());
    assert_eq!(driver.info().gpus.len(), host.scenario().gpus.len());
    assert_eq!(driver.root(), dir.path());
    let sel = driver.select(&Devices::all()).unwrap();
    assert_eq!(sel.gpus, driver.info().gpus);
    // A Tesla T4 with CUDA 12.4 and driver 550.
    let req = |s: &str| s.parse::<Requirement>().unwrap();
    driver
        .check(&req("cuda>=12.0 brand=tesla,driver>=550"), &sel)
        .unwrap();
    let err = driver.check(&req("cuda>=13.0"), &sel).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsatisfied);
    assert!(err.to_string().starts_with("requirement error: "), "{err}");
    let err = driver.check(&req("arch>=8.0"), &sel).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsatisfied);
    // Without a selected device, device facts are unknown and pass.
    driver
        .check(
            &req("arch>=8.0"),
            &driver.select(&Devices::default()).unwrap(),
        )
        .unwrap();
    let err = driver.select(&"7".parse().unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    assert_eq!(err.to_string(), "device error: 7: unknown device");
    // Typed inputs fail where the string is given.
    let err = "cuda==1".parse::<Requirement>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    let err = "0,sda".parse::<Devices>().unwrap_err();
    assert_eq!(err.to_string(), "device error: sda: unknown device");
}

/// `info`'s probe: the versions and GPUs of the whole probe, no files, the same errors.
#[test]
fn driver_info_is_the_whole_probe_without_files() {
    let (dir, _host) = build("legacy32");
    let context = || Context::builder().root(dir.path()).build().unwrap();
    let whole = context().driver().unwrap().info().clone();
    let info = context().driver_info().unwrap();
    assert_eq!(info.nvrm_version, whole.nvrm_version);
    assert_eq!(info.cuda_version, whole.cuda_version);
    assert_eq!(info.files, nvc_core::DriverFiles::default());
    assert!(!whole.files.libraries.is_empty());
    let ids = |i: &nvc_core::DriverInfo| -> Vec<_> {
        i.gpus
            .iter()
            .map(|g| (g.uuid.clone(), g.model.clone()))
            .collect()
    };
    assert_eq!(ids(&info), ids(&whole));
    let empty = tempfile::tempdir().unwrap();
    let probe = || Context::builder().root(empty.path()).build().unwrap();
    let (a, b) = (
        probe().driver().unwrap_err(),
        probe().driver_info().unwrap_err(),
    );
    assert_eq!((a.kind(), a.to_string()), (b.kind(), b.to_string()));
}

#[test]
fn error_kinds_tell_failures_apart() {
    let empty = tempfile::tempdir().unwrap();
    let err = Context::builder()
        .root(empty.path())
        .build()
        .unwrap()
        .driver()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoDriver);
    let err = Context::builder()
        .root("relative/root")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    assert_eq!(
        err.to_string(),
        "input error: invalid driver root: relative/root is not an absolute path"
    );

    let mut s = Scenario::builtin("single").unwrap();
    s.nvml_faults.init_delay_ms = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let _host = Host::build(&s, dir.path()).unwrap();
    let err = Context::builder()
        .root(dir.path())
        .nvml_timeout(std::time::Duration::from_millis(100))
        .build()
        .unwrap()
        .driver()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[test]
fn the_flow_configures_a_paused_container() {
    use nvc_core::Capability;
    let Some((paused, dir, _host, rootfs)) = paused_debian() else {
        return;
    };
    let driver = common::driver(dir.path());
    let err = driver.container(paused.pid(), "relative").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    let err = driver.container(u32::MAX - 3, rootfs.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoContainer, "{err}");

    let setup = driver
        .container(paused.pid(), rootfs.path())
        .unwrap()
        .devices(Devices::all())
        .capabilities(&[Capability::Compute, Capability::Utility]);
    // A requirement the host does not meet stops it before anything changes.
    let err = setup
        .clone()
        .require("cuda>=99.0".parse().unwrap())
        .mount()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsatisfied);
    assert!(!paused.mountinfo().contains(rootfs.path().to_str().unwrap()));

    let plan = setup.plan().unwrap().to_string();
    // Planning is data: a driver known only by its facts plans the same (with `serde`,
    // those facts can come from another machine; nvc-mount's serde test plans with the
    // host gone).
    let facts = driver.info().clone();
    let elsewhere = Context::builder()
        .root(dir.path())
        .build()
        .unwrap()
        .with_info(facts);
    let offline = elsewhere
        .image(rootfs.path())
        .unwrap()
        .devices(Devices::all())
        .capabilities(&[Capability::Compute, Capability::Utility])
        .plan()
        .unwrap();
    assert_eq!(offline.to_string(), plan);
    assert!(
        plan.contains("bind ro,nosuid,noexec /dev/nvidia0 <- "),
        "{plan}"
    );
    // The built-in update by default: no program runs at all.
    assert!(
        plan.ends_with("ldconfig (builtin) - /usr/lib/x86_64-linux-gnu /usr/lib/i386-linux-gnu\n"),
        "{plan}"
    );
    let done = setup.mount().unwrap();
    assert!(
        done.mounts()
            .iter()
            .any(|m| m == std::path::Path::new("/dev/nvidia0"))
    );
    // The image has no cache: nvc built it, and glibc reads the driver's libraries in it.
    assert_eq!(done.ldconfig_fallback(), None);
    assert_eq!(done.ldconfig_output(), None);
    let cached = nvc_testkit::cached_paths(rootfs.path(), "libcuda.so.1").unwrap();
    assert_eq!(cached, ["/usr/lib/x86_64-linux-gnu/libcuda.so.1"]);
    assert!(
        paused
            .mountinfo()
            .contains(&format!("{}/dev/nvidia0 ", rootfs.path().display()))
    );
}

#[test]
fn a_failed_step_names_itself_and_chains_down_to_the_errno() {
    use std::error::Error as _;
    let Some(paused) = nvc_testkit::PausedContainer::start() else {
        return;
    };
    let (dir, host) = build("single");
    if !matches!(host.device_nodes_state(), nvc_testkit::DeviceNodes::Created) {
        nvc_testkit::skip!("no device nodes");
        return;
    }
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &[], false).unwrap();
    // The container sees its rootfs read-only.
    let r = rootfs.path().to_str().unwrap();
    let status = std::process::Command::new("nsenter")
        .args(["-t", &paused.pid().to_string(), "-m", "sh", "-c"])
        .arg(format!(
            "mount --bind {r} {r} && mount -o remount,bind,ro {r}"
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let driver = common::driver(dir.path());
    let err = driver
        .container(paused.pid(), rootfs.path())
        .unwrap()
        .devices(Devices::all())
        .capabilities(&[nvc_core::Capability::Utility])
        .mount()
        .unwrap_err();
    assert!(err.to_string().starts_with("mount error: "), "{err}");
    assert_eq!(err.os_error(), Some(libc::EROFS), "{err:?}");
    let mut last = err.source().unwrap();
    while let Some(next) = last.source() {
        last = next;
    }
    let io = last.downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(io.raw_os_error(), Some(libc::EROFS));
    assert!(
        !nvc_testkit::chain(&err).contains("Read-only file system: Read-only file system"),
        "each cause once: {}",
        nvc_testkit::chain(&err)
    );
}

/// Without NVML (`ContextBuilder::nvml(false)`), every scenario without MIG devices plans
/// exactly as with it — by index, UUID and bus id, all devices — and no helper process
/// runs; what only NVML knows fails, saying so.
#[test]
fn without_nvml_plans_are_the_same_and_nvml_facts_are_refused() {
    use nvc_core::Capability::{Compute, Utility};
    for name in ["single", "dgx", "nocache", "legacy32", "mig", "nogpu"] {
        let (dir, host) = build(name);
        let probe = |nvml: bool| {
            Context::builder()
                .root(dir.path())
                .nvml(nvml)
                .build()
                .and_then(Context::driver)
        };
        let with = probe(true).unwrap();
        if host
            .scenario()
            .gpus
            .iter()
            .any(|g| !g.mig_devices.is_empty())
        {
            let err = probe(false).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadInput, "{name}: {err}");
            assert!(err.to_string().contains("MIG devices"), "{name}: {err}");
            assert!(err.to_string().contains("needs NVML"), "{name}: {err}");
            continue;
        }
        let without = probe(false).unwrap();
        assert!(!without.info().from_nvml);
        let (a, b) = (with.info(), without.info());
        assert_eq!(a.nvrm_version, b.nvrm_version, "{name}");
        assert_eq!(a.files, b.files, "{name}");
        assert_eq!(a.gpus.len(), b.gpus.len(), "{name}");
        for (x, y) in a.gpus.iter().zip(&b.gpus) {
            assert_eq!(
                (x.index, x.minor, &x.uuid, x.bus_id, &x.model, &x.proc_dir),
                (y.index, y.minor, &y.uuid, y.bus_id, &y.model, &y.proc_dir),
                "{name}"
            );
        }
        let rootfs = tempfile::tempdir().unwrap();
        nvc_testkit::debian_image(rootfs.path(), &[], true).unwrap();
        let mut lists = vec!["all".to_owned()];
        if let Some(g) = a.gpus.last() {
            lists.extend([g.index.to_string(), g.uuid.clone(), g.bus_id.to_string()]);
        }
        for list in &lists {
            let plan = |d: &nvc_core::Driver| {
                d.image(rootfs.path())
                    .unwrap()
                    .devices(list.parse::<Devices>().unwrap())
                    .capabilities(&[Compute, Utility])
                    .plan()
                    .unwrap()
                    .to_string()
            };
            assert_eq!(plan(&without), plan(&with), "{name}: --device={list}");
        }
        // The driver version is known without NVML; the CUDA version, brand and
        // architecture are not, so requirements on them are refused, not waved through.
        let require = |expr: &str| {
            without
                .image(rootfs.path())
                .unwrap()
                .devices(Devices::all())
                .require(expr.parse::<Requirement>().unwrap())
                .plan()
                .map(drop)
        };
        assert!(require("driver>=500").is_ok(), "{name}");
        for expr in ["cuda>=12.0", "arch>=8.0", "brand=nvidia"] {
            let err = require(expr).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadInput, "{name}: {expr}: {err}");
            assert!(err.to_string().contains("needs NVML"), "{err}");
        }
    }
}

/// The C API's calls (`ContainerSetup::only`) together plan exactly what one configure plans:
/// the driver, each GPU, each MIG device or the MIG capabilities, ldconfig.
#[test]
fn the_parts_of_a_configure_add_up_to_the_whole() {
    use nvc_core::{Capability, Part};
    let (dir, _host) = build("mig");
    let driver = common::driver(dir.path());
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &[], true).unwrap();
    let caps = [Capability::Compute, Capability::Utility];
    let setup = || driver.image(rootfs.path()).unwrap().capabilities(&caps);
    let lines = |plan: nvc_core::Plan| -> Vec<String> {
        plan.to_string().lines().map(str::to_owned).collect()
    };
    // With `once`, what an earlier call did already is left out: the MIG configuration and
    // monitoring calls each bind the capabilities tree and allow their GPUs' capabilities,
    // which one configure does once.
    let parts = |parts: &[Part], once: bool| -> Vec<String> {
        let mut all = Vec::new();
        for &part in parts {
            for line in lines(setup().only(part).plan().unwrap()) {
                if !(once && all.contains(&line)) {
                    all.push(line);
                }
            }
        }
        all
    };
    let gpus = &driver.info().gpus;
    let mut each: Vec<Part> = vec![Part::Driver];
    each.extend(gpus.iter().map(|g| Part::Gpu { index: g.index }));
    for g in gpus {
        each.extend(g.mig_devices.iter().map(|m| Part::MigAccess {
            gpu: g.index,
            mig: m.index,
        }));
    }
    // (IMEX channels need the host's nvidia-caps-imex-channels major: nvc-capi's flow test
    // covers them under `nvc-sim run`.)
    each.push(Part::Ldcache);
    let whole = setup().devices(Devices::all()).plan().unwrap();
    assert!(gpus.iter().any(|g| !g.mig_devices.is_empty()));
    assert_eq!(parts(&each, false), lines(whole));

    // MIG configuration and monitoring instead of the devices' access files.
    let mut global = vec![Part::Driver];
    global.extend(gpus.iter().map(|g| Part::Gpu { index: g.index }));
    global.push(Part::MigConfig);
    let capable: Vec<u32> = gpus
        .iter()
        .filter(|g| g.mig_capable)
        .map(|g| g.index)
        .collect();
    global.extend(capable.iter().map(|&gpu| Part::GpuMigCaps { gpu }));
    global.push(Part::MigMonitor);
    global.extend(capable.iter().map(|&gpu| Part::GpuMigCaps { gpu }));
    global.push(Part::Ldcache);
    let whole = setup()
        .devices(Devices::all())
        .mig_config(Some("all"))
        .mig_monitor(Some("all"))
        .plan()
        .unwrap();
    assert_eq!(parts(&global, true), lines(whole));

    // A part naming what the host does not have is bad input.
    let err = setup().only(Part::Gpu { index: 99 }).plan().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    assert_eq!(err.detail(), "no GPU with index 99");
}

/// A running container (root pivoted, a static busybox its init) on the simulated host
/// `scenario`, in a v1 device cgroup that denies everything.
struct Running {
    dir: tempfile::TempDir,
    _host: Host,
    rootfs: tempfile::TempDir,
    cgroup: nvc_testkit::TestCgroup,
    running: nvc_testkit::PausedContainer,
}

fn running(scenario: &str) -> Option<Running> {
    if !std::path::Path::new("/bin/busybox").exists() {
        nvc_testkit::skip!("no /bin/busybox for the image (Debian package busybox-static)");
        return None;
    }
    let (dir, host) = build(scenario);
    if !matches!(host.device_nodes_state(), nvc_testkit::DeviceNodes::Created) {
        nvc_testkit::skip!("no device nodes");
        return None;
    }
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &["bin", "dev"], true).unwrap();
    std::fs::copy("/bin/busybox", rootfs.path().join("bin/busybox")).unwrap();
    let cgroup = nvc_testkit::TestCgroup::v1_devices()?;
    std::fs::write(cgroup.path().join("devices.deny"), "a").unwrap();
    let running = nvc_testkit::PausedContainer::pivoted(rootfs.path())?;
    cgroup.add(running.pid()).unwrap();
    Some(Running {
        dir,
        _host: host,
        rootfs,
        cgroup,
        running,
    })
}

/// MIG devices taken back one by one: each takes its own access; what MIG devices of one GPU
/// instance share (its access file) goes with the last of them, the parent GPU's node with
/// the last MIG device of that GPU, the driver-wide nodes with the last GPU.
#[test]
fn mig_devices_are_taken_back_sharing_what_they_share() {
    use nvc_core::Capability;
    let Some(r) = running("mig") else { return };
    // The simulated host's nvidia-caps major (from its /proc/devices, not this machine's).
    let mut opts = nvc_driver::DriverOptions::new(r.dir.path());
    opts.discover.proc_devices = r.dir.path().join("proc/devices");
    let info = nvc_driver::probe_driver(&opts).unwrap();
    let driver = Context::builder()
        .root(r.dir.path())
        .build()
        .unwrap()
        .with_info(info);
    let setup = |devices: &str| {
        driver
            .running(r.running.pid())
            .unwrap()
            .devices(devices.parse().unwrap())
            .capabilities(&[Capability::Compute, Capability::Utility])
    };
    let gpu0 = &driver.info().gpus[0];
    let migs = &gpu0.mig_devices;
    // The scenario: MIG 0:0 and 0:1 in GPU instance 1, 0:2 in instance 2.
    assert_eq!(
        migs.iter()
            .map(|m| (m.gi, m.ci))
            .take(3)
            .collect::<Vec<_>>(),
        [(1, 0), (1, 1), (2, 0)]
    );
    let done = setup("0:0,0:1,0:2").mount().unwrap();
    let list = || std::fs::read_to_string(r.cgroup.path().join("devices.list")).unwrap();
    let caps = |m: usize| {
        let (gi, ci) = migs[m].access_minors;
        (gi.unwrap(), ci.unwrap())
    };
    let granted: Vec<u32> = done.granted().iter().map(|&(_, minor)| minor).collect();
    for m in 0..3 {
        let (gi, ci) = caps(m);
        assert!(
            granted.contains(&gi) && granted.contains(&ci),
            "{granted:?}"
        );
    }
    let caps_major = done
        .granted()
        .iter()
        .find(|&&(_, minor)| minor == caps(0).1)
        .unwrap()
        .0;
    let revoked = |d: &nvc_core::Detached| -> Vec<u32> {
        let mut minors: Vec<u32> = d
            .revoked()
            .iter()
            .filter(|&&(major, _)| major == caps_major)
            .map(|&(_, minor)| minor)
            .collect();
        minors.sort_unstable();
        minors
    };
    let sorted = |mut v: Vec<u32>| {
        v.sort_unstable();
        v
    };

    // 0:0 goes alone: 0:1 still needs instance 1's access and GPU 0.
    let first = setup("0:0").detach().unwrap();
    assert_eq!(revoked(&first), [caps(0).1], "{first:?}");
    assert!(!first.revoked().contains(&(195, 0)) && !first.was_last());
    assert!(list().contains(&format!("c {caps_major}:{} ", caps(0).0)));
    let mounts = r.running.mountinfo();
    let cap_node = |minor: u32| format!(" /dev/nvidia-caps/nvidia-cap{minor} ");
    assert!(!mounts.contains(&cap_node(caps(0).1)) && mounts.contains(&cap_node(caps(0).0)));
    assert!(
        !mounts.contains("/gpu0/mig/gi1/ci0/access ") && mounts.contains("/gpu0/mig/gi1/access "),
        "{mounts}"
    );
    // A container process that can mount keeps 0:1's access file aside, to put it back after
    // 0:1 is detached and so pass for a MIG device still there.
    let ci1 = "/proc/driver/nvidia/capabilities/gpu0/mig/gi1/ci1/access";
    let in_container = |script: &str| {
        let ok = std::process::Command::new("nsenter")
            .args([
                "-t",
                &r.running.pid().to_string(),
                "-m",
                "/bin/busybox",
                "sh",
                "-c",
            ])
            .arg(script)
            .status()
            .unwrap();
        assert!(ok.success(), "{script}");
    };
    in_container(&format!(
        "/bin/busybox touch /kept && /bin/busybox mount --bind {ci1} /kept"
    ));
    // 0:1, the last of instance 1: its access and the instance's go; GPU 0 stays for 0:2.
    let second = setup("0:1").detach().unwrap();
    assert_eq!(revoked(&second), sorted(vec![caps(1).0, caps(1).1]));
    assert!(!second.revoked().contains(&(195, 0)) && !second.was_last());
    assert!(r.running.mountinfo().contains(" /dev/nvidia0 "));
    in_container(&format!(
        "/bin/busybox touch {ci1} && /bin/busybox mount --bind /kept {ci1}"
    ));
    // 0:2, the last MIG device of the last GPU: everything (0:1's access file back in its
    // place does not count: its capability is denied in the cgroup).
    let last = setup("0:2").detach().unwrap();
    assert_eq!(revoked(&last), sorted(vec![caps(2).0, caps(2).1]));
    assert!(
        last.revoked().contains(&(195, 0)) && last.was_last(),
        "{last:?}"
    );
    assert!(!r.running.mountinfo().contains(" /dev/nvidia"));
    assert!(
        !list().contains(&format!("c {caps_major}:")),
        "every MIG access revoked: {}",
        list()
    );
    drop(r.rootfs);
}

/// A running container (its root pivoted) by its pid alone: GPUs 0 and 1 attached, GPU 1
/// taken back (the driver-wide nodes stay for GPU 0), then GPU 0, the last (they go too);
/// a setup that is not a running container cannot detach.
#[test]
fn a_running_container_gets_gpus_and_gives_them_back() {
    use nvc_core::Capability;
    use std::path::{Path, PathBuf};
    let Some(Running {
        dir,
        rootfs,
        cgroup,
        running,
        ..
    }) = running("dgx")
    else {
        return;
    };
    let driver = common::driver(dir.path());
    let err = driver.running(u32::MAX - 3).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoContainer, "{err}");
    let err = driver
        .image(rootfs.path())
        .unwrap()
        .devices("0".parse().unwrap())
        .detach()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput, "{err}");

    let setup = |devices: &str| {
        driver
            .running(running.pid())
            .unwrap()
            .devices(devices.parse().unwrap())
            .capabilities(&[Capability::Compute, Capability::Utility])
    };
    // By the runtime's pidfd: the same container, no pid looked up.
    let pidfd = nvc_sys::pidfd_open(running.pid()).unwrap();
    let by_fd = driver.running_pidfd(pidfd).unwrap();
    assert_eq!(by_fd.pid(), Some(running.pid()));
    let not_a_pidfd = std::fs::File::open("/dev/null").unwrap();
    let err = driver.running_pidfd(not_a_pidfd.into()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoContainer, "{err}");
    let setup_ = setup("0,1");
    assert_eq!(
        setup_.rootfs(),
        Path::new(&format!("/proc/{}/root", running.pid()))
    );
    let done = setup_.mount().unwrap();
    assert!(done.mounts().contains(&PathBuf::from("/dev/nvidia1")));
    assert!(done.granted().contains(&(195, 1)));
    let again = setup("1").mount().unwrap();
    assert!(
        again.mounts().is_empty() && again.granted().is_empty(),
        "{again:?}"
    );

    let mounts = || running.mountinfo();
    let one = setup("1").detach().unwrap();
    assert!(!one.was_last());
    assert_eq!(one.revoked(), [(195, 1)]);
    assert!(!mounts().contains(" /dev/nvidia1 ") && mounts().contains(" /dev/nvidia0 "));
    assert!(
        mounts().contains(" /dev/nvidiactl "),
        "GPU 0 keeps the driver-wide nodes"
    );
    let last = setup("0").detach().unwrap();
    assert!(last.was_last());
    assert!(last.revoked().contains(&(195, 0)) && last.revoked().contains(&(195, 255)));
    assert!(!mounts().contains(" /dev/nvidia"), "{}", mounts());
    assert!(
        mounts().contains(" /usr/lib/x86_64-linux-gnu/libcuda.so."),
        "the driver's files stay"
    );
    let list = std::fs::read_to_string(cgroup.path().join("devices.list")).unwrap();
    assert!(!list.contains("c 195:"), "{list}");

    // An unmount fails: detach denies the GPU all the same, and says what it left as data.
    setup("1").mount().unwrap();
    let err = nvc_sys::fault::with_hook(
        |step, at| {
            (step == "detach: umount" && at == Path::new("/dev/nvidia1"))
                .then_some(nix::errno::Errno::EIO)
        },
        || setup("1").detach(),
    )
    .unwrap_err();
    assert!(!err.is_clean(), "{err}");
    assert!(
        err.left_in_container()
            .iter()
            .any(|l| l.starts_with("/dev/nvidia1: ")),
        "{err}"
    );
    let list = std::fs::read_to_string(cgroup.path().join("devices.list")).unwrap();
    assert!(!list.contains("c 195:1 "), "denied all the same: {list}");
}

/// What `plan()` shows is what `apply()` does, with no second planning: the operations as
/// data, the device rules also when the runtime owns the cgroup, the plan read back from
/// JSON applied, a plan for another image refused before anything changes.
#[test]
fn the_plan_shown_is_the_plan_applied() {
    use nvc_core::{Capability, Ldconfig, Operation, Plan};
    let Some((paused, dir, _host, rootfs)) = paused_debian() else {
        return;
    };
    let driver = common::driver(dir.path());
    let setup = driver
        .container(paused.pid(), rootfs.path())
        .unwrap()
        .devices(Devices::all())
        .capabilities(&[Capability::Compute, Capability::Utility])
        .device_cgroup(false);
    let plan = setup.plan().unwrap();
    // The runtime owns the cgroup: the rules are data for it, not operations of nvc's.
    let node = plan
        .operations()
        .iter()
        .find_map(|op| match op {
            Operation::Bind { target, .. } if target.ends_with("nvidia0") => Some(target),
            _ => None,
        })
        .unwrap();
    assert_eq!(node, std::path::Path::new("/dev/nvidia0"));
    assert!(plan.device_rules().contains(&(195, 0)), "{plan}");
    assert!(plan.device_rules().contains(&(195, 255)), "{plan}");
    assert!(
        !plan
            .operations()
            .iter()
            .any(|op| matches!(op, Operation::AllowDevice { .. }))
    );
    assert!(!plan.to_string().contains("cgroup allow"), "{plan}");
    assert_eq!(plan.ldconfig(), &Ldconfig::Builtin);
    assert_eq!(
        plan.ldconfig_dirs(),
        ["/usr/lib/x86_64-linux-gnu", "/usr/lib/i386-linux-gnu"].map(std::path::Path::new)
    );
    // Made here, stored, read back: the same plan.
    let json = serde_json::to_string(&plan).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan);

    // A plan for another image is refused before anything changes.
    let other = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(other.path(), &[], true).unwrap();
    let foreign = driver
        .image(other.path())
        .unwrap()
        .devices(Devices::all())
        .device_cgroup(false)
        .plan()
        .unwrap();
    let before = paused.mountinfo();
    let err = setup.clone().apply(foreign).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput, "{err}");
    assert!(err.to_string().contains("planned for"), "{err}");
    assert!(err.is_clean());
    // A plan that leaves the cgroup to the runtime is not applied by a setup that grants.
    let err = setup
        .clone()
        .device_cgroup(true)
        .apply(plan.clone())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput, "{err}");
    assert!(err.to_string().contains("device_cgroup(false)"), "{err}");
    assert_eq!(paused.mountinfo(), before);

    let done = setup.apply(back).unwrap();
    let planned: Vec<&std::path::Path> = plan
        .operations()
        .iter()
        .filter_map(|op| match op {
            Operation::Bind { target, .. }
            | Operation::BindFromImage { target, .. }
            | Operation::Tmpfs { target, .. } => Some(target.as_path()),
            _ => None,
        })
        .collect();
    let handled: Vec<&std::path::Path> = done
        .mounts()
        .iter()
        .chain(done.skipped())
        .chain(done.already())
        .map(std::path::PathBuf::as_path)
        .collect();
    for target in &planned {
        assert!(handled.contains(target), "{} not applied", target.display());
    }
    assert!(done.mounts().iter().all(|m| planned.contains(&m.as_path())));
    assert!(done.granted().is_empty(), "{:?}", done.granted());
}
