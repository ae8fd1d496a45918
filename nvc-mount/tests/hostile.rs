//! Tier c: hostile images, each test written as the attack it stops (issue: no image can
//! hang, trick or reach past nvc). Root only; every test skips with a reason elsewhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nvc_driver::tables::Capability::{Compute, Utility};
use nvc_mount::{Error, Ldconfig, LdconfigOptions, Limits, MountApi, MountPlan, PlanOptions};

mod common;

use common::Sim;

fn fixture() -> Option<Sim> {
    let sim = common::sim("single")?;
    sim.mkdirs(&["sbin", "usr/lib/x86_64-linux-gnu"]);
    Some(sim)
}

fn plan(sim: &Sim, api: MountApi) -> MountPlan {
    let mut plan = sim.plan(
        &sim.container(),
        &PlanOptions {
            capabilities: vec![Compute, Utility],
            gpus: vec![0],
            no_cgroups: true,
            ..PlanOptions::default()
        },
    );
    plan.mount_api = api;
    plan
}

fn ldconfig(which: Ldconfig) -> LdconfigOptions {
    LdconfigOptions {
        ldconfig: which,
        no_pivot: false,
        extra_dir: None,
        limits: Limits::default(),
    }
}

/// A container ldconfig that changes the cache and then fails.
const FAILING_LDCONFIG: &str = r#"
#include <stdio.h>
int main(void) {
    FILE *f = fopen("/etc/ld.so.cache~", "w");
    fputs("garbage", f);
    fclose(f);
    rename("/etc/ld.so.cache~", "/etc/ld.so.cache");
    return 3;
}
"#;

/// What the image puts at `/etc/ld.so.cache`.
#[derive(Debug, Clone, Copy)]
enum Cache {
    Fifo,
    LinkToDevZero,
    DeviceNode,
    Sparse2GiB,
}

impl Cache {
    fn plant(self, etc: &Path) {
        let cache = etc.join("ld.so.cache");
        let _ = fs::remove_file(&cache);
        match self {
            Cache::Fifo => {
                nix::unistd::mkfifo(&cache, nix::sys::stat::Mode::from_bits_truncate(0o644))
                    .unwrap()
            }
            Cache::LinkToDevZero => symlink("/dev/zero", &cache).unwrap(),
            Cache::DeviceNode => nix::sys::stat::mknod(
                &cache,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, 5),
            )
            .unwrap(),
            Cache::Sparse2GiB => fs::File::create(&cache).unwrap().set_len(2 << 30).unwrap(),
        }
    }

    fn is_planted(self, etc: &Path) -> bool {
        let meta = fs::symlink_metadata(etc.join("ld.so.cache")).unwrap();
        match self {
            Cache::Fifo => meta.file_type().is_fifo(),
            Cache::LinkToDevZero => meta.file_type().is_symlink(),
            Cache::DeviceNode => meta.file_type().is_char_device(),
            Cache::Sparse2GiB => meta.len() == 2 << 30,
        }
    }
}

#[test]
fn a_fifo_device_or_huge_cache_is_never_read_and_ends_within_a_second() {
    let Some(sim) = fixture() else { return };
    let etc = sim.rootfs.path().join("etc");
    let bad = sim.hostdir.path().join("failing-ldconfig");
    if !common::build_static(FAILING_LDCONFIG, &bad, &[]) {
        return;
    }
    let container = sim.container();
    let plan = plan(&sim, MountApi::Auto);
    for cache in [
        Cache::Fifo,
        Cache::LinkToDevZero,
        Cache::DeviceNode,
        Cache::Sparse2GiB,
    ] {
        // A failing ldconfig: everything undone, the image's entry back in place unread.
        cache.plant(&etc);
        fs::copy(&bad, sim.rootfs.path().join("sbin/ldconfig")).unwrap();
        let (tree, mounts) = (sim.tree(), sim.mounts());
        let start = Instant::now();
        let opts = ldconfig(Ldconfig::Container("/sbin/ldconfig".into()));
        let err = plan.configure(&container, Some(&opts)).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{cache:?}: {:?}",
            start.elapsed()
        );
        assert!(matches!(err, Error::Ldconfig { .. }), "{cache:?}: {err}");
        assert!(cache.is_planted(&etc), "{cache:?} not put back");
        assert_eq!(sim.tree(), tree, "{cache:?}: files left behind");
        assert_eq!(sim.mounts(), mounts, "{cache:?}: mounts left behind");

        // The host's ldconfig: configured, the entry replaced by a real cache.
        let start = Instant::now();
        let done = plan
            .configure(
                &container,
                Some(&ldconfig(Ldconfig::Host("/sbin/ldconfig".into()))),
            )
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{cache:?}: {:?}",
            start.elapsed()
        );
        let bytes = fs::read(etc.join("ld.so.cache")).unwrap();
        assert!(nvc_ldcache::LdCache::parse(&bytes).is_ok(), "{cache:?}");
        // No kept link is left in /etc.
        let names: Vec<_> = fs::read_dir(&etc)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            !names.iter().any(|n| n.to_string_lossy().contains("nvc")),
            "{names:?}"
        );
        done.mounted.unapply(&container).unwrap();
    }
}

