//! Tier c, inside the crate (the early update is crate-private): the update proven before the
//! mounts of a paused container, then written, abandoned, or left to the update after the
//! mounts when what it read changed; and a failed rename putting everything back.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nvc_ldcache::LdCache;
use nvc_ldcache::elf::{Class, SharedObject, write_shared_object};
use nvc_testkit::PausedContainer;

use super::{Early, EarlyUpdate};
use crate::builtin_ldconfig::{CommandLine, NewLibraries, NewLibrary};
use crate::{Container, Error, Ldconfig, LdconfigOptions, Limits};

const LIBS: &str = "usr/lib/x86_64-linux-gnu";
const LIBS32: &str = "usr/lib/i386-linux-gnu";

struct Fixture {
    _paused: PausedContainer,
    rootfs: tempfile::TempDir,
    host: tempfile::TempDir,
    container: Container,
    opts: LdconfigOptions,
}

/// A paused container on a Debian-like image with one library and the cache the host's
/// glibc `ldconfig` wrote for it, and an empty i386 library directory; `None` (reason
/// printed) without root.
fn fixture() -> Option<Fixture> {
    let paused = PausedContainer::start()?;
    let rootfs = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(rootfs.path(), &[LIBS, LIBS32], false).unwrap();
    let image = SharedObject::x86(Class::Elf64, b"libimage.so.1");
    fs::write(
        rootfs.path().join(LIBS).join("libimage.so.1.2"),
        write_shared_object(&image),
    )
    .unwrap();
    let ldconfig = std::process::Command::new("/sbin/ldconfig")
        .arg("-r")
        .arg(rootfs.path())
        .status()
        .unwrap();
    assert!(ldconfig.success());
    let host = tempfile::tempdir().unwrap();
    for (class, name) in [(Class::Elf64, "libnew"), (Class::Elf32, "libnew32")] {
        let soname = format!("{name}.so.1");
        let new = SharedObject::x86(class, soname.as_bytes());
        fs::write(
            host.path().join(format!("{name}.so.1.0")),
            write_shared_object(&new),
        )
        .unwrap();
    }
    let container = Container::from_pid(paused.pid(), rootfs.path()).unwrap();
    let opts = LdconfigOptions {
        ldconfig: Ldconfig::Builtin,
        no_pivot: false,
        extra_dirs: Vec::new(),
        cuda_compat_dir: None,
        limits: Limits::default(),
    };
    Some(Fixture {
        _paused: paused,
        rootfs,
        host,
        container,
        opts,
    })
}

impl Fixture {
    /// The new libraries of the plan: the host's `libnew.so.1.0` and `libnew32.so.1.0`,
    /// bound at their names in the image's library directories.
    fn plan(&self) -> (Result<NewLibraries, String>, Vec<PathBuf>) {
        let read = |dir: &str, name: &str| {
            let target = Path::new("/").join(dir).join(name);
            NewLibrary::read(&target, &self.host.path().join(name))
        };
        let libraries = [read(LIBS, "libnew.so.1.0"), read(LIBS32, "libnew32.so.1.0")];
        let new = libraries
            .into_iter()
            .collect::<Result<_, _>>()
            .map(|l| NewLibraries {
                libraries: l,
                links: Vec::new(),
            });
        (new, Vec::new())
    }

    /// The image's `/etc` and library directory (names and link targets) and its cache.
    fn state(&self) -> (Vec<(String, Option<PathBuf>)>, Vec<u8>) {
        let mut names = Vec::new();
        for dir in ["etc", LIBS, LIBS32] {
            for e in fs::read_dir(self.rootfs.path().join(dir)).unwrap() {
                let path = e.unwrap().path();
                names.push((path.display().to_string(), fs::read_link(&path).ok()));
            }
        }
        names.sort();
        let cache = fs::read(self.rootfs.path().join("etc/ld.so.cache")).unwrap();
        (names, cache)
    }

    /// Starts the early update, runs `during` (the mounts, here), then finishes it with
    /// `made`.
    fn run(&self, during: impl FnOnce(), made: bool) -> Result<Early, Error> {
        let cmd = CommandLine::of(&self.opts, &self.container.dirs);
        std::thread::scope(|scope| {
            let mut early =
                EarlyUpdate::start(scope, &self.container, &self.opts.ldconfig, &cmd, || {
                    self.plan()
                })?;
            assert!(early.built_in());
            during();
            early.finish(made)
        })
    }

