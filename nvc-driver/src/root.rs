//! Resolving paths inside a driver root, as if it were `/` (`RESOLVE_IN_ROOT` semantics).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::Error;

/// Most symlinks followed in one resolution, as the kernel's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;

/// Resolves `path` inside `root` and returns the root-relative real path (starting with
/// `/`), or `None` when a component does not exist.
///
/// Symlinks are followed as if `root` were `/`: absolute targets restart at `root`, and `..`
/// never climbs above it, so a link inside the root that points at `/etc/passwd` resolves to
/// `root/etc/passwd`, never to the host's. This is the discovery-time resolver (upstream's
/// `path_resolve`); the mount engine re-resolves by file descriptor.
///
/// # Errors
///
/// [`Error::Resolve`] for an I/O error other than "not found" (permission denied included),
/// or a symlink loop.
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<Option<PathBuf>, Error> {
    Resolver::new(root).resolve(path)
}

/// What `lstat` (and, for a link, `readlink`) found at one host path.
#[derive(Debug, Clone)]
enum Node {
    Missing,
    Plain,
    Link(PathBuf),
}

/// [`resolve_in_root`] for many paths of one root: each host path is looked at once.
///
/// Discovery resolves some forty library paths that share their directories
/// (`/usr/lib/x86_64-linux-gnu/...`, each one walked component by component) and often the
/// same link twice (`libX.so` and `libX.so.1` both lead to `libX.so.<version>`). The root is
/// the host's or a driver root the runtime trusts, so it does not change under one probe.
#[derive(Debug)]
pub(crate) struct Resolver<'r> {
    root: &'r Path,
    seen: HashMap<PathBuf, Node>,
}

impl<'r> Resolver<'r> {
    pub(crate) fn new(root: &'r Path) -> Self {
        Resolver {
            root,
            seen: HashMap::new(),
        }
    }

    /// The root this resolver resolves in.
    pub(crate) fn root(&self) -> &'r Path {
        self.root
    }

    /// [`resolve_in_root`] in this resolver's root.
    pub(crate) fn resolve(&mut self, path: &Path) -> Result<Option<PathBuf>, Error> {
        let root = self.root;
        let fail = |source: io::Error| Error::Resolve {
            root: root.to_path_buf(),
            path: path.to_path_buf(),
            source,
        };
        // Components still to walk, last first; what has been resolved so far.
        let mut todo: Vec<Vec<u8>> = components(path.as_os_str().as_bytes());
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match c.as_slice() {
                b"." => continue,
                b".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            done.push(c);
            let target = match self.look(join(root, &done)).map_err(fail)? {
                Node::Missing => return Ok(None),
                Node::Plain => continue,
                Node::Link(target) => target,
            };
            links += 1;
            if links > MAX_LINKS {
                return Err(fail(io::Error::from_raw_os_error(40))); // ELOOP
            }
            done.pop();
            if target.is_absolute() {
                done.clear();
            }
            todo.extend(components(target.as_os_str().as_bytes()));
        }
        Ok(Some(join(Path::new("/"), &done)))
    }

    /// What is at host path `here` (every component before its last already resolved).
    fn look(&mut self, here: PathBuf) -> io::Result<Node> {
        if let Some(node) = self.seen.get(&here) {
            return Ok(node.clone());
        }
        let node = match fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => Node::Link(fs::read_link(&here)?),
            Ok(_) => Node::Plain,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Node::Missing,
            Err(e) => return Err(e),
        };
        self.seen.insert(here, node.clone());
        Ok(node)
    }
}

/// The host path of `path`, a path inside `root` (`/usr/lib` in root `/run/driver` is
/// `/run/driver/usr/lib`). Only for paths already resolved with [`resolve_in_root`].
#[must_use]
pub fn host_path(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The components of a path, reversed (so that `pop` yields the first).
fn components(path: &[u8]) -> Vec<Vec<u8>> {
    let mut parts: Vec<Vec<u8>> = Path::new(OsStr::from_bytes(path))
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes().to_vec()),
            Component::ParentDir => Some(b"..".to_vec()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    parts.reverse();
    parts
}

fn join(base: &Path, parts: &[Vec<u8>]) -> PathBuf {
    let mut p = base.to_path_buf();
    for part in parts {
        p.push(OsStr::from_bytes(part));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib64")).unwrap();
        fs::write(root.join("usr/lib64/libcuda.so.550.54.14"), b"x").unwrap();
        symlink("libcuda.so.550.54.14", root.join("usr/lib64/libcuda.so.1")).unwrap();
        symlink("/usr/lib64", root.join("lib64")).unwrap();
        symlink("../../../../../../etc", root.join("usr/lib64/escape")).unwrap();
        symlink("/", root.join("usr/lib64/top")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), b"root's own").unwrap();
        symlink("loop", root.join("loop")).unwrap();

        // Each path on its own, then all through one resolver that remembers what it saw
        // (discovery's): the same answers, a cached link loop still a loop.
        let mut shared = Resolver::new(root);
        for fresh in [true, false] {
            let mut r = |p: &str| {
                if fresh {
                    resolve_in_root(root, Path::new(p))
                } else {
                    shared.resolve(Path::new(p))
                }
            };
            check(&mut r);
        }
    }

    fn check(r: &mut impl FnMut(&str) -> Result<Option<PathBuf>, Error>) {
        assert_eq!(
            r("/lib64/libcuda.so.1").unwrap().unwrap(),
            Path::new("/usr/lib64/libcuda.so.550.54.14")
        );
        // `..` applies to the resolved link target, as in the kernel: lib64/.. is /usr.
        assert_eq!(
            r("lib64/../lib64/./").unwrap().unwrap(),
            Path::new("/usr/lib64")
        );
        assert_eq!(r("lib64/../usr/lib64").unwrap(), None);
        assert_eq!(
            r("/usr/lib64/escape/passwd").unwrap().unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            r("/usr/lib64/top/etc/passwd").unwrap().unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            r("/../../etc/passwd").unwrap().unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(r("/usr/lib64/libnope.so").unwrap(), None);
        assert_eq!(r("/").unwrap().unwrap(), Path::new("/"));
        let err = r("/loop/x").unwrap_err();
        assert!(err.to_string().contains("loop"), "{err}");
    }
}
