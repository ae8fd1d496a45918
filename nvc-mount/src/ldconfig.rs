//! Refreshing the container's linker cache with its `ldconfig` (or the host's), run in a
//! sandbox (upstream's `nvc_ldcache_update`).

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::resource::Resource;
use nvc_sys::confine::{Confinement, NewRoot, Program, Status, prepare_confined};

use crate::cgroup::{DeviceCgroup, SandboxCgroup};
use crate::{Container, Error};

/// The linker-cache step of a configure: which `ldconfig` runs, the built-in update, or
/// none. One enum everywhere (nvc-core, the hook, the CLI, the C API), no `Option` around it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Ldconfig {
    /// Leave the image's linker cache as it is (`--no-ldconfig`): nothing runs.
    #[default]
    Skip,
    /// A path inside the container's image (upstream's default: the image's own).
    Image(PathBuf),
    /// A host binary (`--ldconfig=@/sbin/ldconfig`): copied into a sealed memfd before the
    /// sandbox is entered and executed from there, so neither the container nor a host
    /// upgrade can swap it mid-run.
    Host(PathBuf),
    /// No program: `configure` writes the image's cache itself where it can prove the result
    /// is what glibc's `ldconfig` (2.36 to 2.43) would write — the image's cache updated with
    /// the libraries it mounted, or a new one built from the directories `ldconfig` scans —
    /// and elsewhere (hwcap subdirectories, i386 objects that need no glibc, an old-format
    /// cache, a link `ldconfig` would change) runs [`Ldconfig::host_default`] as that would
    /// (`--ldconfig=builtin`; nvc-core's default). [`update_ldcache`](crate::update_ldcache)
    /// (the CDI hook) does the same after a runtime's mounts; [`run_ldconfig`] runs
    /// [`Ldconfig::host_default`].
    Builtin,
    /// What the image's own `ldconfig` at this path writes (the CLI's default): where that
    /// program is a glibc nvc is proven equal to (2.36 to 2.43) — as the image's cache says
    /// (its generator, `ldconfig (...) stable release version 2.36`), or, where the image
    /// has no cache (or one nvc built), as the program says (it carries that generator
    /// string) — `configure` writes it in process as [`Ldconfig::Builtin`] does (a new cache
    /// where there was none), and runs this program, sandboxed, where that is unsure or
    /// fails; elsewhere — an older glibc, a cache in the old format, no program at this path
    /// (nothing changes then, as for [`Ldconfig::Image`]) — it runs the program as
    /// [`Ldconfig::Image`]. Outside `configure` it is [`Ldconfig::Image`]. Spelled
    /// `auto:PATH`.
    Auto(PathBuf),
}

impl Ldconfig {
    /// Parses upstream's `--ldconfig` value (a command-line argument or the C API's
    /// `nvc_container_config.ldconfig`, not necessarily UTF-8): a leading `@` names a host
    /// binary; `builtin` (not a path upstream accepts: it is relative) is
    /// [`Ldconfig::Builtin`], `auto:PATH` [`Ldconfig::Auto`]; anything else is a path in the
    /// image.
    pub fn parse(value: impl AsRef<OsStr>) -> Self {
        let value = value.as_ref();
        let bytes = value.as_bytes();
        if let Some(host) = bytes.strip_prefix(b"@") {
            Ldconfig::Host(OsStr::from_bytes(host).into())
        } else if let Some(image) = bytes.strip_prefix(b"auto:") {
            Ldconfig::Auto(OsStr::from_bytes(image).into())
        } else if value == "builtin" {
            Ldconfig::Builtin
        } else {
            Ldconfig::Image(value.into())
        }
    }

    /// The safe default for libraries and hooks: the host's `ldconfig`
    /// (`/sbin/ldconfig.real` where it exists — Ubuntu's `/sbin/ldconfig` is a shell
    /// script —, else `/sbin/ldconfig`), so that no program of the image runs at all.
    /// The CLI keeps upstream's default, the image's own, for drop-in compatibility.
    #[must_use]
    pub fn host_default() -> Self {
        Ldconfig::Host(host_ldconfig())
    }
}

