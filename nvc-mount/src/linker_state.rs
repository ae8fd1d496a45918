//! The linker state `ldconfig` (or the built-in update) changes, saved before the run and
//! put back after a failed one: the links added to the library directories and the image's
//! `/etc/ld.so.cache`.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, renameat};
use nix::sys::stat::{Mode, SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, linkat, unlinkat};

use crate::apply::{Root, fail};
use crate::ns::in_container_ns;
use crate::{Container, Error};

/// The linker state ldconfig changes, held by descriptor: the library directories with the
/// names they had, and the image's `/etc/ld.so.cache` kept by a hard link in its directory.
/// Nothing of the image is read or written back: the old cache entry — whatever it is, a
/// FIFO, a device node, a link, a huge file — is renamed back into place unread.
pub(crate) struct LinkerState {
    dirs: Vec<(OwnedFd, HashSet<OsString>)>,
    cache: Option<SavedCache>,
}

/// `/etc` and, when the image had a cache, the hard link to it and its inode.
struct SavedCache {
    etc: OwnedFd,
    kept: Option<(String, (u64, u64))>,
}

const CACHE: &str = "ld.so.cache";

/// At most this many names are kept per directory (an image's library directory has a few
/// thousand; a hostile one could have millions, listed in the host's memory).
const NAMES_LIMIT: usize = 1 << 18;

/// The names in the directory `dir`, read through its descriptor: all of them, or the error
/// (`E2BIG` past [`NAMES_LIMIT`]).
fn names(dir: &OwnedFd) -> nix::Result<HashSet<OsString>> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut entries = Dir::openat(dir.as_fd(), ".", flags, Mode::empty())?;
    let mut names = HashSet::new();
    for e in entries.iter() {
        let name = OsStr::from_bytes(e?.file_name().to_bytes()).to_owned();
        if name != "." && name != ".." {
            names.insert(name);
        }
        if names.len() > NAMES_LIMIT {
            return Err(Errno::E2BIG);
        }
    }
    Ok(names)
}

fn inode(dir: &OwnedFd, name: &str) -> nix::Result<(u64, u64)> {
    fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).map(|st| (st.st_dev, st.st_ino))
}

fn is_link(dir: &OwnedFd, name: &OsStr) -> bool {
    fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK)
}

impl LinkerState {
    pub(crate) fn save(container: &Container, dirs: &[&Path]) -> Result<Self, Error> {
        in_container_ns(container, || {
            let root = Root::of(container)?;
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
            // A directory that does not list now is refused before anything changed: the
            // undo would take every link in it for one the run added.
            let mut saved = Vec::with_capacity(dirs.len());
            for d in dirs {
                let Ok(fd) = root.open(d, flags) else {
                    continue;
                };
                let before = names(&fd).map_err(fail("list", d))?;
                saved.push((fd, before));
            }
            let etc = Path::new("/etc");
            let cache = match root.open(etc, flags) {
                Ok(etc) => {
                    // The hidden link is an entry nvc creates in the image's /etc.
                    root.may_create(&etc, Path::new("/etc/.ld.so.cache.nvc-*"))?;
                    Some(SavedCache::keep(etc)?)
                }
                Err(_) => None,
            };
            Ok(LinkerState { dirs: saved, cache })
        })
    }

    /// After the `run`: when it succeeded, the kept link to the old cache is dropped; when it
    /// failed, the links it added are removed and the old cache is put back, and the error
    /// says what could not be.
    pub(crate) fn settle<T>(
        &self,
        container: &Container,
        run: Result<T, Error>,
    ) -> Result<T, Error> {
        match run {
            Ok(run) => {
                let _ = self.release(container);
                Ok(run)
            }
            Err(e) => {
                let left = match self.restore(container) {
                    Ok(left) => left,
                    Err(r) => vec![format!("linker state not restored: {r}")],
                };
                Err(e.with_undo_left(left))
            }
        }
    }

