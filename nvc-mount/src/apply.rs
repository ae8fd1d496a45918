//! Applying a [`MountPlan`] inside a container, confined to its root, undone on failure.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, symlinkat, unlinkat, write};

use crate::inroot::InRoot;
use crate::ns::{in_container_ns, proc_fd};
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
    /// Directories of the container's procfs that it does not have (`/proc/driver/nvidia`
    /// where the procfs was made without the NVIDIA module loaded, as Docker's new procfs
    /// on a host without the module): nothing there to mask, so neither the tmpfs nor the
    /// files planned in it were made.
    pub skipped: Vec<PathBuf>,
    /// What identifies each mount and created entry, for undoing exactly those.
    journal: Journal,
}

/// Everything nvc changed in the container, in order, each recorded the moment it exists
/// by what identifies it — the descriptor of its directory, its name, and its inode or the
/// mount's id — so that undoing never looks a path up again by string and leaves alone
/// whatever is no longer what nvc made.
#[derive(Debug, Clone, Default)]
struct Journal {
    /// Directories the entries live in, with their (device, inode) (one descriptor per
    /// directory, shared by its entries).
    dirs: Vec<(Arc<OwnedFd>, (u64, u64))>,
    steps: Vec<Step>,
}

impl PartialEq for Journal {
    /// Reports compare by what they list; the descriptors add no identity.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Journal {}

#[derive(Debug, Clone)]
enum Step {
    /// A file, directory or link nvc created.
    Created {
        dir: usize,
        name: OsString,
        path: PathBuf,
        dev: u64,
        ino: u64,
    },
    /// A mount nvc made on `dir`/`name`: its mount id (Linux 5.8), else its root's inode.
    Mounted {
        dir: usize,
        name: OsString,
        path: PathBuf,
        id: Option<u64>,
        dev: u64,
        ino: u64,
    },
}

impl Journal {
    /// The index of `dir`, sharing an earlier descriptor of the same directory.
    fn dir(&mut self, dir: &OwnedFd) -> Result<usize, Errno> {
        let st = fstat(dir.as_fd())?;
        let inode = (st.st_dev, st.st_ino);
        if let Some(i) = self.dirs.iter().position(|(_, known)| *known == inode) {
            return Ok(i);
        }
        let fd = Arc::new(dir.try_clone().map_err(|_| Errno::EMFILE)?);
        self.dirs.push((fd, inode));
        Ok(self.dirs.len() - 1)
    }
}

impl Mounted {
    /// Records that `name` in `dir` (container path `path`) was just created by nvc.
    fn created(&mut self, dir: &OwnedFd, name: &Path, path: &Path) -> Result<(), Error> {
        let st =
            fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(fail("stat", path))?;
        let dir = self.journal.dir(dir).map_err(fail("open", path))?;
        self.journal.steps.push(Step::Created {
            dir,
            name: name.as_os_str().to_owned(),
            path: path.to_path_buf(),
            dev: st.st_dev,
            ino: st.st_ino,
        });
        self.created.push(path.to_path_buf());
        Ok(())
    }

    /// Records the mount nvc just made on `name` in `dir`, after checking through the
    /// directory's descriptor that the name now shows a new mount whose root is `root`;
    /// returns that mount's root (for a remount). Fails closed when it does not.
    fn mounted(
        &mut self,
        dir: &OwnedFd,
        name: &Path,
        path: &Path,
        under: &OwnedFd,
        root: Option<&FileStat>,
    ) -> Result<OwnedFd, Error> {
        let top = open_entry(dir, name).map_err(fail("open", path))?;
        let st = fstat(top.as_fd()).map_err(fail("stat", path))?;
        let id = nvc_sys::mount::mount_id(top.as_fd()).ok();
        let below = nvc_sys::mount::mount_id(under.as_fd()).ok();
        let new_mount = match (id, below) {
            (Some(id), Some(below)) => id != below,
            _ => fstat(under.as_fd()).is_ok_and(|u| u.st_dev != st.st_dev || u.st_ino != st.st_ino),
        };
        let shows_root = root.is_none_or(|r| r.st_dev == st.st_dev && r.st_ino == st.st_ino);
        if !new_mount || !shows_root {
            return Err(fail("mount check: not the mount just made at", path)(
                Errno::EBUSY,
            ));
        }
        let dir = self.journal.dir(dir).map_err(fail("open", path))?;
        self.journal.steps.push(Step::Mounted {
            dir,
            name: name.as_os_str().to_owned(),
            path: path.to_path_buf(),
            id,
            dev: st.st_dev,
            ino: st.st_ino,
        });
        self.mounts.push(path.to_path_buf());
        Ok(top)
    }
}

/// An `O_PATH` descriptor of the entry `name` in `dir` itself (a link is not followed): what
/// is there now, or the root of what is mounted there.
pub(crate) fn open_entry(dir: &OwnedFd, name: impl AsRef<Path>) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(dir.as_fd(), name.as_ref(), flags, Mode::empty())
}

