//! Mount plans for simulated hosts and containers, without privileges.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nvc_driver::tables::Capability::{Compute, Display, Graphics, Utility};
use nvc_driver::{DeviceRequest, DriverInfo, DriverOptions, Selection, probe_driver};
use nvc_mount::{Container, ContainerDirs, MountKind, MountPlan, Op, PlanOptions};
use nvc_testkit::{Host, Scenario};

fn host(name: &str) -> (tempfile::TempDir, Host, DriverInfo) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin(name).unwrap(), dir.path()).unwrap();
    let mut opts = DriverOptions::new(dir.path());
    opts.discover.proc_devices = dir.path().join("proc/devices");
    let info = probe_driver(&opts).unwrap();
    (dir, host, info)
}

fn select(info: &DriverInfo, devices: &str) -> Selection {
    DeviceRequest::parse(devices)
        .unwrap()
        .select(&info.gpus)
        .unwrap()
}

fn debian() -> ContainerDirs {
    let rootfs = tempfile::tempdir().unwrap();
    fs::create_dir_all(rootfs.path().join("etc")).unwrap();
    fs::write(rootfs.path().join("etc/debian_version"), "12.0\n").unwrap();
    nvc_mount::detect_dirs(rootfs.path()).unwrap()
}

fn binds(plan: &MountPlan) -> Vec<(String, MountKind)> {
    plan.ops
        .iter()
        .filter_map(|op| match op {
            Op::Bind { target, kind, .. } => Some((target.display().to_string(), *kind)),
            _ => None,
        })
        .collect()
}

#[test]
fn compute_and_utility_on_one_gpu() {
    let (dir, host, info) = host("single");
    let opts = PlanOptions {
        capabilities: vec![Compute, Utility],
        devices: select(&info, "0"),
        ..PlanOptions::default()
    };
    let plan = MountPlan::build(dir.path(), &info, &debian(), &opts).unwrap();
    // The /proc tmpfs comes first, with the driver told not to touch device files.
    assert_eq!(
        plan.ops[0],
        Op::Tmpfs {
            target: "/proc/driver/nvidia".into(),
            mode: 0o555
        }
    );
    let Op::WriteFile {
        target, contents, ..
    } = &plan.ops[1]
    else {
        panic!("{:?}", plan.ops[1])
    };
    assert_eq!(target, Path::new("/proc/driver/nvidia/params"));
    let params = String::from_utf8(contents.clone()).unwrap();
    assert!(
        params.contains("\nModifyDeviceFiles: 0\n") && !params.contains("ModifyDeviceFiles: 1")
    );

    let b = binds(&plan);
    let lib = |n: &str| {
        (
            format!("/usr/lib/x86_64-linux-gnu/{n}.so.550.54.14"),
            MountKind::File,
        )
    };
    assert!(b.contains(&lib("libcuda")) && b.contains(&lib("libnvidia-ml")));
    assert!(!b.contains(&lib("libGLX_nvidia")) && !b.contains(&lib("libnvcuvid")));
    assert!(b.contains(&("/usr/bin/nvidia-smi".into(), MountKind::File)));
    assert!(b.contains(&("/var/run/nvidia-persistenced/socket".into(), MountKind::Ipc)));
    assert!(b.contains(&("/tmp/nvidia-mps".into(), MountKind::Ipc)));
    assert!(b.contains(&(
        "/lib/firmware/nvidia/550.54.14/gsp_ga10x.bin".into(),
        MountKind::File
    )));
    assert!(b.contains(&("/dev/nvidia0".into(), MountKind::Device)));
    assert!(b.contains(&(
        "/proc/driver/nvidia/gpus/0000:01:00.0".into(),
        MountKind::Proc
    )));
    // Modeset needs display; uvm comes with compute (when the host has the node).
    assert!(!b.iter().any(|(t, _)| t == "/dev/nvidia-modeset"));
    if matches!(host.device_nodes_state(), nvc_testkit::DeviceNodes::Created) {
        assert!(b.contains(&("/dev/nvidia-uvm".into(), MountKind::Device)));
    }
    assert!(plan.ops.contains(&Op::AllowDevice {
        major: 195,
        minor: 0
    }));
    assert!(plan.ops.contains(&Op::AllowDevice {
        major: 195,
        minor: 255
    }));
    assert!(plan.ops.contains(&Op::Symlink {
        path: "/usr/lib/x86_64-linux-gnu/libcuda.so".into(),
        target: "libcuda.so.1".into()
    }));
    // Sources are the driver root's files.
    let source = plan.ops.iter().find_map(|op| match op {
        Op::Bind { source, target, .. } if target.ends_with("libcuda.so.550.54.14") => {
            Some(source.clone())
        }
        _ => None,
    });
    assert_eq!(
        source.unwrap(),
        dir.path()
            .join("usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14")
    );
    // Printable for --dry-run.
    let text = plan.to_string();
    assert!(text.starts_with(
        "tmpfs /proc/driver/nvidia mode=0555\nwrite /proc/driver/nvidia/params mode=0444"
    ));
    assert!(text.contains("bind ro,nosuid,noexec /dev/nvidia0 <- "));
    assert!(text.contains("cgroup allow c 195:0 rw\n"));
}

