//! The update of an existing cache: where the image's cache is exactly what glibc's `ldconfig`
//! scan gave before nvc mounted anything, the new cache is the old entries plus the new
//! libraries' (see the module above for what is proven).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, readlinkat};
use nix::sys::stat::{SFlag, fstatat};
use nvc_ldcache::elf::ElfInfo;
use nvc_ldcache::{Arch, CacheEntry, Flags, Format, LdCache, write_cache};

use super::budget::{Budget, Refused, settle};
use super::image::{Scan, Scanned, SonameLink, Staged, keep_fd, list, open_regular, scan, stage};
use super::order::glibc_order;
use super::{CommandLine, NewLibrary, NewLink, Outcome, libc6_everywhere};
use crate::Error;
use crate::apply::Root;
use crate::ns::proc_fd;

/// How many links in a row are followed from a cache entry to the file it names.
const LINK_HOPS: usize = 8;

/// How the new links (beside the new libraries, in the library directories) are taken.
#[derive(Clone, Copy)]
pub(crate) enum NewLinks<'a> {
    /// As they are now: the mounts are made (`configure` after them, the CDI hook).
    Now,
    /// As the plan makes them while the update is proven (`configure`'s mounts on another
    /// thread): each checked when the staged update is put in place
    /// ([`StagedUpdate::commit`]). The plan's
    /// `other` paths (neither a new library nor a new link) must not be in a directory the
    /// scan reads.
    Planned { other: &'a [&'a Path] },
}

/// Updates the cache of the image at `root` for `new` libraries, scanning as `ldconfig` run
/// with `cmd` ([`scan`]): [`prove`], then [`Proven::write`]. Call inside the container's
/// mount namespace, as its owner ([`crate::ns`]).
///
/// # Errors
///
/// A failure writing the new cache or a link (the old cache is then in place); everything
/// that makes the result uncertain is [`Outcome::Unsure`] instead.
pub(super) fn update(
    root: &Root,
    cmd: &CommandLine<'_>,
    cache: &Result<LdCache<'_>, String>,
    new: &[NewLibrary],
    new_links: &[NewLink],
    budget: &mut Budget,
) -> Result<Outcome, Error> {
    match prove(root, cmd, cache, new, new_links, NewLinks::Now, budget)? {
        Ok(proven) => proven.write(root),
        Err(why) => Ok(Outcome::Unsure(why)),
    }
}

/// The new cache and links, proven to be what `ldconfig` writes, not written yet.
pub(crate) struct Proven {
    bytes: Vec<u8>,
    links: Vec<SonameLink>,
    added: usize,
    /// The scanned directories (name and inode), to be the same ones when written.
    dirs: Vec<(PathBuf, (u64, u64))>,
    /// The planned links (directory, name, target) to be there when written
    /// ([`NewLinks::Planned`]).
    planned: Vec<(OwnedFd, OsString, PathBuf)>,
}

/// Returns `Ok(Err(reason))` from the function it is used in.
macro_rules! not_sure {
    ($($arg:tt)*) => { return Ok(Err(format!($($arg)*))) };
}