/// An image ldconfig that moves the directory nvc created for the driver's binaries away,
/// puts a link to a volume in its place, and fails: the undo must not follow the link.
const SWAPPING_LDCONFIG: &str = r#"
#include <stdio.h>
#include <unistd.h>
int main(void) {
    if (rename("/usr/bin", "/usr/bin.moved") != 0) { perror("rename"); return 1; }
    if (symlink("/volume", "/usr/bin") != 0) { perror("symlink"); return 1; }
    return 3;
}
"#;

#[test]
fn an_ldconfig_that_swaps_a_created_directory_cannot_steer_the_undo() {
    let Some(sim) = fixture() else { return };
    let root = sim.rootfs.path();
    // The volume: a host directory the container sees, holding a file named as a driver
    // binary that the undo would remove if it followed the link.
    fs::create_dir(root.join("volume")).unwrap();
    fs::write(root.join("volume/nvidia-smi"), "the user's data").unwrap();
    if !common::build_static(SWAPPING_LDCONFIG, &root.join("sbin/ldconfig"), &[]) {
        return;
    }
    let container = sim.container();
    let mounts = sim.mounts();
    let opts = ldconfig(Ldconfig::Container("/sbin/ldconfig".into()));
    let err = plan(&sim, MountApi::Auto)
        .configure(&container, Some(&opts))
        .unwrap_err();
    // The swapped /usr/bin is reported, not followed.
    let Error::UndoIncomplete { error, left } = &err else {
        panic!("{err}")
    };
    assert!(matches!(**error, Error::Ldconfig { .. }), "{err}");
    assert!(
        left.iter().any(|l| l.starts_with("/usr/bin: not removed")),
        "{left:?}"
    );
    assert_eq!(
        fs::read_to_string(root.join("volume/nvidia-smi")).unwrap(),
        "the user's data"
    );
    // Everything nvc mounted is gone, also in the moved directory.
    assert_eq!(sim.mounts(), mounts);
    assert!(!root.join("usr/bin.moved/nvidia-smi").exists());
}

#[test]
fn a_container_proc_mounted_over_cannot_redirect_descriptor_paths() {
    let Some(sim) = fixture() else { return };
    // The container's namespace shows an empty tmpfs at /proc: /proc/self/fd/N is nothing there.
    let covered = Command::new("nsenter")
        .args([
            "-t",
            &sim.c.pid().to_string(),
            "-m",
            "mount",
            "-t",
            "tmpfs",
            "tmpfs",
            "/proc",
        ])
        .status()
        .unwrap();
    assert!(covered.success());
    let container = sim.container();
    for api in [MountApi::Legacy, MountApi::Auto] {
        let done = plan(&sim, api).apply(&container).unwrap();
        assert!(!done.mounts.is_empty());
        assert_eq!(done.unapply(&container).unwrap(), Vec::<String>::new());
        assert!(sim.mounts().is_empty(), "{api:?}: {:?}", sim.mounts());
    }
}

#[test]
fn mountpoints_belong_to_the_owner_from_the_moment_they_exist() {
    let Some(sim) = fixture() else { return };
    let mut container = sim.container();
    container.uid = 4321;
    container.gid = 4322;
    let done = plan(&sim, MountApi::Auto).apply(&container).unwrap();
    // Entries not covered by a mount and not inside one of the container's tmpfs mounts
    // (which the host does not see) are checked from here.
    let mut checked = 0;
    for path in done.created.iter().filter(|p| !done.mounts.contains(p)) {
        let host = sim.rootfs.path().join(path.strip_prefix("/").unwrap());
        let Ok(meta) = fs::symlink_metadata(&host) else {
            continue;
        };
        assert_eq!((meta.uid(), meta.gid()), (4321, 4322), "{}", path.display());
        checked += 1;
    }
    assert!(checked > 3, "{:?}", done.created);
    done.unapply(&container).unwrap();
    for path in &done.created {
        assert!(
            !sim.rootfs
                .path()
                .join(path.strip_prefix("/").unwrap())
                .exists()
        );
    }
}
