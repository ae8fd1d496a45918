//! `nvc-cdi`: Container Device Interface specs for the host's NVIDIA driver, for
//! containerd, CRI-O, podman and Docker ≥ 25 (which apply them themselves).
//!
//! ```text
//! nvc-cdi generate [--output FILE] [--device-name-strategy index|uuid|type-index]...
//!                  [--driver-root DIR] [--dev-root DIR] [--ldcache FILE]
//!                  [--vendor VENDOR] [--class CLASS] [--hook PATH | --no-hook]
//! nvc-cdi list [--spec-dir DIR]...
//! ```
//!
//! `generate` probes the driver (NVML in a helper process) and prints the spec as JSON, or
//! writes it atomically to `--output` (e.g. `/etc/cdi/nvidia.json`); the CDI version is the
//! lowest the content needs. `list` prints the devices (`vendor/class=name`) of the JSON
//! specs in the CDI directories (`/etc/cdi`, `/var/run/cdi` by default).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use lexopt::prelude::*;
use nvc_core::Context;
use nvc_core::cdi::{CdiOptions, Spec};

fn generate(mut p: lexopt::Parser) -> Result<(), String> {
    let chain = |e: nvc_core::Error| nvc_examples::error_chain(&e);
    let mut opts = CdiOptions::default();
    let mut names = Vec::new();
    let mut output: Option<PathBuf> = None;
    let mut root = PathBuf::from("/");
    let mut ldcache: Option<OsString> = None;
    let text = |p: &mut lexopt::Parser| -> Result<String, String> {
        p.value()
            .map_err(|e| e.to_string())?
            .into_string()
            .map_err(|v| format!("not UTF-8: {}", v.to_string_lossy()))
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("output") => output = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("device-name-strategy") => names.push(text(&mut p)?.parse().map_err(chain)?),
            Long("driver-root") => root = p.value().map_err(|e| e.to_string())?.into(),
            Long("dev-root") => opts.dev_root = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("ldcache") => ldcache = Some(p.value().map_err(|e| e.to_string())?),
            Long("vendor") => opts.vendor = text(&mut p)?,
            Long("class") => opts.class = text(&mut p)?,
            Long("hook") => opts.hook = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("no-hook") => opts.hook = None,
            other => return Err(other.unexpected().to_string()),
        }
    }
    if !names.is_empty() {
        opts.names = names;
    }
    let mut b = Context::builder().root(root);
    if let Some(l) = ldcache {
        b = b.ldcache(l);
    }
    let driver = b.build().and_then(Context::driver).map_err(chain)?;
    let spec = driver.cdi_spec(&opts).map_err(chain)?;
    match output {
        Some(path) => nvc_core::cdi::write(&spec, &path).map_err(chain),
        None => {
            let json = serde_json::to_string_pretty(&spec).map_err(|e| e.to_string())?;
            println!("{json}");
            Ok(())
        }
    }
}

fn list(mut p: lexopt::Parser) -> Result<(), String> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("spec-dir") => dirs.push(p.value().map_err(|e| e.to_string())?.into()),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if dirs.is_empty() {
        dirs = vec!["/etc/cdi".into(), "/var/run/cdi".into()];
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        for file in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "json"))
        {
            let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let spec: Spec = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: invalid CDI spec: {e}", file.display()))?;
            spec.validate()
                .map_err(|e| format!("{}: invalid CDI spec: {e}", file.display()))?;
            for d in &spec.devices {
                println!("{}={}", spec.kind, d.name);
            }
        }
    }
    Ok(())
}

fn run() -> Result<(), String> {
    let mut p = lexopt::Parser::from_env();
    match p.next().map_err(|e| e.to_string())? {
        Some(Value(cmd)) if cmd == "generate" => generate(p),
        Some(Value(cmd)) if cmd == "list" => list(p),
        _ => Err("usage: nvc-cdi generate [OPTIONS] | nvc-cdi list [--spec-dir DIR]...".into()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("nvc-cdi: {msg}");
            ExitCode::FAILURE
        }
    }
}
