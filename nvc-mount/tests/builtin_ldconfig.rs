//! `Ldconfig::Builtin` against glibc's `ldconfig` as the oracle: the same image layout
//! configured twice, once with the host's `ldconfig` in the sandbox and once with the
//! built-in update, must end with the same linker cache (every entry, in order) and the same
//! links; where the built-in update cannot prove that, it must fall back (and then equal the
//! oracle by construction). As root (tier c).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use nvc_driver::tables::Capability::{Compute, Utility};
use nvc_ldcache::elf::{Class, SharedObject, write_shared_object};
use nvc_ldcache::{Format, LdCache};
use nvc_mount::{Ldconfig, LdconfigOptions, LdconfigRun, MountKind, Op, PlanOptions};

/// A shared object with `soname` at `dir/file` in the image, and its SONAME link.
fn library(root: &Path, dir: &str, file: &str, soname: &str, class: Class) {
    let dir = root.join(dir.trim_start_matches('/'));
    fs::create_dir_all(&dir).unwrap();
    let so = SharedObject::x86(class, soname.as_bytes());
    fs::write(dir.join(file), write_shared_object(&so)).unwrap();
}

/// Debian 12's layout: merged /usr, the multiarch directories in ld.so.conf.d, a few
/// libraries, a linker script and a development link.
fn debian(root: &Path) {
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    symlink("usr/lib", root.join("lib")).unwrap();
    fs::create_dir_all(root.join("etc/ld.so.conf.d")).unwrap();
    fs::write(
        root.join("etc/ld.so.conf"),
        "include /etc/ld.so.conf.d/*.conf\n\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/ld.so.conf.d/x86_64-linux-gnu.conf"),
        "# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n\
         /usr/lib/x86_64-linux-gnu\n",
    )
    .unwrap();
    fs::write(root.join("etc/ld.so.conf.d/libc.conf"), "/usr/local/lib\n").unwrap();
    let multiarch = "/usr/lib/x86_64-linux-gnu";
    library(
        root,
        multiarch,
        "libfoo.so.1.2.3",
        "libfoo.so.1",
        Class::Elf64,
    );
    library(root, multiarch, "libbar.so.2", "libbar.so.2", Class::Elf64);
    library(root, multiarch, "libz.so.1.2.13", "libz.so.1", Class::Elf64);
    symlink("libz.so.1", root.join("usr/lib/x86_64-linux-gnu/libz.so")).unwrap();
    fs::write(
        root.join("usr/lib/x86_64-linux-gnu/libc.so"),
        "/* GNU ld script */\nGROUP ( libc.so.6 )\n",
    )
    .unwrap();
}

/// Debian with an extra directory of a vendor, named in ld.so.conf.d.
fn vendor(root: &Path) {
    debian(root);
    fs::write(
        root.join("etc/ld.so.conf.d/vendor.conf"),
        "/opt/vendor/lib\n",
    )
    .unwrap();
    library(
        root,
        "/opt/vendor/lib",
        "libvendor.so.7.0",
        "libvendor.so.7",
        Class::Elf64,
    );
}

/// Debian with i386 libraries (the 32-bit directory named in ld.so.conf.d).
fn i386(root: &Path) {
    debian(root);
    fs::write(
        root.join("etc/ld.so.conf.d/i386-linux-gnu.conf"),
        "/lib/i386-linux-gnu\n/usr/lib/i386-linux-gnu\n",
    )
    .unwrap();
    library(
        root,
        "/usr/lib/i386-linux-gnu",
        "libfoo.so.1.2.3",
        "libfoo.so.1",
        Class::Elf32,
    );
}

/// A RHEL-like image: libraries in /usr/lib64 (no Debian marker, so nvc mounts there too).
fn lib64(root: &Path) {
    fs::remove_file(root.join("etc/debian_version")).unwrap();
    fs::create_dir_all(root.join("etc/ld.so.conf.d")).unwrap();
    fs::write(root.join("etc/ld.so.conf"), "include ld.so.conf.d/*.conf\n").unwrap();
    library(
        root,
        "/usr/lib64",
        "libfoo.so.1.2.3",
        "libfoo.so.1",
        Class::Elf64,
    );
    fs::create_dir_all(root.join("usr/lib")).unwrap();
}

