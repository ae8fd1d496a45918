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
//! written beside the old one and renamed over it. `configure` has kept the old cache and
//! the directories' names, so a failure later undoes links and cache as for `ldconfig`.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, readlinkat, renameat};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, symlinkat, unlinkat};
use nvc_ldcache::elf::ElfInfo;
use nvc_ldcache::{Arch, CacheEntry, Flags, Format, LdCache, write_cache};

use crate::apply::{Root, fail};
use crate::ldconf::{self, Line};
use crate::ns::proc_fd;
use crate::{ContainerDirs, Error};

/// The largest cache read (glibc's for a whole distribution is well under 1 MiB).
const CACHE_LIMIT: u64 = 16 << 20;
/// The largest `ld.so.conf` (or included file) read, and how deep includes may nest.
const CONF_LIMIT: u64 = 1 << 20;
const INCLUDE_DEPTH: usize = 8;
/// How many links in a row are followed from a cache entry to the file it names.
const LINK_HOPS: usize = 8;
/// At most this many files are listed per directory before giving up (unsure).
const DIR_LIMIT: usize = 1 << 16;

/// What one update may spend on the image, which it reads in nvc's own process: a hostile
/// `ld.so.conf` (includes that fan out, globs over huge directories) must neither hang nor
/// exhaust the process that embeds nvc. Real images use a tiny fraction (Debian's
/// configuration is 4 files and 6 lines; a distribution's library directory a few thousand
/// names). Past a count the update refuses the image: `configure` fails, naming the
/// budget, with the container unchanged. Past the time (a slow, lazily pulled image) it is
/// unsure, and `configure` falls back to `ldconfig` in its sandbox, which has its own limits.
struct Budget {
    deadline: Instant,
    /// Configuration files still to read.
    files: usize,
    /// Configuration lines still to read.
    lines: usize,
    /// Directory entries still to look at (`include` globs and the scan).
    names: usize,
}

/// The update stops: the count the image exceeded, or the time.
enum Refused {
    /// A count: the image is refused.
    Count(String),
    /// The time: unsure.
    Time(String),
}

/// At most this many directories are scanned (each holds a descriptor) before giving up
/// (unsure).
const SCAN_LIMIT: usize = 4096;
/// The longest `include` file name pattern matched (`NAME_MAX`: no longer name exists, and
/// each name costs name × pattern steps).
const PATTERN_LIMIT: usize = 255;

/// `r`, with the time running out made an unsure reason and a count a refusal.
fn settle(r: Result<Option<String>, Refused>) -> Result<Option<String>, Error> {
    match r {
        Ok(unsure) => Ok(unsure),
        Err(Refused::Time(why)) => Ok(Some(why)),
        Err(Refused::Count(why)) => Err(Error::Ldconfig {
            program: "built-in cache update".into(),
            what: format!(
                "refused the image's linker configuration: {why} (a hostile or broken image)"
            ),
            output: String::new(),
            error: None,
        }),
    }
}

impl Budget {
    const TIME: Duration = Duration::from_secs(1);
    const FILES: usize = 256;
    const LINES: usize = 1 << 16;
    const NAMES: usize = 1 << 18;

    fn new() -> Self {
        Budget {
            deadline: Instant::now() + Self::TIME,
            files: Self::FILES,
            lines: Self::LINES,
            names: Self::NAMES,
        }
    }

    /// Takes `n` from `left`, or refuses naming `what` and its limit.
    fn take(left: &mut usize, n: usize, what: &str, limit: usize) -> Result<(), Refused> {
        *left = left
            .checked_sub(n)
            .ok_or_else(|| Refused::Count(format!("more than {limit} {what}")))?;
        Ok(())
    }

    fn file(&mut self) -> Result<(), Refused> {
        self.time()?;
        Self::take(&mut self.files, 1, "configuration files", Self::FILES)
    }

    fn lines(&mut self, n: usize) -> Result<(), Refused> {
        Self::take(&mut self.lines, n, "configuration lines", Self::LINES)
    }

    fn name(&mut self) -> Result<(), Refused> {
        if self.names.is_multiple_of(1024) {
            self.time()?;
        }
        Self::take(&mut self.names, 1, "directory entries", Self::NAMES)
    }

