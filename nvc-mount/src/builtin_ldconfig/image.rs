//! Reading the image as glibc's `ldconfig` reads it, inside its root ([`Root`]) and bounded
//! ([`Budget`]): its configuration, the directories it scans, their names and files; and
//! writing the new cache beside the old one.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{OFlag, readlinkat, renameat};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::unistd::{UnlinkatFlags, symlinkat, unlinkat};

use super::CommandLine;
use super::budget::{Budget, Refused, settle};
use crate::Error;
use crate::apply::{Root, fail};
use crate::ldconf::{self, Line};
use crate::ns::proc_fd;

/// The largest cache read (glibc's for a whole distribution is well under 1 MiB).
const CACHE_LIMIT: u64 = 16 << 20;
/// The largest `ld.so.conf` (or included file) read, and how deep includes may nest.
const CONF_LIMIT: u64 = 1 << 20;
const INCLUDE_DEPTH: usize = 8;
/// At most this many files are listed per directory before giving up (unsure).
const DIR_LIMIT: usize = 1 << 16;
/// At most this many directories are scanned (each holds a descriptor) before giving up
/// (unsure).
const SCAN_LIMIT: usize = 4096;
/// The longest `include` file name pattern matched (`NAME_MAX`: no longer name exists, and
/// each name costs name × pattern steps).
const PATTERN_LIMIT: usize = 255;

/// The bytes of the image's `/etc/ld.so.cache` (at most [`CACHE_LIMIT`]), or why not.
pub(super) fn read_cache(root: &Root) -> Result<Vec<u8>, String> {
    read_in(root, Path::new("/etc/ld.so.cache"), CACHE_LIMIT)
        .map_err(|e| format!("no readable /etc/ld.so.cache ({e})"))
}

/// A directory the scan reaches: the name it was reached by, its descriptor and inode, and
/// the names in it that the new cache accounts for.
pub(super) struct Scanned {
    pub(super) name: PathBuf,
    pub(super) fd: OwnedFd,
    pub(super) inode: (u64, u64),
    /// Named on the command line (the directories whose names `configure` keeps, so that
    /// links made there are undone after a failure).
    pub(super) command_line: bool,
    pub(super) referenced: HashSet<OsString>,
    /// The SONAMEs (keys) the cache lists in it.
    pub(super) sonames: HashSet<OsString>,
}

/// The directories the scan reaches, in order, and which of them each directory path named
/// by the cache or the plan is (by inode, looked up once per path: a cache names a few
/// directories in thousands of entries).
pub(super) struct Scan {
    pub(super) dirs: Vec<Scanned>,
    by_path: HashMap<PathBuf, Option<usize>>,
}

impl Scan {
    /// The scanned directory that `dir` (inside the root) is.
    pub(super) fn get(&mut self, root: &Root, dir: &Path) -> Option<&mut Scanned> {
        let at = match self.by_path.get(dir) {
            Some(&at) => at,
            None => {
                let inode = inode(root, dir);
                let at = self.dirs.iter().position(|s| Some(s.inode) == inode);
                self.by_path.insert(dir.to_path_buf(), at);
                at
            }
        };
        self.dirs.get_mut(at?)
    }
}

/// The directories `ldconfig` scans when run with `cmd`: its command line's directories, the
/// directories of `/etc/ld.so.conf` (and its includes), then glibc's trusted directories of
/// its platform — those that exist, each once, by inode,
/// under the first name it was reached by. `Ok(Err(reason))` where nvc is not sure to read
/// the configuration as glibc does.
///
/// # Errors
///
/// The configuration refused past a count of `budget`.
pub(super) fn scan(
    root: &Root,
    cmd: &CommandLine<'_>,
    budget: &mut Budget,
) -> Result<Result<Scan, String>, Error> {
    let mut conf = Vec::new();
    let conf_file = Path::new("/etc/ld.so.conf");
    if let Some(why) =
        settle(read_conf(root, conf_file, 0, &mut conf, budget))?.unwrap_or_else(Some)
    {
        return Ok(Err(why));
    }
    let mut command_line = scan_dirs(root, cmd.dirs.iter().copied());
    command_line.iter_mut().for_each(|d| d.command_line = true);
    let trusted = cmd.platform.trusted_dirs.iter().map(Path::new);
    let rest = scan_dirs(root, conf.iter().map(PathBuf::as_path).chain(trusted));
    let mut scan = Scan {
        dirs: Vec::new(),
        by_path: HashMap::new(),
    };
    let mut seen = HashSet::new();
    for d in command_line.into_iter().chain(rest) {
        if seen.insert(d.inode) {
            scan.dirs.push(d);
        }
        if scan.dirs.len() > SCAN_LIMIT {
            return Ok(Err(format!("more than {SCAN_LIMIT} directories to scan")));
        }
    }
    Ok(Ok(scan))
}
/// Opens `path` inside the root for reading if it is a regular file — checked on an
/// `O_PATH` descriptor first, so that no device node or FIFO the image placed there is ever
/// opened — then reopened through that descriptor (the thread's working directory is
/// `/proc/self/fd`, [`crate::ns`]).
pub(super) fn open_regular(root: &Root, path: &Path) -> Result<File, Errno> {
    let fd = root.open(path, OFlag::O_PATH)?;
    let st = fstat(fd.as_fd())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(Errno::EINVAL);
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let file = nix::fcntl::open(proc_fd(&fd).as_str(), flags, Mode::empty())?;
    Ok(File::from(file))
}