/// Upstream's spelling, what [`Ldconfig::parse`] reads back: `@<host path>`, `<image path>`,
/// `builtin`, `auto:<image path>`; [`Ldconfig::Skip`], which upstream spells `--no-ldconfig`, prints `none`.
impl std::fmt::Display for Ldconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ldconfig::Host(p) => write!(f, "@{}", p.display()),
            Ldconfig::Image(p) => write!(f, "{}", p.display()),
            Ldconfig::Builtin => f.write_str("builtin"),
            Ldconfig::Auto(p) => write!(f, "auto:{}", p.display()),
            Ldconfig::Skip => f.write_str("none"),
        }
    }
}

/// The host's `ldconfig`: `/sbin/ldconfig.real` where it exists, else `/sbin/ldconfig`.
fn host_ldconfig() -> PathBuf {
    let real = Path::new("/sbin/ldconfig.real");
    if real.exists() {
        real.to_path_buf()
    } else {
        PathBuf::from("/sbin/ldconfig")
    }
}

/// The sandbox's limits. The defaults are upstream's (CPU 10 s, address space 2 GiB,
/// 64 open files, 1 MiB files) plus a wall-clock limit upstream lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Limits {
    /// `RLIMIT_CPU`, seconds.
    pub cpu_seconds: u64,
    /// `RLIMIT_AS`, bytes.
    pub address_space: u64,
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
    /// `RLIMIT_FSIZE`, bytes.
    pub file_size: u64,
    /// Wall-clock limit; the sandbox is killed when it passes.
    pub wall: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_seconds: 10,
            address_space: 2 << 30,
            open_files: 64,
            file_size: 1 << 20,
            wall: Duration::from_secs(30),
        }
    }
}

/// How to run `ldconfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LdconfigOptions {
    /// The binary.
    pub ldconfig: Ldconfig,
    /// Move the root instead of `pivot_root` (`--no-pivot`, for rootfs on a ramfs).
    pub no_pivot: bool,
    /// Extra directories scanned after the library directories (the driver's library
    /// directories of a CDI spec).
    pub extra_dirs: Vec<PathBuf>,
    /// The image's CUDA compat directory (`/usr/local/cuda/compat`) when its libraries are
    /// used in `ldconfig` mode: scanned before the library directories. glibc's `ldconfig`
    /// lists a name found in several directories in the order they were named, and the
    /// loader takes the first: the compat `libcuda.so.1` is then the one loaded, not the
    /// driver's.
    pub cuda_compat_dir: Option<PathBuf>,
    /// Limits.
    pub limits: Limits,
}

impl LdconfigOptions {
    /// The directories `ldconfig` is given for an image with `dirs`, in the order it scans
    /// them: the compat directory, the image's library directories, the extra ones.
    pub(crate) fn scanned<'a>(
        &'a self,
        dirs: &'a crate::ContainerDirs,
    ) -> impl Iterator<Item = &'a PathBuf> {
        self.cuda_compat_dir
            .iter()
            .chain([&dirs.libs, &dirs.libs32])
            .chain(&self.extra_dirs)
    }
}

/// What the run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LdconfigRun {
    /// It ran and succeeded; its output (usually empty).
    Ran {
        /// Its stdout and stderr.
        output: String,
    },
    /// The container has no such `ldconfig`: nothing to refresh (upstream: silent success).
    NotFound,
    /// [`Ldconfig::Skip`]: nothing ran.
    Skipped,
    /// [`Ldconfig::Builtin`] updated the cache: `added` entries, no program ran.
    Builtin {
        /// The entries added.
        added: usize,
    },
    /// [`Ldconfig::Builtin`] could not prove its result and ran the host's `ldconfig`
    /// ([`Ldconfig::Auto`]: the image's).
    Fallback {
        /// Why the built-in update was not sure.
        reason: String,
        /// The program's stdout and stderr.
        output: String,
    },
}

