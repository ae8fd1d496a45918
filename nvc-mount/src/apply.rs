//! Applying a [`MountPlan`] inside a container, confined to its root, undone on failure.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, symlinkat, unlinkat, write};

use crate::ns::in_container_ns;
use crate::plan::{MountApi, MountFlags, MountKind, MountPlan, Op};
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
    move |errno| Error::Apply {
        op,
        path,
        error: crate::error::os(errno),
    }
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
        source: &SourceStat,
        target: &Path,
        done: &mut Mounted,
    ) -> Result<OwnedFd, Error> {
        let (dir, name) = self.parent(target, done)?;
        let mode = Mode::from_bits_truncate(source.mode & 0o777);
        match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
                if kind == SFlag::S_IFLNK || (kind == SFlag::S_IFDIR) != source.is_dir {
                    return Err(fail("refusing to mount over", target)(Errno::EEXIST));
                }
            }
            Err(Errno::ENOENT) => {
                if source.is_dir {
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

/// What a bind mounts: a detached clone made by `open_tree` (flags set before it is
/// attached), or a path for `mount(2)` on kernels without the new mount API.
enum Source {
    Tree(OwnedFd),
    Path(PathBuf),
}

/// The parts of a source's `stat` a bind needs.
struct SourceStat {
    is_dir: bool,
    mode: u32,
    dev: u64,
    ino: u64,
}

impl Source {
    fn stat(&self) -> Result<SourceStat, Error> {
        let st = match self {
            Source::Tree(fd) => {
                nix::sys::stat::fstat(fd.as_fd()).map_err(fail("stat", Path::new("(source)")))?
            }
            Source::Path(p) => nix::sys::stat::stat(p).map_err(fail("stat", p))?,
        };
        Ok(SourceStat {
            is_dir: SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR,
            mode: st.st_mode,
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// A detached clone of `path`, or the path itself for `mount(2)` (legacy API, or a kernel
/// without `open_tree`).
fn clone_source(path: &Path, api: MountApi) -> Result<Source, Error> {
    if api == MountApi::Legacy {
        return Ok(Source::Path(path.to_path_buf()));
    }
    match nvc_sys::mount::clone_tree(path) {
        Ok(tree) => Ok(Source::Tree(tree)),
        Err(nvc_sys::Error::Syscall {
            errno: Errno::ENOSYS,
            ..
        }) => Ok(Source::Path(path.to_path_buf())),
        Err(nvc_sys::Error::Syscall { errno, .. }) => Err(fail("open_tree", path)(errno)),
        Err(_) => Err(fail("open_tree", path)(Errno::EINVAL)),
    }
}

impl Root {
    /// Binds `source` onto `target` in the container with `kind`'s flags; skipped when
    /// `target` already shows `source`. A cloned tree gets its flags before it is attached
    /// (`mount_setattr` + `move_mount`: never visible writable); a path is bound, then
    /// remounted with the flags (upstream's two `mount(2)` calls).
    fn bind(
        &self,
        source: Source,
        target: &Path,
        kind: MountKind,
        done: &mut Mounted,
    ) -> Result<(), Error> {
        let meta = source.stat()?;
        let point = self.mountpoint(&meta, target, done)?;
        let st = nix::sys::stat::fstat(point.as_fd()).map_err(fail("stat", target))?;
        if st.st_dev == meta.dev && st.st_ino == meta.ino {
            done.already.push(target.to_path_buf());
            return Ok(());
        }
        let flags = kind.flags();
        let sys = |op| {
            move |e: nvc_sys::Error| match e {
                nvc_sys::Error::Syscall { errno, .. } => fail(op, target)(errno),
                _ => fail(op, target)(Errno::EINVAL),
            }
        };
        let remount = match source {
            Source::Tree(tree) => {
                let attrs = nvc_sys::mount::MountAttrs {
                    read_only: flags.read_only,
                    nosuid: flags.nosuid,
                    nodev: flags.nodev,
                    noexec: flags.noexec,
                };
                // Without mount_setattr (Linux < 5.12) the flags come from a remount.
                let remount = match nvc_sys::mount::set_attrs(tree.as_fd(), attrs) {
                    Ok(()) => false,
                    Err(nvc_sys::Error::Syscall {
                        errno: Errno::ENOSYS,
                        ..
                    }) => true,
                    Err(e) => return Err(sys("mount_setattr")(e)),
                };
                nvc_sys::mount::attach(tree.as_fd(), point.as_fd()).map_err(sys("move_mount"))?;
                remount
            }
            Source::Path(path) => {
                mount(
                    Some(path.as_path()),
                    fd_path(&point).as_str(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(fail("bind-mount", target))?;
                true
            }
        };
        done.mounts.push(target.to_path_buf());
        if remount {
            // Reopen: the name now leads to the mount's root, which remount needs.
            let mounted = self
                .open(target, OFlag::O_PATH)
                .map_err(fail("open", target))?;
            mount(
                None::<&str>,
                fd_path(&mounted).as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ms_flags(flags),
                None::<&str>,
            )
            .map_err(fail("remount", target))?;
        }
        Ok(())
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
    /// [`in_mount_ns`](crate::in_mount_ns)). Every container path is resolved inside the
    /// container's root with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so the image's
    /// symlinks cannot lead a mount onto the host; mountpoints are created as the container's
    /// owner and never through a symlink. Bind sources are cloned with `open_tree` in the
    /// caller's namespace before anything changes (a missing source fails first), get their
    /// flags with `mount_setattr` and are attached with `move_mount`; with
    /// [`MountApi::Legacy`] or on kernels without that API, bind + remount through
    /// `/proc/self/fd`. A second `configure` of the same container adds nothing: binds whose
    /// target already shows their source, a tmpfs already mounted and files already written
    /// are skipped ([`Mounted::already`]). Any failure undoes what was done, in reverse, and
    /// removes what was created.
    ///
    /// Device cgroup rules are returned, not applied ([`MountPlan::configure`] does that).
    ///
    /// # Errors
    ///
    /// [`Error::Apply`] naming the operation and container path, [`Error::Namespace`], or
    /// [`Error::NoProcess`] when the container process has exited.
    ///
    /// # Kernel requirements
    ///
    /// `openat2` (Linux 5.6); `open_tree` (5.2) and `mount_setattr` (5.12) when present.
    pub fn apply(&self, container: &Container) -> Result<Mounted, Error> {
        // Sources are cloned here, in the caller's namespace, before anything changes.
        let mut sources = Vec::new();
        for op in &self.ops {
            if let Op::Bind { source, .. } = op {
                sources.push(clone_source(source, self.mount_api)?);
            }
        }
        in_container_ns(container, move || {
            let root = Root::of(container)?;
            let mut done = Mounted::default();
            match self.apply_all(&root, &mut done, sources) {
                Ok(()) => Ok(done),
                Err(e) => {
                    undo(&root, &done);
                    Err(e)
                }
            }
        })
    }

    fn apply_all(
        &self,
        root: &Root,
        done: &mut Mounted,
        sources: Vec<Source>,
    ) -> Result<(), Error> {
        let mut sources = sources.into_iter();
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
                } => {
                    let source = sources
                        .next()
                        .ok_or_else(|| fail("open_tree", source)(Errno::EINVAL))?;
                    root.bind(source, target, *kind, done)?;
                }
                Op::BindFromImage { source, target } => {
                    // Opened inside the root: the image cannot swap in a link to the host.
                    let src = root
                        .open(source, OFlag::O_PATH)
                        .map_err(fail("open", source))?;
                    let tree = match self.mount_api {
                        MountApi::Auto => nvc_sys::mount::clone_tree_fd(src.as_fd()).ok(),
                        MountApi::Legacy => None,
                    };
                    let source = match tree {
                        Some(tree) => Source::Tree(tree),
                        None => Source::Path(fd_path(&src).into()),
                    };
                    root.bind(source, target, MountKind::File, done)?;
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
