//! The aarch64 row of nvc's per-architecture table (`nvc_ldcache::Platform::AARCH64`) on
//! Debian's arm64 NVIDIA packages — NVIDIA's real aarch64 ELF files, unpacked by
//! `nvc-testkit/real-driver/fetch.sh` — with the aarch64 glibc's own `ldconfig` (Debian's
//! static arm64 one, run under qemu's user-mode emulator) as the oracle of what an aarch64
//! host's and image's linker caches hold. The architecture is chosen per call
//! (`DiscoverOptions::platform`, `ContainerDirs::detect_for`), so these run on x86-64.
//! As root (tier d: CI fetches the files and none of these may skip there).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use nvc_driver::tables::Capability::{Compute, Utility};
use nvc_driver::{DiscoverOptions, DriverOptions, probe_driver};
use nvc_ldcache::{Arch, LdCache, Platform};
use nvc_mount::{Container, Ldconfig, LdconfigOptions, LdconfigRun, PlanOptions};
use nvc_testkit::{DeviceNodes, Host, Layout, PackageArch, PausedContainer, RealDriver, Scenario};

const ARM64: PackageArch = PackageArch::Arm64;

/// The unpacked packages and the arm64 `ldconfig` command, or `None` with the skip reported.
fn prerequisites() -> Option<(RealDriver, Vec<PathBuf>)> {
    if !nix::unistd::geteuid().is_root() {
        nvc_testkit::skip!("laying out a driver root with device nodes needs root");
        return None;
    }
    let found = RealDriver::find().and_then(|d| {
        let ldconfig = d.ldconfig(ARM64)?;
        Ok((d, ldconfig))
    });
    match found {
        Ok(found) => Some(found),
        Err(why) => {
            nvc_testkit::skip!("{why}");
            None
        }
    }
}

/// An aarch64 host laid out as `layout` installs NVIDIA's arm64 packages, its cache (where
/// the layout has one) written by the arm64 `ldconfig`.
fn aarch64_host(driver: &RealDriver, layout: Layout) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::builtin("single").unwrap();
    let host = Host::build_real(&scenario, dir.path(), driver, ARM64, layout, false).unwrap();
    (dir, host)
}

/// `(SONAME, flags, path)` of every entry of the cache `bytes`, in order.
fn entries(bytes: &[u8]) -> Vec<(String, i32, String)> {
    LdCache::parse(bytes)
        .unwrap()
        .entries()
        .map(|e| {
            let e = e.unwrap();
            let soname = e.soname().to_string_lossy().into_owned();
            (soname, e.flags().0, e.path().display().to_string())
        })
        .collect()
}

#[test]
fn the_aarch64_row_finds_nvidias_arm64_libraries_and_the_x86_64_row_none() {
    let Some((driver, _)) = prerequisites() else {
        return;
    };
    let version = driver.version().to_owned();
    // Debian's layout through the arm64 glibc's cache, NixOS's without one (the fallback
    // directories, and each file's ELF machine).
    for layout in [Layout::Debian, Layout::NixOs] {
        let (dir, _host) = aarch64_host(&driver, layout);
        let cache = dir.path().join("etc/ld.so.cache");
        if layout == Layout::Debian {
            // The oracle's cache lists them under the AArch64 flag.
            let listed = entries(&fs::read(&cache).unwrap());
            let aarch64 = nvc_ldcache::Flags::libc6(Arch::Aarch64).0;
            assert!(
                listed
                    .iter()
                    .any(|(s, f, _)| s == "libcuda.so.1" && *f == aarch64),
                "{listed:?}"
            );
        } else {
            assert!(!cache.exists());
        }
        let lib_dir = layout.library_dir(&driver, ARM64);
        let mut opts = DiscoverOptions::new(dir.path());
        opts.platform = &Platform::AARCH64;
        let files = nvc_driver::discover_files(&opts, &version).unwrap();
        for lib in ["libcuda", "libnvidia-ml", "libnvidia-ptxjitcompiler"] {
            let want = PathBuf::from(format!("{lib_dir}/{lib}.so.{version}"));
            assert!(
                files.libraries.contains(&want),
                "{}: {want:?} not in {:?}",
                layout.name(),
                files.libraries
            );
        }
        // No 32-bit set on aarch64: nothing looked for, nothing missing.
        assert!(files.libraries32.is_empty());
        assert!(
            !files.warnings.iter().any(|w| w.contains("compat32")),
            "{:?}",
            files.warnings
        );
        // The x86-64 row takes none of them: wrong cache flag, wrong ELF machine.
        opts.platform = &Platform::X86_64;
        let x86 = nvc_driver::discover_files(&opts, &version).unwrap();
        assert!(x86.libraries.is_empty(), "{:?}", x86.libraries);
        assert!(
            x86.warnings
                .iter()
                .any(|w| w == "missing library libcuda.so"),
            "{:?}",
            x86.warnings
        );
    }
}

