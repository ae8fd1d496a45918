//! Tier c, running containers racing attach and detach: a started container's processes are
//! live while nvc works in their tree, and a privileged one can mount. Each race acts, inside
//! the container's mount namespace, at the instant the `nvc_sys::fault` seam names: a
//! directory swapped between a bind and its check, a mount stacked on a fresh bind, on a
//! bind being detached, or in the instant of its unmount, a parent directory renamed under a
//! detach. (Init exiting mid-attach: `running.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::mount::{MsFlags, mount};
use nvc_mount::MountApi;

mod common;
use common::first_library;
use common::running::{Running, running};

/// The container's mounts at `path` (its own view: mount points relative to its root),
/// bottom first, with their per-mount options.
fn mounts_at(r: &Running, path: &str) -> Vec<String> {
    fs::read_to_string(format!("/proc/{}/mountinfo", r.pid))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[4] == path).then(|| f[5].to_owned())
        })
        .collect()
}

/// `path` in the container, read from the host through its root.
fn inside(r: &Running, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{}/root{path}", r.pid))
}

/// A container process's bind of its own `/bin/busybox` over `target` (the fault hook runs on
/// nvc's thread inside the container's mount namespace, its root the container's).
fn cover(target: &Path) {
    mount(
        Some("/bin/busybox"),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
}

#[test]
fn a_library_directory_swapped_after_its_bind_leaves_nothing_writable() {
    let api = MountApi::Auto;
    let Some(r) = running() else { return };
    let container = r.container();
    let plan = r.plan_with(&container, None, api);
    let lib = first_library(&plan);
    let name = lib.file_name().unwrap().to_owned();
    // Right after the library is bound (before a read-only remount where the kernel
    // has no `mount_setattr`), a container process swaps its directory for a fresh one holding a plain
    // file of the same name: a remount by path would miss the new mount.
    let swapped = Arc::new(AtomicBool::new(false));
    let swap = {
        let (swapped, lib) = (Arc::clone(&swapped), lib.clone());
        move |step: &str, at: &Path| {
            if step == "bind: attached" && at == lib && !swapped.swap(true, Ordering::Relaxed) {
                fs::rename("/usr/lib/x86_64-linux-gnu", "/usr/lib/moved").unwrap();
                fs::create_dir("/usr/lib/x86_64-linux-gnu").unwrap();
                fs::write(&lib, b"planted").unwrap();
            }
            None
        }
    };
    nvc_sys::fault::with_hook(swap, || plan.configure(&container, None)).unwrap();
    assert!(
        swapped.load(Ordering::Relaxed),
        "{api:?}: the race did not run"
    );
    let moved = format!("/usr/lib/moved/{}", name.to_string_lossy());
    let options = mounts_at(&r, &moved);
    assert_eq!(options.len(), 1, "{api:?}: {moved}: {options:?}");
    assert!(
        options[0].split(',').any(|o| o == "ro"),
        "{api:?}: the library must be read-only where it went: {options:?}"
    );
    // Every driver file bound anywhere under /usr/lib is read-only.
    let mountinfo = fs::read_to_string(format!("/proc/{}/mountinfo", r.pid)).unwrap();
    for l in mountinfo.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        if f[4].starts_with("/usr/lib/") {
            assert!(f[5].split(',').any(|o| o == "ro"), "{api:?}: {l}");
        }
    }
}

#[test]
fn a_mount_stacked_on_a_fresh_node_fails_the_attach_and_only_nvcs_hidden_bind_is_left() {
    let api = MountApi::Auto;
    let Some(r) = running() else { return };
    let container = r.container();
    let plan = r.plan_with(&container, None, api);
    let before = r.state();
    let node = Path::new("/dev/nvidia1");
    let stack = move |step: &str, at: &Path| {
        if step == "bind: attached" && at == node {
            cover(node);
        }
        None
    };
    let err = nvc_sys::fault::with_hook(stack, || plan.configure(&container, None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not the mount just made at /dev/nvidia1"),
        "{api:?}: {err}"
    );
    assert!(
        err.contains("/dev/nvidia1: hidden under a mount nvc did not make"),
        "{api:?}: {err}"
    );
    let after = r.state();
    assert_eq!(after.2, before.2, "{api:?}: the device cgroup changed");
    // Everything else nvc made is undone: the container's mounts are those it had, plus
    // nvc's bind of the node under the container's own.
    let added: Vec<&str> = after
        .0
        .lines()
        .filter(|l| !before.0.lines().any(|b| b == *l))
        .collect();
    assert_eq!(added.len(), 2, "{api:?}: {added:?}");
    assert!(
        added.iter().all(|l| l.contains(" /dev/nvidia1 ")),
        "{added:?}"
    );
    let top = fs::metadata(inside(&r, "/dev/nvidia1")).unwrap();
    assert!(top.is_file(), "{api:?}: the container's cover is on top");
}

#[test]
fn a_mount_stacked_on_a_node_while_detaching_is_not_taken_and_nvcs_is_said_to_be_left() {
    // At the check before the unmount, then in the instant between it and `umount2`, which
    // takes the topmost mount at a place: the cover then goes instead of nvc's bind.
    for (point, said, left) in [
        ("detach: umount", "no longer the one nvc made", 2),
        ("umount", "unmounted instead", 1),
    ] {
        let Some(r) = running() else { return };
        let container = r.container();
        attach_gpu1(&r, &container);
        let gpu1 = r.plan(&container, Some(r.gpu1()));
        let node = Path::new("/dev/nvidia1");
        let stacked = Arc::new(AtomicBool::new(false));
        let stack = {
            let stacked = Arc::clone(&stacked);
            move |step: &str, at: &Path| {
                if step == point && at == node && !stacked.swap(true, Ordering::Relaxed) {
                    cover(node);
                }
                None
            }
        };
        let err = nvc_sys::fault::with_hook(stack, || gpu1.detach(&container))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "detach left mounts in place (the device rules are denied): /dev/nvidia1: "
            ) && err.contains(said),
            "{point}: {err}"
        );
        assert_eq!(mounts_at(&r, "/dev/nvidia1").len(), left, "{point}");
        let devices = fs::read_to_string(r.cgroup.path().join("devices.list")).unwrap();
        assert!(
            !devices.lines().any(|l| l.starts_with("c 195:1 ")),
            "{point}: the device stays denied: {devices}"
        );
        // The GPU's other mount was taken away all the same.
        assert!(
            mounts_at(&r, "/proc/driver/nvidia/gpus/0000:2a:00.0").is_empty(),
            "{point}"
        );
    }
}