/// Proves the cache of the image at `root` plus the `new` libraries (and `new_links`, taken
/// as `how` says) to be what `ldconfig` run with `cmd` writes ([`scan`]): the new cache and
/// the SONAME links to make, or why it is unsure. Writes nothing. Call inside the
/// container's mount namespace ([`crate::ns`]).
///
/// # Errors
///
/// The image refused past a count of `budget`, or a directory descriptor not kept.
pub(super) fn prove(
    root: &Root,
    cmd: &CommandLine<'_>,
    cache: &Result<LdCache<'_>, String>,
    new: &[NewLibrary],
    new_links: &[NewLink],
    how: NewLinks<'_>,
    budget: &mut Budget,
) -> Result<Result<Proven, String>, Error> {
    let cache = match cache {
        Ok(cache) => *cache,
        Err(why) => not_sure!("{why}"),
    };
    if cache.format() == Format::Old {
        not_sure!("/etc/ld.so.cache is in the old format");
    }
    let mut scan = match scan(root, cmd, budget)? {
        Ok(scan) => scan,
        Err(why) => not_sure!("{why}"),
    };

    // The old entries, under the scan's names of their directories.
    let mut entries = Vec::with_capacity(cache.len() + new.len());
    for e in cache.entries() {
        let Ok(e) = e else {
            not_sure!("an entry of /etc/ld.so.cache does not read");
        };
        if e.hwcap() != 0 || e.hwcaps_subdir().is_some() {
            not_sure!("/etc/ld.so.cache has hwcap entries");
        }
        if e.flags().lib_type() != Flags::libc6(e.arch()).lib_type() {
            not_sure!(
                "/etc/ld.so.cache lists {} as another type than libc6 (glibc before 2.37 and \
                 after list such libraries differently)",
                e.path().display()
            );
        }
        let (Some(dir), Some(name)) = (e.path().parent(), e.path().file_name()) else {
            not_sure!("entry {} is no file path", e.path().display());
        };
        let Some(d) = scan.get(root, dir) else {
            not_sure!(
                "{} is in a directory ldconfig does not scan",
                e.path().display()
            );
        };
        if root.open(&d.name.join(name), OFlag::O_PATH).is_err() {
            not_sure!("stale cache: {} is gone", e.path().display());
        }
        // An i386 entry's type is one every glibc would give it only where the file says
        // so (read: an image has few of them).
        if e.arch() == Arch::I386 {
            let elf = open_regular(root, &d.name.join(name))
                .ok()
                .and_then(|file| ElfInfo::read(proc_fd(&file)).ok());
            if !elf.as_ref().is_some_and(libc6_everywhere) {
                not_sure!(
                    "{} is an i386 library that does not need glibc (glibc versions list it \
                     differently)",
                    e.path().display()
                );
            }
        }
        d.sonames.insert(e.soname().to_owned());
        // The entry's name and the files its links lead to in the same directory
        // (`libXaw.so.7 -> libXaw7.so.7 -> libXaw7.so.7.0.0`).
        let mut at = name.to_owned();
        for _ in 0..LINK_HOPS {
            let next = readlinkat(d.fd.as_fd(), at.as_os_str());
            d.referenced.insert(at);
            match next {
                Ok(to) if !to.as_bytes().contains(&b'/') => at = to,
                _ => break,
            }
        }
        let mut entry = CacheEntry::new(
            e.soname().as_bytes(),
            d.name.join(name).as_os_str().as_bytes(),
            e.arch(),
        );
        entry.flags = e.flags();
        entry.osversion = e.osversion();
        entries.push(entry);
    }
    let mut pairs = entries.iter().zip(entries.iter().skip(1));
    if pairs.any(|(a, b)| glibc_order(a, b) == Ordering::Greater) {
        not_sure!("/etc/ld.so.cache is not in glibc's order");
    }

    // The plan's other paths: none where the scan reads (its files would be weighed as the
    // image's), and no directory it makes on the way a hwcap subdirectory of a scanned one.
    if let NewLinks::Planned { other } = how {
        let scanned =
            |p: &Path, scan: &mut Scan| p.parent().is_some_and(|dir| scan.get(root, dir).is_some());
        let hwcap = |p: &Path| {
            p.file_name()
                .is_some_and(|n| cmd.platform.hwcap_dirs.iter().any(|h| n == *h))
        };
        let made = (other.iter().copied())
            .chain(new.iter().map(|l| l.target.as_path()))
            .chain(new_links.iter().map(|l| l.path.as_path()));
        let hwcap_dirs = made
            .flat_map(|p| p.ancestors().skip(1))
            .filter(|d| hwcap(d));
        for path in other.iter().copied().chain(hwcap_dirs) {
            if scanned(path, &mut scan) {
                not_sure!("the plan makes {} where ldconfig scans", path.display());
            }
        }
    }

    // The new libraries: SONAME, architecture, link.
    let mut planned = Vec::new();
    let mut links = Vec::new();
    let mut linked_before = HashSet::new();
    let mut added = Vec::new();
    for lib in new {
        let (Some(dir), Some(file)) = (lib.target.parent(), lib.target.file_name()) else {
            not_sure!("{} is no file path", lib.target.display());
        };
        let (soname, arch) = (lib.soname.clone(), lib.arch);
        let Some(d) = scan.get(root, dir) else {
            not_sure!("{} is in a directory ldconfig does not scan", dir.display());
        };
        let flags = Flags::libc6(arch);
        if entries
            .iter()
            .chain(&added)
            .any(|e: &CacheEntry| e.soname == soname && e.flags == flags)
        {
            not_sure!(
                "{} is in the cache already",
                String::from_utf8_lossy(&soname)
            );
        }
        let soname_os = OsStr::from_bytes(&soname);
        d.referenced.insert(file.to_owned());
        d.referenced.insert(soname_os.to_owned());
        if soname_os != file {
            // Where the plan makes the SONAME link's name itself, what is there depends on
            // how far the mounts got.
            let at = dir.join(soname_os);
            if let NewLinks::Planned { other } = how
                && (new.iter().any(|l| l.target == at)
                    || new_links.iter().any(|l| l.path == at)
                    || other.contains(&at.as_path()))
            {
                not_sure!("the plan makes {} itself", at.display());
            }
            match readlinkat(d.fd.as_fd(), soname_os) {
                Ok(to) if to == file => {
                    linked_before.insert(d.name.join(soname_os));
                }
                Err(Errno::ENOENT) => links.push(SonameLink::new(d, soname_os, file)?),
                _ => not_sure!("{} exists", dir.join(soname_os).display()),
            }
        }
        let mut entry = CacheEntry::new(
            soname.clone(),
            d.name.join(soname_os).as_os_str().as_bytes(),
            arch,
        );
        entry.flags = flags;
        added.push(entry);
    }

    // The development links (where they are): `ldconfig` lists a link `NAME.so` to a library whose SONAME
    // starts with `NAME.so` under its own name — when the SONAME link it goes through was
    // there before the run (the run makes it after reading the directory: a first run finds
    // the development link dangling); other links it would weigh against the library itself
    // (unsure).
    for link in new_links {
        let (Some(dir), Some(name), Some(to)) = (
            link.path.parent(),
            link.path.file_name(),
            link.target.to_str(),
        ) else {
            not_sure!("link {} is no file path", link.path.display());
        };
        let Some(d) = scan.get(root, dir) else {
            not_sure!("{} is in a directory ldconfig does not scan", dir.display());
        };
        match how {
            // The link as it is now: one the CDI hook expects may not be there.
            NewLinks::Now => match readlinkat(d.fd.as_fd(), name) {
                Ok(now) if now == link.target => {}
                Err(Errno::ENOENT) => continue,
                _ => not_sure!("{} is not the link -> {to}", link.path.display()),
            },
            NewLinks::Planned { .. } => {
                planned.push((
                    keep_fd(&d.fd, &link.path)?,
                    name.to_owned(),
                    link.target.clone(),
                ));
            }
        }
        let to_path = d.name.join(to);
        let target = added
            .iter()
            .find(|e| e.path == to_path.as_os_str().as_bytes());
        let dev = name.as_bytes().ends_with(b".so");
        let Some(target) = target.filter(|t| dev && t.soname.starts_with(name.as_bytes())) else {
            not_sure!("link {} -> {to}", link.path.display());
        };
        d.referenced.insert(name.to_owned());
        if linked_before.contains(&to_path) {
            let mut entry = CacheEntry::new(
                name.as_bytes(),
                d.name.join(name).as_os_str().as_bytes(),
                target.flags.arch(),
            );
            entry.flags = target.flags;
            added.push(entry);
        }
    }

    // Nothing else ldconfig would pick up.
    for d in &scan.dirs {
        if let Some(why) =
            settle(unlisted_library(root, d, cmd.platform.hwcap_dirs, budget))?.unwrap_or_else(Some)
        {
            return Ok(Err(why));
        }
    }

    // Stable: each new entry after the old ones it equals.
    let count = added.len();
    entries.extend(added);
    entries.sort_by(glibc_order);
    let dirs = scan
        .dirs
        .iter()
        .map(|d| (d.name.clone(), d.inode))
        .collect();
    let bytes = write_cache(&entries, cache.format(), cache.generator());
    Ok(Ok(Proven {
        bytes,
        links,
        added: count,
        dirs,
        planned,
    }))
}

