//! `nvc-hook`: an OCI `createRuntime` (or legacy `prestart`) hook that gives a container its
//! GPUs, for youki, runc or crun — what nvidia-container-toolkit's legacy hook does by
//! running `nvidia-container-cli configure`, in one process. A thin `main` over
//! `nvc_core::oci` (feature `oci`), which a runtime can call in its own process instead.
//!
//! ```text
//! nvc-hook [--root DIR] [--no-nvml] [--nvml-helper PATH] [--no-cgroups] [--ldconfig PATH|@PATH|builtin] [--no-ldconfig]
//!          [--no-envvar-when-unprivileged] createRuntime|prestart
//! nvc-hook update-ldcache [--folder DIR]... [--host-driver-version VERSION] [--ldconfig PATH|@PATH|builtin]
//! nvc-hook create-symlinks --link TARGET::PATH...
//! ```
//!
//! `update-ldcache` and `create-symlinks` are the hooks of nvc's CDI specs (`nvc-cdi
//! generate`), run as `createRuntime` after the runtime made the spec's mounts:
//! `update-ldcache` refreshes the container's linker cache as `ldconfig` over the image's
//! library directories and `--folder` would: in process where nvc proves the result is what
//! glibc's `ldconfig` writes (the cache, and the SONAME links of the libraries the spec bound
//! there), else with the host's `ldconfig`, sandboxed (`builtin`, the default: see below) — with
//! `--host-driver-version`, the image's CUDA compat directory first where its `libcuda` is
//! newer than that driver (CUDA forward compatibility); `create-symlinks`
//! makes the development links (`libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so`)
//! where nothing is yet, resolved inside the rootfs. They read the same state, probe no
//! driver, and trust nothing of the image's environment.
//!
//! Installed (or linked) as `nvidia-container-runtime-hook` — the name Docker's `--gpus`
//! looks up in its `PATH` and the toolkit's runtime adds — it takes that hook's command line,
//! `nvidia-container-runtime-hook [-config FILE] [-debug] prestart|poststart|poststop`
//! (`poststart` and `poststop` do nothing, as the toolkit's), and reads the toolkit's
//! `config.toml` (`nvc_examples::toolkit`; `/etc/nvidia-container-runtime/config.toml`) for
//! what its keys change: `nvidia-container-cli.root`, `.ldconfig`, `.no-cgroups`,
//! `.load-kmods`, `disable-require`, `supported-driver-capabilities`,
//! `accept-nvidia-visible-devices-envvar-when-unprivileged` and
//! `nvidia-container-runtime.modes.legacy.cuda-compat-mode`. With
//! `nvidia-container-runtime.mode` `cdi` or `csv` it refuses, as the toolkit's hook does:
//! such a host gives GPUs through the runtime (`nvc-runtime`), not the hook.
//!
//! The release build is statically linked (`examples/static-hook.sh`): with no dynamic
//! loader, nothing of its environment (`LD_PRELOAD`, `LD_LIBRARY_PATH`) runs before its own
//! checks. NVML, a shared library, is then loaded by a helper program executed with an empty
//! environment: `nvc-nvml` from beside the hook's executable, or `--nvml-helper PATH`. A
//! dynamically linked build forks its NVML helper unless `--nvml-helper` is given.
//!
//! Options take their value as `--opt VALUE` or `--opt=VALUE`. The hook's name is required,
//! as runtimes pass it (the first argument after the program's name in `args`), and must be
//! `createRuntime` or `prestart`: run at `createContainer` or later, the runtime would hand
//! the hook the image's environment (`LD_PRELOAD` included, the CVE-2025-23266 class). Every
//! subcommand also checks where it runs: no `LD_*` variable in its environment, a mount
//! namespace other than the container process's, a working directory other than the
//! container's rootfs.
//!
//! The runtime writes the container's state (`{"pid": ..., "bundle": ...}`, at most 1 MiB)
//! to stdin, as the OCI runtime spec says. The image's `NVIDIA_VISIBLE_DEVICES`,
//! `NVIDIA_DRIVER_CAPABILITIES` and `NVIDIA_REQUIRE_*` (from the bundle's `config.json`, at
//! most 16 MiB) say what to give it; an image that asks for nothing is left alone. With
//! `--no-envvar-when-unprivileged` (the toolkit's
//! `accept-nvidia-visible-devices-envvar-when-unprivileged = false`), an unprivileged
//! container (no `CAP_SYS_ADMIN` in its bounding set) gets nothing from its environment.
//! The driver's binaries are searched for in the hook's own `PATH` (the hook entry's `env`,
//! or what runc inherits; never the image's), else in upstream's list. By default the linker
//! cache is updated in process (`builtin`) where nvc proves the result is what glibc's
//! `ldconfig` writes, else with the host's (`@/sbin/ldconfig.real` where it exists, else
//! `@/sbin/ldconfig`), sandboxed: no program of the image runs. An `ldconfig` named on the
//! command line or in the toolkit's configuration is run as named. In a youki `config.json`:
//!
//! ```json
//! "hooks": { "createRuntime": [ { "path": "/usr/local/bin/nvc-hook", "args": ["nvc-hook", "createRuntime"] } ] }
//! ```

