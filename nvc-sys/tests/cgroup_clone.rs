//! `clone_into_cgroup` and the confined runner's [`Cgroup::Unified`] on cgroup2 cgroups this
//! test creates under the cgroup2 mount and removes (also when a check fails): a child
//! created into a cgroup is in it from its first instruction; a descriptor that is no
//! cgroup2 directory is `EBADF`; where `clone3` fails as on a kernel without it (a seccomp
//! filter answering `ENOSYS`, or `EPERM`) nothing is created and the confined program still
//! ends up in the cgroup, through `cgroup.procs`; with `clone3`, the run's first process never
//! joins the cgroup, only the program is in it, also when that process has entered a user
//! namespace first.
//!
//! Timings (`--ignored`, root): fork + `cgroup.procs` join against `clone3` into the cgroup,
//! and whole confined runs, medians printed:
//! `cargo test -p nvc-sys --test cgroup_clone -- --ignored --nocapture --test-threads=1`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;
use nvc_sys::confine::{Cgroup, Confinement, Status, prepare_confined};
use nvc_sys::{Error, cgroup_clone_supported, cgroup_clone_unsupported, clone_into_cgroup};

/// A cgroup2 cgroup of this test, removed on drop (its members moved to the root first).
struct TestCgroup {
    path: PathBuf,
    dir: OwnedFd,
    procs: fs::File,
}

impl TestCgroup {
    /// A new empty cgroup under the cgroup2 mount, or `None` (skip reported).
    fn new() -> Option<TestCgroup> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        if !common::root_or_skip("creating a cgroup") {
            return None;
        }
        let Some(root) = mount_point("cgroup2") else {
            common::skip("no cgroup2 hierarchy mounted");
            return None;
        };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = root.join(format!("nvc-sys-clone-{}-{n}", std::process::id()));
        if let Err(e) = fs::create_dir(&path) {
            common::skip(format!("cannot create {}: {e}", path.display()));
            return None;
        }
        let dir = fs::File::open(&path).unwrap().into();
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))
            .unwrap();
        Some(TestCgroup { path, dir, procs })
    }

    /// The path a member's `/proc/<pid>/cgroup` shows (`0::/<name>`).
    fn shown(&self) -> String {
        format!("0::/{}\n", self.path.file_name().unwrap().to_str().unwrap())
    }

    /// The pids in it now.
    fn members(&self) -> Vec<u32> {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let parent = self.path.parent().map(|p| p.join("cgroup.procs"));
        for _ in 0..200 {
            for pid in fs::read_to_string(self.path.join("cgroup.procs"))
                .unwrap_or_default()
                .split_whitespace()
            {
                if let Some(parent) = &parent {
                    let _ = fs::write(parent, pid);
                }
            }
            match fs::remove_dir(&self.path) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return,
            }
        }
    }
}

/// The mount point of the first mount of filesystem type `fstype`.
fn mount_point(fstype: &str) -> Option<PathBuf> {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    table.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let dash = f.iter().position(|x| *x == "-")?;
        (f.get(dash + 1) == Some(&fstype)).then(|| PathBuf::from(f[4]))
    })
}

/// Installs, for the calling (forked, single-threaded) process, a seccomp filter that fails
/// `clone3` with `errno` and allows everything else — what Docker's default profile does
/// with `ENOSYS`.
fn refuse_clone3(errno: Errno) -> Result<(), String> {
    let filter = [
        // A = seccomp_data.nr
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // if A == SYS_clone3 fall through, else skip one
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: u32::try_from(libc::SYS_clone3).unwrap(),
        },
        // SECCOMP_RET_ERRNO | errno
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x0005_0000 | errno as u32,
        },
        // SECCOMP_RET_ALLOW
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        },
    ];
    let prog = libc::sock_fprog {
        len: 4,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `filter`, both alive for the call; the kernel copies them. The
    // calling process is a forked child of the test, whose filter dies with it.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            std::ptr::from_ref(&prog),
        )
    };
    if ret != 0 {
        return Err(format!("prctl(PR_SET_SECCOMP): {}", Errno::last()));
    }
    Ok(())
}