/// Debian with a library whose SONAME is a path (glibc joins it to the directory as a
/// string: `/usr/lib/x86_64-linux-gnu//etc/libslash.so.1`).
fn slashed_soname(root: &Path) {
    debian(root);
    library(
        root,
        "/usr/lib/x86_64-linux-gnu",
        "libslash.so.1",
        "/etc/libslash.so.1",
        Class::Elf64,
    );
}

/// Debian with libraries whose SONAMEs name no file a link could be made as (empty, `..`),
/// after the cache was written.
fn nameless_sonames(root: &Path) {
    for (file, soname) in [("libempty.so.1", ""), ("libdots.so.1", "..")] {
        library(
            root,
            "/usr/lib/x86_64-linux-gnu",
            file,
            soname,
            Class::Elf64,
        );
    }
}

/// What a hostile image might place where the update looks, after its cache was written: a
/// FIFO with a library's name (opening it would block) and a directory with one.
fn hostile_after_cache(root: &Path) {
    let dir = root.join("usr/lib/x86_64-linux-gnu");
    nix::unistd::mkfifo(&dir.join("libfifo.so.1"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    fs::create_dir(dir.join("libdir.so.1")).unwrap();
}

/// An absolute link with a library's name, after the cache was written: inside the image it
/// names the image's libz (never the host's), whose SONAME the cache lists: nothing to add.
fn escape_after_cache(root: &Path) {
    let dir = root.join("usr/lib/x86_64-linux-gnu");
    symlink(
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        dir.join("libescape.so.1"),
    )
    .unwrap();
}

/// This machine's own Debian 12 libraries as an image: its ld.so.conf and conf.d, and every
/// file of /usr/lib/x86_64-linux-gnu hard-linked (about 3000 entries, real ELF files, linker
/// scripts, subdirectories, development links). Skipped where /tmp is another filesystem.
fn this_host(root: &Path) {
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    symlink("usr/lib", root.join("lib")).unwrap();
    let copy = |from: &str, to: &str| {
        Command::new("cp")
            .args(["-a", "--link", from])
            .arg(root.join(to))
            .status()
            .unwrap()
            .success()
    };
    assert!(
        copy("/usr/lib/x86_64-linux-gnu", "usr/lib/"),
        "cp -al failed"
    );
    fs::copy("/etc/ld.so.conf", root.join("etc/ld.so.conf")).unwrap();
    assert!(
        Command::new("cp")
            .args(["-a", "/etc/ld.so.conf.d"])
            .arg(root.join("etc/"))
            .status()
            .unwrap()
            .success()
    );
}

/// Makes a Debian image's cache stale: a library installed after it was written.
fn stale_after_cache(root: &Path) {
    library(
        root,
        "/usr/lib/x86_64-linux-gnu",
        "liblate.so.3",
        "liblate.so.3",
        Class::Elf64,
    );
}

/// The cache as `(soname, flags, OS version, hwcap, path)` in order, and every link in the
/// library directories.
type Result = (Vec<(String, i32, u32, u64, String)>, Vec<(String, String)>);

fn outcome(root: &Path) -> Result {
    let bytes = fs::read(root.join("etc/ld.so.cache")).unwrap();
    let cache = LdCache::parse(&bytes).unwrap();
    let entries = cache
        .entries()
        .map(|e| {
            let e = e.unwrap();
            (
                e.soname().to_string_lossy().into_owned(),
                e.flags().0,
                e.osversion(),
                e.hwcap(),
                e.path().display().to_string(),
            )
        })
        .collect();
    let mut links = Vec::new();
    for dir in [
        "usr/lib/x86_64-linux-gnu",
        "usr/lib/i386-linux-gnu",
        "usr/lib64",
        "usr/lib32",
        "usr/lib",
        CDI_FOLDER,
        COMPAT,
    ] {
        let Ok(read) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in read {
            let p = e.unwrap().path();
            if let Ok(to) = fs::read_link(&p) {
                links.push((p.display().to_string(), to.display().to_string()));
            }
        }
    }
    links.sort();
    let prefix = root.display().to_string();
    let links = links
        .into_iter()
        .map(|(p, t)| (p.replacen(&prefix, "", 1), t))
        .collect();
    (entries, links)
}

/// Configures a fresh container and image laid out by `layout` (then `after` once the
/// image's cache is written) with `ldconfig`; the run and the outcome.
fn configure(
    layout: fn(&Path),
    after: fn(&Path),
    compat32: bool,
    ldconfig: Ldconfig,
) -> Option<(LdconfigRun, Result)> {
    let image = Image {
        layout: &layout,
        // Twice: the first run makes the SONAME links that development links point through,
        // as installed packages ship them.
        cache: &[&["-r"], &["-r"]],
        ldconfig: Path::new("/sbin/ldconfig"),
        after: &after,
    };
    configure_image(&image, compat32, ldconfig).map(|(run, result, _)| (run, result))
}

/// An image: its layout, the runs of its own `ldconfig` (arguments before the root) that
/// write its cache, and what happens to it after them.
/// A change made to an image after its cache was written.
type Change = dyn Fn(&Path);

struct Image<'a> {
    layout: &'a dyn Fn(&Path),
    cache: &'a [&'a [&'a str]],
    ldconfig: &'a Path,
    after: &'a dyn Fn(&Path),
}

/// A fresh container on `image`: laid out, its cache written, then changed.
fn prepare(image: &Image<'_>) -> Option<common::Sim> {
    let f = common::sim("legacy32")?;
    let root = f.rootfs.path();
    (image.layout)(root);
    for args in image.cache {
        let status = Command::new(image.ldconfig)
            .args(*args)
            .arg(root)
            .status()
            .unwrap();
        assert!(status.success(), "{} {args:?}", image.ldconfig.display());
    }
    (image.after)(root);
    Some(f)
}

/// Configures a fresh container on `image` with `ldconfig`: the run, the outcome and the
/// format of the cache left.
fn configure_image(
    image: &Image<'_>,
    compat32: bool,
    ldconfig: Ldconfig,
) -> Option<(LdconfigRun, Result, Format)> {
    let f = prepare(image)?;
    let root = f.rootfs.path();
    let container = f.container();
    let opts = PlanOptions {
        capabilities: vec![Compute, Utility],
        compat32,
        no_cgroups: true,
        ..PlanOptions::default()
    };
    let plan = f.plan(&container, &opts);
    let ldconfig = LdconfigOptions {
        ldconfig,
        ..common::host_ldconfig()
    };
    let done = plan.configure(&container, Some(&ldconfig)).unwrap();
    let run = done.ldconfig.clone().unwrap();
    let result = outcome(root);
    let format = LdCache::parse(&fs::read(root.join("etc/ld.so.cache")).unwrap())
        .unwrap()
        .format();
    drop(done);
    Some((run, result, format))
}

#[test]
fn the_builtin_update_writes_what_ldconfig_writes() {
    let none = |_: &Path| {};
    // (name, layout, after the cache, compat32, whether the built-in update must be sure)
    type Layout = (&'static str, fn(&Path), fn(&Path), bool, bool);
    let layouts: [Layout; 10] = [
        ("debian", debian, none, false, true),
        ("vendor", vendor, none, false, true),
        ("i386", i386, none, true, true),
        ("hostile", debian, hostile_after_cache, false, true),
        ("escape", debian, escape_after_cache, false, true),
        ("lib64", lib64, none, false, true),
        ("this host", this_host, none, false, true),
        ("stale", debian, stale_after_cache, false, true),
        ("slashed SONAME", slashed_soname, none, false, false),
        ("nameless SONAMEs", debian, nameless_sonames, false, false),
    ];
    // Hard links to this machine's libraries need the temporary directory on their filesystem.
    let dev = |p: &Path| {
        fs::metadata(p)
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
            .ok()
    };
    let tmp = std::env::temp_dir();
    let host_libs = dev(Path::new("/usr/lib/x86_64-linux-gnu"));
    let linkable = host_libs.is_some() && host_libs == dev(&tmp);
    for (name, layout, after, compat32, sure) in layouts {
        if name == "this host" && !linkable {
            eprintln!(
                "layout {name} skipped: {} is not on /usr's filesystem",
                tmp.display()
            );
            continue;
        }
        let oracle = Ldconfig::Host("/sbin/ldconfig".into());
        let Some((_, want)) = configure(layout, after, compat32, oracle) else {
            return;
        };
        let (run, got) = configure(layout, after, compat32, Ldconfig::Builtin).unwrap();
        match (&run, sure) {
            (LdconfigRun::Builtin { added }, true) => assert!(*added > 0, "{name}"),
            (LdconfigRun::Fallback { .. }, false) => {}
            _ => panic!("{name}: {run:?}"),
        }
        assert!(
            want.0.iter().any(|(s, ..)| s == "libcuda.so.1"),
            "{name}: {want:?}"
        );
        assert_eq!(got.0, want.0, "{name}: cache entries");
        assert_eq!(got.1, want.1, "{name}: links");
    }
}

/// The glibc images `nvc-testkit/glibc/fetch.sh` unpacked: `(suite, root)` of bookworm (glibc
/// 2.36), trixie (2.41) and sid (2.43), each with its static `/usr/sbin/ldconfig`; `None`
/// (skipped, saying how to fetch them) where they are missing.
fn glibc_images() -> Option<Vec<(&'static str, PathBuf)>> {
    let cache = std::env::var_os("NVC_GLIBC_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("nvc-testkit"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/nvc-testkit"))
        })?;
    let images: Vec<_> = ["bookworm", "trixie", "sid"]
        .into_iter()
        .map(|suite| (suite, cache.join("glibc").join(suite).join("root")))
        .collect();
    if let Some((_, missing)) = images
        .iter()
        .find(|(_, root)| !root.join("usr/sbin/ldconfig").exists())
    {
        nvc_testkit::skip(format!(
            "{} is missing: run nvc-testkit/glibc/fetch.sh",
            missing.display()
        ));
        return None;
    }
    Some(images)
}