use std::process::ExitCode;

use lexopt::prelude::*;
use nvc_core::Context;
use nvc_core::oci::{self, HookOptions};

/// What the hook does.
enum Mode {
    /// The legacy hook: configure the container from its environment.
    Configure,
    /// The CDI spec's `update-ldcache`.
    UpdateLdcache,
    /// The CDI spec's `create-symlinks`.
    CreateSymlinks,
}

/// What the command line says.
struct Args {
    root: std::ffi::OsString,
    hook: HookOptions,
    mode: Mode,
    /// `--folder DIR`...: the driver's library directories, for `update-ldcache`.
    folders: Vec<std::path::PathBuf>,
    /// `--host-driver-version VERSION`, for `update-ldcache`: CUDA forward compatibility.
    host_driver_version: Option<String>,
    /// `--link TARGET::PATH`, for `create-symlinks`.
    links: Vec<oci::Symlink>,
    /// Probe the driver with NVML (`--no-nvml` clears it: the GPUs from
    /// `/proc/driver/nvidia`).
    nvml: bool,
    /// `--nvml-helper PATH`: the NVML helper program to execute instead of forking.
    nvml_helper: Option<std::path::PathBuf>,
    /// Load the kernel modules first (the toolkit's `load-kmods`).
    load_kmods: bool,
}

use nvc_examples::toolkit::HOOK as TOOLKIT_HOOK;

