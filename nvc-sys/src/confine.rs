//! Running one program confined: own pid, IPC and mount namespaces, a new root, masked
//! kernel filesystems, resource limits, no capabilities, the caller's chosen identity,
//! no-new-privs and a seccomp allow-list — the sandbox upstream builds for `ldconfig`.
//!
//! The child is forked from the calling thread and runs only the code of this module
//! between `fork` and `exec` (every argument is prepared before the fork), so the function
//! is safe to call from a multithreaded process.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use caps::{CapSet, Capability};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, send, socketpair};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{
    ForkResult, Gid, Pid, Uid, chdir, chroot, dup2_stderr, dup2_stdin, dup2_stdout, execve, fchdir,
    fexecve, fork, pipe2, pivot_root, setgroups, setresgid, setresuid,
};

use crate::{Error, seccomp};

/// What to execute once confined.
#[derive(Debug, Clone, Copy)]
pub enum Program<'a> {
    /// A path looked up inside the new root.
    Path(&'a CStr),
    /// An open executable (a sealed memfd copy of a host binary), run with `fexecve`.
    Fd(BorrowedFd<'a>),
}

/// The directory that becomes the sandbox's root.
#[derive(Debug, Clone, Copy)]
pub enum NewRoot<'a> {
    /// A path in the mount namespace entered ([`Confinement::mount_ns`]): a container's
    /// rootfs before `pivot_root`, as a runtime hook sees it.
    Path(&'a Path),
    /// A directory of that namespace held open (`/proc/<pid>/root` of a running container,
    /// whose root has no path there): entered with `fchdir` before the sandbox's own mount
    /// namespace is made, then cloned with every mount below it.
    Fd(BorrowedFd<'a>),
}

/// The cgroup a confined program is born in.
#[derive(Debug, Clone, Copy)]
pub enum Cgroup<'a> {
    /// A cgroup v1 hierarchy's `cgroup.procs`, open for writing. The kernel cannot create a
    /// process in a v1 cgroup: the run's first process writes itself there at
    /// [`prepare_confined`] (moving it waits for an RCU grace period, which a caller that
    /// prepares early overlaps with its own work), and the program's process is forked from
    /// it.
    Procs(BorrowedFd<'a>),
    /// A cgroup2 cgroup: its directory (any mode, `O_PATH` included) and its `cgroup.procs`
    /// open for writing. The program's process is created in it at [`Prepared::run`] with
    /// `clone3(CLONE_INTO_CGROUP)` (Linux 5.7, [`crate::clone_into_cgroup`]): no process
    /// migrates and nothing waits. Where the kernel cannot
    /// ([`crate::cgroup_clone_supported`] asked at [`prepare_confined`], or the errno of the
    /// call itself), as [`Cgroup::Procs`] with `procs`.
    Unified {
        /// The cgroup's directory.
        dir: BorrowedFd<'a>,
        /// Its `cgroup.procs`, for kernels without `CLONE_INTO_CGROUP`.
        procs: BorrowedFd<'a>,
    },
}

/// How to confine the program. Every field is plain data, read in the child.
#[derive(Debug, Clone)]
pub struct Confinement<'a> {
    /// User namespace to enter before the mount namespace (a user-namespaced container's);
    /// `None` keeps the caller's. Inside it, the program's capabilities reach only files
    /// whose owner and group are mapped there: a host `ldconfig`'s `CAP_DAC_OVERRIDE` cannot
    /// write a host-owned directory the image links to. [`Confinement::uid`] and
    /// [`Confinement::gid`] are then ids in that namespace, and the supplementary groups are
    /// cleared before entering it (the namespace may deny `setgroups`).
    pub user_ns: Option<BorrowedFd<'a>>,
    /// Mount namespace to enter first (the container's); `None` keeps the caller's.
    pub mount_ns: Option<BorrowedFd<'a>>,
    /// The cgroup the program is born in (the container's device cgroup), so that it lives
    /// its whole life under that cgroup's device rules ([`Cgroup`]); `None` keeps the
    /// caller's.
    pub cgroup: Option<Cgroup<'a>>,
    /// The directory that becomes `/`; every mount of it is made `nodev` in the sandbox's
    /// private mount namespace, so no device node in it can be opened.
    pub root: NewRoot<'a>,
    /// `pivot_root` into the root (the default) or, when false, `chroot` into it (for roots
    /// on a ramfs, where `pivot_root` fails; a [`NewRoot::Path`] is moved onto `/` first).
    pub pivot: bool,
    /// Directories of the new root covered with an empty read-only tmpfs when they exist
    /// (`/proc`, `/sys`, `/dev`).
    pub masks: &'a [&'a Path],
    /// The host's procfs (its root directory, checked by the caller): through it the
    /// sandbox reads its own mount table once in its new root and detaches every kernel
    /// filesystem mounted anywhere there ([`crate::kernel_mounts::KERNEL_FILESYSTEMS`]: a
    /// procfs the image or runtime mounted at `/opt/p` reaches `core_pattern` as well as one
    /// at `/proc`); the step fails when one stays. `None` skips it.
    pub proc: Option<BorrowedFd<'a>>,
    /// Resource limits (soft = hard).
    pub rlimits: &'a [(Resource, u64)],
    /// User to run as.
    pub uid: u32,
    /// Group to run as (also the only supplementary group).
    pub gid: u32,
    /// Keep `CAP_DAC_OVERRIDE` inheritable (and ambient for a non-root user), as upstream
    /// does for a host `ldconfig`; every other capability is gone after `exec`.
    pub keep_dac_override: bool,
    /// Syscall numbers allowed by the seccomp filter; others fail with `EPERM`.
    pub syscalls: &'a [libc::c_long],
    /// The program.
    pub program: Program<'a>,
    /// Its arguments, `argv[0]` first. The environment is empty.
    pub argv: &'a [CString],
    /// Process name shown in `ps` (`prctl(PR_SET_NAME)`).
    pub name: &'a CStr,
    /// Wall-clock limit; the sandbox's whole pid namespace is killed when it passes.
    pub timeout: Duration,
}

