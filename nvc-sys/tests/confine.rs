//! `run_confined` / `prepare_confined` with a statically linked busybox in a temporary
//! root: the program runs as pid 1 of its own pid namespace, as the uid:gid asked, under
//! the rlimits asked, with masked directories empty and unlisted syscalls failing with
//! `EPERM`; its stdout and stderr come back interleaved with its exit code; a CPU limit's
//! kill is `Signaled`, a program past its timeout is `TimedOut` (and killed quickly); a
//! program run from a descriptor needs nothing in the root; a prepared run that is dropped
//! leaves no child; failures name the step (`bind rootfs`) or `exec` with the errno.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::ffi::CString;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::resource::Resource;
use nvc_sys::Error;
use nvc_sys::confine::{Confinement, Finished, Program, Status, prepare_confined, run_confined};

static MASKS: LazyLock<[&Path; 3]> =
    LazyLock::new(|| [Path::new("/proc"), Path::new("/sys"), Path::new("/dev")]);

/// A root (mode 0755, as an unprivileged program must traverse it) holding
/// `bin/busybox` and a `proc/` with a file the mask must hide; `None` (skip reported)
/// without root or a static busybox.
fn busybox_root() -> Option<tempfile::TempDir> {
    if !common::root_or_skip("confining a program (namespaces, pivot_root)") {
        return None;
    }
    let root = common::busybox_root()?;
    fs::create_dir(root.path().join("proc")).unwrap();
    fs::write(root.path().join("proc/hidden-by-the-mask"), "").unwrap();
    Some(root)
}

/// Every syscall number but `denied`.
fn all_but(denied: &[libc::c_long]) -> Vec<libc::c_long> {
    (0..512).filter(|nr| !denied.contains(nr)).collect()
}

/// `/bin/busybox sh -c <script>`.
fn sh(script: &str) -> Vec<CString> {
    ["/bin/busybox", "sh", "-c", script]
        .into_iter()
        .map(|a| CString::new(a).unwrap())
        .collect()
}

/// A confinement of `sh -c <script>` (in `argv`) in `root` ([`common::busybox_confinement`])
/// with `/proc`, `/sys` and `/dev` masked.
fn confinement<'a>(
    root: &'a Path,
    argv: &'a [CString],
    syscalls: &'a [libc::c_long],
) -> Confinement<'a> {
    Confinement {
        masks: &*MASKS,
        ..common::busybox_confinement(root, argv, syscalls)
    }
}