    fn time(&self) -> Result<(), Refused> {
        if Instant::now() > self.deadline {
            return Err(Refused::Time(format!(
                "reading the image took more than {} s",
                Self::TIME.as_secs()
            )));
        }
        Ok(())
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
        match (elf.cache_arch(), elf.soname, elf.abi_tag) {
            (Some(arch), Some(soname), None) => Ok(NewLibrary {
                target: target.to_path_buf(),
                soname,
                arch,
            }),
            _ => Err(format!(
                "{} has no SONAME or architecture, or an ABI note",
                source.display()
            )),
        }
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

/// What the update did.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The cache was rewritten with `added` entries more.
    Updated { added: usize },
    /// It could not prove the result equal to `ldconfig`'s: why.
    Unsure(String),
}

/// A directory the scan reaches: the name it was reached by, its descriptor and inode, and
/// the names in it that the new cache accounts for.
struct Scanned {
    name: PathBuf,
    fd: OwnedFd,
    inode: (u64, u64),
    referenced: HashSet<OsString>,
    /// The SONAMEs (keys) the cache lists in it.
    sonames: HashSet<OsString>,
}

/// The directories the scan reaches, in order, and which of them each directory path named
/// by the cache or the plan is (by inode, looked up once per path: a cache names a few
/// directories in thousands of entries).
struct Scan {
    dirs: Vec<Scanned>,
    by_path: HashMap<PathBuf, Option<usize>>,
}

impl Scan {
    /// The scanned directory that `dir` (inside the root) is.
    fn get(&mut self, root: &Root, dir: &Path) -> Option<&mut Scanned> {
        let at = match self.by_path.get(dir) {
            Some(&at) => at,
            None => {
                let inode = inode_in(root, dir);
                let at = self.dirs.iter().position(|s| Some(s.inode) == inode);
                self.by_path.insert(dir.to_path_buf(), at);
                at
            }
        };
        self.dirs.get_mut(at?)
    }
}

macro_rules! unsure {
    ($($arg:tt)*) => { return Ok(Outcome::Unsure(format!($($arg)*))) };
}

/// Updates the cache of the image at `root` for `new` libraries, scanning as `ldconfig` run
/// with the image's `dirs.libs` and `dirs.libs32` on its command line: those, the configured
/// directories, then glibc's trusted directories of `dirs.platform`. Call inside the container's
/// mount namespace, as its owner ([`crate::ns`]).
///
/// # Errors
///
/// A failure writing the new cache or a link (the old cache is then in place); everything
/// that makes the result uncertain is [`Outcome::Unsure`] instead.
pub(crate) fn update(
    root: &Root,
    dirs: &ContainerDirs,
    new: &[NewLibrary],
    new_links: &[NewLink],
) -> Result<Outcome, Error> {
    let etc = Path::new("/etc");
    let Ok(bytes) = read_in(root, &etc.join("ld.so.cache"), CACHE_LIMIT) else {
        unsure!("no readable /etc/ld.so.cache");
    };
    let Ok(cache) = LdCache::parse(&bytes) else {
        unsure!("/etc/ld.so.cache does not parse");
    };
    if cache.format() == Format::Old {
        unsure!("/etc/ld.so.cache is in the old format");
    }
    let mut budget = Budget::new();
    let mut conf = Vec::new();
    let conf_file = Path::new("/etc/ld.so.conf");
    if let Some(why) = settle(read_conf(root, conf_file, 0, &mut conf, &mut budget))? {
        return Ok(Outcome::Unsure(why));
    }
    // Command line, configuration, trusted directories: each once, by inode.
    let order = [dirs.libs.as_path(), dirs.libs32.as_path()].into_iter();
    let order = order.chain(conf.iter().map(PathBuf::as_path));
    let trusted = dirs.platform.trusted_dirs.iter().map(Path::new);
    let mut scan = Scan {
        dirs: Vec::new(),
        by_path: HashMap::new(),
    };
    let mut seen = HashSet::new();
    for d in scan_dirs(root, order.chain(trusted)) {
        if seen.insert(d.inode) {
            scan.dirs.push(d);
        }
        if scan.dirs.len() > SCAN_LIMIT {
            unsure!("more than {SCAN_LIMIT} directories to scan");
        }
    }

    // The old entries, under the scan's names of their directories.
    let mut entries = Vec::with_capacity(cache.len() + new.len());
    for e in cache.entries() {
        let Ok(e) = e else {
            unsure!("an entry of /etc/ld.so.cache does not read");
        };
        if e.hwcap() != 0 || e.hwcaps_subdir().is_some() {
            unsure!("/etc/ld.so.cache has hwcap entries");
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
                Err(Errno::ENOENT) => {
                    links.push((d.name.clone(), soname_os.to_owned(), file.to_owned()))
                }
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

    // The development links: `ldconfig` lists a link `NAME.so` to a library whose SONAME
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
        if let Some(why) = settle(unlisted_library(
            root,
            d,
            dirs.platform.hwcap_dirs,
            &mut budget,
        ))? {
            return Ok(Outcome::Unsure(why));
        }
    }

    let count = added.len();
    for e in added {
        let at = entries.partition_point(|x| glibc_order(x, &e) != Ordering::Greater);
        entries.insert(at, e);
    }
    let bytes = write_cache(&entries, cache.format(), cache.generator());
    write_cache_file(root, etc, &bytes)?;
    for (dir, link, file) in &links {
        let path = dir.join(link);
        let d = root
            .open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(fail("open", dir))?;
        root.may_create(&d, &path)?;
        symlinkat(file.as_os_str(), d.as_fd(), link.as_os_str()).map_err(fail("symlink", &path))?;
    }
    Ok(Outcome::Updated { added: count })
}

/// glibc's cache order (`ldconfig`'s `compare`): names by `_dl_cache_libcmp`, descending,
/// then flags and OS version descending (no hwcap entries here).
fn glibc_order(a: &CacheEntry, b: &CacheEntry) -> Ordering {
    libcmp(&b.soname, &a.soname)
        .then(b.flags.0.cmp(&a.flags.0))
        .then(b.osversion.cmp(&a.osversion))
}

/// glibc's `_dl_cache_libcmp`: digit runs compare as numbers, a digit sorts after a
/// non-digit, other bytes as bytes.
fn libcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (n, di) = number(a.get(i..).unwrap_or_default());
                let (m, dj) = number(b.get(j..).unwrap_or_default());
                if n != m {
                    return n.cmp(&m);
                }
                (i, j) = (i + di, j + dj);
            }
            (Some(x), Some(_)) if x.is_ascii_digit() => return Ordering::Greater,
            (Some(_), Some(y)) if y.is_ascii_digit() => return Ordering::Less,
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => (i, j) = (i + 1, j + 1),
        }
    }
}

