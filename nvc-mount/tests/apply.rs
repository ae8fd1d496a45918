//! Tier c: applying plans to a paused container on a simulated host.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::{Path, PathBuf};

use nix::sys::stat::{major, minor};
use nvc_driver::tables::Capability::{Compute, Utility};
use nvc_mount::{Container, MountApi, MountPlan, Op, PlanOptions};
use nvc_testkit::{Host, PausedContainer};

mod common;

/// The container's mounts under `rootfs`: (path inside the container, options).
fn mounts(pid: u32, rootfs: &Path) -> Vec<(String, String)> {
    let prefix = rootfs.to_str().unwrap();
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let inside = f[4].strip_prefix(prefix)?;
            Some((inside.to_owned(), f[5].to_owned()))
        })
        .collect()
}

/// Every path under `dir`, for "nothing else changed".
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                todo.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

fn setup() -> Option<(
    PausedContainer,
    tempfile::TempDir,
    Host,
    tempfile::TempDir,
    MountPlan,
    Container,
)> {
    let sim = common::sim("mig")?;
    let container = sim.container();
    let plan = sim.plan(
        &container,
        &PlanOptions {
            capabilities: vec![Compute, Utility],
            devices: sim.select("0,1,0:2"),
            ..PlanOptions::default()
        },
    );
    Some((sim.c, sim.hostdir, sim.host, sim.rootfs, plan, container))
}

#[test]
fn every_planned_path_is_mounted_with_its_flags_and_numbers() {
    mounts_every_planned_path(MountApi::Auto);
}

#[test]
fn the_legacy_bind_and_remount_gives_the_same_result() {
    mounts_every_planned_path(MountApi::Legacy);
}

fn mounts_every_planned_path(api: MountApi) {
    let Some((c, _hd, host, rootfs, mut plan, container)) = setup() else {
        return;
    };
    plan.mount_api = api;
    let pid = c.pid();
    let host_mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    plan.apply(&container).unwrap();
    let m = mounts(pid, rootfs.path());
    let opts_of = |t: &str| {
        m.iter()
            .rev()
            .find(|(p, _)| p == t)
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| panic!("{t} not mounted: {m:?}"))
    };
    for op in &plan.ops {
        match op {
            Op::Bind { target, kind, .. } => {
                let o = opts_of(target.to_str().unwrap());
                let f = kind.flags();
                assert_eq!(
                    o.starts_with("ro"),
                    f.read_only,
                    "{}: {o}",
                    target.display()
                );
                assert_eq!(o.contains("nosuid"), f.nosuid, "{}: {o}", target.display());
                assert_eq!(o.contains("nodev"), f.nodev, "{}: {o}", target.display());
                assert_eq!(o.contains("noexec"), f.noexec, "{}: {o}", target.display());
            }
            Op::Tmpfs { target, .. } => {
                assert!(opts_of(target.to_str().unwrap()).contains("noexec"))
            }
            _ => {}
        }
    }
    // Seen from inside the container: the nodes carry the host's numbers, the driver's
    // params say ModifyDeviceFiles: 0, the libcuda.so link is there.
    let inside = |p: &str| PathBuf::from(format!("/proc/{pid}/root{}{p}", rootfs.path().display()));
    let nv0 = fs::metadata(inside("/dev/nvidia0")).unwrap();
    assert!(nv0.file_type().is_char_device());
    assert_eq!((major(nv0.rdev()), minor(nv0.rdev())), (195, 0));
    let uvm = fs::metadata(inside("/dev/nvidia-uvm")).unwrap();
    assert_eq!(major(uvm.rdev()), u64::from(host.majors().uvm));
    let params = fs::read_to_string(inside("/proc/driver/nvidia/params")).unwrap();
    assert!(params.contains("ModifyDeviceFiles: 0"));
    assert_eq!(
        fs::read_link(inside("/usr/lib/x86_64-linux-gnu/libcuda.so")).unwrap(),
        Path::new("libcuda.so.1")
    );
    assert!(plan.device_rules().contains(&(195, 1)));
    // The host saw none of it.
    assert_eq!(
        fs::read_to_string("/proc/self/mountinfo").unwrap(),
        host_mounts
    );

    // A second configure stacks nothing.
    let again = plan.apply(&container).unwrap();
    assert!(
        again.mounts.is_empty() && again.created.is_empty(),
        "{again:?}"
    );
    assert_eq!(mounts(pid, rootfs.path()), m);
}