/// The syscalls `ldconfig` may make: upstream's allow-list, plus the `*at` forms and `statx`
/// that newer glibc uses. Everything else (fork, clone, kill, socket, mount, ptrace...) fails
/// with `EPERM`.
fn allowed_syscalls() -> Vec<nix::libc::c_long> {
    use nix::libc::*;
    let mut v = vec![
        SYS_brk,
        SYS_chdir,
        SYS_close,
        SYS_execve,
        SYS_execveat,
        SYS_exit,
        SYS_exit_group,
        SYS_fcntl,
        SYS_fdatasync,
        SYS_fstat,
        SYS_fsync,
        SYS_ftruncate,
        SYS_getcwd,
        SYS_getdents64,
        SYS_getegid,
        SYS_geteuid,
        SYS_getgid,
        SYS_getpgid,
        SYS_getpid,
        SYS_gettid,
        SYS_gettimeofday,
        SYS_getuid,
        SYS_lseek,
        SYS_mmap,
        SYS_mprotect,
        SYS_mremap,
        SYS_munmap,
        SYS_newfstatat,
        SYS_openat,
        SYS_pread64,
        SYS_read,
        SYS_readv,
        SYS_rt_sigaction,
        SYS_rt_sigprocmask,
        SYS_rt_sigreturn,
        SYS_tgkill,
        SYS_uname,
        SYS_write,
        SYS_writev,
        SYS_clock_gettime,
        SYS_statx,
        SYS_readlinkat,
        SYS_unlinkat,
        SYS_renameat,
        SYS_renameat2,
        SYS_mkdirat,
        SYS_symlinkat,
        SYS_faccessat,
        SYS_faccessat2,
        SYS_fchmodat,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        SYS_access,
        SYS_arch_prctl,
        SYS_chmod,
        SYS_getdents,
        SYS_getpgrp,
        SYS_lstat,
        SYS_mkdir,
        SYS_open,
        SYS_readlink,
        SYS_rename,
        SYS_stat,
        SYS_symlink,
        SYS_time,
        SYS_unlink,
    ]);
    v
}

/// The most bytes of a host `ldconfig` copied (glibc's static one is about 1 MiB).
const HOST_LDCONFIG_LIMIT: u64 = 64 << 20;

/// Why the host binary `bytes` must not run in the sandbox, if it must not: a script (its
/// interpreter would be looked up in the image and run with nvc's privileges) or a
/// dynamically linked program (`PT_INTERP`: the image's `ld.so` would load it, with
/// `CAP_DAC_OVERRIDE`).
fn host_binary_refusal(bytes: &[u8]) -> Option<String> {
    if bytes.starts_with(b"#!") {
        return Some(
            "is a script: its interpreter would come from the image; name the real binary (on Ubuntu @/sbin/ldconfig.real)".into(),
        );
    }
    let header = match nvc_ldcache::elf::ElfHeader::parse(bytes) {
        Ok(header) => header,
        Err(e) => return Some(format!("is not a program nvc can check: {e}")),
    };
    const PT_INTERP: u32 = 3;
    let table = usize::try_from(header.phoff)
        .ok()
        .and_then(|at| bytes.get(at..))
        .unwrap_or_default();
    match header.program_headers(table) {
        Ok(phdrs) if phdrs.iter().any(|p| p.kind == PT_INTERP) => Some(
            "is dynamically linked (PT_INTERP): the image's ld.so would load it with privileges; use a statically linked ldconfig such as glibc's /sbin/ldconfig".into(),
        ),
        Ok(_) => None,
        Err(e) => Some(format!("is not a program nvc can check: {e}")),
    }
}