/// At most `limit` bytes of the regular file `path` inside the root.
fn read_in(root: &Root, path: &Path, limit: u64) -> Result<Vec<u8>, Errno> {
    let mut bytes = Vec::new();
    open_regular(root, path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    if bytes.len() as u64 > limit {
        return Err(Errno::EFBIG);
    }
    Ok(bytes)
}

/// Adds the directories of the configuration file `path` (and its includes) to `dirs`;
/// `Some(reason)` where it is not sure to read it as glibc does. A missing file is empty.
fn read_conf(
    root: &Root,
    path: &Path,
    depth: usize,
    dirs: &mut Vec<PathBuf>,
    budget: &mut Budget,
) -> Result<Option<String>, Refused> {
    if depth > INCLUDE_DEPTH {
        return Ok(Some(format!("{} nests includes too deep", path.display())));
    }
    budget.file()?;
    let text = match read_in(root, path, CONF_LIMIT) {
        Ok(bytes) => bytes,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Ok(Some(format!("{} does not read: {e}", path.display()))),
    };
    let lines = match ldconf::parse(&text) {
        Ok(lines) => lines,
        Err(why) => return Ok(Some(format!("{}: {why}", path.display()))),
    };
    budget.lines(lines.len())?;
    for line in lines {
        match line {
            Line::Dir(dir) => dirs.push(PathBuf::from(OsStr::from_bytes(dir))),
            Line::Include(pattern) => {
                let pattern = Path::new(OsStr::from_bytes(pattern));
                let pattern = match pattern.is_absolute() {
                    true => pattern.to_path_buf(),
                    false => path.parent().unwrap_or(Path::new("/")).join(pattern),
                };
                let files = match glob(root, &pattern, budget)? {
                    Ok(files) => files,
                    Err(why) => return Ok(Some(why)),
                };
                for file in files {
                    if let Some(why) = read_conf(root, &file, depth + 1, dirs, budget)? {
                        return Ok(Some(why));
                    }
                }
            }
        }
    }
    Ok(None)
}

/// The files matching `pattern` (wildcards `*` and `?` in its last component only), sorted
/// as glibc's `glob` sorts them; `Err(reason)` where nvc would not match it as glibc does.
fn glob(
    root: &Root,
    pattern: &Path,
    budget: &mut Budget,
) -> Result<Result<Vec<PathBuf>, String>, Refused> {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
        return Ok(Err(format!(
            "include {} is no file pattern",
            pattern.display()
        )));
    };
    if dir
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|b| b"*?[".contains(b))
    {
        return Ok(Err(format!(
            "include {}: wildcards in a directory",
            pattern.display()
        )));
    }
    if name.len() > PATTERN_LIMIT {
        return Ok(Err(format!(
            "include {}/...: a file name pattern of {} bytes (longer than {PATTERN_LIMIT})",
            dir.display(),
            name.len()
        )));
    }
    if name.as_bytes().iter().any(|b| b"[\\".contains(b)) {
        return Ok(Err(format!(
            "include {}: a bracket or escape pattern",
            pattern.display()
        )));
    }
    let Ok(fd) = root.open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY) else {
        return Ok(Ok(Vec::new()));
    };
    let names = match list(&fd, budget)? {
        Ok(names) => names,
        Err(e) => return Ok(Err(format!("{}: {e}", dir.display()))),
    };
    let mut found = Vec::new();
    for n in names {
        budget.time()?;
        if !n.as_bytes().starts_with(b".") && ldconf::wildcard(name.as_bytes(), n.as_bytes()) {
            found.push(dir.join(n));
        }
    }
    found.sort();
    Ok(Ok(found))
}

