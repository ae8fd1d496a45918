//! Applying a [`MountPlan`] inside a container, confined to its root, undone on failure.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, symlinkat, unlinkat, write};

use crate::ns::in_container_ns;
use crate::plan::{MountFlags, MountKind, MountPlan, Op};
use crate::{Container, Error};

/// What applying a plan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounted {
    /// Container paths mounted, in order.
    pub mounts: Vec<PathBuf>,
    /// Container paths created (mountpoints, directories, links), in order.
    pub created: Vec<PathBuf>,
    /// Steps skipped because they were done before (a second `configure`): binds whose
    /// target already shows the source, a tmpfs already mounted, files already written.
    pub already: Vec<PathBuf>,
    /// Device cgroup rules of the plan, for the cgroup step.
    pub device_rules: Vec<(u32, u32)>,
}

/// The container's root, opened once, and whom created files belong to.
pub(crate) struct Root {
    fd: OwnedFd,
    uid: u32,
    gid: u32,
}

pub(crate) fn fail(op: &'static str, path: &Path) -> impl FnOnce(Errno) -> Error {
    let path = path.to_path_buf();
    move |errno| Error::Apply { op, path, errno }
}

fn rel(path: &Path) -> PathBuf {
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

pub(crate) fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

impl Root {
    /// Opens `path` inside the root, symlinks resolved as if the root were `/`. The kernel
    /// answers `EAGAIN` when a mount or rename anywhere raced with a `..` step; that is
    /// retried.
    /// Opens the container's root; call inside its mount namespace.
    pub(crate) fn of(container: &Container) -> Result<Self, Error> {
        let fd = nix::fcntl::open(
            &container.rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(fail("open", &container.rootfs))?;
        Ok(Root {
            fd,
            uid: container.uid,
            gid: container.gid,
        })
    }

    pub(crate) fn open(&self, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let path = rel(path);
        let mut tries = 0;
        loop {
            match openat2(self.fd.as_fd(), &path, how) {
                Err(Errno::EAGAIN) if tries < 64 => tries += 1,
                other => return other,
            }
        }
    }

    fn chown(&self, dir: &OwnedFd, name: &Path) -> nix::Result<()> {
        fchownat(
            dir.as_fd(),
            name,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
    }

    /// Opens directory `dir`, creating missing components (0755, owned by the container).
    /// Symlinks on the way are followed as if the root were `/` (absolute targets restart
    /// at the root, `..` stops there), so an image whose `/usr/lib64` links to a host path
    /// gets that path created inside itself.
    fn mkdir_all(&self, dir: &Path, done: &mut Mounted) -> Result<OwnedFd, Error> {
        let root_dir = |at: &Path| {
            self.open(at, OFlag::O_PATH | OFlag::O_DIRECTORY)
                .map_err(fail("open", at))
        };
        let mut at = PathBuf::from("/");
        let mut fd = root_dir(&at)?;
        let mut todo: Vec<PathBuf> = rel(dir)
            .components()
            .map(|c| PathBuf::from(c.as_os_str()))
            .rev()
            .collect();
        let mut links = 0;
        while let Some(name) = todo.pop() {
            if name == Path::new("..") {
                at.pop();
                fd = root_dir(&at)?;
                continue;
            }
            if name == Path::new(".") {
                continue;
            }
            let here = at.join(&name);
            let dir_flags =
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            match fstatat(fd.as_fd(), &name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st)
                    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK =>
                {
                    links += 1;
                    if links > 40 {
                        return Err(fail("resolve", &here)(Errno::ELOOP));
                    }
                    let target = PathBuf::from(
                        readlinkat(fd.as_fd(), &name).map_err(fail("readlink", &here))?,
                    );
                    if target.is_absolute() {
                        at = PathBuf::from("/");
                        fd = root_dir(&at)?;
                    }
                    let parts: Vec<PathBuf> = target
                        .components()
                        .filter_map(|c| match c {
                            Component::Normal(n) => Some(PathBuf::from(n)),
                            Component::ParentDir => Some(PathBuf::from("..")),
                            _ => None,
                        })
                        .collect();
                    todo.extend(parts.into_iter().rev());
                }
                Ok(_) => {
                    fd = openat(fd.as_fd(), &name, dir_flags, Mode::empty())
                        .map_err(fail("open", &here))?;
                    at = here;
                }
                Err(Errno::ENOENT) => {
                    mkdirat(fd.as_fd(), &name, Mode::from_bits_truncate(0o755))
                        .map_err(fail("mkdir", &here))?;
                    self.chown(&fd, &name).map_err(fail("chown", &here))?;
                    done.created.push(here.clone());
                    fd = openat(fd.as_fd(), &name, dir_flags, Mode::empty())
                        .map_err(fail("open", &here))?;
                    at = here;
                }
                Err(e) => return Err(fail("stat", &here)(e)),
            }
        }
        Ok(fd)
    }

    /// The parent directory of `target` (created as needed) and the final name.
    fn parent<'t>(
        &self,
        target: &'t Path,
        done: &mut Mounted,
    ) -> Result<(OwnedFd, &'t Path), Error> {
        let name = target
            .file_name()
            .map(Path::new)
            .ok_or_else(|| fail("resolve", target)(Errno::EINVAL))?;
        let parent = self.mkdir_all(target.parent().unwrap_or(Path::new("/")), done)?;
        Ok((parent, name))
    }

    /// Makes the mountpoint for a bind of `source` (a directory or an empty file with the
    /// source's permissions), never through a symlink; an existing one of the same kind is
    /// reused.
    fn mountpoint(
        &self,
        source: &fs::Metadata,
        target: &Path,
        done: &mut Mounted,
    ) -> Result<OwnedFd, Error> {
        let (dir, name) = self.parent(target, done)?;
        let mode = Mode::from_bits_truncate(source.mode() & 0o777);
        match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
                if kind == SFlag::S_IFLNK || (kind == SFlag::S_IFDIR) != source.is_dir() {
                    return Err(fail("refusing to mount over", target)(Errno::EEXIST));
                }
            }
            Err(Errno::ENOENT) => {
                if source.is_dir() {
                    mkdirat(dir.as_fd(), name, mode).map_err(fail("mkdir", target))?;
                } else {
                    let flags = OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC;
                    drop(openat(dir.as_fd(), name, flags, mode).map_err(fail("create", target))?);
                }
                self.chown(&dir, name).map_err(fail("chown", target))?;
                done.created.push(target.to_path_buf());
            }
            Err(e) => return Err(fail("stat", target)(e)),
        }
        openat(
            dir.as_fd(),
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(fail("open", target))
    }
}

