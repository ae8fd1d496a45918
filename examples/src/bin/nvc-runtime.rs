//! `nvc-runtime`: an OCI runtime shim in place of the NVIDIA container toolkit's
//! `nvidia-container-runtime` — what Docker's `--runtime=...`, containerd's runtime
//! configuration or `ctr run --runc-binary` name. It takes runc's command line; on `create`
//! (and `run`) it gives the container the GPUs it asks for by editing the bundle's
//! `config.json`, then executes the real runtime (runc, crun or youki) with the same
//! arguments. Every other command passes through untouched.
//!
//! ```text
//! nvc-runtime [runc's global options] create [--bundle DIR] [options] ID
//! ```
//!
//! What to do is read from the toolkit's `config.toml` (see `nvc_examples::toolkit`:
//! `/etc/nvidia-container-runtime/config.toml`, or under `$XDG_CONFIG_HOME`):
//!
//! - `nvidia-container-runtime.runtimes`: the runtime executed, the first found (names
//!   searched in `PATH`, or paths); `docker-runc`, `runc`, `crun` by default.
//! - `nvidia-container-runtime.mode`:
//!   - `cdi`: the devices the container asks for — the `cdi.k8s.io/*` annotations, else
//!     `NVIDIA_VISIBLE_DEVICES` (`0` is `nvidia.com/gpu=0`; `modes.cdi.default-kind`) — are
//!     applied from the CDI specs of `modes.cdi.spec-dirs` (`/etc/cdi`, `/var/run/cdi`;
//!     `nvc-cdi generate` writes them), and the toolkit's `prestart` hook that Docker's
//!     `--gpus` adds is removed: the GPUs come from the spec alone.
//!   - `legacy`: `nvidia-container-runtime-hook prestart` is added as a `prestart` hook
//!     (`[nvidia-container-runtime-hook] path`; `nvc-hook` installed under that name).
//!   - `auto` (the default): `cdi` when the request names a qualified CDI device, comes from
//!     annotations, or the specs define a device of the default kind; else `legacy`.
//!
//! All or nothing: a device that no spec defines, a malformed name or an unreadable spec
//! fails the `create` naming it, with `config.json` unchanged and no runtime executed (the
//! error also goes to runc's `--log` file when `--log-format json`, where containerd reads
//! it). `config.json` is replaced atomically. A container that asks for nothing is left
//! alone.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nvc_core::cdi::{Registry, RequestOptions, cdi_annotations, requested_devices};
use nvc_core::oci::{self, oci_spec::runtime::Hook};
use nvc_examples::toolkit::{self, Config};

/// runc's, crun's and youki's global options that take a value as the next argument.
const GLOBAL_VALUE_OPTIONS: &[&str] = &[
    "root",
    "log",
    "log-format",
    "criu",
    "rootless",
    "cgroup-manager",
    "log-level",
];

/// The options of `create` and `run` that take a value as the next argument.
const CREATE_VALUE_OPTIONS: &[&str] = &[
    "bundle",
    "b",
    "console-socket",
    "pid-file",
    "preserve-fds",
    "pidfd-socket",
];

/// The hooks of the NVIDIA container toolkit that Docker's `--gpus` adds, by file name.
const TOOLKIT_HOOKS: &[&str] = &[toolkit::HOOK, "nvidia-container-toolkit"];

/// An option's name without its dashes and `=VALUE`, and whether a value is attached (the
/// value may be any bytes; a name that is not UTF-8 is no option of ours).
fn option(arg: &OsStr) -> Option<(&str, bool)> {
    let bytes = arg.as_bytes().strip_prefix(b"-")?;
    let bytes = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let (name, attached) = match bytes.iter().position(|&b| b == b'=') {
        Some(at) => (bytes.get(..at)?, true),
        None => (bytes, false),
    };
    Some((std::str::from_utf8(name).ok()?, attached))
}

/// The value of `--name=VALUE`, whatever its bytes.
fn attached_value(arg: &OsStr) -> Option<OsString> {
    let bytes = arg.as_bytes();
    let at = bytes.iter().position(|&b| b == b'=')?;
    Some(OsStr::from_bytes(bytes.get(at + 1..)?).to_owned())
}

