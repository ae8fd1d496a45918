//! `nvc-demo`: nvc's driver discovery end to end — on this machine's NVIDIA driver when it
//! has one, otherwise on a simulated host built on the spot.
//!
//! ```text
//! nvc-demo [--scenario NAME] [--keep]
//! ```
//!
//! Without a driver (no `libnvidia-ml.so.1` under `/`), it lays out scenario NAME (default
//! `dgx`; see `nvc-sim list`) in a temporary directory with nvc-testkit — real ELF libraries,
//! a cache written by glibc's `ldconfig`, a fake NVML — and runs the same code paths as
//! `nvidia-container-cli --root DIR info` and `list`. `--keep` leaves the directory.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use nvc_driver::{DriverOptions, find_nvml, probe_driver};
use nvc_examples::render::{self, List};
use nvc_testkit::{BUILTIN, Host, Scenario};

fn run() -> Result<(), String> {
    let mut scenario = "dgx".to_owned();
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--scenario" => scenario = args.next().ok_or("--scenario needs a NAME")?,
            "--keep" => keep = true,
            _ => {
                return Err(format!(
                    "usage: nvc-demo [--scenario NAME] [--keep] (scenarios: {})",
                    BUILTIN.join(", ")
                ));
            }
        }
    }
    let real = find_nvml(&DriverOptions::new("/").discover).is_ok();
    let (root, _host, _dir): (PathBuf, Option<Host>, Option<tempfile::TempDir>) = if real {
        println!("== this machine's NVIDIA driver ==");
        ("/".into(), None, None)
    } else {
        let s = Scenario::builtin(&scenario).ok_or_else(|| {
            format!(
                "unknown scenario {scenario:?} (built-in: {})",
                BUILTIN.join(", ")
            )
        })?;
        let dir = tempfile::Builder::new()
            .prefix("nvc-demo-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let host = Host::build(&s, dir.path()).map_err(|e| e.to_string())?;
        println!(
            "== no NVIDIA driver here: simulated host `{scenario}` ({} GPUs) in {} ==",
            s.gpus.len(),
            dir.path().display()
        );
        let root = dir.path().to_path_buf();
        if keep {
            let kept = dir.keep();
            println!("(kept: {})", kept.display());
            (root, Some(host), None)
        } else {
            (root, Some(host), Some(dir))
        }
    };
    let info = probe_driver(&DriverOptions::new(&root)).map_err(|e| e.to_string())?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let w = |e: io::Error| e.to_string();
    writeln!(
        out,
        "\n$ nvidia-container-cli --root {} info",
        root.display()
    )
    .map_err(w)?;
    render::info(&info, false, &mut out).map_err(w)?;
    writeln!(
        out,
        "\n$ nvidia-container-cli --root {} list",
        root.display()
    )
    .map_err(w)?;
    let everything = List {
        devices: vec!["all".into()],
        libraries: true,
        binaries: true,
        ipcs: true,
        firmwares: true,
        compat32: true,
        ..List::default()
    };
    render::list(&info, &everything, &mut out)?;
    for warning in &info.files.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("nvc-demo: {msg}");
            ExitCode::FAILURE
        }
    }
}