/// The directories that exist among `dirs` (inside the root), in order.
fn scan_dirs<'a>(root: &Root, dirs: impl Iterator<Item = &'a Path>) -> Vec<Scanned> {
    dirs.filter_map(|name| {
        let fd = root.open(name, OFlag::O_RDONLY | OFlag::O_DIRECTORY).ok()?;
        let st = fstat(fd.as_fd()).ok()?;
        Some(Scanned {
            name: name.to_path_buf(),
            fd,
            inode: (st.st_dev, st.st_ino),
            command_line: false,
            referenced: HashSet::new(),
            sonames: HashSet::new(),
        })
    })
    .collect()
}

/// The inode `path` leads to inside the root (links followed there).
pub(super) fn inode(root: &Root, path: &Path) -> Option<(u64, u64)> {
    let fd = root.open(path, OFlag::O_PATH).ok()?;
    let st = fstat(fd.as_fd()).ok()?;
    Some((st.st_dev, st.st_ino))
}

/// The names in a directory (at most [`DIR_LIMIT`], each taken from the budget).
pub(super) fn list(
    fd: &OwnedFd,
    budget: &mut Budget,
) -> Result<Result<Vec<OsString>, Errno>, Refused> {
    let mut dir = match Dir::openat(
        fd.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(dir) => dir,
        Err(e) => return Ok(Err(e)),
    };
    let mut names = Vec::new();
    for e in dir.iter() {
        budget.name()?;
        let e = match e {
            Ok(e) => e,
            Err(e) => return Ok(Err(e)),
        };
        let name = OsStr::from_bytes(e.file_name().to_bytes()).to_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
        if names.len() > DIR_LIMIT {
            return Ok(Err(Errno::E2BIG));
        }
    }
    Ok(Ok(names))
}

/// A SONAME link to make: `link -> file` in a scanned directory, through the descriptor the
/// scan read it by (not its name again: a container process cannot move it elsewhere in
/// between).
pub(super) struct SonameLink {
    dir: OwnedFd,
    path: PathBuf,
    file: OsString,
    /// The directory holds files the image's cache lists: it was the image's before any
    /// mount (one the plan creates on the way is left empty by a failed configure's undo, so
    /// nothing is staged there before the mounts are made).
    image_dir: bool,
}

impl SonameLink {
    /// `link -> file` in `d`.
    pub(super) fn new(d: &Scanned, link: &OsStr, file: &OsStr) -> Result<Self, Error> {
        let path = d.name.join(link);
        Ok(SonameLink {
            dir: keep_fd(&d.fd, &path)?,
            path,
            file: file.to_owned(),
            image_dir: !d.sonames.is_empty(),
        })
    }

    /// Removes the link if it is still the one made; what is left, if anything.
    fn remove(&self) -> Option<String> {
        let name = self.path.file_name()?;
        let now = readlinkat(self.dir.as_fd(), name).ok();
        (now.as_deref() == Some(self.file.as_os_str()))
            .then(|| unlinkat(self.dir.as_fd(), name, UnlinkatFlags::NoRemoveDir).err())
            .flatten()
            .map(|e| {
                format!(
                    "link {} made by the built-in update: {e}",
                    self.path.display()
                )
            })
    }
}

