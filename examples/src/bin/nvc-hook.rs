//! `nvc-hook`: an OCI `createRuntime` (or legacy `prestart`) hook that gives a container its
//! GPUs, for youki, runc or crun — what nvidia-container-toolkit's legacy hook does by
//! running `nvidia-container-cli configure`, in one process.
//!
//! ```text
//! nvc-hook [--root DIR] [--no-cgroups] [--ldconfig PATH|@PATH] [--no-ldconfig]
//!          [--no-envvar-when-unprivileged] createRuntime|prestart
//! ```
//!
//! Options take their value as `--opt VALUE` or `--opt=VALUE`. The hook's name is required,
//! as runtimes pass it (the first argument after the program's name in `args`), and must be
//! `createRuntime` or `prestart`: run at `createContainer` or later, the runtime would hand
//! the hook the image's environment (`LD_PRELOAD` included, the CVE-2025-23266 class).
//!
//! The runtime writes the container's state (`{"pid": ..., "bundle": ...}`, at most 1 MiB)
//! to stdin, as the OCI runtime spec says. The image's `NVIDIA_VISIBLE_DEVICES`,
//! `NVIDIA_DRIVER_CAPABILITIES` and `NVIDIA_REQUIRE_*` (from the bundle's `config.json`, at
//! most 16 MiB) say what to give it; an image that asks for nothing is left alone. With
//! `--no-envvar-when-unprivileged` (the toolkit's
//! `accept-nvidia-visible-devices-envvar-when-unprivileged = false`), an unprivileged
//! container (no `CAP_SYS_ADMIN` in its bounding set) gets nothing from its environment.
//! The default ldconfig is the host's (`@/sbin/ldconfig.real` where it exists, else
//! `@/sbin/ldconfig`): no program of the image runs. In a youki `config.json`:
//!
//! ```json
//! "hooks": { "createRuntime": [ { "path": "/usr/local/bin/nvc-hook", "args": ["nvc-hook", "createRuntime"] } ] }
//! ```

use std::process::ExitCode;

use lexopt::prelude::*;
use nvc_core::{Context, Ldconfig};
use nvc_examples::hook::{HookInput, STATE_LIMIT, read_capped};

/// What the command line says.
struct Args {
    root: std::ffi::OsString,
    no_cgroups: bool,
    ldconfig: Option<Ldconfig>,
    envvar_when_unprivileged: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        root: "/".into(),
        no_cgroups: false,
        ldconfig: Some(Ldconfig::host_default()),
        envvar_when_unprivileged: true,
    };
    let mut hook = None;
    let mut parser = lexopt::Parser::from_env();
    let value = |p: &mut lexopt::Parser| p.value().map_err(|e| e.to_string());
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("root") => args.root = value(&mut parser)?,
            Long("ldconfig") => {
                args.ldconfig = Some(nvc_examples::ldconfig_arg(&value(&mut parser)?));
            }
            Long("no-cgroups") => args.no_cgroups = true,
            Long("no-ldconfig") => args.ldconfig = None,
            Long("no-envvar-when-unprivileged") => args.envvar_when_unprivileged = false,
            Value(name) if hook.is_none() => hook = Some(name),
            other => return Err(other.unexpected().to_string()),
        }
    }
    match hook.as_ref().and_then(|h| h.to_str()) {
        Some("createRuntime" | "prestart") => Ok(args),
        Some(other) => Err(format!(
            "refusing to run as the {other:?} hook: only createRuntime or prestart run before the image's code can reach the hook's environment"
        )),
        None => {
            Err("missing the hook's name (createRuntime or prestart) as its first argument".into())
        }
    }
}

fn run() -> Result<(), String> {
    let args = parse()?;
    let state = read_capped(std::io::stdin(), STATE_LIMIT, "the OCI state on stdin")?;
    let input = HookInput::read(&state)?;
    if !args.envvar_when_unprivileged && !input.privileged {
        return Ok(());
    }
    let Some(request) = input.request()? else {
        return Ok(());
    };
    let chain = |e: nvc_core::Error| nvc_examples::error_chain(&e);
    let driver = Context::builder()
        .root(args.root)
        .build()
        .and_then(Context::driver)
        .map_err(chain)?;
    let mut setup = driver
        .container(input.pid, &input.rootfs)
        .map_err(chain)?
        .devices(request.devices.parse().map_err(chain)?)
        .capabilities(&request.capabilities)
        .no_cgroups(args.no_cgroups)
        .ldconfig(args.ldconfig);
    for req in &request.requirements {
        setup = setup.require(req.parse().map_err(chain)?);
    }
    let done = setup.mount().map_err(chain)?;
    for note in done.notes() {
        eprintln!("nvc-hook: warning: {note}");
    }
    Ok(())
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
