//! The built-in linker cache update ([`Ldconfig::Builtin`](crate::Ldconfig::Builtin)): the
//! image's `/etc/ld.so.cache` updated in process with the libraries just mounted — no program
//! runs at all — when it can prove the result is what glibc's `ldconfig` would write.
//!
//! glibc's `ldconfig` rebuilds the cache from the directories it scans: those named on its
//! command line (nvc passes the library directories), in `/etc/ld.so.conf` (and the files it
//! includes), then glibc's trusted ones, each directory once (by inode, under the first name
//! it was reached by). When the image's cache is exactly what that scan gave before nvc
//! mounted anything, the new cache is the old entries (under the scan's spelling of their
//! directories) plus one entry per new library, in glibc's order, and the SONAME links of the
//! new libraries. The update proves the premise and otherwise answers [`Outcome::Unsure`]
//! with the reason, and `configure` falls back to the host's `ldconfig` in its sandbox:
//!
//! - the cache exists, parses, is in the new or combined format, has no hwcap entries, and
//!   its entries are in glibc's order;
//! - `/etc/ld.so.conf` names plain directories and `include`s (no `hwcap` lines);
//! - every entry's directory is one the scan reaches, and its file is there;
//! - no scanned directory holds an ELF library the cache does not list (through its name,
//!   the links it leads through, or — for a second file of a listed SONAME — its SONAME),
//!   or a hwcap subdirectory;
//! - every new library has a SONAME and an architecture, a SONAME the cache does not have
//!   yet, and its link name is free (or already the link).
//!
//! Everything in the image is read inside its root ([`Root`]), bounded; the new cache is
//! written beside the old one and renamed over it, the last step that can fail (what was
//! written before it is removed after a failure). `configure` proves it while its mounts are
//! made and puts it in place after them ([`prove_planned`], `crate::early_update`).
//!
//! Where the update cannot be sure, a new cache is built from the directories themselves
//! ([`rebuild`]): every library file read as glibc's `ldconfig` reads it, chosen per
//! directory as it chooses, ordered as it orders — the image without a cache (or with a stale
//! one) is then no slow path either. Only what that cannot prove either falls back.
//!
//! The modules: [`budget`] bounds what one update reads, [`image`] reads the image's
//! configuration and directories inside its root, [`order`] is glibc's cache order,
//! [`program`] whether the update stands for the image's own `ldconfig`, [`select`] glibc's
//! choice among a directory's files (pure), [`update`] the update of an existing cache,
//! [`rebuild`] the new cache.

mod budget;
mod image;
mod order;
mod program;
mod rebuild;
mod select;
mod update;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nvc_ldcache::elf::ElfInfo;
use nvc_ldcache::{Arch, LdCache, Platform};

use crate::apply::Root;
use crate::{ContainerDirs, Error, LdconfigOptions};

/// What glibc's `ldconfig` would be run with: the directories on its command line, in
/// order (as the sandbox passes them: [`LdconfigOptions::scanned`]), and the image's
/// platform (its trusted directories and hwcap names).
pub(crate) struct CommandLine<'a> {
    pub(crate) dirs: Vec<&'a Path>,
    pub(crate) platform: &'static Platform,
}

impl<'a> CommandLine<'a> {
    /// The command line of `opts` for an image with `dirs`.
    pub(crate) fn of(opts: &'a LdconfigOptions, dirs: &'a ContainerDirs) -> Self {
        CommandLine {
            dirs: opts.scanned(dirs).map(PathBuf::as_path).collect(),
            platform: dirs.platform,
        }
    }
}

/// A library the configure mounted: where it is in the container and its host file.
#[derive(Debug, Clone)]
pub(crate) struct NewLibrary {
    /// The container path of the mount.
    pub(crate) target: PathBuf,
    /// Its SONAME and architecture ([`NewLibrary::read`]).
    soname: Vec<u8>,
    arch: Arch,
}

