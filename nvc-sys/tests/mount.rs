//! The new mount API, each case in a forked child's private mount namespace (nothing
//! reaches the host's): `clone_tree` + `set_attrs` + `attach` put a private copy of one
//! mount (not the mounts below it) on a target with exactly the flags asked (the others
//! cleared), under a new mount id; `clone_cwd_nodev` and `set_nodev_recursive` add `nodev`
//! to every mount of a tree and keep the other flags; failures name the syscall and errno.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::Mode;
use nvc_sys::mount::{
    MountAttrs, attach, clone_cwd_nodev, clone_tree, mount_id, set_attrs, set_nodev_recursive,
};

use common::in_child;

/// Enters a private mount namespace (in the forked child); "skip:" without the privilege.
fn private_namespace() -> Result<(), String> {
    match unshare(CloneFlags::CLONE_NEWNS) {
        Ok(()) => {}
        Err(e @ Errno::EPERM) => return Err(format!("skip: unshare(CLONE_NEWNS): {e}")),
        Err(e) => return Err(format!("unshare(CLONE_NEWNS): {e}")),
    }
    let none = None::<&str>;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("make / private: {e}"))
}

/// A tmpfs on `at` with `flags`, holding `file` with `contents`.
fn tmpfs(at: &Path, flags: MsFlags, file: &str, contents: &str) -> Result<(), String> {
    mount(Some("tmpfs"), at, Some("tmpfs"), flags, None::<&str>)
        .map_err(|e| format!("mount tmpfs on {}: {e}", at.display()))?;
    fs::write(at.join(file), contents).map_err(|e| format!("write: {e}"))
}

fn o_path(p: &Path) -> Result<OwnedFd, String> {
    open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("open {}: {e}", p.display()))
}

/// The topmost mount at `point` in this process's mountinfo: (per-mount options, optional
/// fields such as `shared:N`).
fn mount_at(point: &Path) -> Result<(Vec<String>, String), String> {
    let table = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let point = point.to_str().unwrap();
    table
        .lines()
        .rev()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            (f.get(4) == Some(&point)).then(|| {
                let opts = f[5].split(',').map(str::to_owned).collect();
                (opts, f[6..dash].join(" "))
            })
        })
        .ok_or_else(|| format!("no mount at {point}"))
}

/// Maps `ENOSYS` (a kernel before 5.12) to a skip.
fn or_skip<T>(r: Result<T, nvc_sys::Error>, what: &str) -> Result<T, String> {
    r.map_err(|e| match e.errno() {
        Errno::ENOSYS => format!("skip: {what}: {e} (kernel before 5.12)"),
        _ => format!("{what}: {e}"),
    })
}

/// Runs `check` in a forked child, in a private mount namespace of its own, on fresh
/// directories `src/` and `dst/`: as root only (a printed skip elsewhere); nothing it mounts
/// outlives the child.
fn in_private_namespace(check: impl FnOnce(&Path, &Path) -> Result<(), String>) {
    if !common::root_or_skip("mounting") {
        return;
    }
    let dir = dirs();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    in_child(|| {
        private_namespace()?;
        check(&src, &dst)
    });
}

/// Attaches the detached tree `tree` at `dst` (`move_mount`; a skip before Linux 5.2).
fn attach_at(tree: &OwnedFd, dst: &Path) -> Result<(), String> {
    or_skip(attach(tree.as_fd(), o_path(dst)?.as_fd()), "move_mount")
}

/// A temporary directory with `src/` and `dst/` (and `src/sub/` once `src` is mounted).
fn dirs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("src")).unwrap();
    fs::create_dir(dir.path().join("dst")).unwrap();
    dir
}

