//! Skipping a test that needs what this machine lacks (root, device nodes, a cgroup
//! hierarchy, a compiler) — loudly, and never where CI promised to run it.

use std::fmt::Display;

/// The variable `.ci/run` sets when it runs as root: every test that would skip fails.
pub const REQUIRE_PRIVILEGED: &str = "NVC_REQUIRE_PRIVILEGED";

/// Whether skipping is forbidden ([`REQUIRE_PRIVILEGED`] is `1`).
#[must_use]
pub fn privileged_required() -> bool {
    std::env::var_os(REQUIRE_PRIVILEGED).is_some_and(|v| v == "1")
}

/// Reports that the calling test cannot run here and why: prints `skipped: <reason>`, or,
/// with `NVC_REQUIRE_PRIVILEGED=1`, fails the test with the reason, so a CI run as root
/// cannot pass on tests that silently did nothing.
///
/// # Panics
///
/// With `NVC_REQUIRE_PRIVILEGED=1`, always.
#[allow(clippy::panic)]
pub fn skip(reason: impl Display) {
    if privileged_required() {
        panic!("{REQUIRE_PRIVILEGED}=1 but this test would skip: {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// [`skip`] with a formatted reason: `skip!("no {what} hierarchy")`.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {
        $crate::skip(format_args!($($arg)*))
    };
}
