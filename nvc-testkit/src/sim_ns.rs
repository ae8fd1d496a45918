//! Making a simulated host *be* the host for one process: a private mount namespace in which
//! the host's `/dev` shows the simulated device nodes, and `/proc/driver` and `/proc/devices`
//! show the simulated files.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

/// Why the simulated host could not be entered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnterError {
    /// `DIR` is not a simulated host.
    #[error("{} is not a simulated host (no proc/driver/nvidia/version); create it with `nvc-sim create`", .0.display())]
    NotAHost(PathBuf),
    /// The caller may not make a mount namespace.
    #[error(
        "cannot make a private mount namespace ({0}): `nvc-sim run` needs root (CAP_SYS_ADMIN)"
    )]
    NoPrivilege(Errno),
    /// A mount or file operation failed.
    #[error("{what} {}: {errno}", path.display())]
    Step {
        /// The operation.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        errno: Errno,
    },
}

fn step(what: &'static str, path: &Path) -> impl FnOnce(Errno) -> EnterError {
    let path = path.to_path_buf();
    move |errno| EnterError::Step { what, path, errno }
}

fn io_step(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EnterError {
    let path = path.to_path_buf();
    move |e| EnterError::Step {
        what,
        path,
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
    }
}

/// Moves the calling process (which must be single-threaded) into a new private mount
/// namespace where the host at `root` is the host: `/dev` holds the host's entries plus the
/// simulated nodes, `/proc/driver` the simulated `nvidia` and `nvidia-caps` trees plus the
/// host's other entries, and `/proc/devices` the simulated majors. Nothing propagates back
/// to the real host.
///
/// # Errors
///
/// [`EnterError::NotAHost`], [`EnterError::NoPrivilege`] without `CAP_SYS_ADMIN`, or the
/// mount step that failed.
pub fn enter(root: &Path) -> Result<(), EnterError> {
    if !root.join("proc/driver/nvidia/version").is_file() {
        return Err(EnterError::NotAHost(root.to_path_buf()));
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(EnterError::NoPrivilege)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(step("make private", Path::new("/")))?;
    let stage = root.join(".nvc-sim");
    union(Path::new("/dev"), &root.join("dev"), &stage.join("dev"))?;
    union(
        Path::new("/proc/driver"),
        &root.join("proc/driver"),
        &stage.join("proc-driver"),
    )?;
    bind(&root.join("proc/devices"), Path::new("/proc/devices"))
}

fn bind(source: &Path, target: &Path) -> Result<(), EnterError> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(step("bind-mount onto", target))
}

/// Replaces `target` by a tmpfs holding bind mounts of `target`'s own entries and, over
/// them, of `extra`'s entries; built at `stage` and moved into place.
fn union(target: &Path, extra: &Path, stage: &Path) -> Result<(), EnterError> {
    fs::create_dir_all(stage).map_err(io_step("create", stage))?;
    mount(
        Some("tmpfs"),
        stage,
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )
    .map_err(step("mount tmpfs on", stage))?;
    for dir in [target, extra] {
        let entries = fs::read_dir(dir).map_err(io_step("read", dir))?;
        for entry in entries {
            let entry = entry.map_err(io_step("read", dir))?;
            let (from, to) = (entry.path(), stage.join(entry.file_name()));
            let kind = entry.file_type().map_err(io_step("stat", &from))?;
            if kind.is_symlink() {
                let _ = fs::remove_file(&to);
                let link = fs::read_link(&from).map_err(io_step("read link", &from))?;
                symlink(link, &to).map_err(io_step("create link", &to))?;
                continue;
            }
            if kind.is_dir() {
                fs::create_dir_all(&to).map_err(io_step("create", &to))?;
            } else if !to.exists() {
                fs::write(&to, b"").map_err(io_step("create", &to))?;
            }
            bind(&from, &to)?;
        }
    }
    mount(
        Some(stage),
        target,
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .map_err(step("move onto", target))
}
