//! `--load-kmods` on a simulated host: the missing device nodes are made with the driver's
//! numbers, nothing else changes, a second run makes nothing (root: mknod).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use nvc_driver::kmods::{KmodOptions, load_kernel_modules};
use nvc_testkit::{DeviceNodes, Host, Scenario};

#[test]
fn missing_nodes_are_made_with_the_drivers_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Scenario::builtin("mig").unwrap();
    let host = Host::build(&s, dir.path()).unwrap();
    if !matches!(host.device_nodes_state(), DeviceNodes::Created) {
        nvc_testkit::skip!("no device nodes (needs root for mknod)");
        return;
    }
    let expected = host.device_nodes();
    // A fresh boot: no node at all, one of them a stale regular file.
    fs::remove_dir_all(dir.path().join("dev")).unwrap();
    fs::create_dir(dir.path().join("dev")).unwrap();
    fs::write(dir.path().join("dev/nvidia0"), "stale").unwrap();
    let mut opts = KmodOptions::new(dir.path());
    opts.pci_devices = dir.path().join("sys/bus/pci/devices");
    opts.proc_devices = dir.path().join("proc/devices");
    opts.modprobe = dir.path().join("no-modprobe-here");
    opts.imex_channels = vec![0, 3];
    let report = load_kernel_modules(&opts);
    // No modprobe on the simulated host: each module is a warning, nothing more.
    assert!(report.loaded.is_empty());
    assert_eq!(
        report
            .warnings
            .iter()
            .filter(|w| w.starts_with("modprobe "))
            .count(),
        3,
        "{:?}",
        report.warnings
    );
    for node in &expected {
        let path = dir.path().join(&node.path);
        let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", node.path));
        assert!(meta.file_type().is_char_device(), "{}", node.path);
        assert_eq!(
            meta.rdev(),
            nix::sys::stat::makedev(u64::from(node.major), u64::from(node.minor)),
            "{}",
            node.path
        );
    }
    let nvidia0 = fs::metadata(dir.path().join("dev/nvidia0")).unwrap();
    assert_eq!(nvidia0.permissions().mode() & 0o777, 0o666);
    let imex = host.majors().imex;
    for channel in [0, 3] {
        let path = dir
            .path()
            .join(format!("dev/nvidia-caps-imex-channels/channel{channel}"));
        assert_eq!(
            fs::metadata(&path).unwrap().rdev(),
            nix::sys::stat::makedev(u64::from(imex), channel)
        );
    }
    // Only the MIG capabilities the driver has files for: no node for unused GPU instances.
    let caps = fs::read_dir(dir.path().join("dev/nvidia-caps"))
        .unwrap()
        .count();
    let expected_caps = expected
        .iter()
        .filter(|n| n.path.starts_with("dev/nvidia-caps/"))
        .map(|n| &n.path)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(caps, expected_caps);
    // Idempotent.
    let again = load_kernel_modules(&opts);
    assert!(again.created.is_empty(), "{:?}", again.created);

    // Without IMEX creation, and with one GPU fewer on the bus: fewer nodes.
    let gpus = s.gpus.len();
    let last = &s.gpus[gpus - 1];
    fs::remove_dir_all(
        opts.pci_devices
            .join(format!("{:04x}:{:02x}:00.0", last.pci.domain, last.pci.bus)),
    )
    .unwrap();
    let mut opts = opts.clone();
    opts.create_imex_channels = false;
    fs::remove_dir_all(dir.path().join("dev")).unwrap();
    fs::create_dir(dir.path().join("dev")).unwrap();
    let report = load_kernel_modules(&opts);
    assert!(!dir.path().join("dev/nvidia-caps-imex-channels").exists());
    assert!(
        report
            .created
            .iter()
            .any(|p| p.ends_with("nvidia-uvm-tools"))
    );
    assert!(dir.path().join(format!("dev/nvidia{}", gpus - 2)).exists());
    assert!(!dir.path().join(format!("dev/nvidia{}", gpus - 1)).exists());
}
