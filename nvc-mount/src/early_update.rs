//! `configure`'s built-in linker cache update, proven while its mounts are made.
//!
//! The update reads the image — its cache, its linker configuration, its library
//! directories — and proves the new cache ([`builtin_ldconfig::prove_planned`]). None of that
//! depends on the mounts but the plan's own files, which it takes as the plan makes them. So
//! a second thread in the container's mount namespace proves it while the first makes the
//! mounts (on a host of two CPUs, both busy), then waits; once the mounts are made and the
//! devices granted, it checks that the directories it read are still the ones there and that
//! the plan's links were made, and writes the cache and its links. What it cannot prove
//! before the mounts, it leaves to `configure`'s update after them, which proves again,
//! builds a new cache or runs the fallback program.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::Scope;
use std::time::{Duration, Instant};

use crate::apply::Root;
use crate::builtin_ldconfig::{CommandLine, NewLibraries, Outcome, Proof, prove_planned};
use crate::ns::{Started, start_in_container_ns};
use crate::{Container, Error, Ldconfig};

/// What the early update did.
#[derive(Debug)]
pub(crate) enum Early {
    /// The cache was written with `added` entries more, and the SONAME links made.
    Updated { added: usize },
    /// Nothing written: the update after the mounts decides, in what is left of the
    /// update's time (the early update spent this much).
    Unsure(Duration),
    /// [`Ldconfig::Auto`] where the image's program runs: nothing written.
    Program,
    /// The mounts failed: what was written is removed, but for what is `left`.
    Abandoned { left: Vec<String> },
}

/// The early update, running.
pub(crate) struct EarlyUpdate<'scope> {
    work: Started<'scope, Early>,
    go: Sender<bool>,
    decided: Option<Receiver<bool>>,
    stands: bool,
}

impl<'scope> EarlyUpdate<'scope> {
    /// Starts proving the update of `container`'s cache as `ldconfig` run with `cmd`
    /// ([`Ldconfig::Builtin`], or [`Ldconfig::Auto`] where it stands for the image's
    /// program) for the plan's new libraries and links (or why it cannot account for them)
    /// and its other container paths, both as `plan` reads them (on the thread, in the
    /// caller's namespace, before it enters the container's).
    ///
    /// # Errors
    ///
    /// [`Error::Namespace`]: no thread in the container's namespace.
    pub(crate) fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        container: &'env Container,
        ldconfig: &'env Ldconfig,
        cmd: &'env CommandLine<'env>,
        plan: impl FnOnce() -> (Result<NewLibraries, String>, Vec<PathBuf>) + Send + 'scope,
    ) -> Result<Self, Error> {
        let (go, wait) = mpsc::channel();
        let (tell, decided) = mpsc::channel();
        let auto = match ldconfig {
            Ldconfig::Auto(program) => Some(program.as_path()),
            _ => None,
        };
        let work = start_in_container_ns(scope, container, plan, move |(new, other)| {
            // The update's time is spent proving and checking, not waiting for the mounts.
            let start = Instant::now();
            let root = Root::of(container)?;
            let other: Vec<&Path> = other.iter().map(PathBuf::as_path).collect();
            let tell = move |stands| {
                let _ = tell.send(stands);
                // The caller waits for this: on its CPU, where the wake-up may have placed
                // it, it runs now rather than after this thread's time slice.
                std::thread::yield_now();
            };
            let auto = auto.map(|program| (program, &tell as &dyn Fn(bool)));
            let proven = match prove_planned(&root, cmd, auto, new, &other)? {
                Proof::Proven(proven) => proven,
                Proof::Unsure => return Ok(Early::Unsure(start.elapsed())),
                Proof::Program => return Ok(Early::Program),
            };
            // A caller that failed or gave up meanwhile: nothing is written. (Its mounts may
            // be made already, too.)
            let made = match wait.try_recv() {
                Ok(false) | Err(TryRecvError::Disconnected) => {
                    return Ok(Early::Abandoned { left: Vec::new() });
                }
                Ok(true) => true,
                Err(TryRecvError::Empty) => false,
            };
            // The new cache written beside the image's and the links made while the mounts
            // are; the rename, the last step that can fail, once they are made.
            let staged = proven.stage(&root)?;
            let spent = start.elapsed();
            if !made && wait.recv() != Ok(true) {
                return Ok(Early::Abandoned {
                    left: staged.undo(),
                });
            }
            let checking = Instant::now();
            match staged.commit(&root, cmd, spent)? {
                Outcome::Updated { added } => Ok(Early::Updated { added }),
                Outcome::Unsure(_) => Ok(Early::Unsure(spent + checking.elapsed())),
            }
        })?;
        Ok(EarlyUpdate {
            work,
            go,
            decided: auto.map(|_| decided),
            stands: true,
        })
    }

    /// Whether the built-in update stands for the `ldconfig` step: always for
    /// [`Ldconfig::Builtin`]; for [`Ldconfig::Auto`] where the image's cache names a proven
    /// glibc and the program is there (waits for that decision; a thread that failed before it
    /// decided leaves the step to the program).
    pub(crate) fn built_in(&mut self) -> bool {
        if let Some(decided) = self.decided.take() {
            self.stands = decided.recv() == Ok(true);
        }
        self.stands
    }

    /// After the mounts (`made`: made and granted; else undone): the early update's
    /// outcome, written where it was proven and the mounts were made.
    ///
    /// # Errors
    ///
    /// Writing the cache or a link failed (what was written is removed, the image's cache
    /// was never changed; the error lists what could not be removed), or the image's
    /// configuration was refused past a count.
    pub(crate) fn finish(self, made: bool) -> Result<Early, Error> {
        let _ = self.go.send(made);
        self.work.join()
    }
}

#[cfg(test)]
#[path = "early_update_tests.rs"]
mod tests;
