//! glibc's own `ldconfig` as the oracle: the host cache, caches we write, and caches ldconfig
//! writes over generated libraries must all list exactly as `ldconfig -p` lists them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use common::{assert_same_listing, ldconfig, ldconfig_print, listing};
use nvc_ldcache::elf::{Class, ElfInfo, SharedObject, write_shared_object};
use nvc_ldcache::{Arch, CacheEntry, Flags, Format, LdCache, PrefixSet, write_cache};

#[test]
fn host_cache_lists_like_ldconfig_p() {
    let Some(ldconfig) = ldconfig() else {
        eprintln!("skipped: no ldconfig on this machine");
        return;
    };
    let path = Path::new(nvc_ldcache::DEFAULT_PATH);
    if !path.exists() {
        eprintln!("skipped: {} does not exist", path.display());
        return;
    }
    let bytes = nvc_ldcache::read(path).unwrap();
    let cache = LdCache::parse(&bytes).unwrap();
    assert!(!cache.is_empty());
    let out = Command::new(&ldconfig).arg("-p").output().unwrap();
    assert!(out.status.success());
    assert_same_listing(&listing(&cache, path), &out.stdout);
}

/// Every library type and architecture value, legacy hwcaps, OS ABI versions and
/// glibc-hwcaps subdirectories: what we write, glibc reads, and prints as we do.
fn every_flag() -> Vec<CacheEntry> {
    let mut entries = Vec::new();
    for (i, arch) in Arch::ALL
        .iter()
        .copied()
        .chain([Arch::Unknown(0x7f00)])
        .enumerate()
    {
        for lib_type in [0, 1, 2, 3, 0x7e] {
            let mut e = CacheEntry::new(
                format!("lib{i}-{lib_type}.so.1"),
                format!("/lib/{i}/{lib_type}.so.1"),
                arch,
            );
            e.flags = Flags(arch.value() | lib_type);
            entries.push(e);
        }
    }
    let mut hw = CacheEntry::new("libhw.so.1", "/lib/tls/libhw.so.1", Arch::X86_64);
    hw.hwcap = 0x0000_0000_0008_0001;
    hw.osversion = 0x0002_0604;
    entries.push(hw);
    for (os, name) in [(1u32, "hurd"), (7, "future")] {
        let mut e = CacheEntry::new(
            format!("lib{name}.so.1"),
            format!("/lib/{name}.so.1"),
            Arch::I386,
        );
        e.osversion = (os << 24) | 0x0001_0203;
        entries.push(e);
    }
    for dir in ["x86-64-v4", "x86-64-v2", "x86-64-v3"] {
        let mut e = CacheEntry::new(
            "libfast.so.1",
            format!("/usr/lib/glibc-hwcaps/{dir}/libfast.so.1"),
            Arch::X86_64,
        );
        e.hwcaps_subdir = Some(dir.into());
        entries.push(e);
    }
    entries
}