/// Installed as the toolkit's hook: its command line (Go's flags: `-config FILE`, `-debug`,
/// also with two dashes or `=`) and its `config.toml`. `None` when nothing is to be done
/// (`poststart`, `poststop`, `-version`).
fn parse_toolkit(argv: Vec<std::ffi::OsString>) -> Result<Option<Args>, String> {
    use nvc_examples::toolkit::{Config, default_path};
    let mut config_path = None;
    let mut hook = None;
    let mut argv = argv.into_iter();
    while let Some(arg) = argv.next() {
        let text = arg.to_string_lossy();
        let flag = text.trim_start_matches('-');
        let (name, attached) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (flag, None),
        };
        match (text.starts_with('-'), name) {
            (true, "config") => {
                let value = attached
                    .map(std::ffi::OsString::from)
                    .or_else(|| argv.next())
                    .ok_or("-config needs a file")?;
                config_path = Some(std::path::PathBuf::from(value));
            }
            (true, "debug" | "force") => {}
            (true, "version") => {
                println!("{TOOLKIT_HOOK} (nvc-hook {})", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            (false, _) if hook.is_none() => hook = Some(text.into_owned()),
            _ => return Err(format!("unexpected argument {text:?}")),
        }
    }
    match hook.as_deref() {
        Some("prestart") => {}
        Some("poststart" | "poststop") => return Ok(None),
        Some(other) => {
            return Err(format!(
                "unknown hook {other:?} (prestart, poststart or poststop)"
            ));
        }
        None => return Err("missing the hook's name (prestart)".into()),
    }
    let config = Config::load(&config_path.unwrap_or_else(default_path))?;
    let runtime = &config.nvidia_container_runtime;
    if matches!(runtime.mode.as_str(), "cdi" | "csv")
        && !config.nvidia_container_runtime_hook.skip_mode_detection
    {
        return Err(format!(
            "nvidia-container-runtime.mode is {:?}: this host gives GPUs through the runtime (nvc-runtime, e.g. docker --runtime), not the hook (docker --gpus)",
            runtime.mode
        ));
    }
    let cli = &config.nvidia_container_cli;
    Ok(Some(Args {
        root: cli.driver_root().into(),
        hook: config.hook_options()?,
        load_kmods: cli.load_kmods,
        ..Args::default()
    }))
}

fn parse() -> Result<Option<Args>, String> {
    let mut argv = std::env::args_os();
    let name = argv.next().map(std::path::PathBuf::from);
    if name.as_ref().and_then(|n| n.file_name()) == Some(TOOLKIT_HOOK.as_ref()) {
        return parse_toolkit(argv.collect());
    }
    parse_nvc(argv).map(Some)
}

impl Default for Args {
    fn default() -> Self {
        Args {
            root: "/".into(),
            hook: HookOptions::default(),
            mode: Mode::Configure,
            folders: Vec::new(),
            host_driver_version: None,
            links: Vec::new(),
            nvml: true,
            nvml_helper: None,
            load_kmods: false,
        }
    }
}

fn parse_nvc(argv: std::env::ArgsOs) -> Result<Args, String> {
    let mut args = Args::default();
    let mut hook = None;
    let mut parser = lexopt::Parser::from_args(argv);
    let value = |p: &mut lexopt::Parser| p.value().map_err(|e| e.to_string());
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("root") => args.root = value(&mut parser)?,
            Long("ldconfig") => {
                args.hook.ldconfig = nvc_core::Ldconfig::parse(&value(&mut parser)?);
            }
            Long("no-cgroups") => args.hook.no_cgroups = true,
            Long("no-nvml") => args.nvml = false,
            Long("nvml-helper") => {
                let program = std::path::PathBuf::from(value(&mut parser)?);
                if !program.is_absolute() {
                    return Err(format!(
                        "--nvml-helper {}: not an absolute path",
                        program.display()
                    ));
                }
                args.nvml_helper = Some(program);
            }
            Long("no-ldconfig") => args.hook.ldconfig = nvc_core::Ldconfig::Skip,
            Long("no-envvar-when-unprivileged") => args.hook.envvar_when_unprivileged = false,
            Long("folder") => {
                let dir = std::path::PathBuf::from(value(&mut parser)?);
                if !dir.is_absolute() {
                    return Err(format!("--folder {}: not an absolute path", dir.display()));
                }
                args.folders.push(dir);
            }
            Long("host-driver-version") => {
                let version = value(&mut parser)?;
                let version = version
                    .to_str()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
                    .ok_or_else(|| {
                        format!(
                            "--host-driver-version {}: not a driver version",
                            version.to_string_lossy()
                        )
                    })?;
                args.host_driver_version = Some(version.to_owned());
            }
            Long("link") => {
                let link = value(&mut parser)?;
                let link = link
                    .to_str()
                    .ok_or_else(|| format!("--link: not UTF-8: {}", link.to_string_lossy()))?;
                args.links
                    .push(link.parse().map_err(|e| nvc_examples::error_chain(&e))?);
            }
            Value(name) if hook.is_none() => hook = Some(name),
            other => return Err(other.unexpected().to_string()),
        }
    }
    match hook.as_ref().and_then(|h| h.to_str()) {
        Some("createRuntime" | "prestart") => Ok(args),
        Some("update-ldcache") => {
            args.mode = Mode::UpdateLdcache;
            Ok(args)
        }
        Some("create-symlinks") => {
            args.mode = Mode::CreateSymlinks;
            Ok(args)
        }
        Some(other) => Err(format!(
            "refusing to run as the {other:?} hook: only createRuntime or prestart run before the image's code can reach the hook's environment"
        )),
        None => {
            Err("missing the hook's name (createRuntime or prestart) as its first argument".into())
        }
    }
}

