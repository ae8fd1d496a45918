//! A paused test container: a process in its own private mount namespace, as a runtime
//! leaves a container before `pivot_root`.

use std::process::{Child, Command};
use std::time::Duration;

/// `sleep` in a new private mount namespace (`unshare --mount --propagation private`),
/// killed and reaped when dropped.
#[derive(Debug)]
pub struct PausedContainer(Child);

impl PausedContainer {
    /// Starts one and waits until it is in its own mount namespace. `None` (with the reason
    /// printed, for tests that skip) when the caller is not root or `unshare` cannot run.
    #[must_use]
    pub fn start() -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: a container's mount namespace needs root");
            return None;
        }
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "600"])
            .spawn();
        let Ok(child) = child else {
            eprintln!("skipped: cannot start `unshare --mount`");
            return None;
        };
        let c = PausedContainer(child);
        let mine = std::fs::read_link("/proc/self/ns/mnt").ok()?;
        for _ in 0..500 {
            if std::fs::read_link(format!("/proc/{}/ns/mnt", c.pid())).is_ok_and(|ns| ns != mine) {
                return Some(c);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("skipped: `unshare --mount` did not enter a new namespace");
        None
    }

    /// Its pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Its `/proc/<pid>/mountinfo`.
    #[must_use]
    pub fn mountinfo(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid())).unwrap_or_default()
    }
}

impl Drop for PausedContainer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