#[test]
fn a_parent_directory_renamed_under_a_detach_does_not_redirect_it() {
    let Some(r) = running() else { return };
    let container = r.container();
    attach_gpu1(&r, &container);
    let gpu1 = r.plan(&container, Some(r.gpu1()));
    let node = Path::new("/dev/nvidia1");
    // Between finding the node's bind and unmounting it, a container process renames `/dev`
    // and puts a file of its own where the node was.
    let renamed = Arc::new(AtomicBool::new(false));
    let rename = {
        let renamed = Arc::clone(&renamed);
        move |step: &str, at: &Path| {
            if step == "detach: umount" && at == node && !renamed.swap(true, Ordering::Relaxed) {
                fs::rename("/dev", "/dev.moved").unwrap();
                fs::create_dir("/dev").unwrap();
                fs::write(node, b"the container's").unwrap();
            }
            None
        }
    };
    let done = nvc_sys::fault::with_hook(rename, || gpu1.detach(&container)).unwrap();
    assert!(renamed.load(Ordering::Relaxed), "the race did not run");
    assert!(done.unmounted.contains(&node.to_path_buf()), "{done:?}");
    // nvc's bind went where it was moved, with the empty file nvc made under it; the
    // container's file stays.
    assert!(mounts_at(&r, "/dev.moved/nvidia1").is_empty());
    assert!(!inside(&r, "/dev.moved/nvidia1").exists());
    assert_eq!(
        fs::read(inside(&r, "/dev/nvidia1")).unwrap(),
        b"the container's"
    );
    assert!(
        fs::metadata(inside(&r, "/dev.moved/nvidiactl"))
            .unwrap()
            .file_type()
            .is_char_device(),
        "the driver-wide nodes stay, where they were moved"
    );
}

#[test]
fn mount2_binds_are_refused_for_a_running_container_before_anything_changes() {
    // Its namespace cannot see the host's paths: a `mount(2)` bind source would be looked up
    // there (upstream's failure, `open failed: /proc/PID/root/<rootfs>`).
    let Some(r) = running() else { return };
    let container = r.container();
    let plan = r.plan_with(&container, None, MountApi::Legacy);
    let before = r.state();
    let err = plan.configure(&container, None).unwrap_err().to_string();
    assert!(
        err.contains("needs open_tree (Linux 5.2), not mount(2) with the legacy mount API"),
        "{err}"
    );
    assert_eq!(r.state(), before);
}

#[test]
fn a_copy_of_the_node_stacked_on_nvcs_bind_goes_with_it() {
    // A container process binds the node onto itself: the top then shows the host's node too,
    // but it is the container's copy; nvc's is under it.
    let Some(r) = running() else { return };
    let container = r.container();
    attach_gpu1(&r, &container);
    nvc_mount::in_mount_ns(r.pid, || {
        mount(
            Some("/dev/nvidia1"),
            "/dev/nvidia1",
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        Ok(())
    })
    .unwrap();
    assert_eq!(mounts_at(&r, "/dev/nvidia1").len(), 2);
    let gpu1 = r.plan(&container, Some(r.gpu1()));
    let done = gpu1.detach(&container).unwrap();
    assert!(done.unmounted.contains(&PathBuf::from("/dev/nvidia1")));
    assert!(
        mounts_at(&r, "/dev/nvidia1").is_empty(),
        "nvc's bind went too"
    );
    assert!(!inside(&r, "/dev/nvidia1").exists());
}

/// GPU 1 attached to `r`'s container (without a linker-cache update).
fn attach_gpu1(r: &Running, container: &nvc_mount::Container) {
    let plan = r.plan(container, None);
    plan.configure(container, None).unwrap();
    assert_eq!(mounts_at(r, "/dev/nvidia1").len(), 1);
}