impl NewLibrary {
    /// The library mounted at `target` from the host file `source` (the driver root's,
    /// trusted; read in the caller's mount namespace): `Err(reason)` when it has no SONAME
    /// or architecture, or an ABI note (whose OS version glibc would record).
    pub(crate) fn read(target: &Path, source: &Path) -> Result<Self, String> {
        let elf = ElfInfo::read(source).map_err(|e| format!("{}: {e}", source.display()))?;
        Self::of(target, source, elf)
    }

    /// The library at `target` in the image at `root` (one a runtime mounted), read inside
    /// the root as `ldconfig` reads it ([`image::open_regular`]: no FIFO or device opened).
    /// Call inside the container's mount namespace ([`crate::ns`]).
    pub(crate) fn read_in(root: &Root, target: &Path) -> Result<Self, String> {
        let file = image::open_regular(root, target)
            .map_err(|e| format!("{} does not open: {e}", target.display()))?;
        let elf = ElfInfo::read(crate::ns::proc_fd(&file))
            .map_err(|e| format!("{}: {e}", target.display()))?;
        Self::of(target, target, elf)
    }

    fn of(target: &Path, source: &Path, elf: ElfInfo) -> Result<Self, String> {
        let libc6 = libc6_everywhere(&elf);
        match (elf.cache_arch(), elf.soname, elf.abi_tag) {
            (Some(arch), Some(soname), None) if libc6 => Ok(NewLibrary {
                target: target.to_path_buf(),
                soname,
                arch,
            }),
            _ => Err(format!(
                "{} has no SONAME or architecture, an ABI note, or is an i386 library that \
                 does not need libc.so.6",
                source.display()
            )),
        }
    }
}

impl NewLibrary {
    /// The development link a CDI spec's `create-symlinks` hook makes beside the library
    /// (`libcuda.so -> libcuda.so.1`: its SONAME up to `.so`), where the SONAME has one.
    pub(crate) fn development_link(&self) -> Option<NewLink> {
        let at = self.soname.windows(3).position(|w| w == b".so")? + 3;
        let name = self.soname.get(..at)?;
        (at < self.soname.len()).then(|| NewLink {
            path: self.target.with_file_name(OsStr::from_bytes(name)),
            target: PathBuf::from(OsStr::from_bytes(&self.soname)),
        })
    }
}

/// A link the configure made next to a new library (`libcuda.so -> libcuda.so.1`).
#[derive(Debug, Clone)]
pub(crate) struct NewLink {
    /// The container path of the link.
    pub(crate) path: PathBuf,
    /// What it points to (a file name in the same directory).
    pub(crate) target: PathBuf,
}

/// What a configure (or a runtime, for the CDI hook) mounted into the directories the update
/// scans.
#[derive(Debug, Default)]
pub(crate) struct NewLibraries {
    pub(crate) libraries: Vec<NewLibrary>,
    pub(crate) links: Vec<NewLink>,
}

/// What the update did.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The cache was rewritten with `added` entries more.
    Updated { added: usize },
    /// It could not prove the result equal to `ldconfig`'s: why.
    Unsure(String),
}

/// Whether every glibc `ldconfig` compared (2.36 to 2.43) lists the object `elf` with the
/// type libc6: an i386 one where it needs `libc.so.6` or `libm.so.6` or names glibc's loader
/// as its interpreter (other i386 objects glibc lists as `ELF` before 2.37 and as `libc6`
/// since); the objects of 64-bit architectures always.
fn libc6_everywhere(elf: &ElfInfo) -> bool {
    elf.cache_arch() != Some(Arch::I386)
        || elf
            .needed
            .iter()
            .any(|n| n == b"libc.so.6" || n == b"libm.so.6")
        || elf.interpreter.as_deref() == Some(b"/lib/ld-linux.so.2")
}