/// How the confined program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it.
    Signaled(i32),
    /// It ran past [`Confinement::timeout`] and was killed.
    TimedOut,
}

/// What the confined program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Its exit.
    pub status: Status,
    /// Its stdout and stderr, interleaved (the first 64 KiB).
    pub output: Vec<u8>,
}

/// Steps of the child, named in [`Error::Confinement`]; a report carries the index.
const STEPS: [&str; 21] = [
    "join cgroup",
    "clone3(CLONE_INTO_CGROUP)",
    "setns(CLONE_NEWUSER)",
    "setns(CLONE_NEWNS)",
    "unshare(CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWIPC)",
    "fork",
    "prctl",
    "dup2",
    "make / private",
    "bind rootfs",
    "nodev",
    "pivot_root",
    "move rootfs onto /",
    "chroot",
    "mask",
    "setrlimit",
    "capabilities",
    "setgroups/setresgid/setresuid",
    "no_new_privs",
    "seccomp",
    "exec",
];

const TAG_PID: u8 = 0;
const TAG_FAILED: u8 = 1;
const TAG_EXITED: u8 = 2;
const TAG_SIGNALED: u8 = 3;

fn report(to: &mut File, tag: u8, a: u8, b: i32) {
    let [b0, b1, b2, b3] = b.to_le_bytes();
    let _ = to.write_all(&[tag, a, b0, b1, b2, b3]);
}

