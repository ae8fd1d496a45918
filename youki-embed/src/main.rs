//! `nvc-youki-embed STATE DRIVER_ROOT DEVICES ID BUNDLE`: runs the OCI bundle `BUNDLE` as
//! container `ID` with youki's `libcontainer` (state under `STATE`), giving it the GPUs
//! `DEVICES` names (`all`, `0,1`, UUIDs) of the driver under `DRIVER_ROOT` with nvc-core, in
//! process, between create and start — no hook, no `nvidia-container-cli`: the container is
//! created (its root pivoted, waiting for start), nvc attaches the GPUs to it through its
//! init's root, then it starts. Waits for the container and exits with its status; a failed
//! attach deletes the container and fails before anything of it ran.

use std::path::PathBuf;
use std::process::ExitCode;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::sys::wait::{WaitStatus, waitpid};
use nvc_core::{Capability, Context};

type Error = Box<dyn std::error::Error>;

fn run(
    state: PathBuf,
    driver_root: PathBuf,
    devices: &str,
    id: String,
    bundle: PathBuf,
) -> Result<i32, Error> {
    // The lines a runtime writes: create, attach the GPUs in process, start.
    let mut container = ContainerBuilder::new(id, SyscallType::default())
        .with_executor(DefaultExecutor {})
        .with_root_path(state)?
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(false)
        .build()?;
    let pid = container.pid().ok_or("created container has no init pid")?;
    let driver = Context::builder().root(driver_root).build()?.driver()?;
    let attached = driver
        .running(u32::try_from(pid.as_raw())?)
        .and_then(|setup| {
            setup
                .devices(devices.parse()?)
                .capabilities(&[Capability::Compute, Capability::Utility])
                .mount()
        });
    if let Err(e) = attached {
        container.delete(true)?;
        return Err(e.into());
    }
    container.start()?;

    let status = loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, signal, _)) => break 128 + signal as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    };
    container.delete(true)?;
    Ok(status)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [state, root, devices, id, bundle] = args.as_slice() else {
        eprintln!("usage: nvc-youki-embed STATE DRIVER_ROOT DEVICES ID BUNDLE");
        return ExitCode::from(2);
    };
    match run(
        state.into(),
        root.into(),
        devices,
        id.clone(),
        bundle.into(),
    ) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("nvc-youki-embed: {e}");
            ExitCode::FAILURE
        }
    }
}
