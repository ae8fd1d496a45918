//! Helpers shared by the integration tests: glibc's `ldconfig` as an oracle.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

pub mod exercise;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use nvc_ldcache::LdCache;

/// glibc's ldconfig, or `None` (the caller skips with a printed reason).
pub fn ldconfig() -> Option<PathBuf> {
    ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// `ldconfig -p -C cache`, stdout, asserting success.
pub fn ldconfig_print(ldconfig: &Path, cache: &Path) -> Vec<u8> {
    let out = Command::new(ldconfig)
        .arg("-p")
        .arg("-C")
        .arg(cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ldconfig -p -C {} failed: {}",
        cache.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Our rendering of `ldconfig -p -C name`.
pub fn listing(cache: &LdCache<'_>, name: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    cache.write_listing(name.as_os_str(), &mut out).unwrap();
    out
}

/// Asserts two listings are equal, showing the first differing line.
pub fn assert_same_listing(ours: &[u8], theirs: &[u8]) {
    if ours != theirs {
        let (a, b) = (
            String::from_utf8_lossy(ours),
            String::from_utf8_lossy(theirs),
        );
        for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
            assert_eq!(x, y, "line {} differs", i + 1);
        }
        assert_eq!(a.lines().count(), b.lines().count(), "line counts differ");
        panic!("listings differ in bytes");
    }
}

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}