fn step_index(name: &str) -> u8 {
    STEPS
        .iter()
        .position(|s| *s == name)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

/// Runs `c.program` confined as `c` says and returns its exit and output:
/// [`prepare_confined`] then [`Prepared::run`].
///
/// # Errors
///
/// [`Error::Confinement`] naming the step that failed before `exec`; [`Error::Exec`] when the
/// program cannot be executed (`ENOENT`: it does not exist in the new root);
/// [`Error::Syscall`] for the pipes, forks and waits around it.
///
/// # Kernel requirements
///
/// Root (`CAP_SYS_ADMIN`, `CAP_SETUID`, `CAP_SETGID`, `CAP_SETPCAP`); pid, IPC and mount
/// namespaces; seccomp filters (`SECCOMP_RET_KILL_PROCESS`, Linux 4.14); `mount_setattr`
/// (Linux 5.12) for the recursive `nodev` — on older kernels the run fails at step `nodev`
/// rather than run without it.
pub fn run_confined(c: &Confinement<'_>) -> Result<Finished, Error> {
    prepare_confined(c)?.run()
}

/// A confined run forked ahead of its start ([`prepare_confined`]): its first process
/// exists, has joined a [`Cgroup::Procs`] (or a [`Cgroup::Unified`] on a kernel that cannot
/// create processes in it) and waits for [`Prepared::run`]. Dropped without a run, that
/// process is killed and reaped; nothing of the confinement was made.
#[derive(Debug)]
pub struct Prepared {
    /// The first process.
    child: Pid,
    /// Set by [`Prepared::run`], which reaps the first process itself.
    reaped: bool,
    /// One end of a socket pair: [`Prepared::run`] sends the start byte on it (a socket, not
    /// a pipe: a send to a process that already exited fails with `EPIPE` instead of raising
    /// `SIGPIPE` in a caller that did not ignore it, such as a C program).
    go: OwnedFd,
    out: OwnedFd,
    reports: OwnedFd,
    timeout: Duration,
}

/// Forks the first process of a confined run of `c`, which gets ready to place the program
/// in `c.cgroup` and waits: everything else (namespaces, new root, the program's process)
/// happens at [`Prepared::run`].
///
/// For a [`Cgroup::Unified`], the first process stays in the caller's cgroup and only asks
/// whether the kernel can create processes in a cgroup ([`crate::cgroup_clone_supported`]);
/// the program's process is created in the cgroup at the run, with no wait. For a
/// [`Cgroup::Procs`] (and a unified one where the kernel cannot), the first process joins the
/// cgroup now: moving a process between cgroups waits for an RCU grace period (6–13 ms
/// measured on an idle VM), so a caller that knows it will run the program later
/// (`configure`, before its mounts) prepares it first and the wait overlaps its own work.
/// Every argument is copied into the child now: `c` can be dropped before the run.
///
/// # Errors
///
/// [`Error::Syscall`] for the pipes and the fork. The child's own failures (joining the
/// cgroup or being created in it included) are reported by [`Prepared::run`].
pub fn prepare_confined(c: &Confinement<'_>) -> Result<Prepared, Error> {
    let sys = |call| move |errno| Error::Syscall { call, errno };
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    let (rep_r, rep_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    let (go_w, go_r) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(sys("socketpair"))?;
    let null = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys("open /dev/null"))?;
    let env: [&CStr; 0] = [];
    // SAFETY: the child runs only `intermediate` (this module's code, no locks shared with
    // other threads beyond glibc's fork-safe malloc) and then `_exit`s.
    let child = match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop((out_r, rep_r, go_w));
            crate::fork::child_exit(|| intermediate(c, &env, go_r, out_w, File::from(rep_w), null))
        }
        ForkResult::Parent { child } => child,
    };
    drop((out_w, rep_w, go_r, null));
    Ok(Prepared {
        child,
        reaped: false,
        go: go_w,
        out: out_r,
        reports: rep_r,
        timeout: c.timeout,
    })
}

impl Prepared {
    /// Starts the prepared run and returns the program's exit and output; the
    /// [`Confinement::timeout`] counts from here.
    ///
    /// # Errors
    ///
    /// As [`run_confined`].
    pub fn run(mut self) -> Result<Finished, Error> {
        let child = self.child;
        // A first process that already failed (joining its cgroup) is gone: its report says
        // why.
        let _ = send(self.go.as_raw_fd(), b"g", MsgFlags::MSG_NOSIGNAL);
        let deadline = crate::deadline(self.timeout);
        let mut output = Vec::new();
        let mut records = Vec::new();
        // Output to its end, then the reports to theirs (the first child exits after the
        // program): both within the deadline. A program that closes its output first still
        // cannot outlast it.
        let timed_out = read_until(&self.out, deadline, &mut output)
            || read_until(&self.reports, deadline, &mut records);
        if timed_out {
            // The first child dies; the program (pid 1 of its namespace, with a parent-death
            // signal) and everything it started die with it. Its pid is killed below as well.
            let _ = kill(child, Signal::SIGKILL);
            read_until(
                &self.reports,
                Instant::now() + Duration::from_secs(1),
                &mut records,
            );
        }
        self.reaped = true;
        finish(child, timed_out, output, &records)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.reaped {
            // Never started: the first process has at most joined the cgroup (the program's
            // process, created in one, does not exist yet).
            let _ = kill(self.child, Signal::SIGKILL);
            while let Err(Errno::EINTR) = waitpid(self.child, None) {}
        }
    }
}