/// A real Debian image of one glibc version (`suite/root`), copied into the container's
/// rootfs; with its i386 libraries (`suite/i386` over it) where `lib32` (glibc before 2.37 and
/// after list its i386 loader, which needs no libc, differently: an image with it is where the
/// built-in update must fall back).
fn real_image(image: &Path, root: &Path, lib32: bool) {
    let trees = [Some(image), lib32.then(|| image.parent().unwrap())];
    for tree in trees.into_iter().flatten() {
        let from = match tree == image {
            true => image.to_path_buf(),
            false => tree.join("i386"),
        };
        let status = Command::new("cp")
            .arg("-a")
            .arg(from.join("."))
            .arg(root)
            .status()
            .unwrap();
        assert!(status.success(), "cp -a {}", from.display());
    }
}

/// glibc 2.36, 2.41 and 2.43 as the oracle, over real images of each, in every state an
/// image's cache comes in: the built-in update must write exactly what each glibc's
/// `ldconfig` writes (every entry with its flags, OS version and hwcaps, in order, and every
/// link), keep the image's cache format, and fall back exactly where this table says, for the
/// reason it says. The fallbacks are counted.
#[test]
fn the_builtin_update_equals_every_glibc() {
    let Some(images) = glibc_images() else {
        return;
    };
    let none = |_: &Path| {};
    let no_cache = |root: &Path| fs::remove_file(root.join("etc/ld.so.cache")).unwrap();
    let stale = |root: &Path| stale_after_cache(root);
    let hwcaps = |root: &Path| {
        let dir = root.join("usr/lib/x86_64-linux-gnu");
        fs::create_dir_all(dir.join("glibc-hwcaps/x86-64-v3")).unwrap();
        fs::copy(
            dir.join("libz.so.1"),
            dir.join("glibc-hwcaps/x86-64-v3/libz.so.1"),
        )
        .unwrap();
    };
    let unlinked = |root: &Path| {
        fs::remove_file(root.join("usr/lib/x86_64-linux-gnu/libz.so.1")).unwrap();
    };
    let new: &[&str] = &["-r"];
    // (variant, lib32, the image's ldconfig runs, after them, the format left, why it
    // falls back — None where it must be sure)
    type Variant<'a> = (
        &'a str,
        bool,
        &'a [&'a [&'a str]],
        &'a dyn Fn(&Path),
        Format,
        Option<&'a str>,
    );
    let variants: [Variant<'_>; 9] = [
        ("its cache", false, &[new], &none, Format::New, None),
        ("no cache", false, &[], &none, Format::New, None),
        (
            "a compat cache",
            false,
            &[&["-c", "compat", "-r"]],
            &none,
            Format::Combined,
            None,
        ),
        ("a stale cache", false, &[new], &stale, Format::New, None),
        ("cache removed", false, &[new], &no_cache, Format::New, None),
        (
            "an old cache",
            false,
            &[&["-c", "old", "-r"]],
            &none,
            Format::Old,
            Some("old format"),
        ),
        (
            "glibc-hwcaps",
            false,
            &[new],
            &hwcaps,
            Format::New,
            Some("hwcap"),
        ),
        (
            "i386 loader",
            true,
            &[new],
            &none,
            Format::New,
            Some("does not need glibc"),
        ),
        ("a link missing", false, &[], &unlinked, Format::New, None),
    ];
    let mut fallbacks = std::collections::BTreeMap::new();
    let mut runs = 0;
    for (suite, image) in &images {
        let image_ldconfig = image.join("usr/sbin/ldconfig");
        for (variant, lib32, cache, after, format, falls_back) in &variants {
            let layout = |root: &Path| real_image(image, root, *lib32);
            let img = Image {
                layout: &layout,
                cache,
                ldconfig: &image_ldconfig,
                after: *after,
            };
            let Some((run, got, got_format)) = configure_image(&img, false, Ldconfig::Builtin)
            else {
                return;
            };
            // Sure, it equals every glibc; falling back, what the fallback ran (the host's
            // ldconfig: where glibc versions disagree, no result equals all of them).
            let oracles: Vec<(&str, PathBuf)> = match &run {
                LdconfigRun::Fallback { .. } => vec![("the host", "/sbin/ldconfig".into())],
                _ => images
                    .iter()
                    .map(|(s, image)| (*s, image.join("usr/sbin/ldconfig")))
                    .collect(),
            };
            for (oracle_suite, oracle_ldconfig) in oracles {
                let what = format!("{suite} image, {variant}, glibc of {oracle_suite}");
                let oracle = Ldconfig::Host(oracle_ldconfig);
                let (_, want, _) = configure_image(&img, false, oracle).unwrap();
                assert!(want.0.iter().any(|(s, ..)| s == "libcuda.so.1"), "{what}");
                assert_eq!(got.0, want.0, "{what}: cache entries");
                assert_eq!(got.1, want.1, "{what}: links");
                runs += 1;
            }
            match (&run, falls_back) {
                (LdconfigRun::Builtin { added }, None) => {
                    assert!(*added > 0, "{suite}, {variant}");
                    assert_eq!(
                        got_format, *format,
                        "{suite}, {variant}: the cache's format"
                    );
                }
                (LdconfigRun::Fallback { reason, .. }, Some(why)) => {
                    assert!(reason.contains(why), "{suite}, {variant}: {reason}");
                    *fallbacks.entry(*variant).or_insert(0) += 1;
                    eprintln!("{suite}, {variant}: falls back: {reason}");
                }
                _ => panic!("{suite}, {variant}: {run:?}"),
            }
        }
    }
    eprintln!("{runs} comparisons; fallbacks per variant: {fallbacks:?}");
    let expected: std::collections::BTreeMap<_, _> = variants
        .iter()
        .filter(|v| v.5.is_some())
        .map(|v| (v.0, images.len()))
        .collect();
    assert_eq!(fallbacks, expected);
}