#[test]
fn a_clone_attached_with_every_flag_is_a_new_private_read_only_mount() {
    in_private_namespace(|src, dst| {
        tmpfs(src, MsFlags::empty(), "file", "x")?;
        // A shared source: its clone would be its peer, were it not made private.
        mount(
            None::<&str>,
            src,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .map_err(|e| format!("make src shared: {e}"))?;
        let before = or_skip(mount_id(o_path(dst)?.as_fd()), "statx")?;
        let tree = or_skip(clone_tree(src), "open_tree")?;
        let all = MountAttrs {
            read_only: true,
            nosuid: true,
            nodev: true,
            noexec: true,
        };
        or_skip(set_attrs(tree.as_fd(), all), "mount_setattr")?;
        attach_at(&tree, dst)?;

        let after = or_skip(mount_id(o_path(dst)?.as_fd()), "statx")?;
        ensure!(before != after, "mount id unchanged: {before}");
        let tree_id = or_skip(mount_id(tree.as_fd()), "statx")?;
        ensure!(
            tree_id == after,
            "tree {tree_id} is not the mount at dst {after}"
        );
        let (opts, optional) = mount_at(dst)?;
        for flag in ["ro", "nosuid", "nodev", "noexec"] {
            ensure!(opts.iter().any(|o| o == flag), "{flag} missing: {opts:?}");
        }
        ensure!(
            !optional.contains("shared:"),
            "clone still shared: {optional}"
        );
        let (_, src_optional) = mount_at(src)?;
        ensure!(
            src_optional.contains("shared:"),
            "source not shared: {src_optional}"
        );
        let read = fs::read_to_string(dst.join("file")).map_err(|e| e.to_string())?;
        ensure!(read == "x", "dst/file holds {read:?}");
        let write = fs::write(dst.join("new"), "y");
        ensure!(
            write
                .as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::EROFS)),
            "write to the read-only clone: {write:?}"
        );
        Ok(())
    });
}

#[test]
fn set_attrs_clears_the_flags_not_asked_for_and_leaves_the_source_alone() {
    in_private_namespace(|src, dst| {
        tmpfs(src, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, "file", "x")?;
        let tree = or_skip(clone_tree(src), "open_tree")?;
        let nodev = MountAttrs {
            nodev: true,
            ..MountAttrs::default()
        };
        or_skip(set_attrs(tree.as_fd(), nodev), "mount_setattr")?;
        attach_at(&tree, dst)?;
        let (opts, _) = mount_at(dst)?;
        let has = |f: &str| opts.iter().any(|o| o == f);
        ensure!(has("rw") && has("nodev"), "clone: {opts:?}");
        ensure!(!has("nosuid") && !has("noexec"), "flags kept: {opts:?}");
        let (src_opts, _) = mount_at(src)?;
        let src_has = |f: &str| src_opts.iter().any(|o| o == f);
        ensure!(
            src_has("nosuid") && src_has("noexec") && !src_has("nodev"),
            "source changed: {src_opts:?}"
        );
        Ok(())
    });
}

#[test]
fn clone_tree_copies_one_mount_not_those_below_it() {
    in_private_namespace(|src, dst| {
        tmpfs(src, MsFlags::empty(), "file", "x")?;
        fs::create_dir(src.join("sub")).map_err(|e| e.to_string())?;
        tmpfs(&src.join("sub"), MsFlags::empty(), "inner", "y")?;
        let tree = or_skip(clone_tree(src), "open_tree")?;
        attach_at(&tree, dst)?;
        ensure!(dst.join("file").exists(), "the clone lacks src's file");
        ensure!(dst.join("sub").is_dir(), "the clone lacks src/sub");
        ensure!(
            !dst.join("sub/inner").exists(),
            "the mount below src came along"
        );
        ensure!(mount_at(&dst.join("sub")).is_err(), "a mount at dst/sub");
        Ok(())
    });
}

