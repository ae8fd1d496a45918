//! The linker cache refreshed in process where that is provably `ldconfig`'s result, with the
//! sandboxed `ldconfig` as the fallback: for `configure` (the libraries its plan mounted) and
//! for a runtime that made the mounts itself (the CDI spec's `update-ldcache` hook,
//! [`update_ldcache`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::apply::Root;
use crate::builtin_ldconfig::{self, CommandLine, NewLibraries, NewLibrary, Outcome};
use crate::cgroup::DeviceCgroup;
use crate::ldconfig::{Sandbox, sandbox_procs};
use crate::linker_state::LinkerState;
use crate::ns::in_container_ns;
use crate::{Container, Error, Ldconfig, LdconfigOptions, LdconfigRun, run_ldconfig};

/// Refreshes the linker cache of `container` after a runtime bound files at `bound`
/// (container paths: the driver's libraries of a CDI spec) into it (the spec's
/// `update-ldcache` hook, run as a `createRuntime` hook): as
/// `ldconfig -f /etc/ld.so.conf -C /etc/ld.so.cache` over the image's library directories
/// and `opts.extra_dirs` (after `opts.cuda_compat_dir`) would.
///
/// With [`Ldconfig::Builtin`], the cache (and the SONAME links of the bound libraries in
/// those directories) is written in process where nvc can prove the result is what glibc's
/// `ldconfig` writes, as `configure` does it; elsewhere — and where a bound library cannot
/// be read — the host's `ldconfig` runs in the sandbox, and the run says why
/// ([`LdconfigRun::Fallback`]). Other programs run as [`run_ldconfig`] runs them. The bound
/// libraries are read inside the container's root, as `ldconfig` reads them; those outside
/// those directories are not the cache's concern and are not read.
///
/// A failed run leaves the image's `/etc/ld.so.cache` and the links in those directories as
/// they were (the error says what could not be put back).
///
/// # Errors
///
/// [`run_ldconfig`]'s; [`Error::Apply`] when the image's linker state cannot be kept or the
/// built-in update cannot write the cache or a link.
///
/// # Kernel requirements
///
/// [`run_ldconfig`]'s; `openat2` (5.6) for the built-in update's reads inside the root.
pub fn update_ldcache(
    container: &Container,
    opts: &LdconfigOptions,
    bound: &[PathBuf],
) -> Result<LdconfigRun, Error> {
    if opts.ldconfig == Ldconfig::Skip {
        return Ok(LdconfigRun::Skipped);
    }
    let cmd = CommandLine::of(opts, &container.dirs);
    let saved = LinkerState::save(container, &cmd.dirs)?;
    let run = match opts.ldconfig {
        Ldconfig::Builtin => {
            // The compat directory is the image's: nothing is bound there.
            let scanned = |p: &Path| {
                p.parent().is_some_and(|d| {
                    cmd.dirs.contains(&d) && opts.cuda_compat_dir.as_deref() != Some(d)
                })
            };
            let new = |root: &Root| {
                let libraries = bound
                    .iter()
                    .filter(|b| scanned(b))
                    .map(|b| NewLibrary::read_in(root, b))
                    .collect::<Result<Vec<_>, String>>()?;
                // The development links a `create-symlinks` hook may have made beside them.
                Ok(NewLibraries {
                    links: libraries
                        .iter()
                        .filter_map(NewLibrary::development_link)
                        .collect(),
                    libraries,
                })
            };
            builtin_or_fallback(container, opts, &cmd, new, None, Duration::ZERO)
        }
        _ => run_ldconfig(container, opts),
    };
    saved.settle(container, run)
}

/// [`Ldconfig::Builtin`]'s run, as `ldconfig` with `cmd` (the command line of `opts`): the
/// cache updated in process for the `new` libraries (read inside the container's mount
/// namespace and root) where that is provably `ldconfig`'s result
/// ([`builtin_ldconfig::update`]); elsewhere (or where `new` says why the update cannot
/// account for them) the host's `ldconfig` in the sandbox, born in `cgroup` (the container's
/// device cgroup found before, else looked up) — the image's program for
/// [`Ldconfig::Auto`], which also falls back where the update fails (past its counts, say).
/// The update has its time less what an earlier attempt `spent`. The caller keeps the
/// linker state to put it back after a failure.
pub(crate) fn builtin_or_fallback(
    container: &Container,
    opts: &LdconfigOptions,
    cmd: &CommandLine<'_>,
    new: impl FnOnce(&Root) -> Result<NewLibraries, String> + Send,
    cgroup: Option<&DeviceCgroup>,
    spent: Duration,
) -> Result<LdconfigRun, Error> {
    let outcome = in_container_ns(container, || {
        let root = Root::of(container)?;
        match new(&root) {
            Ok(new) => builtin_ldconfig::update(&root, cmd, &new, spent),
            Err(why) => Ok(Outcome::Unsure(why)),
        }
    });
    let outcome = match (outcome, &opts.ldconfig) {
        // What the image's own program writes: where the update refuses the image (past its
        // counts) or fails, that program runs, as it would have without nvc.
        (Err(e), Ldconfig::Auto(_)) => Outcome::Unsure(format!("the built-in update failed: {e}")),
        (outcome, _) => outcome?,
    };
    match outcome {
        Outcome::Updated { added } => Ok(LdconfigRun::Builtin { added }),
        Outcome::Unsure(reason) => sandbox_procs(container, cgroup)
            .and_then(|procs| Sandbox::prepare(container, opts, procs))
            .and_then(Sandbox::run)
            .map(|run| match run {
                LdconfigRun::Ran { output } => LdconfigRun::Fallback { reason, output },
                other => other,
            }),
    }
}