/// The number a digit run starts with (saturating) and its length.
fn number(s: &[u8]) -> (u64, usize) {
    let digits = s.iter().take_while(|c| c.is_ascii_digit());
    let n = digits.clone().fold(0u64, |n, c| {
        n.saturating_mul(10).saturating_add(u64::from(c - b'0'))
    });
    (n, digits.count())
}

/// Opens `path` inside the root for reading if it is a regular file — checked on an
/// `O_PATH` descriptor first, so that no device node or FIFO the image placed there is ever
/// opened — then reopened through that descriptor (the thread's working directory is
/// `/proc/self/fd`, [`crate::ns`]).
fn open_regular(root: &Root, path: &Path) -> Result<File, Errno> {
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
            referenced: HashSet::new(),
            sonames: HashSet::new(),
        })
    })
    .collect()
}

/// The inode of directory `dir` inside the root.
fn inode_in(root: &Root, dir: &Path) -> Option<(u64, u64)> {
    let fd = root.open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY).ok()?;
    let st = fstat(fd.as_fd()).ok()?;
    Some((st.st_dev, st.st_ino))
}

/// The names in a directory (at most [`DIR_LIMIT`], each taken from the budget).
fn list(fd: &OwnedFd, budget: &mut Budget) -> Result<Result<Vec<OsString>, Errno>, Refused> {
    let mut dir = match Dir::openat(
        fd.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
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

/// Writes `bytes` as `/etc/ld.so.cache`: a new file beside it, renamed over it.
fn write_cache_file(root: &Root, etc: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = root
        .open(etc, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .map_err(fail("open", etc))?;
    let tmp = "ld.so.cache~nvc";
    root.may_create(&dir, &etc.join(tmp))?;
    let _ = unlinkat(dir.as_fd(), tmp, UnlinkatFlags::NoRemoveDir);
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let path = etc.join(tmp);
    let fd = nix::fcntl::openat(dir.as_fd(), tmp, flags, Mode::from_bits_truncate(0o644))
        .map_err(fail("create", &path))?;
    let written = File::from(fd).write_all(bytes);
    if let Err(e) = written {
        let _ = unlinkat(dir.as_fd(), tmp, UnlinkatFlags::NoRemoveDir);
        return Err(fail("write", &path)(Errno::from_raw(
            e.raw_os_error().unwrap_or(0),
        )));
    }
    renameat(dir.as_fd(), tmp, dir.as_fd(), "ld.so.cache").map_err(|e| {
        let _ = unlinkat(dir.as_fd(), tmp, UnlinkatFlags::NoRemoveDir);
        fail("rename", &path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libcmp_is_glibcs() {
        use Ordering::*;
        assert_eq!(libcmp(b"libc.so.6", b"libc.so.6"), Equal);
        assert_eq!(libcmp(b"libfoo.so.10", b"libfoo.so.9"), Greater);
        assert_eq!(libcmp(b"libfoo.so.1", b"libfoo.so"), Greater);
        assert_eq!(libcmp(b"lib2", b"liba"), Greater);
        assert_eq!(libcmp(b"libA", b"liba"), Less);
    }
}