#[test]
fn graphics_display_and_compat32() {
    let (dir, _host, info) = host("legacy32");
    let opts = PlanOptions {
        capabilities: vec![Graphics, Display],
        devices: select(&info, "0"),
        compat32: true,
        ..PlanOptions::default()
    };
    let plan = MountPlan::build(dir.path(), &info, &debian(), &opts).unwrap();
    let b = binds(&plan);
    assert!(b.contains(&(
        "/usr/lib/i386-linux-gnu/libGLX_nvidia.so.550.54.14".into(),
        MountKind::File
    )));
    assert!(!b.iter().any(|(t, _)| t.contains("libcuda")));
    assert!(plan.ops.contains(&Op::Tmpfs {
        target: "/etc/nvidia/nvidia-application-profiles-rc.d".into(),
        mode: 0o555
    }));
    assert!(plan.ops.contains(&Op::Symlink {
        path: "/usr/lib/x86_64-linux-gnu/libGLX_indirect.so.0".into(),
        target: "libGLX_nvidia.so.550.54.14".into()
    }));
}

#[test]
fn mig_devices_bring_their_capabilities() {
    let (dir, host, info) = host("mig");
    let opts = PlanOptions {
        capabilities: vec![Compute],
        devices: select(&info, "0:1"),
        ..PlanOptions::default()
    };
    let plan = MountPlan::build(dir.path(), &info, &debian(), &opts).unwrap();
    let b = binds(&plan);
    let gi = "/proc/driver/nvidia/capabilities/gpu0/mig/gi1";
    assert!(b.contains(&(format!("{gi}/access"), MountKind::Proc)));
    assert!(b.contains(&(format!("{gi}/ci1/access"), MountKind::Proc)));
    let caps = host.majors().caps;
    let gi_minor = nvc_testkit::procfs::gi_minor(0, 1);
    let ci_minor = nvc_testkit::procfs::ci_minor(0, 1, 1);
    assert!(b.contains(&(
        format!("/dev/nvidia-caps/nvidia-cap{gi_minor}"),
        MountKind::Device
    )));
    assert!(plan.ops.contains(&Op::AllowDevice {
        major: caps,
        minor: ci_minor
    }));
}

#[test]
fn devbind_and_cgroups_can_be_turned_off() {
    let (dir, _host, info) = host("single");
    let mut opts = PlanOptions {
        capabilities: vec![Compute],
        devices: select(&info, "0"),
        no_devbind: true,
        ..PlanOptions::default()
    };
    let plan = MountPlan::build(dir.path(), &info, &debian(), &opts).unwrap();
    assert!(!binds(&plan).iter().any(|(_, k)| *k == MountKind::Device));
    assert!(plan.ops.contains(&Op::AllowDevice {
        major: 195,
        minor: 0
    }));
    opts.no_devbind = false;
    opts.no_cgroups = true;
    let plan = MountPlan::build(dir.path(), &info, &debian(), &opts).unwrap();
    assert!(
        !plan
            .ops
            .iter()
            .any(|op| matches!(op, Op::AllowDevice { .. }))
    );
}

#[test]
fn container_directories_are_detected_inside_the_image() {
    let rootfs = tempfile::tempdir().unwrap();
    let r = rootfs.path();
    // A RHEL-like image with /usr/lib and /usr/lib64 distinct, and ldconfig.real.
    fs::create_dir_all(r.join("usr/lib64")).unwrap();
    fs::create_dir_all(r.join("usr/lib")).unwrap();
    fs::create_dir_all(r.join("sbin")).unwrap();
    fs::write(r.join("sbin/ldconfig.real"), b"").unwrap();
    let dirs = nvc_mount::detect_dirs(r).unwrap();
    assert_eq!(
        (dirs.libs, dirs.libs32, dirs.ldconfig),
        (
            PathBuf::from("/usr/lib64"),
            PathBuf::from("/usr/lib"),
            PathBuf::from("/sbin/ldconfig.real")
        )
    );
    // /usr/lib64 -> lib: /usr/lib is the 64-bit directory, so 32-bit goes to /usr/lib32.
    fs::remove_dir(r.join("usr/lib64")).unwrap();
    symlink("lib", r.join("usr/lib64")).unwrap();
    assert_eq!(
        nvc_mount::detect_dirs(r).unwrap().libs32,
        Path::new("/usr/lib32")
    );
    // A hostile image whose debian_version points at the host's through /proc/1/root: resolved
    // inside the image it is missing (this Debian host has one).
    fs::create_dir_all(r.join("etc")).unwrap();
    symlink(
        "/proc/1/root/etc/debian_version",
        r.join("etc/debian_version"),
    )
    .unwrap();
    assert_eq!(
        nvc_mount::detect_dirs(r).unwrap().libs,
        Path::new("/usr/lib64")
    );
}

#[test]
fn container_facts_come_from_the_process() {
    let rootfs = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let c = Container::from_pid(me, rootfs.path()).unwrap();
    assert_eq!(c.uid, nix_uid());
    assert_eq!(
        Container::from_pid(me, Path::new("/"))
            .unwrap_err()
            .to_string(),
        "invalid rootfs directory: /"
    );
    let err = Container::from_pid(me, Path::new("rel")).unwrap_err();
    assert_eq!(err.to_string(), "invalid rootfs directory: rel");
    let err = Container::from_pid(u32::MAX - 1, rootfs.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("container process {} not found", u32::MAX - 1)
    );
}

fn nix_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").unwrap().uid()
}