/// Reaps the first child and reads its reports: how the program ended, or the step that
/// failed.
fn finish(child: Pid, timed_out: bool, output: Vec<u8>, records: &[u8]) -> Result<Finished, Error> {
    let mut status = None;
    let mut failure = None;
    for r in records.chunks_exact(6) {
        let &[tag, a, b0, b1, b2, b3] = r else {
            continue;
        };
        let b = i32::from_le_bytes([b0, b1, b2, b3]);
        match tag {
            TAG_PID if timed_out => {
                let _ = kill(Pid::from_raw(b), Signal::SIGKILL);
            }
            TAG_FAILED => failure = Some((a, b)),
            TAG_EXITED => status = Some(Status::Exited(b)),
            TAG_SIGNALED => status = Some(Status::Signaled(b)),
            _ => {}
        }
    }
    while let Err(Errno::EINTR) = waitpid(child, None) {}
    if let Some((step, errno)) = failure {
        let errno = Errno::from_raw(errno);
        return Err(match STEPS.get(usize::from(step)).copied() {
            Some("exec") => Error::Exec { errno },
            step => Error::Confinement {
                step: step.unwrap_or("?"),
                errno,
            },
        });
    }
    let status = if timed_out {
        Status::TimedOut
    } else {
        status.unwrap_or(Status::Signaled(Signal::SIGKILL as i32))
    };
    Ok(Finished { status, output })
}

/// Output kept from the program; the rest is read and dropped (a flood cannot exhaust the
/// caller's memory).
const OUTPUT_LIMIT: usize = 64 * 1024;

/// Reads `from` to its end or until `deadline`, keeping at most [`OUTPUT_LIMIT`] bytes;
/// true when the deadline passed first.
fn read_until(from: &OwnedFd, deadline: Instant, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => match nix::unistd::read(from, &mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    let room = OUTPUT_LIMIT.saturating_sub(into.len()).min(n);
                    into.extend_from_slice(buf.get(..room).unwrap_or_default());
                }
                Err(Errno::EINTR) => {}
                Err(_) => return false,
            },
            Err(_) => return false,
        }
    }
}

/// The first child: enters the namespaces, forks the confined program as pid 1 of the new
/// pid namespace, waits for it and reports how it ended.
fn intermediate(
    c: &Confinement<'_>,
    env: &[&CStr],
    go: OwnedFd,
    out: OwnedFd,
    mut rep: File,
    null: OwnedFd,
) -> i32 {
    let fail = |rep: &mut File, step: &str, errno: Errno| {
        report(rep, TAG_FAILED, step_index(step), errno as i32);
        1
    };
    // A cgroup2 cgroup the program's process can be created in is only named at its clone;
    // any other is joined now. "0": the writing process; children forked after this are
    // born in the cgroup.
    let clone_into = match c.cgroup {
        Some(Cgroup::Unified { dir, .. }) if crate::cgroup_clone_supported() => Some(dir),
        Some(Cgroup::Procs(procs) | Cgroup::Unified { procs, .. }) => {
            if let Err(e) = nix::unistd::write(procs, b"0") {
                return fail(&mut rep, "join cgroup", e);
            }
            None
        }
        None => None,
    };
    // Then nothing until the run starts (the other end closed: it never will).
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(&go, &mut byte) {
            Ok(1) => break,
            Err(Errno::EINTR) => {}
            Ok(_) | Err(_) => return 0,
        }
    }
    drop(go);
    if let Some(ns) = c.user_ns {
        if let Err(e) = setgroups(&[]) {
            return fail(&mut rep, "setgroups/setresgid/setresuid", e);
        }
        if let Err(e) = setns(ns, CloneFlags::CLONE_NEWUSER) {
            return fail(&mut rep, "setns(CLONE_NEWUSER)", e);
        }
    }
    if let Some(ns) = c.mount_ns
        && let Err(e) = setns(ns, CloneFlags::CLONE_NEWNS)
    {
        return fail(&mut rep, "setns(CLONE_NEWNS)", e);
    }
    // The root held open is entered now, in its own namespace: the unshare below moves the
    // working directory to its copy in the new one.
    if let NewRoot::Fd(root) = c.root
        && let Err(e) = fchdir(root)
    {
        return fail(&mut rep, "bind rootfs", e);
    }
    let flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC;
    if let Err(e) = unshare(flags) {
        return fail(
            &mut rep,
            "unshare(CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWIPC)",
            e,
        );
    }
    let forked = match clone_into {
        Some(dir) => {
            // SAFETY: this process is single-threaded (a fork child, which glibc's `fork`
            // left with its locks reset): no lock can be held by a thread the grandchild
            // lacks, so it may run `confined` (which allocates) as after `fork`; it then
            // execs or `_exit`s.
            match unsafe { crate::clone_into_cgroup(dir) } {
                Ok(Some(forked)) => Ok(forked),
                Ok(None) => join_then_fork(c),
                Err(e) => return fail(&mut rep, "clone3(CLONE_INTO_CGROUP)", e.errno()),
            }
        }
        // SAFETY: this process is single-threaded (a fork child); the grandchild runs
        // `confined` and then execs or `_exit`s.
        None => unsafe { fork() }.map_err(|e| ("fork", e)),
    };
    match forked {
        Err((step, e)) => fail(&mut rep, step, e),
        Ok(ForkResult::Child) => crate::fork::child_exit(|| match confined(c, env, out, null) {
            Ok(never) => match never {},
            Err((step, errno)) => fail(&mut rep, step, errno),
        }),
        Ok(ForkResult::Parent { child }) => {
            drop((out, null));
            report(&mut rep, TAG_PID, 0, child.as_raw());
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => {
                        report(&mut rep, TAG_EXITED, 0, code);
                        return 0;
                    }
                    Ok(WaitStatus::Signaled(_, sig, _)) => {
                        report(&mut rep, TAG_SIGNALED, 0, sig as i32);
                        return 0;
                    }
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(e) => return fail(&mut rep, "fork", e),
                }
            }
        }
    }
}

