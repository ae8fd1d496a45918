//! File discovery on every simulated host: what upstream finds, where it finds it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nvc_driver::tables::library_prefixes;
use nvc_driver::{DiscoverOptions, DriverFiles, Error, discover_files};
use nvc_testkit::driver_files::{LIB32_DIR, LIB64_DIR, LIBRARIES};
use nvc_testkit::{DeviceNodes, Host, Scenario};

fn build(name: &str) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(&Scenario::builtin(name).unwrap(), dir.path()).unwrap();
    (dir, host)
}

fn discover(host: &Host) -> DriverFiles {
    discover_files(
        &DiscoverOptions::new(host.root()),
        &host.scenario().driver_version,
    )
    .unwrap()
}

/// The libraries the scenario installs, in upstream's lookup order.
fn expected_libs(s: &Scenario, dir: &str, lib32: bool) -> Vec<PathBuf> {
    library_prefixes(true)
        .iter()
        .filter_map(|prefix| {
            let lib = LIBRARIES
                .iter()
                .find(|l| format!("{}.so", l.stem) == *prefix)?;
            let installed = s.files.installs(lib.part);
            (installed && (!lib32 || (lib.lib32 && s.files.lib32))).then(|| {
                Path::new("/")
                    .join(dir)
                    .join(lib.file_name(&s.driver_version))
            })
        })
        .collect()
}

#[test]
fn libraries_are_found_through_the_cache_or_without_one() {
    for name in ["single", "dgx", "legacy32", "nocache", "mig"] {
        let (_dir, host) = build(name);
        let s = host.scenario();
        let files = discover(&host);
        assert_eq!(files.from_ldcache, s.files.ldcache, "{name}");
        assert_eq!(
            files.libraries,
            expected_libs(s, LIB64_DIR, false),
            "{name}"
        );
        assert_eq!(
            files.libraries32,
            expected_libs(s, LIB32_DIR, true),
            "{name}"
        );
        // The 550 driver has no libnvidia-tileiras: a warning, as upstream.
        assert!(
            files
                .warnings
                .contains(&"missing library libnvidia-tileiras.so".to_owned()),
            "{:?}",
            files.warnings
        );
        if !s.files.lib32 {
            assert!(
                files
                    .warnings
                    .contains(&"missing compat32 library libcuda.so".to_owned())
            );
        }
    }
}

#[test]
fn binaries_ipcs_and_firmware() {
    let (_dir, host) = build("dgx");
    let files = discover(&host);
    let bins: Vec<&str> = files.binaries.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(
        bins,
        [
            "/usr/bin/nvidia-smi",
            "/usr/bin/nvidia-debugdump",
            "/usr/bin/nvidia-persistenced",
            "/usr/bin/nv-fabricmanager",
            "/usr/bin/nvidia-cuda-mps-control",
            "/usr/bin/nvidia-cuda-mps-server"
        ]
    );
    let ipcs: Vec<&str> = files.ipcs.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(
        ipcs,
        [
            "/var/run/nvidia-persistenced/socket",
            "/var/run/nvidia-fabricmanager/socket",
            "/tmp/nvidia-mps"
        ]
    );
    let fw: Vec<&str> = files
        .firmwares
        .iter()
        .map(|p| p.to_str().unwrap())
        .collect();
    assert_eq!(
        fw,
        [
            "/lib/firmware/nvidia/550.54.14/gsp_ga10x.bin",
            "/lib/firmware/nvidia/550.54.14/gsp_tu10x.bin"
        ]
    );

    let (_dir, single) = build("single");
    let files = discover(&single);
    assert!(
        !files
            .binaries
            .iter()
            .any(|b| b.ends_with("nv-fabricmanager"))
    );
    assert!(
        files
            .warnings
            .contains(&"missing binary nv-fabricmanager".to_owned())
    );
    assert!(
        files
            .warnings
            .contains(&"missing ipc path /var/run/nvidia-fabricmanager/socket".to_owned())
    );
}

#[test]
fn options_turn_lookups_off() {
    let (_dir, host) = build("dgx");
    let mut opts = DiscoverOptions::new(host.root());
    opts.persistenced = false;
    opts.mps = false;
    opts.gsp_firmware = false;
    opts.path = "/nowhere::/usr/bin".into();
    let files = discover_files(&opts, &host.scenario().driver_version).unwrap();
    assert_eq!(
        files.ipcs,
        [PathBuf::from("/var/run/nvidia-fabricmanager/socket")]
    );
    assert!(files.firmwares.is_empty());
    assert!(
        !files
            .binaries
            .iter()
            .any(|b| b.to_str().unwrap().contains("mps"))
    );
    assert_eq!(files.binaries.len(), 4);
}

