//! A paused test container: a process in its own mount and pid namespaces, as a runtime
//! leaves a container's init before `pivot_root`; and a running one, its root pivoted.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `sleep` as pid 1 of new mount (private) and pid namespaces
/// (`unshare --mount --pid --fork`), killed with its namespace and reaped when dropped.
#[derive(Debug)]
pub struct PausedContainer {
    unshare: Child,
    pid: u32,
}

/// The first child of process `parent`.
fn child_of(parent: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

impl PausedContainer {
    /// Starts one and waits until its init is in its own mount namespace. `None` (with the
    /// reason printed, for tests that skip) when the caller is not root or `unshare` cannot
    /// run.
    #[must_use]
    pub fn start() -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            crate::skip!("a container's mount namespace needs root");
            return None;
        }
        let unshare = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "--kill-child",
                "sleep",
                "600",
            ])
            .spawn();
        let Ok(unshare) = unshare else {
            crate::skip!("cannot start `unshare --mount --pid`");
            return None;
        };
        let mut c = PausedContainer { unshare, pid: 0 };
        let mine = std::fs::read_link("/proc/self/ns/mnt").ok()?;
        for _ in 0..500 {
            if let Some(pid) = child_of(c.unshare.id())
                && std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|ns| ns != mine)
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "sleep")
            {
                c.pid = pid;
                return Some(c);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        crate::skip!("`unshare --mount --pid` did not start a container");
        None
    }

    /// A running container: `rootfs` bound on itself and made the root of a new mount
    /// namespace with `pivot_root`, the old root detached, as a runtime leaves a started
    /// container; its init is a shell waiting on a pipe. The image must have a static
    /// `/bin/busybox` (its `umount` detaches the old root). `None` (with the reason printed)
    /// as [`PausedContainer::start`].
    #[must_use]
    pub fn pivoted(rootfs: &Path) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            crate::skip!("a container's mount namespace needs root");
            return None;
        }
        let script = "mount --bind \"$1\" \"$1\" && cd \"$1\" && pivot_root . . && /bin/busybox umount -l . \
                      && cd / && echo ready && read -r _";
        let unshare = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--pid", "--fork"])
            .args(["--kill-child", "/bin/sh", "-c", script, "sh"])
            .arg(rootfs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let Ok(mut unshare) = unshare else {
            crate::skip!("cannot start `unshare --mount --pid`");
            return None;
        };
        let mut line = String::new();
        let ready = unshare
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let mut c = PausedContainer { unshare, pid: 0 };
        match (ready, child_of(c.unshare.id())) {
            (Some(Ok(_)), Some(pid)) if line.trim() == "ready" => {
                c.pid = pid;
                Some(c)
            }
            _ => {
                crate::skip!("`unshare` and `pivot_root` did not start a running container");
                None
            }
        }
    }

    /// Its init's pid (as the host sees it).
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its init's `/proc/<pid>/mountinfo`.
    #[must_use]
    pub fn mountinfo(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid)).unwrap_or_default()
    }
}

impl Drop for PausedContainer {
    /// `unshare --kill-child` takes its child (pid 1, hence the whole namespace) along.
    fn drop(&mut self) {
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}
