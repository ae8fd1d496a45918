//! The one way nvc reaches a path inside a tree it does not trust — a container's image, a
//! running container's root, the image's `/proc` and `/sys` in standalone mode.
//!
//! An [`InRoot`] holds the tree's root by descriptor. Paths in it are either opened by the
//! kernel with `RESOLVE_IN_ROOT` ([`InRoot::open`]), or walked one component at a time from
//! descriptors ([`InRoot::walk`], which [`InRoot::resolve`] and the executor's directory
//! creation use) where nvc needs the resolved path or creates what is missing. Both treat
//! the root as `/`: an absolute link restarts at the root, `..` stops there. An open refuses
//! magic links (`/proc/self/fd/...`); a walk reads each link itself, a magic one as the
//! text it shows, resolved inside the root like any other, and never lets the kernel
//! follow one. A walk goes back up by descriptors it holds, never by resolving a path again,
//! and takes at most 40 links and 4096 components. The kernel answers `EAGAIN` when a rename anywhere raced with a `..`
//! step of an in-root open (a container's processes can rename at will); every open here
//! retries it, in [`openat2_retrying`].
//!
//! The driver root is trusted (the host's, or one the runtime names): nvc-driver resolves in
//! it by path, with a cache (`nvc_driver::resolve_in_root`). Nothing here is used for it.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstatat};

use crate::Error;
use crate::apply::{at, fail};

/// Most symlinks followed in one walk, as the kernel's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;
/// Most components taken in one walk, links' targets included (40 links of 4 KiB of `x/..`
/// would otherwise be some 80 000 steps, each a system call or two).
const MAX_STEPS: usize = 4096;

/// A tree nvc does not trust, held by a descriptor of its root.
#[derive(Debug)]
pub(crate) struct InRoot {
    fd: OwnedFd,
}

impl InRoot {
    /// The tree at host path `root` (itself trusted: the runtime's rootfs, `/`).
    pub(crate) fn new(root: &Path) -> Result<Self, Errno> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        Ok(InRoot {
            fd: nix::fcntl::open(root, flags, Mode::empty())?,
        })
    }

    /// The tree whose root `fd` is (an `O_PATH` directory descriptor).
    pub(crate) fn from_fd(fd: OwnedFd) -> Self {
        InRoot { fd }
    }

    /// Opens `path`, resolved by the kernel as if the root were `/` (`RESOLVE_IN_ROOT`, no
    /// magic links, `EAGAIN` retried).
    pub(crate) fn open(&self, path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2_retrying(self.fd.as_fd(), &relative(path), how)
    }

    /// The real path of `path` in the tree (starting with `/`), links resolved as if the
    /// root were `/`, or `None` when a component is missing or not a directory.
    pub(crate) fn resolve(&self, path: &Path) -> Result<Option<PathBuf>, Error> {
        Ok(self.walk(path, false, |_, _| Ok(None))?.map(|(p, _)| p))
    }

    /// Walks `path` component by component from the root: each link is read (`readlinkat`)
    /// and its target walked in turn, absolute targets from the root, `..` never above it.
    /// A missing component is handed to `missing` with its directory's descriptor and its
    /// path (in the tree): it returns the descriptor to go on from (it created the entry),
    /// or `None` to end the walk with `None`. With `dirs_only`, every component must be a
    /// directory (else `ENOTDIR`, an error); without, the last may be anything, and a
    /// non-directory on the way ends the walk with `None`.
    ///
    /// Returns the real path in the tree and an `O_PATH` descriptor of what is there. The
    /// opens and link reads are fault points named for their calls (`open`, `readlink`).
    pub(crate) fn walk(
        &self,
        path: &Path,
        dirs_only: bool,
        mut missing: impl FnMut(&OwnedFd, &Path) -> Result<Option<OwnedFd>, Error>,
    ) -> Result<Option<(PathBuf, OwnedFd)>, Error> {
        // The descriptors of the directories of `dir`, one a component: `..` pops one (it
        // never goes above the root, and never resolves a path again).
        let mut dir = PathBuf::from("/");
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut todo: Vec<OsString> = parts(path).rev().collect();
        let (mut links, mut steps) = (0, 0);
        while let Some(name) = todo.pop() {
            steps += 1;
            if steps > MAX_STEPS {
                return Err(fail("resolve (too many components)", path)(Errno::ELOOP));
            }
            if name == ".." {
                if stack.pop().is_some() {
                    dir.pop();
                }
                continue;
            }
            if name == "." {
                continue;
            }
            let here = dir.join(&name);
            let cur = stack.last().unwrap_or(&self.fd);
            let next = match fstatat(cur.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st)
                    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK =>
                {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(fail("resolve", &here)(Errno::ELOOP));
                    }
                    let target = at("readlink", &here, || {
                        readlinkat(cur.as_fd(), name.as_os_str())
                    })?;
                    let target = PathBuf::from(target);
                    if target.is_absolute() {
                        stack.clear();
                        dir = PathBuf::from("/");
                    }
                    todo.extend(parts(&target).rev());
                    continue;
                }
                Ok(_) => {
                    let last = todo.is_empty() && !dirs_only;
                    let mut flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                    if !last {
                        flags |= OFlag::O_DIRECTORY;
                    }
                    match nvc_sys::fault::point("open", &here)
                        .and_then(|()| openat(cur.as_fd(), name.as_os_str(), flags, Mode::empty()))
                    {
                        Ok(next) => next,
                        Err(Errno::ENOTDIR) if !dirs_only => return Ok(None),
                        Err(e) => return Err(fail("open", &here)(e)),
                    }
                }
                Err(Errno::ENOENT) => match missing(cur, &here)? {
                    Some(made) => made,
                    None => return Ok(None),
                },
                Err(Errno::ENOTDIR) if !dirs_only => return Ok(None),
                Err(e) => return Err(fail("stat", &here)(e)),
            };
            stack.push(next);
            dir = here;
        }
        let fd = match stack.pop() {
            Some(fd) => fd,
            None => at("open", &dir, || {
                self.open(&dir, OFlag::O_PATH | OFlag::O_DIRECTORY)
            })?,
        };
        Ok(Some((dir, fd)))
    }
}