/// Where the command is in `args` (after the global options), if any.
fn command_at(args: &[OsString]) -> Option<usize> {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg == "--" {
            return (i + 1 < args.len()).then_some(i + 1);
        }
        match option(arg) {
            Some((name, attached)) => {
                i += if !attached && GLOBAL_VALUE_OPTIONS.contains(&name) {
                    2
                } else {
                    1
                };
            }
            None => return Some(i),
        }
    }
    None
}

/// The bundle of a `create` or `run` command line, `None` for any other command: its
/// `--bundle`/`-b`, else the working directory (runc's default).
fn create_bundle(args: &[OsString]) -> Result<Option<PathBuf>, String> {
    let Some(at) = command_at(args) else {
        return Ok(None);
    };
    if !matches!(
        args.get(at).and_then(|c| c.to_str()),
        Some("create" | "run")
    ) {
        return Ok(None);
    }
    let mut bundle = None;
    let mut rest = args.iter().skip(at + 1);
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        let Some((name, attached)) = option(arg) else {
            continue;
        };
        let value = if attached {
            attached_value(arg)
        } else if CREATE_VALUE_OPTIONS.contains(&name) {
            rest.next().cloned()
        } else {
            continue;
        };
        if matches!(name, "bundle" | "b") {
            bundle = Some(
                value
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("{} needs a value", arg.to_string_lossy()))?,
            );
        }
    }
    Ok(Some(bundle.unwrap_or_else(|| PathBuf::from("."))))
}

/// `name` as the toolkit resolves its executables: a path as it is, a name in `PATH`.
fn which(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_owned());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The first runtime of `candidates` found that is not this program.
fn runtime(candidates: &[String]) -> Result<PathBuf, String> {
    let me = std::env::current_exe().and_then(std::fs::canonicalize).ok();
    candidates
        .iter()
        .filter_map(|c| which(c.as_ref()))
        .find(|p| std::fs::canonicalize(p).ok() != me)
        .ok_or_else(|| {
            format!(
                "no OCI runtime found (nvidia-container-runtime.runtimes: {}; names are searched in PATH)",
                candidates.join(", ")
            )
        })
}

/// Gives the container of `bundle` what it asks for, as `config` says; `config.json` is
/// rewritten only when something changed.
fn modify(bundle: &Path, config: &Config) -> Result<(), String> {
    let chain = |e: nvc_core::Error| nvc_examples::error_chain(&e);
    let spec = oci::read_request_view(bundle).map_err(chain)?;
    let runtime = &config.nvidia_container_runtime;
    let cdi = &runtime.modes.cdi;
    let mut opts = RequestOptions::default();
    opts.default_kind.clone_from(&cdi.default_kind);
    opts.annotation_prefixes
        .clone_from(&cdi.annotation_prefixes);
    opts.envvar_when_unprivileged = config.accept_nvidia_visible_devices_envvar_when_unprivileged;
    let devices = requested_devices(&spec, &opts).map_err(chain)?;
    if devices.is_empty() {
        return Ok(());
    }
    // Where the request came from, for `auto` and for errors: the annotations when any.
    let annotations: Vec<&String> = cdi_annotations(&spec, &opts)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let asked_by = if annotations.is_empty() {
        "NVIDIA_VISIBLE_DEVICES".to_owned()
    } else {
        format!("annotations {annotations:?}")
    };
    let mut full = oci::read_spec(bundle).map_err(chain)?;
    let registry = Registry::load(&cdi.spec_dirs).map_err(chain)?;
    let use_cdi = match runtime.mode.as_str() {
        "cdi" => true,
        "legacy" => false,
        "auto" | "" => {
            let default_kind = format!("{}=", cdi.default_kind);
            let asked_cdi =
                devices.iter().any(|d| !d.starts_with(&default_kind)) || !annotations.is_empty();
            asked_cdi
                || registry
                    .devices()
                    .iter()
                    .any(|d| d.starts_with(&default_kind))
        }
        other => {
            return Err(format!(
                "nvidia-container-runtime.mode {other:?}: nvc-runtime runs auto, cdi or legacy"
            ));
        }
    };
    if use_cdi {
        registry
            .inject(&mut full, &devices)
            .map_err(|e| format!("{} (asked by {asked_by})", chain(e)))?;
        if let Some(hooks) = full.hooks_mut()
            && let Some(prestart) = hooks.prestart_mut()
        {
            prestart.retain(|h| !is_toolkit_hook(h));
        }
    } else {
        let path = &config.nvidia_container_runtime_hook.path;
        let hook = which(path).ok_or_else(|| {
            format!(
                "legacy mode: the hook {} is not found (nvidia-container-runtime-hook.path; names are searched in PATH)",
                path.display()
            )
        })?;
        let hooks = full.hooks_mut().get_or_insert_with(Default::default);
        let prestart = hooks.prestart_mut().get_or_insert_with(Vec::new);
        if !prestart.iter().any(is_toolkit_hook) {
            let mut entry = Hook::default();
            entry
                .set_path(hook)
                .set_args(Some(vec![toolkit::HOOK.into(), "prestart".into()]));
            prestart.push(entry);
        }
    }
    oci::write_spec(bundle, &full).map_err(chain)
}