/// Refuses to run where a `createRuntime` or `prestart` hook does not: in the container's
/// mount namespace, with the image's environment, or inside the container's rootfs. A
/// runtime that lists the hook under `createContainer`, `startContainer` or `poststart` runs
/// it there, with the image's environment and files within reach (CVE-2025-23266); the name
/// in argv alone does not show it.
///
/// The runtime's own environment is the host's, and reaches hooks: containerd (its `opt`
/// plugin) runs its shims, runc and so every hook with `LD_LIBRARY_PATH=/opt/containerd/lib:`.
/// So `LD_PRELOAD`, `LD_AUDIT` and every other `LD_*` variable are refused, and
/// `LD_LIBRARY_PATH` only where an entry is relative, under `/proc` (`/proc/PID/root/...`
/// reaches a container's files whatever its text says) or inside the rootfs (an empty entry,
/// the working directory, is checked as the working directory is).
fn where_it_runs(
    state: &oci::oci_spec::runtime::State,
    spec: &oci::oci_spec::runtime::Spec,
) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    let refuse = |why: String| {
        Err(format!(
            "refusing to run: {why}; nvc-hook must be a createRuntime or prestart hook"
        ))
    };
    let id = |path: &Path| {
        std::fs::metadata(path)
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let rootfs = oci::rootfs(state.bundle(), spec).map_err(|e| nvc_examples::error_chain(&e))?;
    let root = id(&rootfs).ok();
    // Whether `path` (resolved as far as it exists) is the rootfs or below it.
    let inside = |path: &Path| {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        root.is_some() && path.ancestors().any(|a| id(a).ok() == root)
    };
    for (name, value) in std::env::vars_os() {
        if !name.as_encoded_bytes().starts_with(b"LD_") {
            continue;
        }
        let name = name.to_string_lossy();
        if name != "LD_LIBRARY_PATH" {
            return refuse(format!("{name} is set in its environment"));
        }
        if let Some(dir) = std::env::split_paths(&value).find(|d| {
            !d.as_os_str().is_empty() && (d.is_relative() || d.starts_with("/proc") || inside(d))
        }) {
            return refuse(format!(
                "LD_LIBRARY_PATH names {}, in the container's rootfs, under /proc or relative",
                dir.display()
            ));
        }
    }
    let pid = state.pid().unwrap_or_default();
    let theirs = std::path::PathBuf::from(format!("/proc/{pid}/ns/mnt"));
    if id("/proc/self/ns/mnt".as_ref())? == id(&theirs)? {
        return refuse(format!(
            "it runs in the mount namespace of the container (process {pid})"
        ));
    }
    // Unreadable (a directory outside the hook's root): refused, not assumed elsewhere.
    if std::env::current_dir().map_or(true, |cwd| inside(&cwd)) {
        return refuse(format!(
            "its working directory is in the container's rootfs {}",
            rootfs.display()
        ));
    }
    Ok(())
}

fn run() -> Result<(), String> {
    let Some(args) = parse()? else {
        return Ok(());
    };
    let chain = |e: nvc_core::Error| nvc_examples::error_chain(&e);
    let state = oci::read_state(std::io::stdin()).map_err(chain)?;
    let spec = oci::read_spec(state.bundle()).map_err(chain)?;
    where_it_runs(&state, &spec)?;
    match args.mode {
        Mode::UpdateLdcache => {
            return oci::update_ldcache(
                &state,
                &spec,
                args.hook.ldconfig,
                &args.folders,
                args.host_driver_version.as_deref(),
            )
            .map(drop)
            .map_err(chain);
        }
        Mode::CreateSymlinks => {
            return oci::create_symlinks(&state, &spec, &args.links).map_err(chain);
        }
        Mode::Configure => {}
    }
    // Nothing asked for (or not honoured): no driver probe at all.
    if (!args.hook.envvar_when_unprivileged && !oci::privileged(&spec))
        || oci::request(&spec).map_err(chain)?.is_none()
    {
        return Ok(());
    }
    let mut builder = Context::builder().root(args.root).nvml(args.nvml);
    if args.load_kmods {
        builder = builder.load_kmods(&[], true);
    }
    if let Some(program) = args.nvml_helper.or_else(static_nvml_helper) {
        builder = builder.nvml_helper(program);
    }
    // The hook's own environment (the runtime's `hooks` entry, not the image's): where the
    // driver's binaries are on hosts whose PATH is not upstream's list (NixOS).
    if let Some(path) = std::env::var_os("PATH") {
        builder = builder.search_path(path);
    }
    let driver = builder.build().and_then(Context::driver).map_err(chain)?;
    if let Some(done) = driver
        .configure_oci(&state, &spec, &args.hook)
        .map_err(chain)?
    {
        nvc_examples::warn("nvc-hook", &done);
    }
    Ok(())
}

/// A statically linked hook cannot load NVML: its helper program is `nvc-nvml` beside the
/// hook's own executable (the kernel's `/proc/self/exe`, not `argv[0]`).
fn static_nvml_helper() -> Option<std::path::PathBuf> {
    if !cfg!(target_feature = "crt-static") {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.join("nvc-nvml"))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("nvc-hook: {msg}");
            ExitCode::FAILURE
        }
    }
}