/// A directory of its own where a CDI spec put the driver's libraries (named only on the
/// hook's command line, `--folder`), and the image's CUDA compat directory.
const CDI_FOLDER: &str = "opt/nvidia/lib";
const COMPAT: &str = "usr/local/cuda/compat";

/// What a CDI spec did before its `update-ldcache` hook runs: the driver's libraries bound
/// into the image's library directory (`None`) or into `folder`, their development links
/// made (the `create-symlinks` hook); with `compat`, the image ships a CUDA compat `libcuda`.
#[derive(Debug, Clone, Copy)]
struct Cdi {
    folder: Option<&'static str>,
    compat: bool,
}

/// The CDI `update-ldcache` hook's run on a fresh container on `image` after the spec's
/// mounts (`cdi`), with `ldconfig`: the run and the outcome.
fn cdi_hook(image: &Image<'_>, cdi: Cdi, ldconfig: Ldconfig) -> Option<(LdconfigRun, Result)> {
    let f = prepare(image)?;
    let root = f.rootfs.path();
    let container = f.container();
    let opts = PlanOptions {
        capabilities: vec![Compute, Utility],
        no_cgroups: true,
        ..PlanOptions::default()
    };
    let plan = f.plan(&container, &opts);
    let libs = container.dirs.libs.clone();
    let mut bound = Vec::new();
    let folder = match cdi.folder {
        // The runtime's mounts and the hook's links, as configure makes them there.
        None => {
            plan.configure(&container, None).unwrap();
            for op in &plan.ops {
                if let Op::Bind {
                    target,
                    kind: MountKind::File,
                    ..
                } = op
                    && target.parent() == Some(&libs)
                {
                    bound.push(target.clone());
                }
            }
            libs.clone()
        }
        // The same files and links in a folder of their own (copies: the update reads the
        // same bytes either way).
        Some(dir) => {
            fs::create_dir_all(root.join(dir)).unwrap();
            let folder = Path::new("/").join(dir);
            for op in &plan.ops {
                match op {
                    Op::Bind {
                        source,
                        target,
                        kind: MountKind::File,
                    } if target.parent() == Some(&libs) => {
                        let name = target.file_name().unwrap();
                        fs::copy(source, root.join(dir).join(name)).unwrap();
                        bound.push(folder.join(name));
                    }
                    Op::Symlink { path, target } if path.parent() == Some(&libs) => {
                        symlink(target, root.join(dir).join(path.file_name().unwrap())).unwrap();
                    }
                    _ => {}
                }
            }
            folder
        }
    };
    if cdi.compat {
        library(
            root,
            COMPAT,
            "libcuda.so.999.99",
            "libcuda.so.1",
            Class::Elf64,
        );
        symlink("libcuda.so.999.99", root.join(COMPAT).join("libcuda.so.1")).unwrap();
    }
    let opts = LdconfigOptions {
        ldconfig,
        extra_dirs: vec![folder],
        cuda_compat_dir: cdi.compat.then(|| Path::new("/").join(COMPAT)),
        ..common::host_ldconfig()
    };
    let run = nvc_mount::update_ldcache(&container, &opts, &bound).unwrap();
    Some((run, outcome(root)))
}

