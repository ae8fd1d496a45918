//! Tier c, concurrency soak: one process configures 2 × 100 different containers of the
//! simulated dgx host through nvc-core at once — first on 8 threads, then as tokio tasks on
//! the blocking pool, as the embedding example does — with a failure injected into a third
//! of the configures at a random step. Afterwards every configured container has its GPUs,
//! every failed one is exactly as before, and the process holds no more descriptors,
//! threads, children (zombies included) or host mounts than before. Prints configures per
//! second (benches/README.md records the figure).
//!
//! One test per binary on purpose: the process is what is measured.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss
)]

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::errno::Errno;
use nvc_core::Capability::{Compute, Utility};
use nvc_core::{Context, Devices, Driver};
use nvc_testkit::{DeviceNodes, Host, PausedContainer, ProcessState, Scenario, TestCgroup};

const CONTAINERS: usize = 100;
/// One configure in this many fails at a random step.
const FAIL_ONE_IN: u64 = 3;
/// A dgx configure passes about 450 fault points; a step past the last one is no failure.
const STEPS: u64 = 450;

/// xorshift64*: reproducible choices from a printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

struct Target {
    c: PausedContainer,
    rootfs: tempfile::TempDir,
    _cgroup: TestCgroup,
    /// The step to fail at, if any.
    fail_at: Option<usize>,
}

impl Target {
    fn mounts(&self) -> Vec<String> {
        let under = format!("{}/", self.rootfs.path().display());
        self.c
            .mountinfo()
            .lines()
            .filter(|l| l.contains(&under))
            .map(str::to_owned)
            .collect()
    }

    fn tree(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![self.rootfs.path().to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if fs::symlink_metadata(&p).unwrap().is_dir() {
                    todo.push(p.clone());
                }
                out.push(p);
            }
        }
        out.sort();
        out
    }
}

/// Everything of the process the configures must not leave changed.
#[derive(Debug, PartialEq, Eq)]
struct ProcessView {
    process: ProcessState,
    /// The host's mounts on the test's own directories (other processes of the machine,
    /// such as a runtime cleaning up after another test, may change the rest meanwhile).
    host_mounts: Vec<String>,
}