/// The container's root, opened once, and the directories already resolved in it.
pub(crate) struct Root {
    root: InRoot,
    /// Directories [`Root::mkdir_all`] resolved without a symlink, by path: the next target
    /// in the same directory (every `/dev/nvidia<N>`, every `gpus/<bus>`) starts from its
    /// descriptor instead of walking from the root again. A mount made at or above one
    /// drops it ([`Root::mounted_at`]): its descriptor names what the mount now covers.
    dirs: RefCell<HashMap<PathBuf, OwnedFd>>,
    /// What refuses mounts that would propagate to the caller's namespace
    /// ([`Root::watching`], [`crate::propagation`]).
    watch: Option<crate::propagation::Watch>,
    /// A user-namespaced container's maps: what its user could create ([`crate::userns`]).
    userns: Option<crate::userns::UserNs>,
}

pub(crate) fn fail(op: &'static str, path: &Path) -> impl FnOnce(Errno) -> Error {
    let path = path.to_path_buf();
    move |errno| Error::Apply {
        op,
        path,
        error: crate::error::os(errno),
    }
}

/// One system call of the executor, `op` on `path`: first a fault point of that name (where
/// tests make the step fail with a chosen errno, as if the call had; nothing without the
/// `fault-injection` feature), then the call; an error names the step and its path.
pub(crate) fn at<T>(
    op: &'static str,
    path: &Path,
    call: impl FnOnce() -> nix::Result<T>,
) -> Result<T, Error> {
    nvc_sys::fault::point(op, path)
        .and_then(|()| call())
        .map_err(fail(op, path))
}