/// The CDI spec's `update-ldcache` hook, built in, against glibc 2.36, 2.41 and 2.43 over
/// real images of each: the driver's libraries bound into the image's library directory
/// (with the image's cache or none), into a folder of their own, and behind the image's CUDA
/// compat directory. Each is written in process — the cache and the SONAME links `ldconfig`
/// makes for the bound libraries — and equals what every glibc's `ldconfig` writes.
#[test]
fn the_cdi_hooks_update_equals_every_glibc() {
    let Some(images) = glibc_images() else {
        return;
    };
    let none = |_: &Path| {};
    let no_cache = |root: &Path| fs::remove_file(root.join("etc/ld.so.cache")).unwrap();
    let new: &[&str] = &["-r"];
    let in_libs = Cdi {
        folder: None,
        compat: false,
    };
    let variants = [
        ("its cache", true, in_libs),
        ("no cache", false, in_libs),
        (
            "a folder of their own",
            true,
            Cdi {
                folder: Some(CDI_FOLDER),
                ..in_libs
            },
        ),
        (
            "CUDA compat first",
            true,
            Cdi {
                compat: true,
                ..in_libs
            },
        ),
    ];
    let mut runs = 0;
    for (suite, image) in &images {
        let image_ldconfig = image.join("usr/sbin/ldconfig");
        for (variant, cache, cdi) in &variants {
            let layout = |root: &Path| real_image(image, root, false);
            let img = Image {
                layout: &layout,
                cache: &[new],
                ldconfig: &image_ldconfig,
                after: if *cache { &none } else { &no_cache },
            };
            let Some((run, got)) = cdi_hook(&img, *cdi, Ldconfig::Builtin) else {
                return;
            };
            assert!(
                matches!(run, LdconfigRun::Builtin { added } if added > 0),
                "{suite}, {variant}: {run:?}"
            );
            for (oracle_suite, oracle_image) in &images {
                let what = format!("{suite} image, {variant}, glibc of {oracle_suite}");
                let oracle = Ldconfig::Host(oracle_image.join("usr/sbin/ldconfig"));
                let (_, want) = cdi_hook(&img, *cdi, oracle).unwrap();
                assert!(
                    want.1
                        .iter()
                        .any(|(link, _)| link.ends_with("/libcuda.so.1")),
                    "{what}: {want:?}"
                );
                assert_eq!(got.0, want.0, "{what}: cache entries");
                assert_eq!(got.1, want.1, "{what}: links");
                runs += 1;
            }
        }
    }
    eprintln!("{runs} comparisons");
}