    /// Removes the links ldconfig added and puts the old cache entry back. Best effort:
    /// returns what was left.
    fn restore(&self, container: &Container) -> Result<Vec<String>, Error> {
        in_container_ns(container, || {
            let mut left = Vec::new();
            for (dir, before) in &self.dirs {
                let now = match names(dir) {
                    Ok(now) => now,
                    Err(e) => {
                        left.push(format!("a library directory does not list: {e}"));
                        continue;
                    }
                };
                for name in now.difference(before) {
                    let how = UnlinkatFlags::NoRemoveDir;
                    if is_link(dir, name)
                        && let Err(e) = unlinkat(dir.as_fd(), name.as_os_str(), how)
                    {
                        left.push(format!("link {name:?} added by ldconfig: {e}"));
                    }
                }
            }
            if let Some(cache) = &self.cache {
                cache.put_back(&mut left);
            }
            Ok(left)
        })
    }

    /// Drops the kept cache entry after a successful run.
    fn release(&self, container: &Container) -> Result<(), Error> {
        in_container_ns(container, || {
            if let Some(SavedCache {
                etc,
                kept: Some((link, was)),
            }) = &self.cache
                && inode(etc, link) == Ok(*was)
            {
                let _ = unlinkat(etc.as_fd(), link.as_str(), UnlinkatFlags::NoRemoveDir);
            }
            Ok(())
        })
    }
}

impl SavedCache {
    /// Hard-links the image's cache entry (not following it) to a new hidden name in
    /// `/etc`, so the original survives ldconfig's rename over it.
    fn keep(etc: OwnedFd) -> Result<Self, Error> {
        let path = Path::new("/etc/ld.so.cache");
        let was = match inode(&etc, CACHE) {
            Ok(was) => was,
            Err(Errno::ENOENT) => return Ok(SavedCache { etc, kept: None }),
            Err(e) => return Err(fail("stat", path)(e)),
        };
        nvc_sys::fault::point("keep a link to", path).map_err(fail("keep a link to", path))?;
        for n in 0..16 {
            let link = format!(".ld.so.cache.nvc-{}-{n}", std::process::id());
            match linkat(
                etc.as_fd(),
                CACHE,
                etc.as_fd(),
                link.as_str(),
                AtFlags::empty(),
            ) {
                Ok(()) if inode(&etc, &link) == Ok(was) => {
                    return Ok(SavedCache {
                        etc,
                        kept: Some((link, was)),
                    });
                }
                // Swapped under us: keep nothing rather than the wrong thing.
                Ok(()) => {
                    let _ = unlinkat(etc.as_fd(), link.as_str(), UnlinkatFlags::NoRemoveDir);
                    return Err(fail("keep a link to", path)(Errno::EBUSY));
                }
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(fail("keep a link to", path)(e)),
            }
        }
        Err(fail("keep a link to", path)(Errno::EEXIST))
    }

    fn put_back(&self, left: &mut Vec<String>) {
        let etc = self.etc.as_fd();
        // What is left names where the image's cache is, for whoever repairs it.
        let not_put_back = |link: &str, why: &dyn std::fmt::Display| {
            format!("/etc/ld.so.cache not put back (the image's is kept as /etc/{link}): {why}")
        };
        if let Err(e) = nvc_sys::fault::point("undo: put back", Path::new("/etc/ld.so.cache")) {
            left.push(match &self.kept {
                Some((link, _)) => not_put_back(link, &e),
                None => format!("/etc/ld.so.cache written by ldconfig: {e}"),
            });
            return;
        }
        match &self.kept {
            Some((link, was)) if inode(&self.etc, link) == Ok(*was) => {
                // Still in place (ldconfig failed before writing a new one): rename(2) of
                // one hard link over another of the same file does nothing, so the kept
                // link is removed instead.
                let result = if inode(&self.etc, CACHE) == Ok(*was) {
                    unlinkat(etc, link.as_str(), UnlinkatFlags::NoRemoveDir)
                } else {
                    renameat(etc, link.as_str(), etc, CACHE)
                };
                if let Err(e) = result {
                    left.push(not_put_back(link, &e));
                }
            }
            Some((link, _)) => left.push(format!(
                "/etc/ld.so.cache not put back: /etc/{link} is no longer the image's cache"
            )),
            // The image had none: remove what ldconfig wrote, unless it is a directory.
            None => {
                if let Err(e) = unlinkat(etc, CACHE, UnlinkatFlags::NoRemoveDir)
                    && e != Errno::ENOENT
                {
                    left.push(format!("/etc/ld.so.cache written by ldconfig: {e}"));
                }
            }
        }
    }
}