/// In the calling forked child: clones into `cg`; the new child's first act is reading its
/// `/proc/self/cgroup`, which the caller gets back, or `Ok(None)` where the kernel cannot.
fn first_view_in(cg: &TestCgroup) -> Result<Option<String>, String> {
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: called in a forked child of the test, which is single-threaded; the new child
    // reads a file, writes to the pipe and `_exit`s.
    match unsafe { clone_into_cgroup(cg.dir.as_fd()) } {
        Ok(Some(ForkResult::Child)) => {
            let code = match fs::read("/proc/self/cgroup") {
                Ok(seen) => {
                    let _ = fs::File::from(w).write_all(&seen);
                    0
                }
                Err(_) => 1,
            };
            // SAFETY: ends the clone without running the forked test's code.
            unsafe { libc::_exit(code) }
        }
        Ok(Some(ForkResult::Parent { child })) => {
            drop(w);
            let mut seen = String::new();
            fs::File::from(r)
                .read_to_string(&mut seen)
                .map_err(|e| format!("read: {e}"))?;
            waitpid(child, None).map_err(|e| format!("waitpid: {e}"))?;
            Ok(Some(seen))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(format!("clone_into_cgroup: {e}")),
    }
}

#[test]
fn a_child_cloned_into_a_cgroup_is_in_it_from_its_first_instruction() {
    let Some(cg) = TestCgroup::new() else { return };
    common::in_child(|| {
        let Some(seen) = first_view_in(&cg)? else {
            return Err("skip: this kernel cannot create processes in a cgroup".into());
        };
        ensure!(
            seen.lines().any(|l| format!("{l}\n") == cg.shown()),
            "the clone saw {seen:?}, not {:?}",
            cg.shown()
        );
        ensure!(
            cgroup_clone_supported(),
            "the clone worked but the probe says it would not"
        );
        Ok(())
    });
    // Reaped: the cgroup is empty again.
    assert_eq!(cg.members(), Vec::<u32>::new());
}

#[test]
fn a_descriptor_that_is_no_cgroup2_directory_is_ebadf() {
    let Some(cg) = TestCgroup::new() else { return };
    if !cgroup_clone_supported() {
        common::skip("this kernel cannot create processes in a cgroup");
        return;
    }
    // A v1 cgroup where the host has one, and a plain file: neither is a cgroup2 directory.
    let v1 = mount_point("cgroup").map(|p| fs::File::open(p).unwrap());
    let file = fs::File::open("/dev/null").unwrap();
    let procs = cg.procs.try_clone().unwrap();
    for fd in v1.iter().chain([&file, &procs]) {
        let raw = fd.as_raw_fd();
        common::in_child(|| {
            // SAFETY: single-threaded forked child; a child created anyway `_exit`s.
            match unsafe { clone_into_cgroup(fd.as_fd()) } {
                Err(Error::Syscall { call, errno }) => {
                    ensure!(
                        call == "clone3(CLONE_INTO_CGROUP)" && errno == Errno::EBADF,
                        "fd {raw}: {call}: {errno}"
                    );
                    Ok(())
                }
                Ok(Some(ForkResult::Child)) => {
                    // SAFETY: ends the unexpected clone at once.
                    unsafe { libc::_exit(0) }
                }
                other => Err(format!("fd {raw}: {other:?}")),
            }
        });
    }
}

#[test]
fn where_clone3_is_refused_nothing_is_created_and_the_caller_falls_back() {
    let Some(cg) = TestCgroup::new() else { return };
    for errno in [Errno::ENOSYS, Errno::EPERM] {
        assert!(cgroup_clone_unsupported(errno));
        common::in_child(|| {
            refuse_clone3(errno)?;
            ensure!(!cgroup_clone_supported(), "{errno}: probe says supported");
            // SAFETY: single-threaded forked child; a child created anyway `_exit`s.
            match unsafe { clone_into_cgroup(cg.dir.as_fd()) } {
                Ok(None) => Ok(()),
                Ok(Some(ForkResult::Child)) => {
                    // SAFETY: ends the unexpected clone at once.
                    unsafe { libc::_exit(0) }
                }
                other => Err(format!("{errno}: {other:?}")),
            }
        });
    }
    for errno in [Errno::EACCES, Errno::EBADF, Errno::ENODEV] {
        assert!(!cgroup_clone_unsupported(errno), "{errno}");
    }
}

/// A confinement of `argv` (busybox) in `root` ([`common::busybox_confinement`]), in `cgroup`.
fn confinement<'a>(
    root: &'a Path,
    argv: &'a [CString],
    syscalls: &'a [libc::c_long],
    cgroup: Option<Cgroup<'a>>,
) -> Confinement<'a> {
    Confinement {
        cgroup,
        name: c"nvc-sys-clone",
        ..common::busybox_confinement(root, argv, syscalls)
    }
}

