//! `nvc-hook`: an OCI `createRuntime` (or legacy `prestart`) hook that gives a container its
//! GPUs, for youki, runc or crun — what nvidia-container-toolkit's legacy hook does by
//! running `nvidia-container-cli configure`, in one process.
//!
//! ```text
//! nvc-hook [--root=DIR] [--no-cgroups] [--ldconfig=PATH|@PATH] [--no-ldconfig] [HOOK-NAME]
//! ```
//!
//! The runtime writes the container's state (`{"pid": ..., "bundle": ...}`) to stdin, as the
//! OCI runtime spec says. The image's `NVIDIA_VISIBLE_DEVICES`, `NVIDIA_DRIVER_CAPABILITIES`
//! and `NVIDIA_REQUIRE_*` (from the bundle's `config.json`) say what to give it; an image
//! that asks for nothing is left alone. The default ldconfig is the host's
//! (`@/sbin/ldconfig`), as the toolkit configures it. In a youki `config.json`:
//!
//! ```json
//! "hooks": { "createRuntime": [ { "path": "/usr/local/bin/nvc-hook", "args": ["nvc-hook", "createRuntime"] } ] }
//! ```

use std::io::Read;
use std::process::ExitCode;

use nvc_core::{Context, Ldconfig};
use nvc_examples::hook::HookInput;

fn run() -> Result<(), String> {
    let mut root = "/".to_owned();
    let mut no_cgroups = false;
    let mut ldconfig = Some(Ldconfig::host_default());
    for arg in std::env::args().skip(1) {
        match arg.split_once('=') {
            Some(("--root", dir)) => root = dir.to_owned(),
            Some(("--ldconfig", path)) => ldconfig = Some(Ldconfig::parse(path)),
            _ if arg == "--no-cgroups" => no_cgroups = true,
            _ if arg == "--no-ldconfig" => ldconfig = None,
            _ if !arg.starts_with('-') => {} // the hook's name, as runtimes pass it
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    let mut state = Vec::new();
    std::io::stdin()
        .read_to_end(&mut state)
        .map_err(|e| format!("cannot read the OCI state from stdin: {e}"))?;
    let input = HookInput::read(&state)?;
    let Some(request) = input.request()? else {
        return Ok(());
    };
    let driver = Context::builder()
        .root(root)
        .build()
        .and_then(Context::driver)
        .map_err(|e| e.to_string())?;
    let mut setup = driver
        .container(input.pid, &input.rootfs)
        .map_err(|e| e.to_string())?
        .devices(&request.devices)
        .capabilities(&request.capabilities)
        .no_cgroups(no_cgroups)
        .ldconfig(ldconfig);
    for req in &request.requirements {
        setup = setup.require(req);
    }
    let done = setup.mount().map_err(|e| e.to_string())?;
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
