//! Every built-in scenario builds into a host that glibc, the ELF reader and the kernel agree
//! on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;

use nix::sys::stat::{major, minor};
use nvc_ldcache::elf::{Class, ElfInfo};
use nvc_ldcache::{Arch, LdCache};
use nvc_testkit::driver_files::{LIB32_DIR, LIB64_DIR, LIBRARIES, Part};
use nvc_testkit::{BUILTIN, DeviceNodes, Host, Scenario};

fn build(name: &str) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin(name).unwrap(), dir.path())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (dir, host)
}

/// The (SONAME or dev-link name, path) pairs the cache must hold for an architecture.
fn expected(s: &Scenario, class: Class) -> BTreeSet<(String, String)> {
    let dir = if class == Class::Elf64 {
        LIB64_DIR
    } else {
        LIB32_DIR
    };
    let mut set = BTreeSet::new();
    for lib in LIBRARIES {
        let installed = s.files.installs(lib.part);
        if !installed || (class == Class::Elf32 && !(lib.lib32 && s.files.lib32)) {
            continue;
        }
        for name in [lib.soname(&s.driver_version), format!("{}.so", lib.stem)] {
            set.insert((name.clone(), format!("/{dir}/{name}")));
        }
    }
    set
}

#[test]
fn ldconfig_lists_exactly_the_driver_libraries() {
    for name in BUILTIN {
        let (_dir, host) = build(name);
        let s = host.scenario();
        let cache_path = host.root().join("etc/ld.so.cache");
        if !s.files.ldcache {
            assert!(!cache_path.exists(), "{name}");
            continue;
        }
        let bytes = fs::read(&cache_path).unwrap();
        let cache = LdCache::parse(&bytes).unwrap();
        for (class, arch) in [(Class::Elf64, Arch::X86_64), (Class::Elf32, Arch::I386)] {
            let listed: BTreeSet<(String, String)> = cache
                .entries()
                .map(Result::unwrap)
                .filter(|e| e.arch() == arch)
                .map(|e| {
                    (
                        e.soname().to_str().unwrap().to_owned(),
                        e.path().to_str().unwrap().to_owned(),
                    )
                })
                .collect();
            assert_eq!(listed, expected(s, class), "{name} {arch:?}");
        }
        // And glibc reads it the same way.
        let out = Command::new("ldconfig")
            .arg("-p")
            .arg("-C")
            .arg(&cache_path)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.starts_with(&format!("{} libs found", cache.len())),
            "{text}"
        );
        assert!(text.contains(&format!(
            "\tlibcuda.so.1 (libc6,x86-64) => /{LIB64_DIR}/libcuda.so.1\n"
        )));
    }
}

#[test]
fn libraries_are_real_elf_objects_with_their_sonames() {
    let (_dir, host) = build("legacy32");
    let s = host.scenario();
    for (class, dir) in [(Class::Elf64, LIB64_DIR), (Class::Elf32, LIB32_DIR)] {
        for lib in LIBRARIES
            .iter()
            .filter(|l| class == Class::Elf64 || l.lib32)
        {
            if lib.part == Part::Fabric {
                continue;
            }
            let file = host.root().join(dir).join(lib.file_name(&s.driver_version));
            let info = ElfInfo::read(&file).unwrap();
            assert_eq!(info.header.class, class);
            assert_eq!(
                info.soname.unwrap(),
                lib.soname(&s.driver_version).into_bytes()
            );
            // ldconfig records glibc libraries as libc6 only when they need libc.so.6.
            assert!(info.needed.contains(&b"libc.so.6".to_vec()));
            // Resolving the SONAME link leads to a file named for the driver version.
            let via_link =
                fs::canonicalize(host.root().join(dir).join(lib.soname(&s.driver_version)))
                    .unwrap();
            assert!(via_link.to_str().unwrap().ends_with(&s.driver_version));
            assert_eq!(info.abi_tag.is_some(), lib.stem == "libnvidia-tls");
        }
    }
}