#[test]
fn clone_cwd_nodev_copies_the_whole_tree_nodev() {
    in_private_namespace(|src, dst| {
        tmpfs(src, MsFlags::MS_NOSUID, "file", "x")?;
        fs::create_dir(src.join("sub")).map_err(|e| e.to_string())?;
        tmpfs(&src.join("sub"), MsFlags::empty(), "inner", "y")?;
        // The working directory of this child only.
        nix::unistd::chdir(src).map_err(|e| format!("chdir: {e}"))?;
        let tree = or_skip(clone_cwd_nodev(), "clone_cwd_nodev")?;
        attach_at(&tree, dst)?;
        ensure!(
            dst.join("sub/inner").exists(),
            "the mount below src is missing"
        );
        let (top, _) = mount_at(dst)?;
        let (below, _) = mount_at(&dst.join("sub"))?;
        for opts in [&top, &below] {
            ensure!(opts.iter().any(|o| o == "nodev"), "not nodev: {opts:?}");
        }
        ensure!(top.iter().any(|o| o == "nosuid"), "nosuid lost: {top:?}");
        let (src_opts, _) = mount_at(src)?;
        ensure!(!src_opts.iter().any(|o| o == "nodev"), "source made nodev");
        Ok(())
    });
}

#[test]
fn set_nodev_recursive_adds_nodev_below_and_keeps_other_flags() {
    in_private_namespace(|src, _| {
        tmpfs(src, MsFlags::MS_NOSUID, "file", "x")?;
        fs::create_dir(src.join("sub")).map_err(|e| e.to_string())?;
        tmpfs(&src.join("sub"), MsFlags::MS_NOEXEC, "inner", "y")?;
        or_skip(set_nodev_recursive(src), "mount_setattr")?;
        let (top, _) = mount_at(src)?;
        let (below, _) = mount_at(&src.join("sub"))?;
        ensure!(top.iter().any(|o| o == "nodev"), "top: {top:?}");
        ensure!(below.iter().any(|o| o == "nodev"), "below: {below:?}");
        ensure!(top.iter().any(|o| o == "nosuid"), "nosuid lost: {top:?}");
        ensure!(
            below.iter().any(|o| o == "noexec"),
            "noexec lost: {below:?}"
        );
        ensure!(top.iter().any(|o| o == "rw"), "made read-only: {top:?}");
        Ok(())
    });
}

#[test]
fn one_mount_has_one_id() {
    let dir = dirs();
    let a = o_path(&dir.path().join("src")).unwrap();
    let b = o_path(&dir.path().join("dst")).unwrap();
    match (mount_id(a.as_fd()), mount_id(b.as_fd())) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "two directories of one mount"),
        (Err(e), _) if e.errno() == Errno::ENOSYS => common::skip(format!("{e}")),
        (a, b) => panic!("{a:?} {b:?}"),
    }
}

#[test]
fn failures_name_the_syscall_and_errno() {
    if !common::root_or_skip("open_tree(OPEN_TREE_CLONE)") {
        return;
    }
    // A path that does not exist: nothing is looked up further, nothing changes.
    let missing = Path::new("/nonexistent/nvc-sys-test");
    let err = clone_tree(missing).unwrap_err();
    assert_eq!(err.errno(), Errno::ENOENT, "{err}");
    assert!(err.to_string().contains("open_tree") && err.to_string().contains("ENOENT"));

    let err = set_nodev_recursive(missing).unwrap_err();
    if err.errno() != Errno::ENOSYS {
        assert_eq!(err.errno(), Errno::ENOENT, "{err}");
        assert!(err.to_string().contains("mount_setattr"), "{err}");
    }

    let nul = Path::new("/tmp/a\0b");
    let err = clone_tree(nul).unwrap_err();
    assert_eq!(err.errno(), Errno::EINVAL);
    assert!(err.to_string().contains("open_tree"), "{err}");
    let err = set_nodev_recursive(nul).unwrap_err();
    assert_eq!(err.errno(), Errno::EINVAL);
    assert!(err.to_string().contains("mount_setattr"), "{err}");
}