impl ProcessView {
    /// The process now; host mounts on or below `dirs`.
    fn now(dirs: &[&std::path::Path]) -> Self {
        ProcessView {
            process: ProcessState::now(),
            host_mounts: fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .filter(|l| dirs.iter().any(|d| l.contains(&*d.to_string_lossy())))
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// The directories of the test: the simulated host and every container's rootfs.
fn dirs<'a>(host: &'a std::path::Path, targets: &'a [Target]) -> Vec<&'a std::path::Path> {
    std::iter::once(host)
        .chain(targets.iter().map(|t| t.rootfs.path()))
        .collect()
}

fn make_targets(rng: &mut Rng) -> Option<Vec<Target>> {
    let mut out = Vec::new();
    for _ in 0..CONTAINERS {
        let c = PausedContainer::start()?;
        let rootfs = tempfile::tempdir().unwrap();
        nvc_testkit::debian_image(rootfs.path(), &["proc/driver"], true).unwrap();
        let cgroup = TestCgroup::v1_devices()?;
        fs::write(cgroup.path().join("devices.deny"), "a").unwrap();
        cgroup.add(c.pid()).unwrap();
        let fail_at = rng
            .next()
            .is_multiple_of(FAIL_ONE_IN)
            .then(|| (rng.next() % STEPS) as usize);
        out.push(Target {
            c,
            rootfs,
            _cgroup: cgroup,
            fail_at,
        });
    }
    Some(out)
}

/// Configures `t`, failing at its step if it has one: whether it failed.
fn configure(driver: &Driver, t: &Target) -> bool {
    let run = || {
        driver
            .container(t.c.pid(), t.rootfs.path())?
            .devices(Devices::all())
            .capabilities(&[Compute, Utility])
            .mount()
    };
    let result = match t.fail_at {
        Some(n) => {
            let count = AtomicUsize::new(0);
            nvc_sys::fault::with_hook(
                move |_, _| (count.fetch_add(1, Ordering::Relaxed) == n).then_some(Errno::EIO),
                run,
            )
        }
        None => run(),
    };
    result.is_err()
}

/// Checks each target after the pass: configured ones have their GPUs, failed ones are as
/// they were (no mount, the image's files only).
fn check(targets: &[Target], failed: &[bool], trees: &[Vec<PathBuf>]) {
    for ((t, &failed), tree) in targets.iter().zip(failed).zip(trees) {
        if failed {
            assert!(t.fail_at.is_some(), "{}: failed without a fault", t.c.pid());
            assert_eq!(t.mounts(), Vec::<String>::new(), "{}", t.c.pid());
            assert_eq!(&t.tree(), tree, "{}", t.c.pid());
        } else {
            let mounts = t.mounts();
            let has = |dev: &str| mounts.iter().any(|m| m.contains(&format!("/dev/{dev} ")));
            assert!((0..8).all(|i| has(&format!("nvidia{i}"))), "{}", t.c.pid());
        }
    }
}

fn report(how: &str, targets: &[Target], failed: &[bool], secs: f64) {
    let n = failed.iter().filter(|f| **f).count();
    eprintln!(
        "{how}: {CONTAINERS} configures in {secs:.2} s ({:.0}/s), {n} failed as injected, \
         {} configured; leaks 0",
        CONTAINERS as f64 / secs,
        targets.len() - n
    );
}

#[test]
fn two_hundred_concurrent_configures_with_injected_failures_leak_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin("dgx").unwrap(), dir.path()).unwrap();
    if !matches!(host.device_nodes_state(), DeviceNodes::Created) {
        nvc_testkit::skip!("no device nodes");
        return;
    }
    let seed = 0x6e76_6300_5eed_u64;
    eprintln!("seed {seed:#x}");
    let mut rng = Rng(seed);
    let driver = Context::builder()
        .root(dir.path())
        .build()
        .and_then(Context::driver)
        .unwrap();
    let driver = Arc::new(driver);

    // Threads.
    let Some(targets) = make_targets(&mut rng) else {
        return;
    };
    let trees: Vec<Vec<PathBuf>> = targets.iter().map(Target::tree).collect();
    let before = ProcessView::now(&dirs(dir.path(), &targets));
    let failed = Mutex::new(vec![false; targets.len()]);
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(t) = targets.get(i) else { break };
                        let f = configure(&driver, t);
                        failed.lock().unwrap()[i] = f;
                    }
                })
            })
            .collect();
        // Joined (not only waited for by the scope), so the threads are gone from the
        // process when it is looked at.
        for w in workers {
            w.join().unwrap();
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let failed = failed.into_inner().unwrap();
    let after = ProcessView::now(&dirs(dir.path(), &targets));
    assert_eq!(
        after.process.fds, before.process.fds,
        "threads: descriptors left"
    );
    assert_eq!(
        after.process.threads, before.process.threads,
        "threads: threads left"
    );
    assert_eq!(
        after.process.children, before.process.children,
        "threads: children left"
    );
    assert_eq!(
        after.host_mounts, before.host_mounts,
        "threads: host mounts changed"
    );
    check(&targets, &failed, &trees);
    report("threads", &targets, &failed, secs);
    drop(targets);

    // Async tasks on tokio's blocking pool.
    let Some(targets) = make_targets(&mut rng) else {
        return;
    };
    let targets: Arc<Vec<Target>> = Arc::new(targets);
    let trees: Vec<Vec<PathBuf>> = targets.iter().map(Target::tree).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .max_blocking_threads(8)
        .build()
        .unwrap();
    // The runtime's own threads are there before and after.
    runtime.block_on(async {});
    let before = ProcessView::now(&dirs(dir.path(), &targets));
    let start = Instant::now();
    let failed: Vec<bool> = runtime.block_on(async {
        let tasks: Vec<_> = (0..targets.len())
            .map(|i| {
                let (driver, targets) = (Arc::clone(&driver), Arc::clone(&targets));
                tokio::task::spawn_blocking(move || configure(&driver, &targets[i]))
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let secs = start.elapsed().as_secs_f64();
    // Idle blocking threads linger for a while; the runtime's shutdown ends them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    let after = ProcessView::now(&dirs(dir.path(), &targets));
    assert_eq!(
        after.process.fds, before.process.fds,
        "async: descriptors left"
    );
    assert_eq!(
        after.process.children, before.process.children,
        "async: children left"
    );
    assert_eq!(
        after.host_mounts, before.host_mounts,
        "async: host mounts changed"
    );
    assert!(
        after.process.threads <= before.process.threads,
        "async: threads left"
    );
    check(&targets, &failed, &trees);
    report("async", &targets, &failed, secs);
}
