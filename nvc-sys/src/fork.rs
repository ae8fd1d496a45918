//! Forking a helper process that reports over a pipe.

use std::fs::File;
use std::io::Write;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2};

use crate::Error;

/// How a [`Forked`] child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal (`SIGSEGV`).
    Signaled(&'static str),
}

/// A child made by [`fork_with_pipe`]: read what it writes, then reap it.
#[derive(Debug)]
pub struct Forked {
    pid: Pid,
    output: Option<File>,
    reaped: bool,
}

impl Forked {
    /// Starts `cmd` with its standard output on a pipe: a [`Forked`] child that executes a
    /// program rather than running a closure (the caller sets the program's arguments,
    /// environment and working directory on `cmd`). Its other standard streams are as `cmd`
    /// sets them.
    ///
    /// # Errors
    ///
    /// [`Error::Syscall`] (`execve`) with the errno the program could not be started with
    /// (`ENOENT`, `EACCES`, ...).
    pub fn spawn(cmd: &mut std::process::Command) -> Result<Forked, Error> {
        let failed = |e: std::io::Error| Error::Syscall {
            call: "execve",
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        };
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(failed)?;
        let output = child
            .stdout
            .take()
            .map(|out| File::from(std::os::fd::OwnedFd::from(out)));
        let Ok(pid) = i32::try_from(child.id()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Syscall {
                call: "execve",
                errno: Errno::ERANGE,
            });
        };
        // `std`'s handle neither kills nor reaps on drop: the pid is this handle's alone.
        Ok(Forked {
            pid: Pid::from_raw(pid),
            output,
            reaped: false,
        })
    }

    /// The read end of the child's pipe (once).
    pub fn take_output(&mut self) -> Option<File> {
        self.output.take()
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            self.wait();
        }
    }

    /// Reaps the child: how it ended (`None` when it was reaped already or cannot be).
    pub fn wait(&mut self) -> Option<Ended> {
        if self.reaped {
            return None;
        }
        loop {
            match waitpid(self.pid, None) {
                Err(Errno::EINTR) => continue,
                Ok(WaitStatus::Exited(_, code)) => {
                    self.reaped = true;
                    return Some(Ended::Exited(code));
                }
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    self.reaped = true;
                    return Some(Ended::Signaled(signal.as_str()));
                }
                Err(_) => {
                    self.reaped = true;
                    return None;
                }
                Ok(_) => continue,
            }
        }
    }
}

impl Drop for Forked {
    /// A child is never left behind: an unreaped one is killed and reaped (no zombie).
    fn drop(&mut self) {
        self.kill();
    }
}

/// Forks; the child runs `work` with the write end of a pipe, then exits with its code
/// without running destructors or `atexit` handlers. The parent gets the read end.
///
/// # Safety
///
/// In a multithreaded process the child holds only the forking thread: `work` must not
/// touch locks another thread may have held at the fork (std's stdout lock, a tokio runtime,
/// ...). glibc keeps `malloc`, file I/O and `dlopen` usable after `fork`, which is what the
/// NVML helper needs.
pub unsafe fn fork_with_pipe(work: impl FnOnce(&mut File) -> i32) -> Result<Forked, Error> {
    // Close-on-exec: a program another thread executes meanwhile must not inherit them.
    let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(|errno| Error::Syscall {
        call: "pipe2",
        errno,
    })?;
    // SAFETY: the caller upholds the post-fork contract above; the child only runs `work`
    // and then `_exit`s.
    match unsafe { fork() }.map_err(|errno| Error::Syscall {
        call: "fork",
        errno,
    })? {
        ForkResult::Child => {
            drop(read);
            let mut out = File::from(write);
            child_exit(move || {
                let code = work(&mut out);
                let _ = out.flush();
                code
            })
        }
        ForkResult::Parent { child } => {
            drop(write);
            Ok(Forked {
                pid: child,
                output: Some(File::from(read)),
                reaped: false,
            })
        }
    }
}

/// Runs a fork child's `work` and ends the child with its exit code: never returns, and a
/// panic (the C ABI builds with unwinding) exits with 101 instead of unwinding into the
/// parent's code that the child's stack still holds.
pub(crate) fn child_exit(work: impl FnOnce() -> i32) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or(101);
    // SAFETY: `_exit` ends the child without running the parent's exit handlers.
    unsafe { libc::_exit(code) }
}
