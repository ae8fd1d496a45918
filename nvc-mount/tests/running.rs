//! Tier c, running containers: a container whose root was pivoted (as a runtime leaves a
//! started one) given GPU 1 of the dgx host through its process's root alone
//! ([`Container::running`]) and the GPU taken back ([`MountPlan::detach`]); every fault
//! point of the attach failing in turn, each leaving the container, its device cgroup, the
//! host's mounts and the calling process as they were; the detach's failing steps; and the
//! container's init exiting in the middle of an attach.
//!
//! One test per binary on purpose: descriptors, threads and children are counted for the
//! whole process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nvc_testkit::ProcessState;

mod common;
use common::running::{failing_at, host_mounts, running};

#[test]
fn gpus_go_into_and_out_of_a_running_container_and_every_failure_leaves_it_as_it_was() {
    let Some(r) = running() else { return };
    let container = r.container();
    assert!(container.is_running());
    assert_eq!(
        container.rootfs,
        Path::new(&format!("/proc/{}/root", r.pid))
    );
    let plan = r.plan(&container, None);
    let host = host_mounts();

    // Every fault point of the attach, failing in turn.
    let ((), steps) = failing_at(None, || {
        let done = plan
            .configure(&container, Some(&common::host_ldconfig()))
            .unwrap();
        assert!(done.mounted.mounts.contains(&PathBuf::from("/dev/nvidia1")));
    });
    let attached = r.state();
    assert!(attached.0.contains(" /dev/nvidia1 "), "{}", attached.0);
    assert!(
        attached.2.lines().any(|l| l == "c 195:1 rw"),
        "{}",
        attached.2
    );
    assert!(
        attached.1.contains(&PathBuf::from("etc/ld.so.cache")),
        "the sandboxed ldconfig wrote the container's cache"
    );
    // The sandboxed ldconfig, rooted by descriptor, ran.
    assert!(steps.iter().any(|(n, _)| n == "ldconfig"), "{steps:?}");
    let gpu1 = r.plan(&container, Some(r.gpu1()));
    assert_eq!(
        gpu1.in_place(&container).unwrap(),
        [
            PathBuf::from("/dev/nvidia1"),
            PathBuf::from("/proc/driver/nvidia/gpus/0000:2a:00.0")
        ]
    );

    // Detached: the rule denied, the node and the /proc directory gone, the rest kept.
    let detached = gpu1.detach(&container).unwrap();
    assert_eq!(detached.unmounted.len(), 2, "{detached:?}");
    assert_eq!(detached.cgroup.as_ref().unwrap().1.added, [(195, 1)]);
    let after = r.state();
    assert!(!after.0.contains(" /dev/nvidia1 "), "{}", after.0);
    assert!(!after.1.contains(&PathBuf::from("dev/nvidia1")));
    assert!(
        after.0.contains(" /dev/nvidiactl "),
        "the driver-wide nodes stay"
    );
    assert!(
        !after.2.lines().any(|l| l.starts_with("c 195:1 ")),
        "{}",
        after.2
    );
    assert!(gpu1.in_place(&container).unwrap().is_empty());
    // A second detach finds nothing to do.
    let again = gpu1.detach(&container).unwrap();
    assert_eq!(
        (again.unmounted.len(), again.cgroup.unwrap().1.already),
        (0, vec![(195, 1)])
    );
    drop(container);
    drop(r);

    // Each failing attach step leaves everything as it was.
    for (n, (name, path)) in steps.iter().enumerate() {
        let Some(r) = running() else { return };
        let container = r.container();
        let plan = r.plan(&container, None);
        let before = r.state();
        let process = ProcessState::now();
        let step = format!("step {n} ({name} {})", path.display());
        let (result, _) = failing_at(Some(n), || {
            plan.configure(&container, Some(&common::host_ldconfig()))
        });
        let err = result
            .err()
            .unwrap_or_else(|| panic!("{step}: attach succeeded"));
        let text = err.to_string();
        assert!(!text.contains("undo left"), "{step}: {text}");
        assert!(
            text.contains(Errno::EIO.desc()) || std::error::Error::source(&err).is_some(),
            "{step}: failed for another reason: {text}"
        );
        assert_eq!(r.state(), before, "{step}: the container changed ({err})");
        assert_eq!(host_mounts(), host, "{step}: the host's mounts changed");
        assert_eq!(
            ProcessState::now(),
            process,
            "{step}: fds, threads or children left"
        );
    }

    // Detach's own steps: a failed denial changes nothing; a failed unmount leaves the
    // device denied and says which mount stayed.
    let Some(r) = running() else { return };
    let container = r.container();
    let plan = r.plan(&container, None);
    let gpu1 = r.plan(&container, Some(r.gpu1()));
    plan.configure(&container, None).unwrap();
    let (steps, denied_at) = {
        let (_, steps) = failing_at(Some(usize::MAX), || gpu1.detach(&container).unwrap());
        plan.configure(&container, None).unwrap();
        let at = steps
            .iter()
            .position(|(n, _)| n == "detach: umount")
            .unwrap();
        (steps, at)
    };
    let attached = r.state();
    let (err, _) = failing_at(Some(0), || gpu1.detach(&container));
    let err = err.unwrap_err().to_string();
    assert!(
        err.contains("devices.deny"),
        "{} failed first: {err}",
        steps[0].0
    );
    assert_eq!(r.state(), attached, "a failed denial changes nothing");
    let (err, _) = failing_at(Some(denied_at), || gpu1.detach(&container));
    let err = err.unwrap_err().to_string();
    assert!(
        err.contains("detach left mounts in place") && err.contains("/proc/driver/nvidia/gpus"),
        "{err}"
    );
    let now = r.state();
    assert!(
        !now.2.lines().any(|l| l.starts_with("c 195:1 ")),
        "denied: {}",
        now.2
    );
    drop(container);

    // The container's init exits in the middle of an attach: the attach fails, and nothing
    // is left on the host or in the calling process.
    let process = ProcessState::now();
    let Some(r) = running() else { return };
    let container = r.container();
    let plan = r.plan(&container, None);
    let count = AtomicUsize::new(0);
    let init = Arc::new(Mutex::new(r.c.lock().unwrap().take()));
    let exits = Arc::clone(&init);
    let result = nvc_sys::fault::with_hook(
        move |name, _| {
            if name == "move_mount" && count.fetch_add(1, Ordering::Relaxed) == 3 {
                drop(exits.lock().unwrap().take());
            }
            None
        },
        || plan.configure(&container, Some(&common::host_ldconfig())),
    );
    // The namespace went with its last process, and nvc's mounts with it: the error says
    // the namespace could not be entered (to go on, or to undo).
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("not found") || err.contains("/ns/mnt"),
        "{err}"
    );
    assert_eq!(host_mounts(), host, "the host's mounts changed");
    drop((container, plan, r));
    assert_eq!(
        ProcessState::now(),
        process,
        "fds, threads or children left"
    );
}