/// Updates the cache of the image at `root`, as `ldconfig` run with `cmd`, for the `new`
/// libraries and links ([`update`]), in the update's time less what an earlier attempt
/// `spent`;
/// where that is unsure, builds a new one from the directories ([`rebuild`]); where that is
/// unsure too, says why both were. Call inside the container's mount namespace, as its owner
/// ([`crate::ns`]).
///
/// # Errors
///
/// The image's configuration refused (past a count of [`budget`]), or a failure writing the
/// new cache or a link (the old cache is then in place).
pub(crate) fn update(
    root: &Root,
    cmd: &CommandLine<'_>,
    new: &NewLibraries,
    spent: Duration,
) -> Result<Outcome, Error> {
    // One budget for both (and the time an earlier attempt spent): a hostile image costs
    // one second at most, not one per attempt.
    let mut budget = budget::Budget::new().less(spent);
    // The image's cache, read once for both.
    let bytes = image::read_cache(root);
    let cache = parsed(&bytes);
    match update::update(root, cmd, &cache, &new.libraries, &new.links, &mut budget)? {
        Outcome::Unsure(why) => match rebuild::rebuild(root, cmd, cache.ok(), &mut budget)? {
            Outcome::Unsure(also) if also == why => Ok(Outcome::Unsure(why)),
            Outcome::Unsure(also) => Ok(Outcome::Unsure(format!(
                "{why}; and a new cache is unsure: {also}"
            ))),
            done => Ok(done),
        },
        done => Ok(done),
    }
}

/// The image's cache as [`image::read_cache`] read it, parsed, or why not.
fn parsed(bytes: &Result<Vec<u8>, String>) -> Result<LdCache<'_>, String> {
    match bytes {
        Ok(bytes) => {
            LdCache::parse(bytes).map_err(|e| format!("/etc/ld.so.cache does not parse ({e})"))
        }
        Err(why) => Err(why.clone()),
    }
}

/// What [`prove_planned`] found.
pub(crate) enum Proof {
    /// The new cache and links, to write once the mounts are made.
    Proven(update::Proven),
    /// The update cannot be proven now (the update after the mounts may still prove it, or
    /// build a new cache).
    Unsure,
    /// [`crate::Ldconfig::Auto`]: the image's program runs ([`program::stands_for`] is false).
    Program,
}

/// The update of the image at `root` for the `new` libraries of a plan, proven while the
/// plan's mounts are made (on another thread: the `new` links taken as the plan makes them,
/// and its `other` paths checked to be none the scan reads; [`update::NewLinks::Planned`]).
/// With `auto` (the image's program of [`crate::Ldconfig::Auto`]), first whether the update
/// stands for it ([`program::stands_for`], from the same read of the cache), told to `decided`. Call
/// inside the container's mount namespace, as its owner ([`crate::ns`]).
///
/// # Errors
///
/// The image's configuration refused (past a count of [`budget`]), or a directory
/// descriptor not kept.
pub(crate) fn prove_planned(
    root: &Root,
    cmd: &CommandLine<'_>,
    auto: Option<(&Path, &dyn Fn(bool))>,
    new: Result<NewLibraries, String>,
    other: &[&Path],
) -> Result<Proof, Error> {
    let bytes = image::read_cache(root);
    let cache = parsed(&bytes);
    if let Some((program, decided)) = auto {
        let stands = program::stands_for(root, program, cache.as_ref().ok());
        decided(stands);
        if !stands {
            return Ok(Proof::Program);
        }
    }
    let new = match new {
        Ok(new) => new,
        Err(_) => return Ok(Proof::Unsure),
    };
    let how = update::NewLinks::Planned { other };
    let mut budget = budget::Budget::new();
    Ok(
        match update::prove(
            root,
            cmd,
            &cache,
            &new.libraries,
            &new.links,
            how,
            &mut budget,
        )? {
            Ok(proven) => Proof::Proven(proven),
            Err(_) => Proof::Unsure,
        },
    )
}

/// Returns `Ok(Outcome::Unsure(reason))` from the function it is used in.
macro_rules! unsure {
    ($($arg:tt)*) => { return Ok($crate::builtin_ldconfig::Outcome::Unsure(format!($($arg)*))) };
}
pub(crate) use unsure;