/// The fallback of a [`Cgroup::Unified`] whose clone the kernel refused after all (it said it
/// could at [`prepare_confined`]): the first process joins through `cgroup.procs`, then
/// forks.
fn join_then_fork(c: &Confinement<'_>) -> StepResult<ForkResult> {
    if let Some(Cgroup::Unified { procs, .. } | Cgroup::Procs(procs)) = c.cgroup {
        step("join cgroup", nix::unistd::write(procs, b"0"))?;
    }
    // SAFETY: this process is single-threaded (a fork child); the grandchild runs
    // `confined` and then execs or `_exit`s.
    step("fork", unsafe { fork() })
}

type StepResult<T> = Result<T, (&'static str, Errno)>;

fn step<T>(name: &'static str, r: nix::Result<T>) -> StepResult<T> {
    r.map_err(|e| (name, e))
}

fn caps_step<T>(r: Result<T, caps::errors::CapsError>) -> StepResult<T> {
    r.map_err(|_| ("capabilities", Errno::last()))
}

/// The grandchild, pid 1 of the sandbox: confines itself and execs; returns only on failure.
fn confined(
    c: &Confinement<'_>,
    env: &[&CStr],
    out: OwnedFd,
    null: OwnedFd,
) -> StepResult<std::convert::Infallible> {
    step("prctl", nix::sys::prctl::set_name(c.name))?;
    step("dup2", dup2_stdin(&null))?;
    step("dup2", dup2_stdout(&out))?;
    step("dup2", dup2_stderr(&out))?;
    drop((out, null));
    // Before the rlimits lower the descriptor limit the fallback counts up to.
    close_inherited_on_exec()?;

    change_root(c)?;
    let masks: Vec<&Path> = c
        .masks
        .iter()
        .copied()
        .filter(|dir| std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()))
        .collect();
    if let Some(proc) = c.proc {
        step("mask", crate::kernel_mounts::detach_all(proc, &masks))?;
    }
    for dir in masks {
        step("mask", crate::kernel_mounts::cover(dir))?;
    }
    for &(resource, limit) in c.rlimits {
        // Never above the current hard limit: only lowering needs no privilege in the
        // caller's (or the container's) user namespace.
        let (_, hard) = step("setrlimit", getrlimit(resource))?;
        let limit = limit.min(hard);
        step("setrlimit", setrlimit(resource, limit, limit))?;
    }

    let dac = Capability::CAP_DAC_OVERRIDE;
    caps_step(caps::clear(None, CapSet::Inheritable))?;
    if c.keep_dac_override {
        caps_step(caps::raise(None, CapSet::Inheritable, dac))?;
        if c.uid != 0 {
            // Keep the permitted set across the switch away from uid 0, for the ambient cap.
            crate::creds::no_setuid_fixup().map_err(|e| ("capabilities", e))?;
        }
    }
    // Only the capabilities this kernel knows: dropping one it does not (a newer
    // capability on an older kernel, e.g. CAP_PERFMON before 5.8) is EINVAL.
    for cap in caps::runtime::thread_all_supported() {
        caps_step(caps::drop(None, CapSet::Bounding, cap))?;
    }
    let (uid, gid) = (Uid::from_raw(c.uid), Gid::from_raw(c.gid));
    let ids = "setgroups/setresgid/setresuid";
    if c.user_ns.is_none() {
        step(ids, setgroups(&[gid]))?;
    }
    step(ids, setresgid(gid, gid, gid))?;
    step(ids, setresuid(uid, uid, uid))?;
    if c.keep_dac_override && c.uid != 0 {
        caps_step(caps::raise(None, CapSet::Ambient, dac))?;
    }
    // Set after the identity change, which clears it.
    step("prctl", nix::sys::prctl::set_pdeathsig(Signal::SIGKILL))?;
    step("no_new_privs", nix::sys::prctl::set_no_new_privs())?;
    seccomp::install_allow_list(c.syscalls).map_err(|_| ("seccomp", Errno::last()))?;
    // ETXTBSY: some process still holds the program open for writing — typically a child
    // another thread of the caller forked while the file was being written, which inherited
    // the descriptor. It goes away when that child execs or exits: retry for a while (a spin
    // on the clock, which needs no syscall the filter refuses).
    let give_up = Instant::now() + Duration::from_secs(2);
    loop {
        let err = match c.program {
            Program::Path(path) => execve(path, c.argv, env),
            Program::Fd(fd) => fexecve(fd, c.argv, env),
        };
        let errno = err.err().unwrap_or(Errno::UnknownErrno);
        if errno != Errno::ETXTBSY || Instant::now() > give_up {
            return Err(("exec", errno));
        }
        let pause = Instant::now() + Duration::from_millis(5);
        while Instant::now() < pause {
            std::hint::spin_loop();
        }
    }
}

