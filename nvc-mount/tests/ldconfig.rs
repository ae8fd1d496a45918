//! Tier c: the sandboxed ldconfig after a real configure, and a hostile ldconfig contained.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nvc_driver::tables::Capability::{Compute, Utility};
use nvc_mount::{
    Container, Error, Ldconfig, LdconfigOptions, LdconfigRun, Limits, PlanOptions, run_ldconfig,
};

mod common;

struct Fixture {
    _sim: common::Sim,
    rootfs: std::path::PathBuf,
    container: Container,
}

/// A paused container on the `single` host, with the driver mounted (compute, utility).
fn configured() -> Option<Fixture> {
    let sim = common::sim("single")?;
    sim.mkdirs(&["sys", "dev", "sbin"]);
    let container = sim.container();
    let plan = sim.plan(
        &container,
        &PlanOptions {
            capabilities: vec![Compute, Utility],
            devices: sim.select("0"),
            ..PlanOptions::default()
        },
    );
    plan.apply(&container).unwrap();
    Some(Fixture {
        rootfs: sim.rootfs.path().to_path_buf(),
        _sim: sim,
        container,
    })
}

fn options(ldconfig: Ldconfig) -> LdconfigOptions {
    LdconfigOptions {
        ldconfig,
        no_pivot: false,
        extra_dirs: Vec::new(),
        cuda_compat_dir: None,
        limits: Limits::default(),
    }
}

/// The container's cache, as (key, value) pairs.
fn cache_of(rootfs: &Path) -> Vec<(String, String)> {
    let bytes = fs::read(rootfs.join("etc/ld.so.cache")).unwrap();
    let cache = nvc_ldcache::LdCache::parse(&bytes).unwrap();
    cache
        .entries()
        .map(|e| {
            let e = e.unwrap();
            (
                e.soname().to_string_lossy().into_owned(),
                e.path().display().to_string(),
            )
        })
        .collect()
}

fn assert_driver_in_cache(f: &Fixture) {
    let libs = f.container.dirs.libs.display().to_string();
    let cache = cache_of(f.rootfs.as_path());
    for soname in ["libcuda.so.1", "libnvidia-ml.so.1"] {
        assert!(
            cache
                .iter()
                .any(|(k, v)| k == soname && *v == format!("{libs}/{soname}")),
            "{soname} not in {cache:?}"
        );
    }
}

#[test]
fn container_ldconfig_lists_the_mounted_libraries() {
    let Some(f) = configured() else { return };
    fs::copy("/sbin/ldconfig", f.rootfs.as_path().join("sbin/ldconfig")).unwrap();
    let host_cache = fs::read("/etc/ld.so.cache").unwrap();
    for no_pivot in [false, true] {
        let mut opts = options(Ldconfig::Image("/sbin/ldconfig".into()));
        opts.no_pivot = no_pivot;
        let run = run_ldconfig(&f.container, &opts).unwrap();
        assert!(matches!(run, LdconfigRun::Ran { .. }), "{run:?}");
        assert_driver_in_cache(&f);
        fs::remove_file(f.rootfs.as_path().join("etc/ld.so.cache")).unwrap();
    }
    assert_eq!(fs::read("/etc/ld.so.cache").unwrap(), host_cache);
}

#[test]
fn host_ldconfig_runs_from_a_sealed_copy() {
    let Some(f) = configured() else { return };
    // No ldconfig in the image at all.
    let run = run_ldconfig(
        &f.container,
        &options(Ldconfig::Host("/sbin/ldconfig".into())),
    )
    .unwrap();
    assert!(matches!(run, LdconfigRun::Ran { .. }), "{run:?}");
    assert_driver_in_cache(&f);
}

#[test]
fn a_missing_container_ldconfig_is_success() {
    let Some(f) = configured() else { return };
    let run = run_ldconfig(
        &f.container,
        &options(Ldconfig::Image("/sbin/ldconfig".into())),
    )
    .unwrap();
    assert_eq!(run, LdconfigRun::NotFound);
    assert!(!f.rootfs.as_path().join("etc/ld.so.cache").exists());
}

const HOSTILE: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>
static void say(const char *what, int ok) {
    printf("%s: %s\n", what, ok ? "done" : strerror(errno));
    fflush(stdout);
}
int main(void) {
    int inherited = 0;
    for (int fd = 3; fd < 4096; fd++)
        inherited += fcntl(fd, F_GETFD) != -1;
    printf("inherited: %d\n", inherited);
    say("fork", fork() >= 0);
    say("escape", open(CANARY "/owned", O_CREAT | O_WRONLY, 0644) >= 0);
    say("proc", open("/proc/1/root/etc/passwd", O_RDONLY) >= 0);
    say("mount", mount("none", "/", "tmpfs", 0, 0) == 0);
    say("setuid", setuid(0) == 0);
    for (;;) {}
}
"#;

/// The configured fixture with [`HOSTILE`] as its ldconfig (None without gcc), and a host
/// directory it tries to write into.
fn hostile() -> Option<(Fixture, tempfile::TempDir)> {
    let mut f = configured()?;
    let canary = tempfile::tempdir().unwrap();
    let define = format!("-DCANARY=\"{}\"", canary.path().display());
    if !common::build_static(HOSTILE, &f.rootfs.join("sbin/ldconfig"), &[define]) {
        return None;
    }
    // An unprivileged owner.
    f.container.uid = 65534;
    f.container.gid = 65534;
    Some((f, canary))
}

