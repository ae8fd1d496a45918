//! `nvc-sim`: build a simulated NVIDIA host, and run commands on it.
//!
//! ```text
//! nvc-sim create --scenario NAME DIR    lay out scenario NAME in DIR
//!     [--real LAYOUT [--real-nvml]]      with NVIDIA's real files (real-driver/fetch.sh)
//!                                        installed as LAYOUT does (debian, run, rpm,
//!                                        driver-container, nixos); NVIDIA's NVML too
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

use nvc_testkit::{BUILTIN, DeviceNodes, Host, Layout, PackageArch, RealDriver, Scenario, sim_ns};

const USAGE: &str = "usage: nvc-sim create --scenario NAME [--real LAYOUT [--real-nvml]] DIR | nvc-sim run DIR -- CMD [ARGS...] | nvc-sim list";

fn create(args: &[OsString]) -> Result<(), String> {
    let (real, args) = real_options(args)?;
    let [flag, name, dir] = args.as_slice() else {
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
    let host = match real {
        None => Host::build(&scenario, &dir),
        Some((layout, fake_nvml)) => {
            let driver = RealDriver::find()?;
            Host::build_real(
                &scenario,
                &dir,
                &driver,
                PackageArch::Amd64,
                layout,
                fake_nvml,
            )
        }
    }
    .map_err(|e| e.to_string())?;
    println!(
        "created scenario {name} in {} ({} GPUs, driver {}{})",
        dir.display(),
        scenario.gpus.len(),
        host.scenario().driver_version,
        real.map_or(String::new(), |(l, fake)| format!(
            ", NVIDIA's files laid out as {}{}",
            l.name(),
            if fake { "" } else { ", NVIDIA's NVML" }
        ))
    );
    if let DeviceNodes::Skipped(reason) = host.device_nodes_state() {
        eprintln!("nvc-sim: device nodes not created: {reason}");
    }
    Ok(())
}

/// What `--real LAYOUT [--real-nvml]` asks for: the layout of NVIDIA's real files, and
/// whether NVML is the fake one.
type Real = Option<(Layout, bool)>;

/// `--real LAYOUT` and `--real-nvml` taken out of `args`, and the other arguments.
fn real_options(args: &[OsString]) -> Result<(Real, Vec<OsString>), String> {
    let mut layout = None;
    let mut fake_nvml = true;
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--real" {
            let name = args.next().ok_or(USAGE)?.to_string_lossy();
            let names: Vec<&str> = Layout::ALL.iter().map(|l| l.name()).collect();
            layout = Some(Layout::parse(&name).ok_or_else(|| {
                format!("unknown layout {name:?} (one of: {})", names.join(", "))
            })?);
        } else if arg == "--real-nvml" {
            fake_nvml = false;
        } else {
            rest.push(arg.clone());
        }
    }
    if layout.is_none() && !fake_nvml {
        return Err("--real-nvml needs --real LAYOUT".into());
    }
    Ok((layout.map(|l| (l, fake_nvml)), rest))
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
