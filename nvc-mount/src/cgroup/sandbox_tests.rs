//! Tier c, inside the crate (the sandbox is crate-private): the sandboxed host `ldconfig` of
//! a paused container whose device cgroup is a cgroup2 cgroup. Its program is created in
//! that cgroup, and its first process never joins it; the timing of whole runs against the
//! `cgroup.procs` join of before (ignored; medians printed):
//! `cargo test -p nvc-mount --lib sandbox_tests -- --ignored --nocapture`.

use std::path::Path;
use std::time::{Duration, Instant};

use nvc_testkit::{PausedContainer, TestCgroup};

use super::{CgroupVersion, DeviceCgroup, SandboxCgroup};
use crate::ldconfig::Sandbox;
use crate::{Container, Ldconfig, LdconfigOptions, LdconfigRun, Limits};

struct Fixture {
    _paused: PausedContainer,
    _rootfs: tempfile::TempDir,
    container: Container,
    cgroup: TestCgroup,
}

/// A paused container on an image holding an empty library directory, and a fresh cgroup2
/// cgroup; `None` (reason printed) without root or a cgroup2 mount.
fn fixture() -> Option<Fixture> {
    let paused = PausedContainer::start()?;
    let cgroup = TestCgroup::v2()?;
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &["usr/lib/x86_64-linux-gnu"], false).unwrap();
    let container = Container::from_pid(paused.pid(), rootfs.path()).unwrap();
    Some(Fixture {
        _paused: paused,
        _rootfs: rootfs,
        container,
        cgroup,
    })
}

fn host_ldconfig() -> LdconfigOptions {
    LdconfigOptions {
        ldconfig: Ldconfig::Host("/sbin/ldconfig".into()),
        no_pivot: false,
        extra_dirs: Vec::new(),
        cuda_compat_dir: None,
        limits: Limits::default(),
    }
}

/// The pids in the cgroup at `path`.
fn members(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path.join("cgroup.procs"))
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_sandbox_in_a_unified_device_cgroup_never_migrates_its_first_process() {
    let Some(f) = fixture() else { return };
    let target = DeviceCgroup::new(CgroupVersion::V2, f.cgroup.path().to_path_buf());
    let opened = target.open_for_sandbox().unwrap();
    assert!(
        opened.dir.is_some(),
        "a cgroup2 cgroup is opened with its directory"
    );
    let sandbox = Sandbox::prepare(&f.container, &host_ldconfig(), Some(opened)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let cloned = nvc_sys::cgroup_clone_supported();
    // Where the kernel cannot create processes in a cgroup, the first process joins as before.
    let expected = usize::from(!cloned);
    assert_eq!(members(f.cgroup.path()).len(), expected, "clone3: {cloned}");
    let run = sandbox.run().unwrap();
    assert!(matches!(run, LdconfigRun::Ran { .. }), "{run:?}");
    assert_eq!(members(f.cgroup.path()), Vec::<String>::new());
}

#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn timing_sandboxed_ldconfig_in_a_unified_cgroup() {
    let Some(f) = fixture() else { return };
    let target = DeviceCgroup::new(CgroupVersion::V2, f.cgroup.path().to_path_buf());
    let opts = host_ldconfig();
    const N: usize = 40;
    let (mut cloned, mut joined) = (Vec::new(), Vec::new());
    for _ in 0..N {
        for (clone, times) in [(true, &mut cloned), (false, &mut joined)] {
            let mut cg = target.open_for_sandbox().unwrap();
            if !clone {
                // Only cgroup.procs: the join of before.
                cg = SandboxCgroup {
                    procs: cg.procs,
                    dir: None,
                };
            }
            let start = Instant::now();
            let run = Sandbox::prepare(&f.container, &opts, Some(cg))
                .and_then(Sandbox::run)
                .unwrap();
            times.push(start.elapsed());
            assert!(matches!(run, LdconfigRun::Ran { .. }), "{run:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for (name, times) in [
        ("clone3(CLONE_INTO_CGROUP)", &mut cloned),
        ("cgroup.procs join (before)", &mut joined),
    ] {
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        eprintln!(
            "Sandbox::prepare + run, host ldconfig, cgroup2 device cgroup, {name}: median {:.3} ms, p90 {:.3} ms (n={N})",
            ms(times[N / 2]),
            ms(times[N * 9 / 10]),
        );
    }
}