impl Root {
    /// Opens the container's root; call inside its mount namespace.
    pub(crate) fn of(container: &Container) -> Result<Self, Error> {
        let root = match container.root_fd() {
            Some(root) => root.try_clone().map_err(|e| Error::Apply {
                op: "dup",
                path: container.rootfs.clone(),
                error: e,
            })?,
            None => nix::fcntl::open(
                &container.rootfs,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(fail("open", &container.rootfs))?,
        };
        Ok(Root {
            root: InRoot::from_fd(root),
            dirs: RefCell::default(),
            watch: None,
            userns: container.userns().cloned(),
        })
    }

    /// Refuses to create `path` in directory `dir` where the container's own user could
    /// not (a user-namespaced container only; [`crate::userns`]).
    pub(crate) fn may_create(&self, dir: &OwnedFd, path: &Path) -> Result<(), Error> {
        let Some(userns) = &self.userns else {
            return Ok(());
        };
        let st = fstat(dir.as_fd()).map_err(fail("stat the directory of", path))?;
        if userns.may_create(&st) {
            return Ok(());
        }
        Err(fail(
            "create (the container's user may not write its directory)",
            path,
        )(Errno::EACCES))
    }

    /// This root, refusing mounts that would propagate to the caller's namespace (`watch`,
    /// made on the caller's thread).
    fn watching(mut self, watch: crate::propagation::Watch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Refuses `target` when a mount at `point` would propagate out of the container.
    fn not_shared(&self, point: &OwnedFd, target: &Path) -> Result<(), Error> {
        match &self.watch {
            Some(watch) => watch.refuse(point, target),
            None => Ok(()),
        }
    }

    /// Forgets the resolved directories a mount just made at `target` may cover: those at
    /// and below it where its parent was resolved without a symlink (it is kept, so the
    /// mount is where `target` says), else all of them.
    fn mounted_at(&self, target: &Path) {
        let mut dirs = self.dirs.borrow_mut();
        if target.parent().is_some_and(|p| dirs.contains_key(p)) {
            dirs.retain(|dir, _| !dir.starts_with(target));
        } else {
            dirs.clear();
        }
    }

    /// Opens `path` inside the root ([`InRoot::open`]).
    pub(crate) fn open(&self, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        self.root.open(path, flags)
    }

    /// Opens directory `dir`, creating missing components (0755; owned by the container's
    /// owner, whose filesystem ids the namespace thread has), walked with [`InRoot::walk`]:
    /// symlinks on the way are followed as if the root were `/` (absolute targets restart
    /// at the root, `..` stops there), so an image whose `/usr/lib64` links to a host path
    /// gets that path created inside itself.
    fn mkdir_all(&self, path: &Path, done: &mut Mounted) -> Result<OwnedFd, Error> {
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| fail("dup", path)(Errno::from_raw(e.raw_os_error().unwrap_or(0))))
        };
        if let Some(fd) = self.dirs.borrow().get(path) {
            return dup(fd);
        }
        let plain = path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        let walked = self.root.walk(path, true, |dir, here| {
            let name = here.file_name().unwrap_or_default();
            self.may_create(dir, here)?;
            at("mkdir", here, || {
                mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755))
            })?;
            done.created(dir, Path::new(name), here)?;
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            at("open", here, || {
                openat(dir.as_fd(), name, flags, Mode::empty())
            })
            .map(Some)
        })?;
        let Some((resolved, fd)) = walked else {
            return Err(fail("resolve", path)(Errno::ENOENT));
        };
        // Kept where the path named the directory itself: no symlink, `.` or `..` on the
        // way, so a mount at or above it is seen by [`Root::mounted_at`].
        if plain && resolved == path {
            self.dirs.borrow_mut().insert(path.to_path_buf(), dup(&fd)?);
        }
        Ok(fd)
    }

    /// Whether `target` is missing from a procfs (its nearest existing ancestor is on one:
    /// `/proc/driver` may be missing too, in a procfs mounted `subset=pid`): the kernel makes
    /// those directories, nvc cannot, and one the kernel did not make has nothing to mask.
    fn absent_from_procfs(&self, target: &Path) -> Result<bool, Error> {
        let mut child = target;
        for dir in target.ancestors().skip(1) {
            match self.open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(fd) => {
                    let on_procfs = nix::sys::statfs::fstatfs(fd.as_fd())
                        .map_err(fail("statfs", dir))?
                        .filesystem_type()
                        == nix::sys::statfs::PROC_SUPER_MAGIC;
                    let name = child.file_name().unwrap_or_default();
                    return Ok(on_procfs
                        && fstatat(fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                            == Err(Errno::ENOENT));
                }
                Err(Errno::ENOENT) => child = dir,
                Err(Errno::ENOTDIR) => return Ok(false),
                Err(e) => return Err(fail("open", dir)(e)),
            }
        }
        Ok(false)
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
    /// reused. Returns its directory, its name and an `O_PATH` descriptor of it.
    fn mountpoint<'t>(
        &self,
        source: &FileStat,
        target: &'t Path,
        done: &mut Mounted,
    ) -> Result<(OwnedFd, &'t Path, OwnedFd), Error> {
        let (dir, name) = self.parent(target, done)?;
        let is_dir = SFlag::from_bits_truncate(source.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        let mode = Mode::from_bits_truncate(source.st_mode & 0o777);
        match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
                if kind == SFlag::S_IFLNK || (kind == SFlag::S_IFDIR) != is_dir {
                    return Err(fail("refusing to mount over", target)(Errno::EEXIST));
                }
            }
            Err(Errno::ENOENT) => {
                self.may_create(&dir, target)?;
                if is_dir {
                    at("mkdir", target, || mkdirat(dir.as_fd(), name, mode))?;
                } else {
                    let flags = OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC;
                    drop(at("create", target, || {
                        openat(dir.as_fd(), name, flags, mode)
                    })?);
                }
                done.created(&dir, name, target)?;
            }
            Err(e) => return Err(fail("stat", target)(e)),
        }
        let point = at("open", target, || open_entry(&dir, name))?;
        Ok((dir, name, point))
    }
}