#[test]
fn device_nodes_carry_the_hosts_numbers() {
    let (_dir, host) = build("single");
    let files = discover(&host);
    assert_eq!(files.devices[0].path, Path::new("/dev/nvidiactl"));
    assert_eq!((files.devices[0].major, files.devices[0].minor), (195, 255));
    if let DeviceNodes::Skipped(reason) = host.device_nodes_state() {
        eprintln!("device nodes not checked: {reason}");
        assert!(
            files
                .warnings
                .contains(&"missing device /dev/nvidia-uvm".to_owned())
        );
        return;
    }
    let got: Vec<(String, u32, u32)> = files
        .devices
        .iter()
        .map(|d| (d.path.display().to_string(), d.major, d.minor))
        .collect();
    let uvm = host.majors().uvm;
    assert_eq!(
        got,
        [
            ("/dev/nvidiactl".to_owned(), 195, 255),
            ("/dev/nvidia-uvm".to_owned(), uvm, 0),
            ("/dev/nvidia-uvm-tools".to_owned(), uvm, 1),
            ("/dev/nvidia-modeset".to_owned(), 195, 254),
        ]
    );
}

#[test]
fn capabilities_pick_their_libraries() {
    use nvc_driver::tables::Capability::{Compute, Graphics, Utility};
    let (_dir, host) = build("legacy32");
    let files = discover(&host);
    let names = |v: Vec<&Path>| -> Vec<String> {
        v.iter()
            .map(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .split(".so")
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let compute = names(files.libraries_for(&[Compute], false));
    assert!(
        compute.contains(&"libcuda".to_owned())
            && compute.contains(&"libnvidia-ptxjitcompiler".to_owned())
    );
    assert!(
        !compute.contains(&"libnvidia-ml".to_owned())
            && !compute.contains(&"libGLX_nvidia".to_owned())
    );
    let utility32 = files.libraries_for(&[Utility], true);
    assert_eq!(
        utility32,
        [
            Path::new("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.14"),
            Path::new("/usr/lib/x86_64-linux-gnu/libnvidia-cfg.so.550.54.14"),
            Path::new("/usr/lib/i386-linux-gnu/libnvidia-ml.so.550.54.14"),
        ]
    );
    assert!(
        names(files.libraries_for(&[Graphics], false)).contains(&"libnvidia-glcore".to_owned())
    );
}

#[test]
fn caps_and_imex_majors_come_from_proc_devices() {
    let (_dir, host) = build("mig");
    let mut opts = DiscoverOptions::new(host.root());
    opts.proc_devices = host.root().join("proc/devices");
    let files = discover_files(&opts, "550.54.14").unwrap();
    assert_eq!(files.caps_major, Some(host.majors().caps));
    assert_eq!(files.imex_major, Some(host.majors().imex));
    opts.proc_devices = host.root().join("no/such/file");
    let files = discover_files(&opts, "550.54.14").unwrap();
    assert_eq!((files.caps_major, files.imex_major), (None, None));
}

#[test]
fn a_link_out_of_the_root_is_not_followed_out() {
    let (_dir, host) = build("single");
    let outside = tempfile::tempdir().unwrap();
    let bait = outside.path().join("libcuda.so.550.54.14");
    fs::write(&bait, b"host file").unwrap();
    let lib_dir = host.root().join(LIB64_DIR);
    fs::remove_file(lib_dir.join("libcuda.so.1")).unwrap();
    symlink(&bait, lib_dir.join("libcuda.so.1")).unwrap();
    let files = discover(&host);
    assert!(
        files
            .libraries
            .iter()
            .all(|l| !l.starts_with(outside.path()))
    );
    assert!(
        !files
            .libraries
            .iter()
            .any(|l| l.to_str().unwrap().contains("libcuda."))
    );
    assert!(
        files
            .warnings
            .contains(&"missing library libcuda.so".to_owned())
    );
}

#[test]
fn versions_other_than_the_drivers_are_skipped() {
    let (_dir, host) = build("single");
    let files = discover_files(&DiscoverOptions::new(host.root()), "535.104.05").unwrap();
    assert!(files.libraries.is_empty());
    assert!(
        files
            .warnings
            .iter()
            .any(|w| w.starts_with("skipping /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14"))
    );
}

#[test]
fn a_corrupt_cache_is_an_error_naming_it() {
    let (_dir, host) = build("single");
    let cache = host.root().join("etc/ld.so.cache");
    let mut bytes = fs::read(&cache).unwrap();
    bytes.truncate(100);
    fs::write(&cache, bytes).unwrap();
    let err = discover_files(&DiscoverOptions::new(host.root()), "550.54.14").unwrap_err();
    assert!(matches!(err, Error::Ldcache { .. }));
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        source.starts_with(&format!("{}: truncated", cache.display())),
        "{source}"
    );
}

#[test]
fn the_library_search_path_finds_what_the_cache_does_not_list() {
    for name in ["single", "nocache"] {
        let (_dir, host) = build(name);
        let version = &host.scenario().driver_version;
        // The cache (where there is one) still names the old place: a stale entry.
        let file = format!("libnvidia-ptxjitcompiler.so.{version}");
        let extra = host.root().join("opt/nvidia/lib");
        fs::create_dir_all(&extra).unwrap();
        fs::rename(host.root().join(LIB64_DIR).join(&file), extra.join(&file)).unwrap();
        let moved = Path::new("/opt/nvidia/lib").join(&file);

        let files = discover(&host);
        assert!(!files.libraries.contains(&moved), "{name}");
        assert!(
            files
                .warnings
                .contains(&"missing library libnvidia-ptxjitcompiler.so".to_owned()),
            "{name}: {:?}",
            files.warnings
        );

        let mut opts = DiscoverOptions::new(host.root());
        // Searched in order; a directory that does not exist is skipped.
        opts.library_search_path = vec!["/nonexistent".into(), "/opt/nvidia/lib".into()];
        let files = discover_files(&opts, version).unwrap();
        assert!(
            files.libraries.contains(&moved),
            "{name}: {:?}",
            files.libraries
        );
        // Everything else is found where it was.
        let mut expected = expected_libs(host.scenario(), LIB64_DIR, false);
        for lib in &mut expected {
            if lib.file_name() == moved.file_name() {
                lib.clone_from(&moved);
            }
        }
        assert_eq!(files.libraries, expected, "{name}");
    }
}

#[test]
fn absolute_links_in_a_driver_root_mean_the_roots_files() {
    // Debian's alternatives for a binary, a merged /usr with an absolute /lib link, and a
    // firmware file reached through a link farm: each resolves inside the root.
    let (dir, host) = build("single");
    let root = host.root();
    let version = &host.scenario().driver_version;
    fs::create_dir_all(root.join("usr/lib/nvidia/current")).unwrap();
    fs::rename(
        root.join("usr/bin/nvidia-smi"),
        root.join("usr/lib/nvidia/current/nvidia-smi"),
    )
    .unwrap();
    fs::create_dir_all(root.join("etc/alternatives")).unwrap();
    symlink(
        "/usr/lib/nvidia/current/nvidia-smi",
        root.join("etc/alternatives/nvidia--nvidia-smi"),
    )
    .unwrap();
    symlink(
        "/etc/alternatives/nvidia--nvidia-smi",
        root.join("usr/bin/nvidia-smi"),
    )
    .unwrap();
    let fw = format!("lib/firmware/nvidia/{version}");
    fs::create_dir_all(root.join("usr/lib/firmware/nvidia")).unwrap();
    fs::rename(root.join(&fw), root.join("usr").join(&fw)).unwrap();
    fs::remove_dir_all(root.join("lib")).unwrap();
    symlink("/usr/lib", root.join("lib")).unwrap();
    let farm = root.join("store/gsp_ga10x.bin");
    fs::create_dir_all(farm.parent().unwrap()).unwrap();
    let ga10x = root.join("usr").join(&fw).join("gsp_ga10x.bin");
    fs::rename(&ga10x, &farm).unwrap();
    symlink("/store/gsp_ga10x.bin", &ga10x).unwrap();

    let files = discover(&host);
    let smi = Path::new("/usr/lib/nvidia/current/nvidia-smi");
    assert!(
        files.binaries.iter().any(|b| b == smi),
        "{:?}",
        files.binaries
    );
    let canonical = Path::new("/").join(&fw).join("gsp_ga10x.bin");
    assert!(
        files.firmwares.contains(&canonical),
        "{:?}",
        files.firmwares
    );
    assert_eq!(
        files.firmware_source(&canonical),
        Path::new("/store/gsp_ga10x.bin")
    );
    let tu10x = Path::new("/").join(&fw).join("gsp_tu10x.bin");
    assert_eq!(
        files.firmware_source(&tu10x),
        Path::new("/usr").join(&fw).join("gsp_tu10x.bin")
    );
    drop(dir);
}