/// A hostile image's files where the spec bound libraries (a runtime that bound nothing
/// there, or an image that raced it): the hook reads them inside the root as `ldconfig`
/// would, never opens a FIFO (it would block), and falls back to the host's `ldconfig`,
/// saying why.
#[test]
fn the_cdi_hook_reads_bound_files_inside_the_root() {
    let Some(f) = common::sim("single") else {
        return;
    };
    let root = f.rootfs.path();
    debian(root);
    let dir = root.join("usr/lib/x86_64-linux-gnu");
    nix::unistd::mkfifo(&dir.join("libfifo.so.1"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let container = f.container();
    let opts = LdconfigOptions {
        ldconfig: Ldconfig::Builtin,
        extra_dirs: vec![container.dirs.libs.clone()],
        ..common::host_ldconfig()
    };
    let bound = [container.dirs.libs.join("libfifo.so.1")];
    let run = nvc_mount::update_ldcache(&container, &opts, &bound).unwrap();
    match run {
        LdconfigRun::Fallback { reason, .. } => {
            assert!(reason.contains("libfifo.so.1 does not open"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// The CLI's default (`Ldconfig::Auto`, what the image's own `ldconfig` writes): on an image
/// of glibc 2.36, 2.41 or 2.43 — its cache written by that glibc, or no cache at all (the
/// program then says which glibc it is) — the built-in update writes in process exactly what
/// the image's own `ldconfig`, run in the sandbox, writes; where the cache is in the old
/// format (a glibc that records no generator), and where the update refuses the image, that
/// program runs; where there is no such program, nothing does.
#[test]
fn auto_is_built_in_where_the_images_glibc_is_proven() {
    let Some(images) = glibc_images() else {
        return;
    };
    let none = |_: &Path| {};
    let no_cache = |root: &Path| fs::remove_file(root.join("etc/ld.so.cache")).unwrap();
    // The same entries under the generator of a cache nvc built (its update of an image
    // without one): the program says which glibc it is.
    let nvc_built = |root: &Path| {
        let path = root.join("etc/ld.so.cache");
        let bytes = fs::read(&path).unwrap();
        let cache = LdCache::parse(&bytes).unwrap();
        let entries: Vec<_> = cache
            .entries()
            .map(|e| {
                let e = e.unwrap();
                let mut entry = nvc_ldcache::CacheEntry::new(
                    e.soname().as_bytes(),
                    e.path().as_os_str().as_bytes(),
                    e.arch(),
                );
                entry.flags = e.flags();
                entry
            })
            .collect();
        let generator = format!("nvc-mount {} built-in ldconfig", env!("CARGO_PKG_VERSION"));
        let rewritten =
            nvc_ldcache::write_cache(&entries, cache.format(), Some(generator.as_bytes()));
        fs::write(&path, rewritten).unwrap();
    };
    let own = PathBuf::from("/sbin/ldconfig");
    for (suite, image) in &images {
        let image_ldconfig = image.join("usr/sbin/ldconfig");
        let layout = |root: &Path| real_image(image, root, false);
        let variants: [(&[&str], &Change, bool); 4] = [
            (&["-r"], &none, true),
            (&["-r"], &no_cache, true),
            (&["-r"], &nvc_built, true),
            (&["-c", "old", "-r"], &none, false),
        ];
        for (cache, after, built_in) in variants {
            let img = Image {
                layout: &layout,
                cache: &[cache],
                ldconfig: &image_ldconfig,
                after,
            };
            let what = format!("{suite} image, its ldconfig {cache:?}, built in: {built_in}");
            let (run, got, _) = configure_image(&img, false, Ldconfig::Auto(own.clone())).unwrap();
            match (&run, built_in) {
                (LdconfigRun::Builtin { .. }, true) | (LdconfigRun::Ran { .. }, false) => {}
                _ => panic!("{what}: {run:?}"),
            }
            let (run, want, _) =
                configure_image(&img, false, Ldconfig::Image(own.clone())).unwrap();
            assert!(matches!(run, LdconfigRun::Ran { .. }), "{what}: {run:?}");
            assert_eq!(got.0, want.0, "{what}: cache entries");
            assert_eq!(got.1, want.1, "{what}: links");
        }
        // No cache, and a program that says it is glibc 2.35 (its generator string changed):
        // not proven, so it runs.
        let older = |root: &Path| {
            no_cache(root);
            let program = root.join("usr/sbin/ldconfig");
            let mut bytes = fs::read(&program).unwrap();
            let tag = b" release version 2.";
            let at = bytes.windows(tag.len()).position(|w| w == tag).unwrap() + tag.len();
            bytes[at..at + 2].copy_from_slice(b"35");
            fs::write(&program, bytes).unwrap();
        };
        let img = Image {
            layout: &layout,
            cache: &[&["-r"]],
            ldconfig: &image_ldconfig,
            after: &older,
        };
        let (run, got, _) = configure_image(&img, false, Ldconfig::Auto(own.clone())).unwrap();
        assert!(
            matches!(run, LdconfigRun::Ran { .. }),
            "{suite}, 2.35: {run:?}"
        );
        let (_, want, _) = configure_image(&img, false, Ldconfig::Image(own.clone())).unwrap();
        assert_eq!(got, want, "{suite}, 2.35");
        // No such program: nothing runs and nothing changes, as for `Ldconfig::Image`.
        let img = Image {
            layout: &layout,
            cache: &[&["-r"]],
            ldconfig: &image_ldconfig,
            after: &none,
        };
        let missing = PathBuf::from("/sbin/ldconfig.missing");
        let (run, ..) = configure_image(&img, false, Ldconfig::Auto(missing)).unwrap();
        assert!(matches!(run, LdconfigRun::NotFound), "{suite}: {run:?}");
        // An image the built-in update refuses (more configuration files than it reads):
        // its own program runs, as it would have without nvc.
        let many = |root: &Path| {
            for n in 0..300 {
                fs::write(root.join(format!("etc/ld.so.conf.d/nvc-{n}.conf")), "").unwrap();
            }
        };
        let img = Image {
            layout: &layout,
            cache: &[&["-r"]],
            ldconfig: &image_ldconfig,
            after: &many,
        };
        let (run, got, _) = configure_image(&img, false, Ldconfig::Auto(own.clone())).unwrap();
        match &run {
            LdconfigRun::Fallback { reason, .. } => {
                assert!(reason.contains("built-in update failed"), "{reason}")
            }
            other => panic!("{suite}, many files: {other:?}"),
        }
        let (_, want, _) = configure_image(&img, false, Ldconfig::Image(own.clone())).unwrap();
        assert_eq!(got, want, "{suite}, many files");
    }
}