    /// Waits until the early update has staged: its cache written beside the image's, then
    /// the SONAME link made in the image's own library directory (the one the image's cache
    /// lists files in).
    fn staged(&self) {
        let staged = self.rootfs.path().join("etc/ld.so.cache~nvc");
        let link = self.rootfs.path().join(LIBS).join("libnew.so.1");
        let start = Instant::now();
        while !(staged.exists() && link.is_symlink()) {
            assert!(start.elapsed() < Duration::from_secs(10), "nothing staged");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn a_proven_update_is_written_once_the_mounts_are_made() {
    let Some(f) = fixture() else { return };
    let before = f.state();
    let libs = f.rootfs.path().join(LIBS);
    let libs32 = f.rootfs.path().join(LIBS32);
    let early = f.run(
        || {
            // Before the mounts are made: the image's cache is the image's; the link is made
            // in the image's own directory, not yet in one it lists nothing in (which the
            // plan may have created, and its undo would leave).
            f.staged();
            assert_eq!(f.state().1, before.1);
            assert!(!libs32.join("libnew32.so.1").is_symlink());
        },
        true,
    );
    assert!(
        matches!(early, Ok(Early::Updated { added: 2 })),
        "{early:?}"
    );
    let (names, bytes) = f.state();
    let cache = LdCache::parse(&bytes).unwrap();
    let mut sonames: Vec<_> = cache.entries().map(|e| e.unwrap().soname()).collect();
    sonames.sort();
    assert_eq!(sonames, ["libimage.so.1", "libnew.so.1", "libnew32.so.1"]);
    for (dir, link, file) in [
        (&libs, "libnew.so.1", "libnew.so.1.0"),
        (&libs32, "libnew32.so.1", "libnew32.so.1.0"),
    ] {
        assert_eq!(fs::read_link(dir.join(link)).unwrap(), Path::new(file));
    }
    // Nothing of the update's own is left in /etc: the staged cache is the cache now.
    let etc = |names: &[(String, Option<PathBuf>)]| {
        names.iter().filter(|(n, _)| n.contains("/etc/")).count()
    };
    assert_eq!(etc(&names), etc(&before.0));
}

#[test]
fn failed_mounts_abandon_the_update_and_leave_the_image_as_it_was() {
    let Some(f) = fixture() else { return };
    let before = f.state();
    let early = f.run(|| f.staged(), false);
    assert!(
        matches!(&early, Ok(Early::Abandoned { left }) if left.is_empty()),
        "{early:?}"
    );
    assert_eq!(f.state(), before);
}

#[test]
fn a_directory_changed_after_the_proof_leaves_the_update_to_after_the_mounts() {
    let Some(f) = fixture() else { return };
    let before = f.state();
    let libs = f.rootfs.path().join(LIBS);
    let moved = f.rootfs.path().join("usr/lib/moved");
    let early = f.run(
        || {
            f.staged();
            fs::rename(&libs, &moved).unwrap();
            fs::create_dir(&libs).unwrap();
        },
        true,
    );
    assert!(matches!(early, Ok(Early::Unsure(_))), "{early:?}");
    // The link was made in the directory that was read (now moved) and removed there.
    assert!(
        !moved
            .join("libnew.so.1")
            .symlink_metadata()
            .is_ok_and(|m| m.is_symlink())
    );
    fs::remove_dir(&libs).unwrap();
    fs::rename(&moved, &libs).unwrap();
    assert_eq!(f.state(), before);
}

#[test]
fn a_failed_rename_leaves_the_image_as_it_was() {
    let Some(f) = fixture() else { return };
    let before = f.state();
    let early = nvc_sys::fault::with_hook(
        |name, _| (name == "rename").then_some(Errno::EIO),
        || f.run(|| {}, true),
    );
    let err = early.expect_err("the rename failed");
    assert!(err.to_string().contains("rename"), "{err}");
    assert!(!err.to_string().contains("undo left"), "{err}");
    assert_eq!(f.state(), before);
}

#[test]
fn a_configuration_changed_after_the_proof_leaves_the_update_to_after_the_mounts() {
    let Some(f) = fixture() else { return };
    let before = f.state();
    let conf = f.rootfs.path().join("etc/ld.so.conf");
    let early = f.run(
        || {
            f.staged();
            // A directory the scan did not read is configured now (as a mount could make
            // one appear that the configuration named).
            fs::create_dir_all(f.rootfs.path().join("opt/lib")).unwrap();
            fs::write(&conf, "/opt/lib\n").unwrap();
        },
        true,
    );
    assert!(matches!(early, Ok(Early::Unsure(_))), "{early:?}");
    fs::write(&conf, "").unwrap();
    assert_eq!(f.state(), before);
}

#[test]
fn a_caller_that_fails_before_the_mounts_leaves_the_image_as_it_was() {
    let Some(f) = fixture() else { return };
    let before = f.state();
    let cmd = CommandLine::of(&f.opts, &f.container.dirs);
    // The caller's next step (the cgroup lookup, say) fails: it returns without a word to
    // the early update, which writes nothing, or removes what it wrote.
    let failed: Result<(), Error> = std::thread::scope(|scope| {
        let _early = EarlyUpdate::start(scope, &f.container, &f.opts.ldconfig, &cmd, || f.plan())?;
        Err(Error::Container {
            what: "the cgroup lookup failed".into(),
        })
    });
    assert!(failed.is_err());
    assert_eq!(f.state(), before);
}