/// Marks every descriptor above stderr close-on-exec, so the program inherits none of the
/// caller's (a descriptor of a host directory left without `O_CLOEXEC` by any thread of the
/// caller would otherwise lead out of the new root). The report pipe closes at `exec` as
/// intended; a program run from a descriptor still runs (`execveat` needs no `/proc`).
fn close_inherited_on_exec() -> StepResult<()> {
    // SAFETY: plain integer arguments; CLOSE_RANGE_CLOEXEC closes nothing now.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    // Before Linux 5.11: one by one, up to the descriptor limit the caller had.
    let limit = getrlimit(Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard.min(1 << 20))
        .unwrap_or(1 << 16);
    for fd in 3..i32::try_from(limit).unwrap_or(i32::MAX) {
        // SAFETY: F_SETFD on a number that may not be open only fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Makes `c.root` the root of a private mount tree and enters it.
fn change_root(c: &Confinement<'_>) -> StepResult<()> {
    let none = None::<&str>;
    step(
        "make / private",
        mount(none, "/", none, MsFlags::MS_PRIVATE | MsFlags::MS_REC, none),
    )?;
    let syscall = |name| {
        move |e| match e {
            Error::Syscall { errno, .. } => (name, errno),
            _ => (name, Errno::EINVAL),
        }
    };
    match c.root {
        NewRoot::Path(rootfs) => {
            step(
                "bind rootfs",
                mount(
                    Some(rootfs),
                    rootfs,
                    none,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    none,
                ),
            )?;
            crate::mount::set_nodev_recursive(rootfs).map_err(syscall("nodev"))?;
            step("chroot", chdir(rootfs))?;
        }
        // The working directory is the root (see `intermediate`): a nodev clone of it is
        // attached on top of it and entered.
        NewRoot::Fd(_) => {
            let tree = crate::mount::clone_cwd_nodev().map_err(syscall("bind rootfs"))?;
            let here = step(
                "bind rootfs",
                nix::fcntl::open(
                    ".",
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                ),
            )?;
            crate::mount::attach(tree.as_fd(), here.as_fd()).map_err(syscall("bind rootfs"))?;
            step("chroot", fchdir(&tree))?;
            if !c.pivot {
                step("chroot", chroot("."))?;
                return step("chroot", chdir("/"));
            }
        }
    }
    if c.pivot {
        let old = step(
            "pivot_root",
            nix::fcntl::open(
                "/",
                OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            ),
        )?;
        let new = step(
            "pivot_root",
            nix::fcntl::open(
                ".",
                OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            ),
        )?;
        step("pivot_root", pivot_root(".", "."))?;
        step("pivot_root", fchdir(&old))?;
        step("pivot_root", umount2(".", MntFlags::MNT_DETACH))?;
        step("pivot_root", fchdir(&new))?;
    } else {
        step(
            "move rootfs onto /",
            mount(Some("."), "/", none, MsFlags::MS_MOVE, none),
        )?;
    }
    step("chroot", chroot("."))?;
    step("chroot", chdir("/"))
}