#[test]
fn the_program_runs_confined_and_its_output_and_exit_come_back() {
    let Some(root) = busybox_root() else { return };
    let argv = sh("b=/bin/busybox
        echo pid=$$
        echo ids=$($b id -u):$($b id -g):$($b id -G)
        echo nofile=$(ulimit -n)
        echo proc=$($b ls -A /proc)
        echo to-stderr >&2
        $b mkdir /made 2>&1 | $b grep -o 'Operation not permitted'
        exit 7");
    let syscalls = all_but(&[libc::SYS_mkdir, libc::SYS_mkdirat]);
    let c = confinement(root.path(), &argv, &syscalls);
    let Finished { status, output } = run_confined(&c).unwrap();
    let output = String::from_utf8(output).unwrap();
    assert_eq!(status, Status::Exited(7), "{output}");
    assert_eq!(
        output,
        "pid=1\nids=1234:1234:1234\nnofile=32\nproc=\nto-stderr\nOperation not permitted\n"
    );
    assert!(!root.path().join("made").exists());
}

#[test]
fn a_cpu_limit_kill_is_signaled_not_timed_out() {
    let Some(root) = busybox_root() else { return };
    let argv = sh("while :; do :; done");
    let syscalls = all_but(&[]);
    let mut c = confinement(root.path(), &argv, &syscalls);
    let rlimits = [(Resource::RLIMIT_CPU, 1)];
    c.rlimits = &rlimits;
    let done = run_confined(&c).unwrap();
    assert_eq!(done.status, Status::Signaled(libc::SIGKILL), "{done:?}");
}

#[test]
fn a_program_past_its_timeout_is_killed() {
    let Some(root) = busybox_root() else { return };
    let argv = sh("echo started; /bin/busybox sleep 60");
    let syscalls = all_but(&[]);
    let mut c = confinement(root.path(), &argv, &syscalls);
    c.timeout = Duration::from_millis(500);
    let start = Instant::now();
    let done = run_confined(&c).unwrap();
    let took = start.elapsed();
    assert_eq!(done.status, Status::TimedOut);
    assert_eq!(done.output, b"started\n");
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_program_run_from_a_descriptor_needs_nothing_in_the_root() {
    let Some(busybox_root) = busybox_root() else {
        return;
    };
    let empty = tempfile::tempdir().unwrap();
    fs::set_permissions(empty.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let program = fs::File::open(busybox_root.path().join("bin/busybox")).unwrap();
    let argv = sh("echo from-fd; echo /*");
    let syscalls = all_but(&[]);
    let mut c = confinement(empty.path(), &argv, &syscalls);
    c.program = Program::Fd(program.as_fd());
    let done = run_confined(&c).unwrap();
    // The root is empty: the glob stays as written.
    assert_eq!(
        (done.status, String::from_utf8(done.output).unwrap()),
        (Status::Exited(0), "from-fd\n/*\n".to_owned())
    );
}

#[test]
fn a_prepared_run_starts_later_from_copied_arguments() {
    let Some(root) = busybox_root() else { return };
    let prepared = {
        let argv = sh("echo prepared; exit 3");
        let syscalls = all_but(&[]);
        prepare_confined(&confinement(root.path(), &argv, &syscalls)).unwrap()
        // `argv`, `syscalls` and the confinement are gone before the run.
    };
    let done = prepared.run().unwrap();
    assert_eq!(done.status, Status::Exited(3));
    assert_eq!(done.output, b"prepared\n");
}

/// The children of the calling thread (`/proc/thread-self/children`), or `None`
/// when the kernel does not list them.
fn my_children() -> Option<String> {
    fs::read_to_string("/proc/thread-self/children").ok()
}

#[test]
fn a_prepared_run_dropped_unstarted_leaves_no_child() {
    let Some(root) = busybox_root() else { return };
    let Some(before) = my_children() else {
        common::skip("no /proc/thread-self/children (CONFIG_PROC_CHILDREN)");
        return;
    };
    let argv = sh("exit 0");
    let syscalls = all_but(&[]);
    let prepared = prepare_confined(&confinement(root.path(), &argv, &syscalls)).unwrap();
    let during = my_children().unwrap();
    assert_ne!(during, before, "no child while prepared");
    drop(prepared);
    // A zombie would still be listed: gone means reaped.
    assert_eq!(my_children().unwrap(), before);
}

#[test]
fn a_missing_program_is_an_exec_error_with_enoent() {
    let Some(root) = busybox_root() else { return };
    let argv = sh("exit 0");
    let syscalls = all_but(&[]);
    let mut c = confinement(root.path(), &argv, &syscalls);
    c.program = Program::Path(c"/bin/no-such-program");
    let err = run_confined(&c).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Exec {
                errno: Errno::ENOENT
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("exec: ENOENT"), "{err}");
}

#[test]
fn a_missing_root_names_the_step_that_failed() {
    let Some(root) = busybox_root() else { return };
    let missing = root.path().join("no-such-root");
    let argv = sh("exit 0");
    let syscalls = all_but(&[]);
    let err = run_confined(&confinement(&missing, &argv, &syscalls)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Confinement {
                step: "bind rootfs",
                errno: Errno::ENOENT
            }
        ),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("bind rootfs") && shown.contains("ENOENT"),
        "{shown}"
    );
}