#[test]
fn written_caches_list_like_ldconfig_p_in_every_format() {
    let Some(ldconfig) = ldconfig() else {
        eprintln!("skipped: no ldconfig on this machine");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for format in [Format::Old, Format::New, Format::Combined] {
        let mut entries = every_flag();
        if format == Format::Old {
            // The old layout has no hwcap, OS version or extension fields.
            entries.retain(|e| e.hwcap == 0 && e.osversion == 0 && e.hwcaps_subdir.is_none());
        }
        let bytes = write_cache(&entries, format, Some(b"nvc-ldcache test writer"));
        let file = dir.path().join(format!("{format:?}.cache"));
        fs::write(&file, &bytes).unwrap();
        let cache = LdCache::parse(&bytes).unwrap();
        assert_eq!(cache.len(), entries.len());
        assert_same_listing(&listing(&cache, &file), &ldconfig_print(&ldconfig, &file));
    }
}

const VERSION: &str = "550.54.14";
const LIBS: &[&str] = &[
    "libcuda.so.1",
    "libnvidia-ml.so.1",
    "libnvidia-ptxjitcompiler.so.1",
    "libGLX_nvidia.so.0",
];

/// A root with x86-64 and i386 libraries at the driver version, the SONAME links ldconfig
/// would make, and an `ld.so.conf`.
fn driver_root(root: &Path) {
    for (class, dir) in [
        (Class::Elf64, "usr/lib/x86_64-linux-gnu"),
        (Class::Elf32, "usr/lib/i386-linux-gnu"),
    ] {
        let dir = root.join(dir);
        fs::create_dir_all(&dir).unwrap();
        for soname in LIBS {
            let stem = soname.rsplit_once(".so.").unwrap().0;
            let file = format!("{stem}.so.{VERSION}");
            let so = SharedObject {
                padding: 4096,
                ..SharedObject::x86(class, soname.as_bytes())
            };
            fs::write(dir.join(&file), write_shared_object(&so)).unwrap();
            symlink(&file, dir.join(format!("{stem}.so"))).unwrap();
        }
    }
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(
        root.join("etc/ld.so.conf"),
        "/usr/lib/x86_64-linux-gnu\n/usr/lib/i386-linux-gnu\n",
    )
    .unwrap();
}

#[test]
fn caches_written_by_ldconfig_over_generated_libraries() {
    let Some(ldconfig) = ldconfig() else {
        eprintln!("skipped: no ldconfig on this machine");
        return;
    };
    for (format, flag) in [
        (Format::New, "new"),
        (Format::Combined, "compat"),
        (Format::Old, "old"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        driver_root(root);
        let out = Command::new(&ldconfig)
            .arg("-r")
            .arg(root)
            .args(["-c", flag])
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("chroot"), "ldconfig -r failed: {err}");
            eprintln!(
                "skipped: `ldconfig -r` needs CAP_SYS_CHROOT here: {}",
                err.trim()
            );
            return;
        }
        let file = root.join("etc/ld.so.cache");
        let bytes = fs::read(&file).unwrap();
        let cache = LdCache::parse(&bytes).unwrap();
        assert_eq!(cache.format(), format);
        assert_same_listing(&listing(&cache, &file), &ldconfig_print(&ldconfig, &file));

        // ldconfig took our objects for what they are: libc6 x86-64 and libc6 i386. The
        // winner may be the SONAME link or the `.so` dev link (the last in cache order); both
        // lead to the versioned file, which is what upstream compares.
        let set = PrefixSet::new([
            "libnvidia-ml.so",
            "libcuda.so",
            "libGLX_nvidia.so",
            "libnvidia-opencl.so",
        ]);
        for (arch, dir) in [
            (Arch::X86_64, "x86_64-linux-gnu"),
            (Arch::I386, "i386-linux-gnu"),
        ] {
            let found = cache.resolve(&set, arch).unwrap();
            let real: Vec<_> = found
                .iter()
                .map(|e| {
                    e.map(|e| {
                        fs::canonicalize(root.join(e.path().strip_prefix("/").unwrap())).unwrap()
                    })
                })
                .collect();
            let expect = |stem: &str| {
                Some(
                    fs::canonicalize(root)
                        .unwrap()
                        .join("usr/lib")
                        .join(dir)
                        .join(format!("{stem}.so.{VERSION}")),
                )
            };
            assert_eq!(
                real,
                [
                    expect("libnvidia-ml"),
                    expect("libcuda"),
                    expect("libGLX_nvidia"),
                    None
                ],
                "{format:?} {arch:?}"
            );
            for (e, real) in found.iter().flatten().zip(real.iter().flatten()) {
                assert_eq!(e.flags(), Flags::libc6(arch));
                let info = ElfInfo::read(real).unwrap();
                let soname = String::from_utf8(info.soname.clone().unwrap()).unwrap();
                assert!(LIBS.contains(&soname.as_str()), "{soname}");
                let stem = soname.split(".so").next().unwrap();
                assert!(
                    e.soname()
                        .to_str()
                        .unwrap()
                        .starts_with(&format!("{stem}.so"))
                );
                assert_eq!(info.cache_arch(), Some(arch));
            }
            let one = cache.find(b"libcuda.so.1", arch).unwrap().unwrap();
            assert_eq!(
                one.path(),
                Path::new("/usr/lib").join(dir).join("libcuda.so.1")
            );
        }
    }
}