fn argv(args: &[&str]) -> Vec<CString> {
    args.iter().map(|a| CString::new(*a).unwrap()).collect()
}

/// Prepares a confined `busybox sleep 1` into `cg` (unified), then runs it on a thread of
/// its own while this one watches the cgroup: the members after the prepare (let a join
/// finish), and the most seen at once during the run. With `userns`, the user and mount
/// namespaces entered, as root there.
fn members_of_a_confined_run(
    cg: &TestCgroup,
    root: &Path,
    userns: Option<&(OwnedFd, OwnedFd)>,
) -> (Vec<u32>, usize) {
    let args = argv(&["/bin/busybox", "sleep", "1"]);
    let syscalls: Vec<libc::c_long> = (0..512).collect();
    let unified = Cgroup::Unified {
        dir: cg.dir.as_fd(),
        procs: cg.procs.as_fd(),
    };
    let mut c = confinement(root, &args, &syscalls, Some(unified));
    if let Some((user, mount)) = userns {
        c.user_ns = Some(user.as_fd());
        c.mount_ns = Some(mount.as_fd());
        (c.uid, c.gid) = (0, 0);
    }
    let prepared = prepare_confined(&c).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let after_prepare = cg.members();
    std::thread::scope(|s| {
        let run = s.spawn(|| prepared.run().unwrap());
        let mut most = 0;
        while !run.is_finished() {
            most = most.max(cg.members().len());
            std::thread::sleep(Duration::from_millis(20));
        }
        let done = run.join().unwrap();
        assert_eq!(done.status, Status::Exited(0), "{done:?}");
        (after_prepare, most)
    })
}

#[test]
fn a_confined_program_is_created_in_a_unified_cgroup_and_its_first_process_never_joins() {
    let Some(cg) = TestCgroup::new() else { return };
    let Some(root) = common::busybox_root() else {
        return;
    };
    if !cgroup_clone_supported() {
        common::skip("this kernel cannot create processes in a cgroup");
        return;
    }
    let (after_prepare, during) = members_of_a_confined_run(&cg, root.path(), None);
    assert_eq!(after_prepare, Vec::<u32>::new(), "the first process joined");
    assert_eq!(during, 1, "only the program is in the cgroup");
    assert_eq!(cg.members(), Vec::<u32>::new());
}

#[test]
fn without_clone3_a_confined_program_still_ends_up_in_a_unified_cgroup() {
    let Some(cg) = TestCgroup::new() else { return };
    let Some(root) = common::busybox_root() else {
        return;
    };
    // In a child refusing clone3 with ENOSYS, as Docker's profile does: the first process
    // joins at the prepare, and the program is forked inside.
    common::in_child(|| {
        refuse_clone3(Errno::ENOSYS)?;
        let (after_prepare, during) = members_of_a_confined_run(&cg, root.path(), None);
        ensure!(
            after_prepare.len() == 1,
            "after the prepare: {after_prepare:?}"
        );
        ensure!(during == 2, "during the run: {during} members");
        Ok(())
    });
    assert_eq!(cg.members(), Vec::<u32>::new());
}