/// What a bind mounts: a detached clone made by `open_tree` (flags set before it is
/// attached); for `mount(2)` on kernels without the new mount API, a host path (looked up
/// in the container's namespace, which `mount(2)` requires of a bind's source) or a
/// descriptor opened inside the container's root.
enum Source {
    Tree(OwnedFd),
    Path(PathBuf),
    Fd(OwnedFd),
}

impl Source {
    fn stat(&self) -> Result<FileStat, Error> {
        match self {
            Source::Tree(fd) | Source::Fd(fd) => {
                fstat(fd.as_fd()).map_err(fail("stat", Path::new("(source)")))
            }
            Source::Path(p) => nix::sys::stat::stat(p).map_err(fail("stat", p)),
        }
    }
}

/// A detached clone of `path`, or the path itself for `mount(2)` (legacy API, or a kernel
/// without `open_tree`).
fn clone_source(path: &Path, api: MountApi) -> Result<Source, Error> {
    if api == MountApi::Legacy {
        return Ok(Source::Path(path.to_path_buf()));
    }
    nvc_sys::fault::point("open_tree", path).map_err(fail("open_tree", path))?;
    match nvc_sys::mount::clone_tree(path) {
        Ok(tree) => Ok(Source::Tree(tree)),
        Err(nvc_sys::Error::Syscall {
            errno: Errno::ENOSYS,
            ..
        }) => Ok(Source::Path(path.to_path_buf())),
        Err(e) => Err(fail("open_tree", path)(e.errno())),
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
        let (dir, name, point) = self.mountpoint(&meta, target, done)?;
        self.not_shared(&point, target)?;
        let st = fstat(point.as_fd()).map_err(fail("stat", target))?;
        if st.st_dev == meta.st_dev && st.st_ino == meta.st_ino {
            done.already.push(target.to_path_buf());
            return Ok(());
        }
        let flags = kind.flags();
        let sys = |op| move |e: nvc_sys::Error| fail(op, target)(e.errno());
        let point_at = |op| nvc_sys::fault::point(op, target).map_err(fail(op, target));
        let remount = match source {
            Source::Tree(tree) => {
                let attrs = nvc_sys::mount::MountAttrs {
                    read_only: flags.read_only,
                    nosuid: flags.nosuid,
                    nodev: flags.nodev,
                    noexec: flags.noexec,
                };
                // Without mount_setattr (Linux < 5.12) the flags come from a remount.
                point_at("mount_setattr")?;
                let remount = match nvc_sys::mount::set_attrs(tree.as_fd(), attrs) {
                    Ok(()) => false,
                    Err(nvc_sys::Error::Syscall {
                        errno: Errno::ENOSYS,
                        ..
                    }) => true,
                    Err(e) => return Err(sys("mount_setattr")(e)),
                };
                point_at("move_mount")?;
                nvc_sys::mount::attach(tree.as_fd(), point.as_fd()).map_err(sys("move_mount"))?;
                remount
            }
            Source::Path(path) => {
                legacy_bind(path.as_os_str(), &point, target)?;
                true
            }
            Source::Fd(fd) => {
                legacy_bind(proc_fd(&fd).as_ref(), &point, target)?;
                true
            }
        };
        // Where a container process racing nvc would act.
        let injected = nvc_sys::fault::point("bind: attached", target);
        // The new mount, through the directory's descriptor, checked to be the one made and
        // recorded (so that any later failure undoes it).
        let mounted = match done.mounted(&dir, name, target, &point, Some(&meta)) {
            Ok(mounted) => mounted,
            Err(e) => return Err(e.with_undo_left(vec![hidden(target)])),
        };
        self.mounted_at(target);
        injected.map_err(fail("bind-mount", target))?;
        if remount {
            at("remount", target, || {
                mount(
                    None::<&str>,
                    proc_fd(&mounted).as_str(),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ms_flags(flags),
                    None::<&str>,
                )
            })?;
            // A bind of a mount shared on the host joins the host's peer group: what the
            // container mounted on it would appear on the host. (A cloned tree was made
            // private before it was attached.)
            at("make private", target, || {
                mount(
                    None::<&str>,
                    proc_fd(&mounted).as_str(),
                    None::<&str>,
                    MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
            })?;
        }
        Ok(())
    }
}

/// `mount(2)` bind of `source` onto the mountpoint `point`.
fn legacy_bind(source: &std::ffi::OsStr, point: &OwnedFd, target: &Path) -> Result<(), Error> {
    at("bind-mount", target, || {
        mount(
            Some(source),
            proc_fd(point).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    })
}

/// What is left when the check after a bind fails: something else shows at the name now,
/// stacked on nvc's mount. `umount2(2)` takes the topmost mount at a place, whatever
/// descriptor names it, so nvc's cannot be taken without the one the container put on it.
fn hidden(target: &Path) -> String {
    format!(
        "bind mount at {}: hidden under a mount nvc did not make",
        target.display()
    )
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

/// A [`MountPlan::apply`] prepared in the caller's namespace
/// ([`MountPlan::prepare_apply`]): nothing changed yet.
pub(crate) struct Apply<'a> {
    plan: &'a MountPlan,
    sources: Vec<Source>,
    watch: crate::propagation::Watch,
}

impl Apply<'_> {
    /// Makes the mounts in `container`'s namespace, as [`MountPlan::apply`].
    pub(crate) fn run(self, container: &Container) -> Result<Mounted, Error> {
        let Apply {
            plan,
            sources,
            watch,
        } = self;
        in_container_ns(container, move || {
            let root = Root::of(container)?.watching(watch);
            let mut done = Mounted::default();
            match plan.apply_all(&root, &mut done, sources) {
                Ok(()) => Ok(done),
                Err(e) => Err(e.with_undo_left(undo(&done))),
            }
        })
    }
}

impl MountPlan {
    /// Applies the plan in `container`'s mount namespace (on a dedicated thread, see
    /// [`in_mount_ns`](crate::in_mount_ns)). Every container path is resolved inside the
    /// container's root with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so the image's
    /// symlinks cannot lead a mount onto the host; mountpoints are created as the container's
    /// owner and never through a symlink. Bind sources are cloned with `open_tree` in the
    /// caller's namespace before anything changes (a missing source fails first), get their
    /// flags with `mount_setattr` and are attached with `move_mount`; with
    /// [`MountApi::Legacy`] or on kernels without that API, bind + remount through the
    /// host's `/proc/self/fd` (the remount acts on the new mount, reached through the
    /// mountpoint's directory descriptor and checked to be the mount just made). A second
    /// `configure` of the same container adds nothing: binds whose
    /// target already shows their source, a tmpfs already mounted and files already written
    /// are skipped ([`Mounted::already`]). Any failure undoes what was done, in reverse, and
    /// removes what was created — each identified by its directory's descriptor, name and
    /// inode or mount id as recorded when it was made (see [`Mounted::unapply`]).
    ///
    /// Device cgroup rules are not applied ([`MountPlan::configure`] grants them).
    ///
    /// # Errors
    ///
    /// [`Error::Apply`] naming the operation and container path, [`Error::Namespace`], or
    /// [`Error::NoProcess`] when the container process has exited.
    ///
    /// # Kernel requirements
    ///
    /// `openat2` (Linux 5.6); `open_tree` (5.2) and `mount_setattr` (5.12) when present;
    /// for a running container ([`Container::running`]), whose namespace cannot see the
    /// host's paths, `open_tree` ([`Error::Container`] without it, before anything changes).
    pub fn apply(&self, container: &Container) -> Result<Mounted, Error> {
        self.prepare_apply(container)?.run(container)
    }

    /// What [`MountPlan::apply`] does in the caller's namespace before anything changes:
    /// the bind sources cloned (a missing source fails here), the host's procfs and the
    /// caller's mount table opened. [`Apply::run`] then makes the mounts.
    pub(crate) fn prepare_apply(&self, container: &Container) -> Result<Apply<'_>, Error> {
        let mut sources = Vec::new();
        for op in &self.ops {
            if let Op::Bind { source, .. } = op {
                let source = clone_source(source, self.mount_api)?;
                if container.is_running() && matches!(source, Source::Path(_)) {
                    return Err(Error::Container {
                        what: format!(
                            "process {}'s root is not the host's: binding the host's files \
                             into a running container needs open_tree (Linux 5.2), not \
                             mount(2) with {}",
                            container.pid,
                            if self.mount_api == MountApi::Legacy {
                                "the legacy mount API"
                            } else {
                                "this kernel"
                            }
                        ),
                    });
                }
                sources.push(source);
            }
        }
        let watch = crate::propagation::Watch::new(crate::kernfs::host_procfs()?)?;
        Ok(Apply {
            plan: self,
            sources,
            watch,
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
            // Under a procfs directory the container does not have: nothing to make there.
            if let Some(path) = op.container_path()
                && done.skipped.iter().any(|dir| path.starts_with(dir))
            {
                if let Op::Bind { .. } = op {
                    sources.next();
                }
                continue;
            }
            match op {
                Op::Tmpfs { target, mode } => {
                    if root.absent_from_procfs(target)? {
                        done.skipped.push(target.clone());
                        continue;
                    }
                    let (parent, name) = root.parent(target, done)?;
                    let dir = root.mkdir_all(target, done)?;
                    // Never through a link the image placed (`/proc/driver/nvidia -> /x`): the
                    // tmpfs would land where the journal does not look.
                    let entry = fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                        .map_err(fail("stat", target))?;
                    let here = fstat(dir.as_fd()).map_err(fail("stat", target))?;
                    if SFlag::from_bits_truncate(entry.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR
                        || (entry.st_dev, entry.st_ino) != (here.st_dev, here.st_ino)
                    {
                        return Err(fail(
                            "mount tmpfs on (not a directory in the image)",
                            target,
                        )(Errno::ENOTDIR));
                    }
                    root.not_shared(&dir, target)?;
                    // Already a tmpfs mounted here (a second configure): keep it.
                    let dev = |fd: &OwnedFd| fstat(fd.as_fd()).map(|st| st.st_dev);
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
                    at("mount tmpfs on", target, || {
                        mount(
                            Some("tmpfs"),
                            proc_fd(&dir).as_str(),
                            Some("tmpfs"),
                            flags,
                            Some(data.as_str()),
                        )
                    })?;
                    root.mounted_at(target);
                    done.mounted(&parent, name, target, &dir, None)?;
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
                    let mode = Mode::from_bits_truncate(*mode);
                    let file = match nvc_sys::fault::point("create", target)
                        .and_then(|()| openat(dir.as_fd(), name, flags, mode))
                    {
                        Ok(file) => file,
                        Err(Errno::EEXIST) => {
                            done.already.push(target.clone());
                            continue;
                        }
                        Err(e) => return Err(fail("create", target)(e)),
                    };
                    done.created(&dir, name, target)?;
                    let mut rest = contents.as_slice();
                    while !rest.is_empty() {
                        let n = at("write", target, || write(&file, rest))?;
                        rest = rest.get(n..).unwrap_or_default();
                    }
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
                    let src = at("open", source, || root.open(source, OFlag::O_PATH))?;
                    let tree = match self.mount_api {
                        MountApi::Auto => nvc_sys::mount::clone_tree_fd(src.as_fd()).ok(),
                        MountApi::Legacy => None,
                    };
                    let source = match tree {
                        Some(tree) => Source::Tree(tree),
                        None => Source::Fd(src),
                    };
                    root.bind(source, target, MountKind::File, done)?;
                }
                Op::Symlink { path, target } => {
                    let (dir, name) = root.parent(path, done)?;
                    // An entry already there (the image's own, or ours from before) stays.
                    if let Err(Errno::ENOENT) =
                        fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    {
                        root.may_create(&dir, path)?;
                        at("symlink", path, || {
                            symlinkat(target.as_path(), dir.as_fd(), name)
                        })?;
                        done.created(&dir, name, path)?;
                    }
                }
                // Granted by the cgroup step from the plan itself.
                Op::AllowDevice { .. } => {}
            }
        }
        Ok(())
    }
}

impl Mounted {
    /// Undoes a successful [`MountPlan::apply`] (for a later step of `configure` that failed):
    /// in reverse, unmounts each mount it made and removes each entry it created — each
    /// reached through the descriptor of its directory and its name as recorded when it was
    /// made, and acted on only while it is still that mount (same mount id) or that entry
    /// (same device and inode). Whatever no longer matches is left alone and reported, as is
    /// any step that fails.
    ///
    /// # Errors
    ///
    /// [`Error::Namespace`] when the container's namespace cannot be entered any more.
    pub fn unapply(&self, container: &Container) -> Result<Vec<String>, Error> {
        in_container_ns(container, || Ok(undo(self)))
    }
}

/// Undoes `done`'s journal in reverse; returns what was left and why (best effort on a
/// failure path: every step is tried).
fn undo(done: &Mounted) -> Vec<String> {
    let mut left = Vec::new();
    for step in done.journal.steps.iter().rev() {
        let (dir, name, path) = match step {
            Step::Created {
                dir, name, path, ..
            }
            | Step::Mounted {
                dir, name, path, ..
            } => (dir, name, path),
        };
        let Some((dir, _)) = done.journal.dirs.get(*dir) else {
            continue;
        };
        let outcome = match step {
            Step::Mounted { id, dev, ino, .. } => nvc_sys::fault::point("undo: umount", path)
                .map_err(|e| format!("not unmounted: {e}"))
                .and_then(|()| {
                    unmount_ours(dir, name.as_ref(), path, *id, (*dev, *ino))
                        .map_err(|e| format!("not unmounted: {e}"))
                }),
            Step::Created { dev, ino, .. } => nvc_sys::fault::point("undo: remove", path)
                .map_err(|e| format!("not removed: {e}"))
                .and_then(|()| remove(dir, name, (*dev, *ino))),
        };
        if let Err(why) = outcome {
            left.push(format!("{}: {why}", path.display()));
        }
    }
    left
}

/// Unmounts the mount at `name` in `dir` (the container's `path`) if it is nvc's: the one with mount id `id` (where
/// the kernel has `STATX_MNT_ID`) or showing `root` (device, inode). `umount2(2)` takes the
/// topmost mount at a place whatever descriptor names it, so the top is checked to be nvc's
/// before, and after (a mount stacked on it in between is unmounted instead, and nvc's is
/// then still there: said, never retried).
pub(crate) fn unmount_ours(
    dir: &OwnedFd,
    name: &Path,
    path: &Path,
    id: Option<u64>,
    root: (u64, u64),
) -> Result<(), String> {
    let ours = |top: &OwnedFd| match id {
        Some(id) => nvc_sys::mount::mount_id(top.as_fd()).is_ok_and(|now| now == id),
        None => fstat(top.as_fd()).is_ok_and(|st| (st.st_dev, st.st_ino) == root),
    };
    let top = open_entry(dir, name).map_err(|e| e.to_string())?;
    if !ours(&top) {
        return Err("the mount there is no longer the one nvc made".into());
    }
    // Where a container process racing the unmount would act.
    nvc_sys::fault::point("umount", path).map_err(|e| e.to_string())?;
    umount2(proc_fd(&top).as_str(), MntFlags::MNT_DETACH).map_err(|e| format!("umount: {e}"))?;
    match open_entry(dir, name) {
        Ok(now) if ours(&now) => {
            Err("a mount stacked on it meanwhile was unmounted instead; nvc's is there".into())
        }
        _ => Ok(()),
    }
}

fn remove(dir: &OwnedFd, name: &OsString, inode: (u64, u64)) -> Result<(), String> {
    let st = match fstatat(dir.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(format!("not removed: {e}")),
    };
    if (st.st_dev, st.st_ino) != inode {
        return Err("not removed: no longer the entry nvc created".into());
    }
    let how = if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        UnlinkatFlags::RemoveDir
    } else {
        UnlinkatFlags::NoRemoveDir
    };
    unlinkat(dir.as_fd(), name.as_os_str(), how).map_err(|e| format!("not removed: {e}"))
}