/// A sealed in-memory copy of the host binary `path`, after checking it may run in the
/// sandbox ([`host_binary_refusal`]).
fn sealed_copy(path: &Path) -> Result<OwnedFd, Error> {
    let fail = |op: &'static str| {
        let path = path.to_path_buf();
        move |errno| Error::Apply {
            op,
            path,
            error: crate::error::os(errno),
        }
    };
    let io = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(0));
    let host = File::open(path).map_err(|e| fail("open host ldconfig")(io(e)))?;
    let mut bytes = Vec::new();
    host.take(HOST_LDCONFIG_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|e| fail("read host ldconfig")(io(e)))?;
    if let Some(why) = host_binary_refusal(&bytes) {
        return Err(Error::Ldconfig {
            program: path.to_path_buf(),
            what: format!("refused: {why}"),
            output: String::new(),
            error: None,
        });
    }
    let memfd = memfd_create(
        c"nvc:[ldconfig]",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(fail("memfd_create for"))?;
    let mut copy = File::from(memfd);
    copy.write_all(&bytes).map_err(|e| fail("copy")(io(e)))?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(fail("seal copy of"))?;
    Ok(OwnedFd::from(copy))
}

fn cstring(p: &Path) -> Result<CString, Error> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::Apply {
        op: "ldconfig argument",
        path: p.to_path_buf(),
        error: crate::error::os(Errno::EINVAL),
    })
}

/// Runs `ldconfig -f /etc/ld.so.conf -C /etc/ld.so.cache <libs> <libs32> [<extra>]` for
/// `container`, sandboxed: born in the container's device cgroup (found from its
/// `/proc/<pid>/cgroup`; skipped only when it cannot be found); its own pid, IPC and mount
/// namespaces entered from the container's; `pivot_root` into the rootfs (or `MS_MOVE` +
/// `chroot` with `no_pivot`), every mount of it `nodev` (no device node the image ships
/// can be opened); read-only empty tmpfs over `/proc`, `/sys` and `/dev`; the [`Limits`]; no capabilities
/// (a host `ldconfig` keeps `CAP_DAC_OVERRIDE`, as upstream); the container owner's uid/gid
/// with no-new-privs — for a user-namespaced container, inside its user namespace, so that
/// `CAP_DAC_OVERRIDE` reaches only files whose owner and group are mapped there; a seccomp allow-list; an empty environment. A host `ldconfig` that is a
/// script or dynamically linked is refused (it would run the image's interpreter or `ld.so`
/// with privileges). A missing container `ldconfig` is success ([`LdconfigRun::NotFound`]);
/// [`Ldconfig::Skip`] runs nothing ([`LdconfigRun::Skipped`]).
///
/// # Errors
///
/// [`Error::Ldconfig`] when the program fails, is killed or runs out of time (with its
/// output), or a step of the confinement fails ("process confinement failed").
///
/// # Kernel requirements
///
/// Root; pid, IPC and mount namespaces; `memfd_create` (3.17) for a host `ldconfig`;
/// seccomp filters (4.14); `mount_setattr` (5.12) for the `nodev` root.
pub fn run_ldconfig(container: &Container, opts: &LdconfigOptions) -> Result<LdconfigRun, Error> {
    if opts.ldconfig == Ldconfig::Skip {
        return Ok(LdconfigRun::Skipped);
    }
    Sandbox::prepare(container, opts, sandbox_cgroup(container)?)?.run()
}