/// Median and 90th percentile of `samples`, in ms.
fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |percent: usize| samples[(samples.len() - 1) * percent / 100];
    format!(
        "median {:.3} ms, p75 {:.3} ms, p90 {:.3} ms, min {:.3} ms (n={})",
        ms(at(50)),
        ms(at(75)),
        ms(at(90)),
        ms(samples[0]),
        samples.len()
    )
}

/// How [`time_one`] makes its process.
#[derive(Clone, Copy, PartialEq)]
enum Made {
    /// `fork`, then the child writes `cgroup.procs`.
    ForkJoin,
    /// `clone_into_cgroup`.
    CloneInto,
    /// `fork` alone, in the caller's cgroup (the floor).
    Fork,
}

/// One process made as `how` and known to be where it should be: timed from the call until
/// the child says so (a byte on a pipe), then reaped untimed. Runs in a forked,
/// single-threaded child.
fn time_one(cg: &TestCgroup, how: Made) -> Duration {
    let (r, w) = nix::unistd::pipe().unwrap();
    let start = Instant::now();
    let forked = if how == Made::CloneInto {
        // SAFETY: single-threaded forked child; the new child writes and `_exit`s.
        unsafe { clone_into_cgroup(cg.dir.as_fd()) }
            .unwrap()
            .unwrap()
    } else {
        // SAFETY: as above.
        unsafe { nix::unistd::fork() }.unwrap()
    };
    match forked {
        ForkResult::Child => {
            if how == Made::ForkJoin && nix::unistd::write(&cg.procs, b"0").is_err() {
                // SAFETY: ends the child.
                unsafe { libc::_exit(1) }
            }
            let _ = nix::unistd::write(&w, b"x");
            // SAFETY: ends the child.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut byte = [0u8; 1];
            assert_eq!(nix::unistd::read(&r, &mut byte).unwrap(), 1);
            let took = start.elapsed();
            waitpid(child, None).unwrap();
            took
        }
    }
}