/// A second descriptor of the directory `fd`, to make or check `path` in it later.
pub(super) fn keep_fd(fd: &OwnedFd, path: &Path) -> Result<OwnedFd, Error> {
    fd.try_clone().map_err(|e| {
        fail("keep the directory of", path)(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
    })
}

/// The new cache written beside the image's (`/etc/ld.so.cache~nvc`) and the SONAME links
/// made in the image's own directories ([`stage`]): [`Staged::commit`] makes the other
/// links and renames the cache in place; dropped before, it removes what it made.
pub(super) struct Staged {
    etc: OwnedFd,
    /// The staged file's inode.
    file: (u64, u64),
    made: Vec<SonameLink>,
    later: Vec<SonameLink>,
    /// Renamed in place, or removed: nothing left for the drop to do.
    done: bool,
}

const STAGED: &str = "ld.so.cache~nvc";

/// Writes `bytes` beside the image's `/etc/ld.so.cache` and makes the SONAME `links` of
/// the image's own directories, as the owner may create them.
///
/// # Errors
///
/// The first write or link that fails: what was made before it is removed again.
pub(super) fn stage(root: &Root, bytes: &[u8], links: Vec<SonameLink>) -> Result<Staged, Error> {
    let etc = Path::new("/etc");
    let dir = root
        .open(etc, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .map_err(fail("open", etc))?;
    let path = etc.join(STAGED);
    root.may_create(&dir, &path)?;
    let _ = unlinkat(dir.as_fd(), STAGED, UnlinkatFlags::NoRemoveDir);
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(dir.as_fd(), STAGED, flags, Mode::from_bits_truncate(0o644))
        .map_err(fail("create", &path))?;
    let st = fstat(fd.as_fd()).map_err(fail("stat", &path))?;
    let (now, later) = links.into_iter().partition(|l| l.image_dir);
    let mut staged = Staged {
        etc: dir,
        file: (st.st_dev, st.st_ino),
        made: Vec::new(),
        later,
        done: false,
    };
    if let Err(e) = File::from(fd).write_all(bytes) {
        let e = fail("write", &path)(Errno::from_raw(e.raw_os_error().unwrap_or(0)));
        return Err(e.with_undo_left(staged.remove()));
    }
    if let Err(e) = staged.make(root, now) {
        return Err(e.with_undo_left(staged.remove()));
    }
    Ok(staged)
}

fn make_link(root: &Root, l: &SonameLink) -> Result<(), Error> {
    let Some(link) = l.path.file_name() else {
        return Err(fail("symlink", &l.path)(Errno::EINVAL));
    };
    root.may_create(&l.dir, &l.path)?;
    nvc_sys::fault::point("symlink", &l.path).map_err(fail("symlink", &l.path))?;
    symlinkat(l.file.as_os_str(), l.dir.as_fd(), link).map_err(fail("symlink", &l.path))
}

impl Staged {
    fn make(&mut self, root: &Root, links: Vec<SonameLink>) -> Result<(), Error> {
        for l in links {
            make_link(root, &l)?;
            self.made.push(l);
        }
        Ok(())
    }

    /// Makes the other links and renames the new cache over the image's: the last step that
    /// can fail, so nothing of the image's cache needs keeping.
    ///
    /// # Errors
    ///
    /// A link or the rename failed, or the staged file is no longer the one written: what
    /// was made is removed (the error lists what could not be), the image's cache is
    /// unchanged.
    pub(super) fn commit(mut self, root: &Root) -> Result<(), Error> {
        let later = std::mem::take(&mut self.later);
        let path = Path::new("/etc").join(STAGED);
        let renamed = self.make(root, later).and_then(|()| {
            let at = self.etc.as_fd();
            if inode_at(&self.etc, STAGED) != Some(self.file) {
                return Err(fail("rename", &path)(Errno::ESTALE));
            }
            nvc_sys::fault::point("rename", &path)
                .and_then(|()| renameat(at, STAGED, at, "ld.so.cache"))
                .map_err(fail("rename", &path))
        });
        match renamed {
            Ok(()) => {
                self.done = true;
                Ok(())
            }
            Err(e) => Err(e.with_undo_left(self.remove())),
        }
    }

    /// Removes the links made and the staged file (where they are still the ones made);
    /// what could not be removed.
    pub(super) fn undo(mut self) -> Vec<String> {
        self.remove()
    }

    fn remove(&mut self) -> Vec<String> {
        self.done = true;
        let mut left: Vec<String> = self.made.iter().filter_map(SonameLink::remove).collect();
        if inode_at(&self.etc, STAGED) == Some(self.file)
            && let Err(e) = unlinkat(self.etc.as_fd(), STAGED, UnlinkatFlags::NoRemoveDir)
        {
            left.push(format!("/etc/{STAGED} written by the built-in update: {e}"));
        }
        left
    }
}

impl Drop for Staged {
    /// Neither committed nor undone (a panic): what was made is removed.
    fn drop(&mut self) {
        if !self.done {
            self.remove();
        }
    }
}

/// The inode of `name` in the directory `dir` (not following a link).
fn inode_at(dir: &OwnedFd, name: &str) -> Option<(u64, u64)> {
    nix::sys::stat::fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .map(|st| (st.st_dev, st.st_ino))
}