fn is_toolkit_hook(hook: &Hook) -> bool {
    hook.path()
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| TOOLKIT_HOOKS.contains(&name))
}

/// Appends `msg` to runc's `--log` file when `--log-format json` says containerd reads it
/// there (as runc's own errors are).
fn log_json(args: &[OsString], msg: &str) {
    let value = |name: &str| {
        let mut it = args.iter().take(command_at(args).unwrap_or(args.len()));
        while let Some(arg) = it.next() {
            match option(arg) {
                Some((n, true)) if n == name => return attached_value(arg),
                Some((n, false)) if n == name => return it.next().cloned(),
                _ => {}
            }
        }
        None
    };
    if let (Some(log), Some(format)) = (value("log"), value("log-format"))
        && format == "json"
    {
        use std::io::Write;
        let line = serde_json::json!({ "level": "error", "msg": msg });
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

fn run(args: &[OsString]) -> Result<std::convert::Infallible, String> {
    let config = Config::load(&toolkit::default_path())?;
    let runtime = runtime(&config.nvidia_container_runtime.runtimes)?;
    if let Some(bundle) = create_bundle(args)? {
        modify(&bundle, &config).map_err(|e| format!("{}: {e}", bundle.display()))?;
    }
    let e = std::process::Command::new(&runtime).args(args).exec();
    Err(format!("cannot execute {}: {e}", runtime.display()))
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(&args) {
        Ok(never) => match never {},
        Err(msg) => {
            let msg = format!("nvc-runtime: {msg}");
            eprintln!("{msg}");
            log_json(&args, &msg);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn the_bundle_of_create_and_run_is_found_past_runcs_options() {
        let bundle = |line| create_bundle(&args(line)).ok().flatten();
        // containerd's shim.
        assert_eq!(
            bundle(
                "--root /run/containerd/runc/k8s.io --log /b/log.json --log-format json create --bundle /b --pid-file /b/init.pid abc"
            ),
            Some(PathBuf::from("/b"))
        );
        assert_eq!(bundle("--root=/r run -b=/x id"), Some(PathBuf::from("/x")));
        assert_eq!(bundle("-root /r create id"), Some(PathBuf::from(".")));
        // A container called `create`, and a root directory called `create`, are not the
        // command.
        assert_eq!(bundle("--root /r start create"), None);
        assert_eq!(bundle("--root create state x"), None);
        assert_eq!(bundle("--debug delete --force create"), None);
        assert_eq!(bundle("--version"), None);
        let e = create_bundle(&args("create --bundle")).unwrap_err();
        assert!(e.contains("--bundle needs a value"), "{e}");
        let e = create_bundle(&args("create -b")).unwrap_err();
        assert!(e.contains("-b needs a value"), "{e}");
        // crun's --log-level takes a value; runc's --pidfd-socket too.
        assert_eq!(
            bundle("--log-level debug create --pidfd-socket /s -b /x id"),
            Some(PathBuf::from("/x"))
        );
        // A bundle path that is not UTF-8 is still the bundle.
        let raw = vec![
            OsString::from("create"),
            OsString::from(OsStr::from_bytes(b"--bundle=/b\xff")),
            OsString::from("id"),
        ];
        assert_eq!(
            create_bundle(&raw).unwrap(),
            Some(PathBuf::from(OsStr::from_bytes(b"/b\xff")))
        );
    }
}