impl Root {
    /// Binds `source` (a host path, or `/proc/self/fd/N`) onto `target` in the container,
    /// then remounts it with `kind`'s flags; skipped when `target` already shows `source`.
    fn bind(
        &self,
        source: &str,
        target: &Path,
        kind: MountKind,
        done: &mut Mounted,
    ) -> Result<(), Error> {
        let meta = fs::metadata(source).map_err(|e| {
            fail("stat", Path::new(source))(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
        })?;
        let point = self.mountpoint(&meta, target, done)?;
        let st = nix::sys::stat::fstat(point.as_fd()).map_err(fail("stat", target))?;
        if st.st_dev == meta.dev() && st.st_ino == meta.ino() {
            done.already.push(target.to_path_buf());
            return Ok(());
        }
        mount(
            Some(source),
            fd_path(&point).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(fail("bind-mount", target))?;
        done.mounts.push(target.to_path_buf());
        // Reopen: the name now leads to the mount's root, which is what remount needs.
        let mounted = self
            .open(target, OFlag::O_PATH)
            .map_err(fail("open", target))?;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ms_flags(kind.flags());
        mount(
            None::<&str>,
            fd_path(&mounted).as_str(),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(fail("remount", target))
    }
}

fn ms_flags(f: MountFlags) -> MsFlags {
    let mut m = MsFlags::empty();
    for (on, flag) in [
        (f.read_only, MsFlags::MS_RDONLY),
        (f.nosuid, MsFlags::MS_NOSUID),
        (f.nodev, MsFlags::MS_NODEV),
        (f.noexec, MsFlags::MS_NOEXEC),
    ] {
        if on {
            m |= flag;
        }
    }
    m
}

impl MountPlan {
    /// Applies the plan in `container`'s mount namespace (on a dedicated thread, see
    /// [`in_mount_ns`]). Every container path is resolved inside the container's root with
    /// `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so the image's symlinks cannot
    /// lead a mount onto the host; mountpoints are created as the container's owner and never
    /// through a symlink; binds are bind + remount by file descriptor. A second `configure` of
    /// the same container adds nothing: binds whose target already shows their source, a
    /// tmpfs already mounted and files already written are skipped ([`Mounted::already`]). Any failure
    /// undoes what was done, in reverse, and removes what was created.
    ///
    /// Device cgroup rules are returned, not applied (the cgroup step does that).
    ///
    /// # Errors
    ///
    /// [`Error::Apply`] naming the operation and container path, or [`Error::Namespace`].
    ///
    /// # Kernel requirements
    ///
    /// `openat2` (Linux 5.6).
    pub fn apply(&self, container: &Container) -> Result<Mounted, Error> {
        in_container_ns(container, || {
            let root = Root::of(container)?;
            let mut done = Mounted::default();
            match self.apply_all(&root, &mut done) {
                Ok(()) => Ok(done),
                Err(e) => {
                    undo(&root, &done);
                    Err(e)
                }
            }
        })
    }

    fn apply_all(&self, root: &Root, done: &mut Mounted) -> Result<(), Error> {
        for op in &self.ops {
            match op {
                Op::Tmpfs { target, mode } => {
                    let dir = root.mkdir_all(target, done)?;
                    // Already a tmpfs mounted here (a second configure): keep it.
                    let parent = root.mkdir_all(target.parent().unwrap_or(Path::new("/")), done)?;
                    let dev = |fd: &OwnedFd| nix::sys::stat::fstat(fd.as_fd()).map(|st| st.st_dev);
                    let is_tmpfs = nix::sys::statfs::fstatfs(dir.as_fd())
                        .is_ok_and(|st| st.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
                    if is_tmpfs
                        && dev(&dir).map_err(fail("stat", target))?
                            != dev(&parent).map_err(fail("stat", target))?
                    {
                        done.already.push(target.clone());
                        continue;
                    }
                    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
                    let data = format!("mode={mode:o}");
                    mount(
                        Some("tmpfs"),
                        fd_path(&dir).as_str(),
                        Some("tmpfs"),
                        flags,
                        Some(data.as_str()),
                    )
                    .map_err(fail("mount tmpfs on", target))?;
                    done.mounts.push(target.clone());
                }
                Op::WriteFile {
                    target,
                    contents,
                    mode,
                } => {
                    let (dir, name) = root.parent(target, done)?;
                    let flags = OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC;
                    let file =
                        match openat(dir.as_fd(), name, flags, Mode::from_bits_truncate(*mode)) {
                            Ok(file) => file,
                            Err(Errno::EEXIST) => {
                                done.already.push(target.clone());
                                continue;
                            }
                            Err(e) => return Err(fail("create", target)(e)),
                        };
                    let mut rest = contents.as_slice();
                    while !rest.is_empty() {
                        let n = write(&file, rest).map_err(fail("write", target))?;
                        rest = rest.get(n..).unwrap_or_default();
                    }
                    root.chown(&dir, name).map_err(fail("chown", target))?;
                }
                Op::Bind {
                    source,
                    target,
                    kind,
                } => root.bind(&source.to_string_lossy(), target, *kind, done)?,
                Op::BindFromImage { source, target } => {
                    // Opened inside the root: the image cannot swap in a link to the host.
                    let src = root
                        .open(source, OFlag::O_PATH)
                        .map_err(fail("open", source))?;
                    root.bind(&fd_path(&src), target, MountKind::File, done)?;
                }
                Op::Symlink { path, target } => {
                    let (dir, name) = root.parent(path, done)?;
                    // An entry already there (the image's own, or ours from before) stays.
                    if let Err(Errno::ENOENT) =
                        fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    {
                        symlinkat(target.as_path(), dir.as_fd(), name)
                            .map_err(fail("symlink", path))?;
                        done.created.push(path.clone());
                    }
                }
                Op::AllowDevice { major, minor } => done.device_rules.push((*major, *minor)),
            }
        }
        Ok(())
    }
}

impl Mounted {
    /// Undoes a successful [`MountPlan::apply`]: unmounts what it mounted and removes what it
    /// created, in reverse (for a later step of `configure` that failed). Best effort.
    ///
    /// # Errors
    ///
    /// [`Error::Namespace`] when the container's namespace cannot be entered any more.
    pub fn unapply(&self, container: &Container) -> Result<(), Error> {
        in_container_ns(container, || {
            undo(&Root::of(container)?, self);
            Ok(())
        })
    }
}

/// Unmounts and removes in reverse order; errors are ignored (best effort on a failure path).
fn undo(root: &Root, done: &Mounted) {
    for target in done.mounts.iter().rev() {
        if let Ok(fd) = root.open(target, OFlag::O_PATH) {
            let _ = umount2(fd_path(&fd).as_str(), MntFlags::MNT_DETACH);
        }
    }
    for path in done.created.iter().rev() {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        if let Ok(dir) = root.open(parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            let is_dir = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
            });
            let how = if is_dir {
                UnlinkatFlags::RemoveDir
            } else {
                UnlinkatFlags::NoRemoveDir
            };
            let _ = unlinkat(dir.as_fd(), name, how);
        }
    }
}
