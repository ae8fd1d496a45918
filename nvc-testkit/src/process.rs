//! What a test process holds, to check that nvc leaves nothing of its own in its caller.

use std::collections::BTreeSet;
use std::fs;

/// The calling process's descriptors, threads and children, as `/proc/self` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessState {
    /// Open descriptors, each with what it refers to (`7 -> pipe:[1234]`).
    pub fds: Vec<String>,
    /// The number of threads.
    pub threads: usize,
    /// The pids of the children of every thread (zombies included).
    pub children: BTreeSet<String>,
}

impl ProcessState {
    /// The process now. Reading `/proc/self/fd` opens one descriptor, the same one in every
    /// snapshot, so two snapshots of an unchanged process are equal.
    ///
    /// # Panics
    ///
    /// When `/proc/self` cannot be read (no procfs).
    #[must_use]
    #[allow(clippy::unwrap_used)]
    pub fn now() -> Self {
        let mut children = BTreeSet::new();
        let mut threads = 0;
        for task in fs::read_dir("/proc/self/task").unwrap() {
            threads += 1;
            let list =
                fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
            children.extend(list.split_whitespace().map(str::to_owned));
        }
        let fds = fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let target = fs::read_link(e.path()).ok()?;
                Some(format!(
                    "{} -> {}",
                    e.file_name().to_string_lossy(),
                    target.display()
                ))
            })
            .collect();
        ProcessState {
            fds,
            threads,
            children,
        }
    }
}
