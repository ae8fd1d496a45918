//! Helpers shared by nvc-sys's integration tests: skipping without privilege, and running a
//! check in a forked child (for anything that changes process-wide state: namespaces,
//! mounts, seccomp filters) whose verdict comes back over the pipe.
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nvc_sys::{Ended, Forked, fork_with_pipe};

/// The variable `.ci/run` sets when it runs as root: a test that would skip fails instead.
const REQUIRE_PRIVILEGED: &str = "NVC_REQUIRE_PRIVILEGED";

/// Exit code of a forked check that could not run here (its message starts with `skip:`).
pub const SKIP_CODE: i32 = 77;

/// Reports that the calling test cannot run here: prints `skip: <reason>` (or, under
/// `NVC_REQUIRE_PRIVILEGED=1`, as CI sets when it runs as root, fails with the reason).
#[allow(clippy::panic)]
pub fn skip(reason: impl std::fmt::Display) {
    if std::env::var_os(REQUIRE_PRIVILEGED).is_some_and(|v| v == "1") {
        panic!("{REQUIRE_PRIVILEGED}=1 but this test would skip: {reason}");
    }
    eprintln!("skip: {reason}");
}

/// Whether the test runs as root; when not, reports the skip for `what`.
pub fn root_or_skip(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip(format!("{what} needs root"));
    false
}

/// Reads `from` to its end; panics when that takes longer than `timeout` (a writer that
/// never closes its end).
pub fn read_all(from: &mut File, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "pipe still open after {timeout:?}");
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => match nix::unistd::read(&*from, &mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => panic!("read: {e}"),
            },
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Forks with [`fork_with_pipe`], reads everything the child writes and reaps it.
pub fn fork_and_collect(work: impl FnOnce(&mut File) -> i32) -> (Vec<u8>, Option<Ended>) {
    // SAFETY: the closures the tests pass make system calls, allocate and write to the pipe
    // only; none takes a lock another test thread may hold (no stdout, no stderr).
    let mut child: Forked = unsafe { fork_with_pipe(work) }.expect("fork_with_pipe");
    let mut out = child.take_output().expect("the pipe's read end");
    let bytes = read_all(&mut out, Duration::from_secs(20));
    (bytes, child.wait())
}

/// Runs `check` in a forked child. `Ok` passes, `Err("skip: ...")` skips the calling test
/// (returns false), any other `Err` fails it with the child's message.
pub fn in_child(check: impl FnOnce() -> Result<(), String>) -> bool {
    let (message, ended) = fork_and_collect(|out| match check() {
        Ok(()) => 0,
        Err(why) => {
            let _ = out.write_all(why.as_bytes());
            if why.starts_with("skip:") {
                SKIP_CODE
            } else {
                1
            }
        }
    });
    let message = String::from_utf8_lossy(&message);
    match ended {
        Some(Ended::Exited(0)) => true,
        Some(Ended::Exited(SKIP_CODE)) => {
            skip(message.trim_start_matches("skip:").trim());
            false
        }
        other => panic!("child check failed ({other:?}): {message}"),
    }
}

/// `Err(format!(...))` unless `cond`: an assertion for the forked child, which reports
/// instead of panicking.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!("{}:{}: {}", file!(), line!(), format_args!($($msg)+)));
        }
    };
}

/// The statically linked busybox (CI installs busybox-static), or `None` (skip reported).
pub fn static_busybox() -> Option<std::path::PathBuf> {
    const BUSYBOX: &str = "/bin/busybox";
    let Ok(elf) = std::fs::read(BUSYBOX) else {
        skip(format!("no {BUSYBOX} (install busybox-static)"));
        return None;
    };
    if !is_static_elf(&elf) {
        skip(format!("{BUSYBOX} is not a statically linked ELF program"));
        return None;
    }
    Some(BUSYBOX.into())
}

/// A root (mode 0755, as an unprivileged program must traverse it) holding a statically
/// linked `bin/busybox`, or `None` (skip reported).
pub fn busybox_root() -> Option<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let busybox = static_busybox()?;
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(root.path().join("bin")).unwrap();
    std::fs::copy(busybox, root.path().join("bin/busybox")).unwrap();
    Some(root)
}

/// A confinement of busybox's `argv` in `root` as 1234:1234 with `syscalls` allowed, at
/// most 32 open files, a 20 s timeout, no masks and no cgroup (tests set what they test).
pub fn busybox_confinement<'a>(
    root: &'a std::path::Path,
    argv: &'a [std::ffi::CString],
    syscalls: &'a [libc::c_long],
) -> nvc_sys::confine::Confinement<'a> {
    use nvc_sys::confine::{Confinement, NewRoot, Program};
    Confinement {
        user_ns: None,
        mount_ns: None,
        cgroup: None,
        root: NewRoot::Path(root),
        pivot: true,
        masks: &[],
        proc: None,
        rlimits: &[(nix::sys::resource::Resource::RLIMIT_NOFILE, 32)],
        uid: 1234,
        gid: 1234,
        keep_dac_override: false,
        syscalls,
        program: Program::Path(c"/bin/busybox"),
        argv,
        name: c"nvc-sys-test",
        timeout: Duration::from_secs(20),
    }
}

/// Whether `elf` is a 64-bit little-endian ELF file without a program interpreter
/// (`PT_INTERP`): one that runs in a root holding nothing else.
fn is_static_elf(elf: &[u8]) -> bool {
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(count))
        .all(|i| u32_at(phoff + i * usize::from(size)).is_some_and(|p_type| p_type != 3))
}
