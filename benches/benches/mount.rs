//! Plan + execute of `configure` on the `dgx` scenario (target: under 10 ms), against a
//! paused container: building the plan, applying it (both mount APIs), the device cgroup
//! grant, and the sandboxed `ldconfig`. Needs root; prints why it skips otherwise.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use nvc_driver::tables::Capability::{Compute, Utility};
use nvc_driver::{DeviceRequest, DriverOptions, probe_driver};
use nvc_mount::cgroup::{CgroupVersion, DeviceCgroup};
use nvc_mount::{
    Container, Ldconfig, LdconfigOptions, LdconfigRun, Limits, MountApi, MountPlan, PlanOptions,
    run_ldconfig,
};
use nvc_testkit::{DeviceNodes, Host, PausedContainer, Scenario, TestCgroup};

fn configure(c: &mut Criterion) {
    let Some(paused) = PausedContainer::start() else {
        return;
    };
    let hostdir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin("dgx").unwrap(), hostdir.path()).unwrap();
    if !matches!(host.device_nodes_state(), DeviceNodes::Created) {
        eprintln!("mount benches skipped: no device nodes");
        return;
    }
    let mut opts = DriverOptions::new(hostdir.path());
    opts.discover.proc_devices = hostdir.path().join("proc/devices");
    let info = probe_driver(&opts).unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &["proc/driver"], true).unwrap();
    let container = Container::from_pid(paused.pid(), rootfs.path()).unwrap();
    let plan_opts = PlanOptions {
        capabilities: vec![Compute, Utility],
        devices: DeviceRequest::parse("all")
            .unwrap()
            .select(&info.gpus)
            .unwrap(),
        ..PlanOptions::default()
    };
    let build = || MountPlan::build(hostdir.path(), &info, &container.dirs, &plan_opts).unwrap();

    let mut g = c.benchmark_group("configure/dgx");
    g.sample_size(30);
    g.bench_function("plan", |b| b.iter(build));
    for (name, api) in [
        ("apply", MountApi::Auto),
        ("apply-legacy", MountApi::Legacy),
    ] {
        g.bench_function(format!("plan+{name}"), |b| {
            // Timed: build + apply. Untimed: taking the mounts down again.
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let mut plan = build();
                    plan.mount_api = api;
                    let done = plan.apply(&container).unwrap();
                    total += start.elapsed();
                    done.unapply(&container).unwrap();
                }
                total
            })
        });
    }
    if let Some(cg) = TestCgroup::v2() {
        let nodes: Vec<(u32, u32)> = (0..8).map(|n| (195, n)).chain([(195, 255)]).collect();
        let dir = std::fs::File::open(cg.path()).unwrap();
        let deny = nvc_mount::cgroup::program::program(&[], false);
        let prog = nvc_sys::bpf::prog_load_cgroup_device(&deny, c"Apache").unwrap();
        use std::os::fd::AsFd;
        nvc_sys::bpf::prog_attach_cgroup_device(prog.as_fd(), dir.as_fd(), None).unwrap();
        let target = DeviceCgroup::new(CgroupVersion::V2, cg.path().to_path_buf());
        g.bench_function("cgroup-v2-grant+revoke", |b| {
            b.iter(|| target.allow(&nodes).unwrap().revoke().unwrap())
        });
    }
    let done = build().apply(&container).unwrap();
    let ld = LdconfigOptions {
        ldconfig: Ldconfig::Image("/sbin/ldconfig".into()),
        no_pivot: false,
        extra_dirs: Vec::new(),
        cuda_compat_dir: None,
        limits: Limits::default(),
    };
    g.bench_function("ldconfig", |b| {
        b.iter(|| run_ldconfig(&container, &ld).unwrap())
    });
    done.unapply(&container).unwrap();

    // The whole configure with the linker cache update: the host's ldconfig in its sandbox
    // against the built-in update, on an image with the cache its build left (untimed:
    // the mounts taken down, the cache and links put back).
    let libdir = rootfs.path().join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&libdir).unwrap();
    let status = std::process::Command::new("/sbin/ldconfig")
        .arg("-r")
        .arg(rootfs.path())
        .status()
        .unwrap();
    assert!(status.success());
    let cache_path = rootfs.path().join("etc/ld.so.cache");
    let cache = std::fs::read(&cache_path).unwrap();
    let no_cgroups = PlanOptions {
        no_cgroups: true,
        ..plan_opts.clone()
    };
    for (name, ldconfig) in [
        (
            "configure+ldconfig",
            Ldconfig::Host("/sbin/ldconfig".into()),
        ),
        ("configure+builtin", Ldconfig::Builtin),
    ] {
        let opts = LdconfigOptions {
            ldconfig,
            ..ld.clone()
        };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let plan =
                        MountPlan::build(hostdir.path(), &info, &container.dirs, &no_cgroups)
                            .unwrap();
                    let start = Instant::now();
                    let done = plan.configure(&container, Some(&opts)).unwrap();
                    total += start.elapsed();
                    if opts.ldconfig == Ldconfig::Builtin {
                        let run = done.ldconfig.as_ref().unwrap();
                        assert!(matches!(run, LdconfigRun::Builtin { .. }), "{run:?}");
                    }
                    done.mounted.unapply(&container).unwrap();
                    std::fs::write(&cache_path, &cache).unwrap();
                    for e in std::fs::read_dir(&libdir).unwrap() {
                        let p = e.unwrap().path();
                        if p.is_symlink() {
                            std::fs::remove_file(p).unwrap();
                        }
                    }
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, configure);
criterion_main!(benches);