#[test]
fn binaries_firmware_and_ipc_exist() {
    let (_dir, host) = build("dgx");
    let root = host.root();
    let version = &host.scenario().driver_version;
    for bin in [
        "nvidia-smi",
        "nvidia-persistenced",
        "nv-fabricmanager",
        "nvidia-cuda-mps-control",
    ] {
        let out = run_retrying_etxtbsy(&root.join("usr/bin").join(bin));
        assert!(out.status.success());
        assert!(
            String::from_utf8(out.stdout)
                .unwrap()
                .contains(version.as_str())
        );
    }
    for fw in ["gsp_ga10x.bin", "gsp_tu10x.bin"] {
        assert!(
            root.join("lib/firmware/nvidia")
                .join(version)
                .join(fw)
                .is_file()
        );
    }
    for socket in [
        "var/run/nvidia-persistenced/socket",
        "var/run/nvidia-fabricmanager/socket",
    ] {
        let path = root.join(socket);
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
        UnixStream::connect(&path).unwrap();
    }
    assert!(root.join("tmp/nvidia-mps").is_dir());
    // The single-GPU desktop has no fabric manager.
    let (_dir, single) = build("single");
    assert!(!single.root().join("usr/bin/nv-fabricmanager").exists());
    assert!(!single.root().join("var/run/nvidia-fabricmanager").exists());
}

#[test]
fn proc_files_describe_the_gpus() {
    let (_dir, host) = build("mig");
    let nv = host.root().join("proc/driver/nvidia");
    let version = fs::read_to_string(nv.join("version")).unwrap();
    assert!(version.starts_with("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  "));
    assert!(
        fs::read_to_string(nv.join("params"))
            .unwrap()
            .contains("\nModifyDeviceFiles: 1\n")
    );
    for g in &host.scenario().gpus {
        let info = fs::read_to_string(nv.join("gpus").join(g.pci.proc_name()).join("information"))
            .unwrap();
        assert!(
            info.contains(&format!("GPU UUID: \t {}\n", g.uuid)),
            "{info}"
        );
        assert!(info.contains(&format!("Device Minor: \t {}\n", g.minor)));
    }
    let access = fs::read_to_string(nv.join("capabilities/gpu0/mig/gi1/ci1/access")).unwrap();
    assert!(access.starts_with("DeviceFileMinor: "));
    let devices = fs::read_to_string(host.root().join("proc/devices")).unwrap();
    assert!(devices.contains("\n195 nvidia-frontend\n"));
    assert!(devices.contains(&format!("\n{} nvidia-uvm\n", host.majors().uvm)));
}

#[test]
fn device_nodes_have_the_real_numbers() {
    let (_dir, host) = build("mig");
    match host.device_nodes_state() {
        DeviceNodes::Skipped(reason) => {
            nvc_testkit::skip!("{reason}");
            return;
        }
        DeviceNodes::Created => {}
    }
    let nodes = host.device_nodes();
    assert!(
        nodes
            .iter()
            .any(|n| n.path == "dev/nvidiactl" && (n.major, n.minor) == (195, 255))
    );
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n.path.starts_with("dev/nvidia-caps/"))
            .count(),
        2 + 2 * 3
    );
    for n in nodes {
        let meta = fs::metadata(host.root().join(&n.path)).unwrap();
        assert!(meta.file_type().is_char_device(), "{}", n.path);
        let rdev = meta.rdev();
        assert_eq!(
            (major(rdev), minor(rdev)),
            (u64::from(n.major), u64::from(n.minor)),
            "{}",
            n.path
        );
    }
}

/// Runs a just-written executable. Another test thread forking while the file was open for
/// writing makes exec fail with ETXTBSY until that child execs; that window is short.
fn run_retrying_etxtbsy(path: &Path) -> std::process::Output {
    for _ in 0..50 {
        match Command::new(path).output() {
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.unwrap(),
        }
    }
    panic!("{} stayed busy", path.display());
}

#[test]
fn building_twice_in_one_place_replaces_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let s = Scenario::builtin("single").unwrap();
    drop(Host::build(&s, dir.path()).unwrap());
    let host = Host::build(&s, dir.path()).unwrap();
    assert!(host.root().join("etc/ld.so.cache").is_file());
    UnixStream::connect(host.root().join("var/run/nvidia-persistenced/socket")).unwrap();
}
