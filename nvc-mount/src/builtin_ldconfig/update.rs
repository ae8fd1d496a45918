//! The update of an existing cache: where the image's cache is exactly what glibc's `ldconfig`
//! scan gave before nvc mounted anything, the new cache is the old entries plus the new
//! libraries' (see the module above for what is proven).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, readlinkat};
use nix::sys::stat::{SFlag, fstatat};
use nvc_ldcache::elf::ElfInfo;
use nvc_ldcache::{Arch, CacheEntry, Flags, Format, LdCache, write_cache};

use super::budget::{Budget, Refused, settle};
use super::image::{Scanned, SonameLink, list, open_regular, scan, write_cache_and_links};
use super::order::glibc_order;
use super::{CommandLine, NewLibrary, NewLink, Outcome, libc6_everywhere, unsure};
use crate::Error;
use crate::apply::Root;
use crate::ns::proc_fd;

/// How many links in a row are followed from a cache entry to the file it names.
const LINK_HOPS: usize = 8;

/// Updates the cache of the image at `root` for `new` libraries, scanning as `ldconfig` run
/// with `cmd` ([`scan`]). Call inside
/// the container's mount namespace, as its owner ([`crate::ns`]).
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
    let cache = match cache {
        Ok(cache) => *cache,
        Err(why) => unsure!("{why}"),
    };
    if cache.format() == Format::Old {
        unsure!("/etc/ld.so.cache is in the old format");
    }
    let mut scan = match scan(root, cmd, budget)? {
        Ok(scan) => scan,
        Err(why) => unsure!("{why}"),
    };

    // The old entries, under the scan's names of their directories.
    let mut entries = Vec::with_capacity(cache.len() + new.len());
    for e in cache.entries() {
        let Ok(e) = e else {
            unsure!("an entry of /etc/ld.so.cache does not read");
        };
        if e.hwcap() != 0 || e.hwcaps_subdir().is_some() {
            unsure!("/etc/ld.so.cache has hwcap entries");
        }
        if e.flags().lib_type() != Flags::libc6(e.arch()).lib_type() {
            unsure!(
                "/etc/ld.so.cache lists {} as another type than libc6 (glibc before 2.37 and \
                 after list such libraries differently)",
                e.path().display()
            );
        }
        let (Some(dir), Some(name)) = (e.path().parent(), e.path().file_name()) else {
            unsure!("entry {} is no file path", e.path().display());
        };
        let Some(d) = scan.get(root, dir) else {
            unsure!(
                "{} is in a directory ldconfig does not scan",
                e.path().display()
            );
        };
        if root.open(&d.name.join(name), OFlag::O_PATH).is_err() {
            unsure!("stale cache: {} is gone", e.path().display());
        }
        // An i386 entry's type is one every glibc would give it only where the file says
        // so (read: an image has few of them).
        if e.arch() == Arch::I386 {
            let elf = open_regular(root, &d.name.join(name))
                .ok()
                .and_then(|file| ElfInfo::read(proc_fd(&file)).ok());
            if !elf.as_ref().is_some_and(libc6_everywhere) {
                unsure!(
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
        unsure!("/etc/ld.so.cache is not in glibc's order");
    }

    // The new libraries: SONAME, architecture, link.
    let mut links = Vec::new();
    let mut linked_before = HashSet::new();
    let mut added = Vec::new();
    for lib in new {
        let (Some(dir), Some(file)) = (lib.target.parent(), lib.target.file_name()) else {
            unsure!("{} is no file path", lib.target.display());
        };
        let (soname, arch) = (lib.soname.clone(), lib.arch);
        let Some(d) = scan.get(root, dir) else {
            unsure!("{} is in a directory ldconfig does not scan", dir.display());
        };
        let flags = Flags::libc6(arch);
        if entries
            .iter()
            .chain(&added)
            .any(|e: &CacheEntry| e.soname == soname && e.flags == flags)
        {
            unsure!(
                "{} is in the cache already",
                String::from_utf8_lossy(&soname)
            );
        }
        let soname_os = OsStr::from_bytes(&soname);
        d.referenced.insert(file.to_owned());
        d.referenced.insert(soname_os.to_owned());
        if soname_os != file {
            match readlinkat(d.fd.as_fd(), soname_os) {
                Ok(to) if to == file => {
                    linked_before.insert(d.name.join(soname_os));
                }
                Err(Errno::ENOENT) => links.push(SonameLink::new(d, soname_os, file)?),
                _ => unsure!("{} exists", dir.join(soname_os).display()),
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
            unsure!("link {} is no file path", link.path.display());
        };
        let Some(d) = scan.get(root, dir) else {
            unsure!("{} is in a directory ldconfig does not scan", dir.display());
        };
        // The link as it is now: one the CDI hook expects may not be there.
        match readlinkat(d.fd.as_fd(), name) {
            Ok(now) if now == link.target => {}
            Err(Errno::ENOENT) => continue,
            _ => unsure!("{} is not the link -> {to}", link.path.display()),
        }
        let to_path = d.name.join(to);
        let target = added
            .iter()
            .find(|e| e.path == to_path.as_os_str().as_bytes());
        let dev = name.as_bytes().ends_with(b".so");
        let Some(target) = target.filter(|t| dev && t.soname.starts_with(name.as_bytes())) else {
            unsure!("link {} -> {to}", link.path.display());
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
            return Ok(Outcome::Unsure(why));
        }
    }

    // Stable: each new entry after the old ones it equals.
    let count = added.len();
    entries.extend(added);
    entries.sort_by(glibc_order);
    let bytes = write_cache(&entries, cache.format(), cache.generator());
    write_cache_and_links(root, &bytes, &links)?;
    Ok(Outcome::Updated { added: count })
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
