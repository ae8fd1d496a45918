//! Throw-away cgroups for device-control tests, removed (after moving their processes out)
//! when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A new cgroup directory under the host's v1 `devices` hierarchy or its cgroup2 mount.
#[derive(Debug)]
pub struct TestCgroup {
    path: PathBuf,
}

/// The mount point of the first mount in `/proc/self/mountinfo` that `wanted` accepts
/// (fstype, super options).
fn mount_point(wanted: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    let table = fs::read_to_string("/proc/self/mountinfo").ok()?;
    table.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        let point = f.get(4)?;
        wanted(f.get(sep + 1)?, f.get(sep + 3).copied().unwrap_or_default())
            .then(|| PathBuf::from(point))
    })
}

impl TestCgroup {
    /// A child of the v1 `devices` hierarchy's root. `None`, with the reason printed, when
    /// there is no such hierarchy or the caller may not create cgroups (not root).
    #[must_use]
    pub fn v1_devices() -> Option<Self> {
        let base =
            mount_point(|fs, opts| fs == "cgroup" && opts.split(',').any(|o| o == "devices"));
        Self::create(base, "cgroup v1 devices")
    }

    /// A child of the cgroup2 mount's root. `None`, with the reason printed, when there is
    /// no cgroup2 mount or the caller may not create cgroups.
    #[must_use]
    pub fn v2() -> Option<Self> {
        Self::create(mount_point(|fs, _| fs == "cgroup2"), "cgroup2")
    }

    fn create(base: Option<PathBuf>, what: &str) -> Option<Self> {
        let Some(base) = base else {
            crate::skip!("no {what} hierarchy mounted");
            return None;
        };
        let name = format!(
            "nvc-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = base.join(name);
        match fs::create_dir(&path) {
            Ok(()) => Some(TestCgroup { path }),
            Err(e) => {
                crate::skip!(
                    "cannot create a {what} cgroup under {}: {e}",
                    base.display()
                );
                None
            }
        }
    }

    /// A cgroup nested in this one (drop it first).
    #[must_use]
    pub fn nested(&self) -> Option<Self> {
        Self::create(Some(self.path.clone()), "nested")
    }

    /// Its directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves process `pid` into it.
    ///
    /// # Errors
    ///
    /// The write to `cgroup.procs` failed.
    pub fn add(&self, pid: u32) -> std::io::Result<()> {
        fs::write(self.path.join("cgroup.procs"), pid.to_string())
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let parent = self.path.parent().map(|p| p.join("cgroup.procs"));
        for _ in 0..100 {
            let procs = fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                if let Some(parent) = &parent {
                    let _ = fs::write(parent, pid);
                }
            }
            if fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