#[test]
fn a_failure_midway_leaves_the_container_as_it_was() {
    let Some((c, _hd, _host, rootfs, plan, container)) = setup() else {
        return;
    };
    let pid = c.pid();
    // The container's /dev is read-only: the device binds, after the libraries, firmware and
    // IPC mounts, cannot create their mountpoints.
    let dev = rootfs.path().join("dev");
    fs::create_dir_all(&dev).unwrap();
    nvc_mount::in_mount_ns(pid, || {
        nix::mount::mount(
            Some("tmpfs"),
            &dev,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .unwrap();
        Ok(())
    })
    .unwrap();
    let files_before = tree(rootfs.path());
    let mounts_before = mounts(pid, rootfs.path());
    let err = plan.apply(&container).unwrap_err();
    assert!(matches!(err, nvc_mount::Error::Apply { .. }), "{err}");
    let err = nvc_testkit::chain(&err);
    assert!(
        err.contains("/dev/") && err.contains("Read-only file system"),
        "{err}"
    );
    let first_device = plan
        .ops
        .iter()
        .position(|op| matches!(op, Op::Bind { target, .. } if target.starts_with("/dev")))
        .unwrap();
    assert!(first_device > 10, "the failure comes after many mounts");
    assert_eq!(mounts(pid, rootfs.path()), mounts_before);
    assert_eq!(tree(rootfs.path()), files_before);
}

#[test]
fn a_missing_source_fails_before_any_change() {
    let Some((c, _hd, _host, rootfs, mut plan, container)) = setup() else {
        return;
    };
    let n = plan.ops.len() * 2 / 3;
    plan.ops.insert(
        n,
        Op::Bind {
            source: "/nonexistent/libnvidia-broken.so".into(),
            target: "/usr/lib/x86_64-linux-gnu/libnvidia-broken.so".into(),
            kind: nvc_mount::MountKind::File,
        },
    );
    let files_before = tree(rootfs.path());
    let mounts_before = mounts(c.pid(), rootfs.path());
    let err = nvc_testkit::chain(&plan.apply(&container).unwrap_err());
    assert!(
        err.starts_with("open_tree /nonexistent/libnvidia-broken.so: No such file or directory"),
        "{err}"
    );
    assert_eq!(mounts(c.pid(), rootfs.path()), mounts_before);
    assert_eq!(tree(rootfs.path()), files_before);
}

#[test]
fn a_hostile_image_cannot_redirect_mounts_onto_the_host() {
    let Some((c, _hd, _host, rootfs, plan, container)) = setup() else {
        return;
    };
    let pid = c.pid();
    // The image's library and binary dirs point at host directories, absolutely and with `..`.
    let canary = tempfile::tempdir().unwrap();
    fs::write(canary.path().join("canary"), b"untouched").unwrap();
    fs::create_dir_all(rootfs.path().join("usr/lib")).unwrap();
    symlink(
        canary.path(),
        rootfs.path().join("usr/lib/x86_64-linux-gnu"),
    )
    .unwrap();
    let up = "../".repeat(20);
    symlink(
        format!("{up}{}", canary.path().display()),
        rootfs.path().join("usr/bin"),
    )
    .unwrap();
    let host_before = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let canary_before = tree(canary.path());
    plan.apply(&container).unwrap();
    // Everything landed inside the rootfs (the links were resolved as if it were /).
    assert_eq!(tree(canary.path()), canary_before);
    assert_eq!(
        fs::read(canary.path().join("canary")).unwrap(),
        b"untouched"
    );
    assert_eq!(
        fs::read_to_string("/proc/self/mountinfo").unwrap(),
        host_before
    );
    // No mountpoint of the container is under the host's canary directory; they are under
    // the rootfs (where the links' targets were created).
    let theirs = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let points: Vec<&str> = theirs.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    assert!(
        !points
            .iter()
            .any(|p| p.starts_with(canary.path().to_str().unwrap())),
        "a mount escaped to the canary"
    );
    let inside = rootfs.path().join(canary.path().strip_prefix("/").unwrap());
    assert!(points.contains(&inside.join("libcuda.so.550.54.14").to_str().unwrap()));
}

#[test]
fn proc_dev_and_etc_linked_to_the_host_change_nothing_outside_the_image() {
    for (name, link) in [
        ("dev", "/dev".to_owned()),
        ("proc", "/proc/self/root/proc".to_owned()),
        ("etc", format!("{}etc", "../".repeat(12))),
    ] {
        let Some((c, _hd, _host, rootfs, plan, container)) = setup() else {
            return;
        };
        let pid = c.pid();
        let target = rootfs.path().join(name);
        let _ = fs::remove_dir_all(&target);
        symlink(&link, &target).unwrap();
        let host_mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let files_before = tree(rootfs.path());
        let result = plan.apply(&container);
        // Whatever the outcome, the host's mount table is untouched and nothing is mounted
        // outside the rootfs in the container (a mount on the host's /dev/nvidia0 would show
        // there without the rootfs prefix).
        eprintln!(
            "{name} -> {link}: {:?}",
            result.as_ref().map(|m| m.mounts.len())
        );
        assert_eq!(
            fs::read_to_string("/proc/self/mountinfo").unwrap(),
            host_mounts,
            "{name}"
        );
        let theirs = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let prefix = rootfs.path().to_str().unwrap();
        let ours: Vec<&str> = theirs
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| {
                p.starts_with("/dev/nvidia")
                    || p.starts_with("/proc/driver/nvidia")
                    || p.contains("x86_64-linux-gnu/lib")
            })
            .collect();
        assert!(
            ours.iter().all(|p| p.starts_with(prefix)),
            "{name}: {ours:?}"
        );
        if result.is_err() {
            assert_eq!(tree(rootfs.path()), files_before, "{name}: not rolled back");
        }
    }
}