impl Proven {
    /// Writes the proven cache beside the image's, makes the links and renames the cache in
    /// place, right after the proof (nothing it read can have changed in between but by the
    /// container's own processes).
    ///
    /// # Errors
    ///
    /// The first write or link that fails (nothing of the update is left then, but what the
    /// error lists).
    pub(crate) fn write(self, root: &Root) -> Result<Outcome, Error> {
        let added = self.added;
        stage(root, &self.bytes, self.links)?.commit(root)?;
        Ok(Outcome::Updated { added })
    }

    /// Writes the proven cache beside the image's (`/etc/ld.so.cache~nvc`) and makes the
    /// SONAME links in the image's own directories — before the plan's mounts are made, with
    /// [`NewLinks::Planned`]; the image's cache is unchanged until
    /// [`StagedUpdate::commit`].
    ///
    /// # Errors
    ///
    /// The first write or link that fails (what was made before it is removed).
    pub(crate) fn stage(self, root: &Root) -> Result<StagedUpdate, Error> {
        Ok(StagedUpdate {
            staged: stage(root, &self.bytes, self.links)?,
            added: self.added,
            dirs: self.dirs,
            planned: self.planned,
        })
    }
}

/// A [`Proven`] update written beside the image's cache, not yet in place; dropped, it
/// removes what it wrote.
pub(crate) struct StagedUpdate {
    staged: Staged,
    added: usize,
    dirs: Vec<(PathBuf, (u64, u64))>,
    planned: Vec<(OwnedFd, OsString, PathBuf)>,
}