/// The arm64 images configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Image {
    /// Debian 12's layout: merged `/usr`, glibc in `/usr/lib/aarch64-linux-gnu`, the
    /// multiarch directories in `ld.so.conf.d`.
    Merged,
    /// Unmerged, glibc in `/lib/aarch64-linux-gnu` and an empty `ld.so.conf`: only glibc's
    /// trusted directories (the table's row) lead `ldconfig` there.
    Unmerged,
    /// Merged, with a library installed in an aarch64 hwcap subdirectory (`atomics/`) after
    /// the cache was written.
    Hwcap,
}

/// A Debian arm64 `image` with Debian's arm64 glibc and the cache the arm64 `ldconfig`
/// writes for it.
fn arm64_image(driver: &RealDriver, ldconfig: &[PathBuf], root: &Path, image: Image) {
    nvc_testkit::debian_image(root, &["proc/driver", "usr/lib/aarch64-linux-gnu"], false).unwrap();
    let glibc_dir = if image != Image::Unmerged {
        symlink("usr/lib", root.join("lib")).unwrap();
        fs::create_dir_all(root.join("etc/ld.so.conf.d")).unwrap();
        fs::write(
            root.join("etc/ld.so.conf"),
            "include /etc/ld.so.conf.d/*.conf\n",
        )
        .unwrap();
        fs::write(
            root.join("etc/ld.so.conf.d/aarch64-linux-gnu.conf"),
            "# Multiarch support\n/usr/local/lib/aarch64-linux-gnu\n/lib/aarch64-linux-gnu\n\
             /usr/lib/aarch64-linux-gnu\n",
        )
        .unwrap();
        root.join("usr/lib/aarch64-linux-gnu")
    } else {
        root.join("lib/aarch64-linux-gnu")
    };
    fs::create_dir_all(&glibc_dir).unwrap();
    let glibc = driver.unpacked(ARM64).join("lib/aarch64-linux-gnu");
    for lib in [
        "ld-linux-aarch64.so.1",
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
    ] {
        fs::copy(glibc.join(lib), glibc_dir.join(lib)).unwrap();
    }
    let status = Command::new(&ldconfig[0])
        .args(&ldconfig[1..])
        .arg("-r")
        .arg(root)
        .status()
        .unwrap();
    assert!(status.success());
    if image == Image::Hwcap {
        let atomics = glibc_dir.join("atomics");
        fs::create_dir(&atomics).unwrap();
        fs::copy(glibc.join("libdl.so.2"), atomics.join("libdl.so.2")).unwrap();
    }
}

/// The cache (`(SONAME, flags, path)` in order) and the links in the library directory.
type Outcome = (Vec<(String, i32, String)>, Vec<(PathBuf, PathBuf)>);

