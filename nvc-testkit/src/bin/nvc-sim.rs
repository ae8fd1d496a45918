//! `nvc-sim`: build a simulated NVIDIA host, and run commands on it.
//!
//! ```text
//! nvc-sim create --scenario NAME DIR    lay out scenario NAME in DIR
//! nvc-sim run DIR -- CMD [ARGS...]      run CMD where DIR is the host's driver
//! nvc-sim list                          the built-in scenarios
//! ```
//!
//! `run` needs root: CMD runs in a private mount namespace in which `/dev` has DIR's device
//! nodes, `/proc/driver/nvidia`, `/proc/driver/nvidia-caps` and `/proc/devices` are DIR's,
//! so that e.g. `nvc-sim run DIR -- nvidia-container-cli --root DIR info` sees the scenario.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use nvc_testkit::{BUILTIN, DeviceNodes, Host, Scenario, sim_ns};

const USAGE: &str =
    "usage: nvc-sim create --scenario NAME DIR | nvc-sim run DIR -- CMD [ARGS...] | nvc-sim list";

fn create(args: &[OsString]) -> Result<(), String> {
    let [flag, name, dir] = args else {
        return Err(USAGE.into());
    };
    if flag != "--scenario" {
        return Err(USAGE.into());
    }
    let name = name.to_string_lossy();
    let scenario = Scenario::builtin(&name).ok_or_else(|| {
        format!(
            "unknown scenario {name:?} (built-in: {})",
            BUILTIN.join(", ")
        )
    })?;
    let dir = PathBuf::from(dir);
    let host = Host::build(&scenario, &dir).map_err(|e| e.to_string())?;
    println!(
        "created scenario {name} in {} ({} GPUs, driver {})",
        dir.display(),
        scenario.gpus.len(),
        scenario.driver_version
    );
    if let DeviceNodes::Skipped(reason) = host.device_nodes_state() {
        eprintln!("nvc-sim: device nodes not created: {reason}");
    }
    Ok(())
}

fn run(args: &[OsString]) -> Result<(), String> {
    let [dir, dashdash, cmd, rest @ ..] = args else {
        return Err(USAGE.into());
    };
    if dashdash != "--" {
        return Err(USAGE.into());
    }
    let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.to_string_lossy()))?;
    sim_ns::enter(&dir).map_err(|e| e.to_string())?;
    let err = Command::new(cmd).args(rest).exec();
    Err(format!("cannot run {}: {err}", cmd.to_string_lossy()))
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let result = match args.first().and_then(|a| a.to_str()) {
        Some("create") => create(args.get(1..).unwrap_or_default()),
        Some("run") => run(args.get(1..).unwrap_or_default()),
        Some("list") => {
            println!("{}", BUILTIN.join("\n"));
            Ok(())
        }
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("nvc-sim: {msg}");
            ExitCode::from(if msg == USAGE { 2 } else { 1 })
        }
    }
}