/// The container's device cgroup opened for the sandbox ([`SandboxCgroup`]: its
/// `cgroup.procs` open for writing, and for a cgroup2 cgroup its directory, which the
/// sandbox's program is created in), when it can be found (supervised: always, else the
/// error; standalone: where the image's /proc and /sys are the kernel's, else none — nvc's
/// own cgroup is the container's there): the sandbox lives under its rules. A rootless
/// container has no device cgroup of its own (it shares its user's, which the hook may not
/// write to): its sandbox stays in the hook's cgroup, with no more device access than the
/// user has.
pub(crate) fn sandbox_cgroup(container: &Container) -> Result<Option<SandboxCgroup>, Error> {
    match DeviceCgroup::of_process(container.pid, &container.proc_root) {
        Ok(cg) => match cg.open_for_sandbox() {
            Ok(file) => Ok(Some(file)),
            Err(Error::Cgroup { error: Some(e), .. })
                if matches!(
                    e.raw_os_error().map(Errno::from_raw),
                    Some(Errno::EACCES | Errno::EPERM)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        },
        // Standalone, nvc runs inside the container: its own cgroup is the container's.
        Err(_) if container.proc_root != Path::new("/") => Ok(None),
        // Supervised, the sandbox would stay in the caller's cgroup, outside the
        // container's device rules: fail closed.
        Err(e) => Err(e),
    }
}

/// The cgroup the sandboxed `ldconfig` is born in: `cgroup`, the device cgroup found for
/// the grant (not looked up again), else [`sandbox_cgroup`]'s.
pub(crate) fn sandbox_procs(
    container: &Container,
    cgroup: Option<&DeviceCgroup>,
) -> Result<Option<SandboxCgroup>, Error> {
    match cgroup {
        Some(cg) => cg.open_for_sandbox().map(Some),
        None => sandbox_cgroup(container),
    }
}

/// A sandboxed `ldconfig` run of [`run_ldconfig`], prepared ahead of its start: its first
/// process is forked. In a v1 device cgroup (`cgroup`) it joins it while the caller goes on
/// — joining a cgroup waits for an RCU grace period (6–13 ms on an idle VM), which
/// `configure` overlaps with its mounts. In a cgroup2 one nothing joins: the program's
/// process is created in it at the run (`clone3(CLONE_INTO_CGROUP)`, Linux 5.7; older
/// kernels join as v1), so a sandbox prepared late (the built-in update's fallback) waits
/// for nothing either. The namespaces, the new root and the program come at
/// [`Sandbox::run`], after the mounts. Dropped without a run, the process is killed;
/// nothing was changed.
pub(crate) struct Sandbox {
    prepared: nvc_sys::confine::Prepared,
    shown: PathBuf,
    /// A host `ldconfig` (a missing one is an error, a missing image one is not).
    host: bool,
    wall: Duration,
}

impl Sandbox {
    /// Prepares the run of `opts` for `container` (see [`run_ldconfig`]).
    pub(crate) fn prepare(
        container: &Container,
        opts: &LdconfigOptions,
        cgroup: Option<SandboxCgroup>,
    ) -> Result<Self, Error> {
        let ns = container.mount_ns()?;
        let user_ns = container.user_ns()?;
        let (shown, memfd) = match &opts.ldconfig {
            Ldconfig::Image(path) | Ldconfig::Auto(path) => (path.clone(), None),
            Ldconfig::Host(path) => (path.clone(), Some(sealed_copy(path)?)),
            Ldconfig::Builtin => {
                let path = host_ldconfig();
                let memfd = sealed_copy(&path)?;
                (path, Some(memfd))
            }
            Ldconfig::Skip => {
                return Err(Error::Container {
                    what: "no ldconfig to run (the step is skipped)".into(),
                });
            }
        };
        let bin = cstring(&shown)?;
        let mut argv = vec![bin.clone()];
        for arg in ["-f", "/etc/ld.so.conf", "-C", "/etc/ld.so.cache"] {
            argv.push(cstring(Path::new(arg))?);
        }
        for dir in opts.scanned(&container.dirs) {
            argv.push(cstring(dir)?);
        }
        let l = opts.limits;
        let rlimits = [
            (Resource::RLIMIT_CPU, l.cpu_seconds),
            (Resource::RLIMIT_AS, l.address_space),
            (Resource::RLIMIT_NOFILE, l.open_files),
            (Resource::RLIMIT_FSIZE, l.file_size),
        ];
        let masks = [Path::new("/proc"), Path::new("/sys"), Path::new("/dev")];
        let proc = crate::kernfs::host_procfs()?;
        let syscalls = allowed_syscalls();
        // In a user-namespaced container's own namespace, as its owner there: what the
        // program may write is what the container's user may.
        let (uid, gid) = user_ns
            .as_ref()
            .map_or((container.uid, container.gid), |ns| ns.owner);
        let confinement = Confinement {
            user_ns: user_ns.as_ref().map(|ns| ns.fd.as_fd()),
            mount_ns: Some(ns.as_fd()),
            cgroup: cgroup.as_ref().map(SandboxCgroup::confine),
            root: match container.root_fd() {
                Some(fd) => NewRoot::Fd(fd.as_fd()),
                None => NewRoot::Path(&container.rootfs),
            },
            pivot: !opts.no_pivot,
            masks: &masks,
            proc: Some(proc.as_fd()),
            rlimits: &rlimits,
            uid,
            gid,
            keep_dac_override: memfd.is_some(),
            syscalls: &syscalls,
            program: match &memfd {
                Some(fd) => Program::Fd(fd.as_fd()),
                None => Program::Path(&bin),
            },
            argv: &argv,
            name: c"nvc:[ldconfig]",
            timeout: l.wall,
        };
        let prepared = prepare_confined(&confinement).map_err(|e| Error::Ldconfig {
            program: shown.clone(),
            what: e.operation(),
            output: String::new(),
            error: Some(e.io_error()),
        })?;
        Ok(Sandbox {
            prepared,
            shown,
            host: memfd.is_some(),
            wall: l.wall,
        })
    }

    /// Runs the prepared `ldconfig` and waits for it.
    ///
    /// # Errors
    ///
    /// As [`run_ldconfig`].
    pub(crate) fn run(self) -> Result<LdconfigRun, Error> {
        let shown = self.shown;
        let failed = |what: String, output: &[u8], error: Option<std::io::Error>| Error::Ldconfig {
            program: shown.clone(),
            what,
            output: String::from_utf8_lossy(output).trim_end().to_owned(),
            error,
        };
        let prepared = self.prepared;
        let run = nvc_sys::fault::point("ldconfig", &shown)
            .map_err(|e| nvc_sys::Error::Exec { errno: e })
            .and_then(|()| prepared.run());
        let done = match run {
            Ok(done) => done,
            Err(nvc_sys::Error::Exec {
                errno: Errno::ENOENT,
            }) if !self.host => return Ok(LdconfigRun::NotFound),
            Err(e) => return Err(failed(e.operation(), &[], Some(e.io_error()))),
        };
        match done.status {
            Status::Exited(0) => Ok(LdconfigRun::Ran {
                output: String::from_utf8_lossy(&done.output).into_owned(),
            }),
            Status::Exited(code) => Err(failed(
                format!("failed with error code: {code}"),
                &done.output,
                None,
            )),
            Status::Signaled(sig) => Err(failed(
                format!("terminated with signal {sig}"),
                &done.output,
                None,
            )),
            Status::TimedOut => Err(failed(
                format!("killed after {:?}", self.wall),
                &done.output,
                None,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's `--ldconfig` spellings read and written back alike (nvc-capi logs the
    /// written one as upstream does).
    #[test]
    fn ldconfig_values_round_trip_in_upstreams_spelling() {
        for (text, value) in [
            ("@/sbin/ldconfig", Ldconfig::Host("/sbin/ldconfig".into())),
            (
                "/sbin/ldconfig.real",
                Ldconfig::Image("/sbin/ldconfig.real".into()),
            ),
            (
                "auto:/sbin/ldconfig",
                Ldconfig::Auto("/sbin/ldconfig".into()),
            ),
            ("builtin", Ldconfig::Builtin),
        ] {
            assert_eq!(Ldconfig::parse(text), value);
            assert_eq!(value.to_string(), text);
        }
    }
}