/// The [`Outcome`] of an aarch64 Debian image that a fresh container had configured with NVIDIA's arm64 files
/// for `compute,utility`: with `ldconfig` (the built-in update), or with none and then the
/// aarch64 glibc's `ldconfig` run as nvc's sandbox runs it (chrooted into the image, the
/// library directories on its command line) in the container's mount namespace.
fn configure(
    driver: &RealDriver,
    ldconfig: &[PathBuf],
    image: Image,
    builtin: bool,
) -> Option<(Option<LdconfigRun>, Outcome)> {
    let c = PausedContainer::start()?;
    let (hostdir, host) = aarch64_host(driver, Layout::Debian);
    if !matches!(host.device_nodes_state(), DeviceNodes::Created) {
        nvc_testkit::skip!("no device nodes");
        return None;
    }
    let mut opts = DriverOptions::new(hostdir.path());
    opts.discover.proc_devices = hostdir.path().join("proc/devices");
    opts.discover.platform = &Platform::AARCH64;
    opts.nvml = false; // NVIDIA's aarch64 NVML does not run here.
    let info = probe_driver(&opts).unwrap();

    let rootfs = tempfile::tempdir().unwrap();
    let root = rootfs.path();
    arm64_image(driver, ldconfig, root, image);
    let mut container = Container::from_pid(c.pid(), root).unwrap();
    container.dirs = nvc_mount::detect_dirs_for(root, &Platform::AARCH64).unwrap();
    assert_eq!(container.dirs.libs, Path::new("/usr/lib/aarch64-linux-gnu"));
    assert_eq!(container.dirs.libs32, Path::new("/var/empty"));

    let plan_opts = PlanOptions {
        capabilities: vec![Compute, Utility],
        no_cgroups: true,
        ..PlanOptions::default()
    };
    let plan =
        nvc_mount::MountPlan::build(hostdir.path(), &info, &container.dirs, &plan_opts).unwrap();
    let builtin_opts = LdconfigOptions {
        ldconfig: Ldconfig::Builtin,
        no_pivot: false,
        extra_dirs: Vec::new(),
        cuda_compat_dir: None,
        limits: nvc_mount::Limits::default(),
    };
    let done = plan
        .configure(&container, builtin.then_some(&builtin_opts))
        .unwrap();
    if !builtin {
        let out = Command::new("nsenter")
            .arg(format!("--mount=/proc/{}/ns/mnt", c.pid()))
            .arg("--")
            .args(ldconfig)
            .arg("-r")
            .arg(root)
            .args(["-f", "/etc/ld.so.conf", "-C", "/etc/ld.so.cache"])
            .args([&container.dirs.libs, &container.dirs.libs32])
            .output()
            .unwrap();
        assert!(out.status.success(), "{ldconfig:?}: {out:?}");
    }
    let cache = entries(&fs::read(root.join("etc/ld.so.cache")).unwrap());
    let libs = root.join("usr/lib/aarch64-linux-gnu");
    let mut links: Vec<_> = fs::read_dir(&libs)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let to = fs::read_link(&p).ok()?;
            Some((p.strip_prefix(root).unwrap().to_path_buf(), to))
        })
        .collect();
    links.sort();
    Some((done.ldconfig.clone(), (cache, links)))
}

/// An aarch64 Debian image configured with NVIDIA's arm64 files: they go to
/// `/usr/lib/aarch64-linux-gnu`, and the built-in cache update writes what the aarch64
/// glibc's `ldconfig` writes (every entry, in order, and the same links).
#[test]
fn an_aarch64_image_gets_the_cache_aarch64_glibc_writes() {
    let Some((driver, ldconfig)) = prerequisites() else {
        return;
    };
    for image in [Image::Merged, Image::Unmerged] {
        let Some((_, want)) = configure(&driver, &ldconfig, image, false) else {
            return;
        };
        let aarch64 = nvc_ldcache::Flags::libc6(Arch::Aarch64).0;
        for soname in [
            "libcuda.so.1",
            "libnvidia-ml.so.1",
            "libnvidia-ptxjitcompiler.so.1",
        ] {
            let path = format!("/usr/lib/aarch64-linux-gnu/{soname}");
            assert!(
                want.0.contains(&(soname.to_owned(), aarch64, path)),
                "{soname}: {want:?}"
            );
        }
        assert!(want.0.iter().any(|(s, _, _)| s == "libc.so.6"), "{want:?}");
        let (run, got) = configure(&driver, &ldconfig, image, true).unwrap();
        assert!(
            matches!(run, Some(LdconfigRun::Builtin { added: 3 })),
            "{run:?}"
        );
        assert_eq!(got.0, want.0, "cache entries ({image:?})");
        assert_eq!(got.1, want.1, "links ({image:?})");
    }
    // A hwcap subdirectory of the aarch64 row: glibc lists its library with a hwcap flag,
    // which the built-in update does not write: it falls back, naming the directory.
    let (_, want) = configure(&driver, &ldconfig, Image::Hwcap, false).unwrap();
    assert!(
        want.0
            .iter()
            .any(|(_, _, p)| p.ends_with("/atomics/libdl.so.2")),
        "{want:?}"
    );
    let (run, _) = configure(&driver, &ldconfig, Image::Hwcap, true).unwrap();
    assert!(
        matches!(&run, Some(LdconfigRun::Fallback { reason, .. }) if reason.contains("hwcap directory atomics")),
        "{run:?}"
    );
}