impl StagedUpdate {
    /// Puts the staged cache in place where what the proof read is unchanged: the
    /// directories `ldconfig` run with `cmd` scans (the configuration read again, each
    /// directory resolved again: the same ones, in the same order), in the update's time
    /// less what the proof `spent`, and the planned links; else removes it and the links
    /// (unsure).
    ///
    /// # Errors
    ///
    /// A link or the rename failed (what was made is removed, the error lists what could not
    /// be), or the configuration refused past a count.
    pub(crate) fn commit(
        self,
        root: &Root,
        cmd: &CommandLine<'_>,
        spent: Duration,
    ) -> Result<Outcome, Error> {
        if let Some(why) = self.changed(root, cmd, spent)? {
            let _ = self.undo();
            return Ok(Outcome::Unsure(why));
        }
        self.staged.commit(root)?;
        Ok(Outcome::Updated { added: self.added })
    }

    /// Removes the staged cache and the links made; what could not be removed.
    pub(crate) fn undo(self) -> Vec<String> {
        self.staged.undo()
    }

    /// What changed since the proof that it depends on.
    fn changed(
        &self,
        root: &Root,
        cmd: &CommandLine<'_>,
        spent: Duration,
    ) -> Result<Option<String>, Error> {
        let scan = match scan(root, cmd, &mut Budget::new().less(spent))? {
            Ok(scan) => scan,
            Err(why) => return Ok(Some(why)),
        };
        let now = scan.dirs.iter().map(|d| (&d.name, d.inode));
        if !now.eq(self.dirs.iter().map(|(name, inode)| (name, *inode))) {
            return Ok(Some("the directories ldconfig scans changed".into()));
        }
        Ok(self.planned.iter().find_map(|(dir, name, target)| {
            let now = readlinkat(dir.as_fd(), name.as_os_str()).ok();
            (now.as_deref() != Some(target.as_os_str())).then(|| {
                format!(
                    "the link {} -> {} was not made",
                    name.display(),
                    target.display()
                )
            })
        }))
    }
}

/// Why `ldconfig` might pick up something in `d` that the cache does not list: an ELF file
/// with a library's name that is not referenced, or a hwcap subdirectory.
fn unlisted_library(
    root: &Root,
    d: &Scanned,
    hwcap_dirs: &[&str],
    budget: &mut Budget,
) -> Result<Option<String>, Refused> {
    let referenced = &d.referenced;
    let names = match list(&d.fd, budget)? {
        Ok(names) => names,
        Err(e) => return Ok(Some(format!("{} does not list: {e}", d.name.display()))),
    };
    for name in names {
        budget.time()?;
        let b = name.as_bytes();
        let Ok(st) = fstatat(d.fd.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFDIR {
            if hwcap_dirs.iter().any(|h| h.as_bytes() == b) {
                return Ok(Some(format!(
                    "{} has a hwcap directory {}",
                    d.name.display(),
                    name.display()
                )));
            }
            continue;
        }
        let library =
            (b.starts_with(b"lib") || b.starts_with(b"ld-")) && b.windows(3).any(|w| w == b".so");
        if !library || referenced.contains(&name) {
            continue;
        }
        // Not referenced: ldconfig skips it if it is no ELF file (a linker script, a dangling
        // link). An ELF file with a SONAME the directory lists already adds nothing (ldconfig
        // keeps one file per SONAME, the listed one here) — unless its name is a development
        // name (`libz.so` for `libz.so.1`), which ldconfig lists under that name.
        let Ok(mut file) = open_regular(root, &d.name.join(&name)) else {
            continue;
        };
        let mut magic = [0u8; 4];
        if file.read_exact(&mut magic).is_err() || magic != *b"\x7fELF" {
            continue;
        }
        let soname = ElfInfo::read(proc_fd(&file))
            .ok()
            .and_then(|elf| elf.soname);
        let listed = soname.as_ref().is_some_and(|s| {
            d.sonames.contains(OsStr::from_bytes(s))
                && !(b.ends_with(b".so") && s.starts_with(b) && s.as_slice() != b)
        });
        if !listed {
            return Ok(Some(format!(
                "{} is a library the cache does not list",
                d.name.join(&name).display()
            )));
        }
    }
    Ok(None)
}