/// The components of `path` a walk takes: names, `..` (as a name); the root and `.` dropped.
fn parts(path: &Path) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

/// `path` made relative (only its normal components; `.` for none).
pub(crate) fn relative(path: &Path) -> PathBuf {
    let r: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if r.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        r
    }
}

/// `openat2`, retried when the kernel answers `EAGAIN`: with `RESOLVE_IN_ROOT` or
/// `RESOLVE_BENEATH` it does so when a rename or mount anywhere on the system raced with a
/// `..` step; 64 tries.
pub(crate) fn openat2_retrying(
    dir: BorrowedFd<'_>,
    path: &Path,
    how: OpenHow,
) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match openat2(dir, path, how) {
            Err(Errno::EAGAIN) if tries < 64 => tries += 1,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Renames anywhere make the kernel answer `EAGAIN` to an in-root resolution with `..`
    /// steps it raced with; a container's processes can rename at will, so every in-root
    /// open retries.
    #[test]
    fn dot_dot_steps_racing_renames_are_retried_not_failed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::create_dir(root.join("x")).unwrap();
        // `..` reaches the kernel through a link's target (paths are made relative first).
        std::os::unix::fs::symlink("../a/b/c/../../b/c/../../b/c/../..", root.join("a/l")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let renamer = {
            let (stop, root) = (Arc::clone(&stop), root.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::fs::rename(root.join("x"), root.join("y"));
                    let _ = std::fs::rename(root.join("y"), root.join("x"));
                }
            })
        };
        let path = Path::new("a/l/b/c");
        // Without the retry, an EAGAIN came within a quarter of a second here.
        let start = std::time::Instant::now();
        let opened = std::iter::repeat_with(|| {
            InRoot::new(&root).and_then(|r| r.open(path, OFlag::O_PATH | OFlag::O_DIRECTORY))
        })
        .take_while(|_| start.elapsed() < std::time::Duration::from_secs(2))
        .find(Result::is_err);
        stop.store(true, Ordering::Relaxed);
        renamer.join().unwrap();
        assert_eq!(opened.map(|r| r.map(drop)), None);
    }

    /// A walk treats the root as `/` whatever the image's links say — absolute targets,
    /// `..` past the root, loops, files used as directories — and agrees with the driver
    /// root's path resolver (nvc-driver's, by path) wherever that one answers.
    #[test]
    fn links_resolve_inside_the_root_and_never_out_of_it() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::write(root.join("usr/lib/x86_64-linux-gnu/libcuda.so.1"), b"").unwrap();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), b"image").unwrap();
        symlink(
            "x86_64-linux-gnu/libcuda.so.1",
            root.join("usr/lib/libcuda.so"),
        )
        .unwrap();
        symlink("/", root.join("host")).unwrap();
        symlink("../../../../../usr/lib", root.join("usr/up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        symlink("/proc/self/root", root.join("magic")).unwrap();
        let tree = InRoot::new(root).unwrap();
        let cases: [(&str, Option<&str>); 8] = [
            (
                "/usr/lib/libcuda.so",
                Some("/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
            ),
            ("/host/etc/passwd", Some("/etc/passwd")),
            (
                "/usr/up/libcuda.so",
                Some("/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
            ),
            ("/../../etc/passwd", Some("/etc/passwd")),
            ("/usr/lib/libcuda.so/x", None),
            ("/missing/x", None),
            ("/magic/etc/passwd", None),
            ("/", Some("/")),
        ];
        for (path, want) in cases {
            let got = tree.resolve(Path::new(path)).unwrap();
            assert_eq!(got.as_deref(), want.map(Path::new), "{path}");
            // (A file used as a directory is an error to the driver root's resolver.)
            if let Ok(oracle) = nvc_driver::resolve_in_root(root, Path::new(path)) {
                assert_eq!(got, oracle, "{path}: the two resolvers disagree");
            }
        }
        let err = tree.resolve(Path::new("/loop")).unwrap_err();
        assert!(err.to_string().contains("/loop"), "{err}");
        // What was resolved opens to the image's file, never the host's.
        let fd = tree
            .open(Path::new("/host/etc/passwd"), OFlag::O_RDONLY)
            .unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut File::from(fd), &mut text).unwrap();
        assert_eq!(text, "image");
    }

    /// An image cannot make a walk long: `..` steps go back by held descriptors, and a walk
    /// takes at most 4096 components however its links are chained.
    #[test]
    fn a_walk_is_bounded_whatever_the_links_say() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("x")).unwrap();
        let detour = "x/../".repeat(800);
        symlink(format!("{detour}x"), root.join("l3")).unwrap();
        symlink(format!("{detour}l3"), root.join("l2")).unwrap();
        symlink(format!("{detour}l2"), root.join("l1")).unwrap();
        let tree = InRoot::new(root).unwrap();
        assert_eq!(
            tree.resolve(Path::new("/l3")).unwrap().as_deref(),
            Some(Path::new("/x"))
        );
        let err = tree.resolve(Path::new("/l1")).unwrap_err();
        assert!(err.to_string().contains("too many components"), "{err}");
        assert!(err.to_string().contains("/l1"), "{err}");
    }
}