/// fork + `cgroup.procs` join against `clone3(CLONE_INTO_CGROUP)`, interleaved, 20 ms apart
/// (the RCU sync of cgroup migrations goes back to idle in between, as between two
/// `configure`s).
#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn timing_fork_and_join_against_clone_into() {
    let Some(cg) = TestCgroup::new() else { return };
    if !cgroup_clone_supported() {
        common::skip("this kernel cannot create processes in a cgroup");
        return;
    }
    const N: usize = 200;
    let (bytes, _) = common::fork_and_collect(|out| {
        let cases = [
            ("fork + cgroup.procs join", Made::ForkJoin),
            ("clone3(CLONE_INTO_CGROUP)", Made::CloneInto),
            ("fork alone (no cgroup change)", Made::Fork),
        ];
        let mut times = vec![Vec::new(); cases.len()];
        for _ in 0..N {
            for ((_, how), times) in cases.iter().zip(&mut times) {
                times.push(time_one(&cg, *how));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for ((name, _), times) in cases.iter().zip(&mut times) {
            let _ = writeln!(out, "{name}: {}", summary(times));
        }
        0
    });
    eprintln!("{}", String::from_utf8_lossy(&bytes));
}

/// Whole confined runs of `busybox true` (prepare + run, as the built-in update's fallback
/// does), interleaved, 20 ms apart: a unified cgroup given as `Cgroup::Unified` (clone3)
/// and as `Cgroup::Procs` (the join of before), and no cgroup.
#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn timing_whole_confined_runs() {
    let Some(cg) = TestCgroup::new() else { return };
    let Some(root) = common::busybox_root() else {
        return;
    };
    const N: usize = 60;
    let args = argv(&["/bin/busybox", "true"]);
    let syscalls: Vec<libc::c_long> = (0..512).collect();
    let cases = [
        (
            "unified, clone3",
            Some(Cgroup::Unified {
                dir: cg.dir.as_fd(),
                procs: cg.procs.as_fd(),
            }),
        ),
        (
            "unified, cgroup.procs join",
            Some(Cgroup::Procs(cg.procs.as_fd())),
        ),
        ("no cgroup", None),
    ];
    let mut times = vec![Vec::new(); cases.len()];
    for _ in 0..N {
        for ((_, cgroup), times) in cases.iter().zip(&mut times) {
            let c = confinement(root.path(), &args, &syscalls, *cgroup);
            let start = Instant::now();
            let done = prepare_confined(&c).unwrap().run().unwrap();
            times.push(start.elapsed());
            assert_eq!(done.status, Status::Exited(0), "{done:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for ((name, _), times) in cases.iter().zip(&mut times) {
        eprintln!("prepare + run, {name}: {}", summary(times));
    }
    let start = Instant::now();
    for _ in 0..N {
        assert!(cgroup_clone_supported());
    }
    eprintln!(
        "cgroup_clone_supported (the probe): {:.3} ms each",
        start.elapsed().as_secs_f64() * 1e3 / N as f64
    );
}

/// The user and mount namespaces of a process `setpriv` + `unshare` start as host uid
/// 100000, mapped to root in a user namespace of its own (as a rootless runtime's), and that
/// process; `None` (skip reported) where they do not run.
fn user_namespace() -> Option<((OwnedFd, OwnedFd), std::process::Child)> {
    use std::os::unix::fs::MetadataExt;
    let started = std::process::Command::new("setpriv")
        .args(["--reuid=100000", "--regid=100000", "--clear-groups"])
        .args(["unshare", "--user", "--map-root-user", "--mount"])
        .args(["--propagation", "private", "sleep", "600"])
        .spawn();
    let mut child = match started {
        Ok(child) => child,
        Err(e) => {
            common::skip(format!("setpriv/unshare --user do not run: {e}"));
            return None;
        }
    };
    let ours = fs::metadata("/proc/self/ns/user").unwrap().ino();
    let proc = |what: &str| format!("/proc/{}/{what}", child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // Entered and mapped once `unshare` has executed `sleep`.
        let entered = fs::metadata(proc("ns/user")).is_ok_and(|m| m.ino() != ours);
        let mapped = fs::read_to_string(proc("comm")).is_ok_and(|c| c.trim() == "sleep");
        if entered && mapped {
            let user = fs::File::open(proc("ns/user")).unwrap().into();
            let mount = fs::File::open(proc("ns/mnt")).unwrap().into();
            return Some(((user, mount), child));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    common::skip("unshare --user did not enter a user namespace");
    None
}

/// The run's first process enters a user namespace (as root there, still host root to the
/// cgroup's files) before it creates the program: the program is created in the cgroup all
/// the same, and nothing joins it.
#[test]
fn a_user_namespaced_program_is_created_in_a_unified_cgroup() {
    let Some(cg) = TestCgroup::new() else { return };
    let Some(root) = common::busybox_root() else {
        return;
    };
    if !cgroup_clone_supported() {
        common::skip("this kernel cannot create processes in a cgroup");
        return;
    }
    let Some((namespaces, mut holder)) = user_namespace() else {
        return;
    };
    let seen =
        std::panic::catch_unwind(|| members_of_a_confined_run(&cg, root.path(), Some(&namespaces)));
    let _ = holder.kill();
    let _ = holder.wait();
    let (after_prepare, during) = seen.unwrap();
    assert_eq!(after_prepare, Vec::<u32>::new(), "the first process joined");
    assert_eq!(during, 1, "only the program is in the cgroup");
}