#[test]
fn driver_files_hidden_from_the_container_namespace_are_still_mounted() {
    let Some((c, hostdir, _host, rootfs, plan, container)) = setup() else {
        return;
    };
    let pid = c.pid();
    // Inside the container's namespace the driver root is covered (as after a pivot_root):
    // sources are cloned in the caller's namespace, so the binds still work.
    let hidden = hostdir.path().to_path_buf();
    nvc_mount::in_mount_ns(pid, move || {
        nix::mount::mount(
            Some("tmpfs"),
            &hidden,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        Ok(())
    })
    .unwrap();
    plan.apply(&container).unwrap();
    let lib = "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14";
    let inside = fs::metadata(format!("/proc/{pid}/root{}{lib}", rootfs.path().display())).unwrap();
    let host_lib = fs::metadata(hostdir.path().join(lib.trim_start_matches('/'))).unwrap();
    assert_eq!(
        (inside.dev(), inside.ino()),
        (host_lib.dev(), host_lib.ino())
    );
}

#[test]
fn every_scenario_is_configured_with_exact_flags_and_nothing_else_changes() {
    use nvc_driver::tables::Capability::{Display, Graphics, Video};
    for name in nvc_testkit::BUILTIN {
        let Some(sim) = common::sim(name) else { return };
        let container = sim.container();
        // Every GPU whole, none of the MIG devices.
        let indices: Vec<String> = sim.info.gpus.iter().map(|g| g.index.to_string()).collect();
        let all = sim.select(&indices.join(","));
        let plan = sim.plan(
            &container,
            &PlanOptions {
                capabilities: vec![Compute, Utility, Graphics, Video, Display],
                devices: all,
                compat32: true,
                ..PlanOptions::default()
            },
        );
        let host_mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let done = plan.apply(&container).unwrap();
        let m = mounts(sim.c.pid(), sim.rootfs.path());
        // Exactly the planned mounts, each with its kind's flags.
        assert_eq!(m.len(), done.mounts.len(), "{name}: {m:?}");
        for op in &plan.ops {
            if let Op::Bind { target, kind, .. } = op {
                let (_, o) = m
                    .iter()
                    .find(|(p, _)| Path::new(p) == target)
                    .unwrap_or_else(|| panic!("{name}: {} not mounted", target.display()));
                let f = kind.flags();
                let has = |flag| o.split(',').any(|x| x == flag);
                assert_eq!(has("ro"), f.read_only, "{name} {}: {o}", target.display());
                assert_eq!(has("nosuid"), f.nosuid, "{name} {}: {o}", target.display());
                assert_eq!(has("nodev"), f.nodev, "{name} {}: {o}", target.display());
                assert_eq!(has("noexec"), f.noexec, "{name} {}: {o}", target.display());
            }
        }
        assert_eq!(
            fs::read_to_string("/proc/self/mountinfo").unwrap(),
            host_mounts,
            "{name}"
        );
    }
}

/// A container whose procfs has no `/proc/driver/nvidia` (made where the NVIDIA module is not
/// loaded — Docker's new procfs on the simulated host — or mounted `subset=pid`, without even
/// `/proc/driver`): nothing there to mask, so neither the tmpfs nor anything planned under it
/// is made, and the rest of the plan is.
#[test]
fn a_procfs_without_the_nvidia_directory_is_left_unmasked() {
    let Some((c, _hd, _host, rootfs, plan, container)) = setup() else {
        return;
    };
    let pid = c.pid().to_string();
    let proc_dir = rootfs.path().join("proc");
    fs::create_dir_all(&proc_dir).unwrap();
    // In the container's mount namespace, as its runtime mounts it.
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &pid,
            "-m",
            "mount",
            "-t",
            "proc",
            "-o",
            "subset=pid",
            "proc",
        ])
        .arg(&proc_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        plan.ops
            .iter()
            .any(|op| matches!(op, Op::Tmpfs { target, .. }
        if target == Path::new("/proc/driver/nvidia")))
    );
    let done = plan.apply(&container).unwrap();
    assert_eq!(done.skipped, [PathBuf::from("/proc/driver/nvidia")]);
    let m = mounts(c.pid(), rootfs.path());
    assert!(
        !m.iter().any(|(p, _)| p.starts_with("/proc/")),
        "nothing under the procfs: {m:?}"
    );
    assert!(m.iter().any(|(p, _)| p == "/dev/nvidia0"), "{m:?}");
}