#[test]
fn a_hostile_ldconfig_is_contained() {
    let Some((f, canary)) = hostile() else { return };
    // A short CPU limit ends the endless loop.
    let mut opts = options(Ldconfig::Image("/sbin/ldconfig".into()));
    opts.limits.cpu_seconds = 1;
    opts.limits.wall = Duration::from_secs(20);
    // A descriptor of a host directory the caller left inheritable must not reach it.
    let leaked = nix::fcntl::open(
        canary.path(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let err = run_ldconfig(&f.container, &opts).unwrap_err();
    drop(leaked);
    let Error::Ldconfig { what, output, .. } = &err else {
        panic!("{err}")
    };
    assert!(what.contains("terminated with signal"), "{err}");
    for line in [
        "inherited: 0",
        "fork: Operation not permitted",
        "escape: No such file or directory",
        "proc: No such file or directory",
        "mount: Operation not permitted",
        "setuid: Operation not permitted",
    ] {
        assert!(
            output.lines().any(|l| l == line),
            "{line:?} not in {output}"
        );
    }
    assert_eq!(fs::read_dir(canary.path()).unwrap().count(), 0);
}

/// An image `ldconfig` run as the container's root tries the host's sysctls and sysfs
/// through kernel filesystems mounted elsewhere than `/proc` and `/sys` in the container's
/// namespace: `/proc/sys/kernel/core_pattern` names a program the host kernel runs as root.
const KERNEL_FS_PROBE: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
static void say(const char *what, const char *path) {
    int ok = open(path, O_WRONLY) >= 0;
    printf("%s: %s\n", what, ok ? "opened" : strerror(errno));
}
int main(void) {
    say("second procfs", "/opt/p/sys/kernel/core_pattern");
    say("proc", "/proc/sys/kernel/core_pattern");
    say("second sysfs", "/opt/s/kernel/uevent_helper");
    say("cgroupfs", "/opt/c/cgroup.procs");
    return 0;
}
"#;

#[test]
fn kernel_filesystems_anywhere_in_the_image_are_out_of_reach_of_a_root_ldconfig() {
    let Some(mut f) = configured() else { return };
    if !common::build_static(KERNEL_FS_PROBE, &f.rootfs.join("sbin/ldconfig"), &[]) {
        return;
    }
    // The container's root owns it: uid 0, as most containers' processes are.
    f.container.uid = 0;
    f.container.gid = 0;
    let pid = f.container.pid.to_string();
    for (kind, dir) in [("proc", "opt/p"), ("sysfs", "opt/s"), ("cgroup2", "opt/c")] {
        let at = f.rootfs.join(dir);
        fs::create_dir_all(&at).unwrap();
        // In the container's namespace (dies with it): as a runtime or an earlier hook might.
        let status = Command::new("nsenter")
            .arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .args(["mount", "-t", kind, kind])
            .arg(&at)
            .status()
            .unwrap();
        assert!(status.success(), "mount {kind}");
    }
    let run = run_ldconfig(
        &f.container,
        &options(Ldconfig::Image("/sbin/ldconfig".into())),
    )
    .unwrap();
    let LdconfigRun::Ran { output } = run else {
        panic!("{run:?}")
    };
    for line in [
        "second procfs: No such file or directory",
        "proc: No such file or directory",
        "second sysfs: No such file or directory",
        "cgroupfs: No such file or directory",
    ] {
        assert!(
            output.lines().any(|l| l == line),
            "{line:?} not in {output}"
        );
    }
}

#[test]
fn the_wall_clock_limit_kills_a_spinning_ldconfig() {
    let Some((f, _canary)) = hostile() else {
        return;
    };
    let mut opts = options(Ldconfig::Image("/sbin/ldconfig".into()));
    opts.limits.cpu_seconds = 60;
    opts.limits.wall = Duration::from_millis(500);
    let start = std::time::Instant::now();
    let err = run_ldconfig(&f.container, &opts).unwrap_err().to_string();
    assert!(err.contains("killed after 500ms"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // Nothing of the sandbox is left running.
    let procs = Command::new("pgrep")
        .args(["-f", "nvc:\\[ldconfig\\]"])
        .output()
        .unwrap();
    assert!(
        procs.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&procs.stdout)
    );
}

#[test]
fn an_ldconfig_briefly_held_open_for_writing_still_runs() {
    let Some(f) = configured() else { return };
    let bin = f.rootfs.join("sbin/ldconfig");
    fs::copy("/sbin/ldconfig", &bin).unwrap();
    // Another process holds it open for writing for a moment, as a child forked by another
    // thread while the file was being copied would: exec fails with ETXTBSY until it is gone.
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg(format!("exec 3>>{}; sleep 0.3", bin.display()))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let run = run_ldconfig(
        &f.container,
        &options(Ldconfig::Image("/sbin/ldconfig".into())),
    );
    writer.wait().unwrap();
    assert!(matches!(run, Ok(LdconfigRun::Ran { .. })), "{run:?}");
}
