//! `nvc-cdi`: Container Device Interface specs for the host's NVIDIA driver, for
//! containerd, CRI-O, podman and Docker ≥ 25 (which apply them themselves), and `inject` for
//! runtimes that do not (runc, crun, youki).
//!
//! ```text
//! nvc-cdi generate [--output FILE] [--format json|yaml] [--device-name-strategy index|uuid|type-index]...
//!                  [--driver-root DIR] [--dev-root DIR] [--ldcache FILE]
//!                  [--library-search-path DIR[:DIR]...]...
//!                  [--vendor VENDOR] [--class CLASS] [--hook PATH | --no-hook] [--no-nvml]
//! nvc-cdi list [--spec-dir DIR]...
//! nvc-cdi inject --device VENDOR/CLASS=NAME... [--spec-dir DIR]... CONFIG.json
//! ```
//!
//! `generate` probes the driver (NVML in a helper process; with `--no-nvml` the GPUs come
//! from `/proc/driver/nvidia`, e.g. when the spec is made before NVML can answer; binaries
//! are searched for in `PATH`, inside the driver root) and prints the spec (JSON unless
//! `--format yaml`), or writes it atomically to `--output` (e.g. `/etc/cdi/nvidia.yaml`; the
//! format follows the extension unless `--format` says otherwise); the CDI version is the
//! lowest the content needs. Devices are named by index and by UUID unless
//! `--device-name-strategy` says otherwise (nvidia-ctk's default). `list` prints the devices (`vendor/class=name`) of the specs in
//! the CDI directories (`/etc/cdi`, then `/var/run/cdi`, by default). `inject` applies the
//! devices' edits to a bundle's `config.json` (rewritten atomically), as a CDI-aware runtime
//! would: environment, device nodes with their cgroup rules, mounts, hooks, groups.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use lexopt::prelude::*;
use nvc_core::Context;
use nvc_core::cdi::{CdiOptions, Format, Registry, SPEC_DIRS};

fn generate(mut p: lexopt::Parser) -> Result<(), String> {
    let chain = |e: nvc_core::Error| nvc_examples::error_chain(&e);
    let mut opts = CdiOptions::default();
    let mut names = Vec::new();
    let mut output: Option<PathBuf> = None;
    let mut format: Option<Format> = None;
    let mut root = PathBuf::from("/");
    let mut ldcache: Option<OsString> = None;
    let mut library_dirs: Vec<PathBuf> = Vec::new();
    let mut nvml = true;
    let text = |p: &mut lexopt::Parser| -> Result<String, String> {
        p.value()
            .map_err(|e| e.to_string())?
            .into_string()
            .map_err(|v| format!("not UTF-8: {}", v.to_string_lossy()))
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("output") => output = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("format") => {
                format = Some(match text(&mut p)?.as_str() {
                    "json" => Format::Json,
                    "yaml" => Format::Yaml,
                    other => {
                        return Err(format!("invalid format {other:?} (expected json or yaml)"));
                    }
                });
            }
            Long("device-name-strategy") => names.push(text(&mut p)?.parse().map_err(chain)?),
            Long("driver-root") => root = p.value().map_err(|e| e.to_string())?.into(),
            Long("dev-root") => opts.dev_root = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("ldcache") => ldcache = Some(p.value().map_err(|e| e.to_string())?),
            Long("library-search-path") => {
                library_dirs.extend(std::env::split_paths(
                    &p.value().map_err(|e| e.to_string())?,
                ));
            }
            Long("vendor") => opts.vendor = text(&mut p)?,
            Long("class") => opts.class = text(&mut p)?,
            Long("hook") => opts.hook = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("no-hook") => opts.hook = None,
            Long("no-nvml") => nvml = false,
            other => return Err(other.unexpected().to_string()),
        }
    }
    if !names.is_empty() {
        opts.names = names;
    }
    let mut b = Context::builder().root(root).nvml(nvml);
    if let Some(path) = std::env::var_os("PATH") {
        b = b.search_path(path);
    }
    if let Some(l) = ldcache {
        b = b.ldcache(l);
    }
    for dir in library_dirs {
        b = b.library_dir(dir);
    }
    let driver = b.build().and_then(Context::driver).map_err(chain)?;
    let spec = driver.cdi_spec(&opts).map_err(chain)?;
    match output {
        Some(path) => match format {
            Some(f) if f != Format::of(&path) => Err(format!(
                "{}: the extension does not match --format",
                path.display()
            )),
            _ => nvc_core::cdi::write(&spec, &path).map_err(chain),
        },
        None => {
            let bytes = spec
                .to_bytes(format.unwrap_or(Format::Json))
                .map_err(chain)?;
            print!("{}", String::from_utf8_lossy(&bytes));
            Ok(())
        }
    }
}

/// `--spec-dir DIR` options, or the CDI directories.
fn spec_dirs(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    if dirs.is_empty() {
        SPEC_DIRS.iter().map(PathBuf::from).collect()
    } else {
        dirs
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
    let registry = Registry::load(&spec_dirs(dirs)).map_err(|e| nvc_examples::error_chain(&e))?;
    for device in registry.devices() {
        println!("{device}");
    }
    Ok(())
}

fn inject(mut p: lexopt::Parser) -> Result<(), String> {
    let chain = |e: nvc_core::Error| nvc_examples::error_chain(&e);
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut devices: Vec<String> = Vec::new();
    let mut config: Option<PathBuf> = None;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("spec-dir") => dirs.push(p.value().map_err(|e| e.to_string())?.into()),
            Long("device") => devices.push(
                p.value()
                    .map_err(|e| e.to_string())?
                    .into_string()
                    .map_err(|v| format!("not UTF-8: {}", v.to_string_lossy()))?,
            ),
            Value(path) if config.is_none() => config = Some(path.into()),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let config = config.ok_or("missing the bundle's config.json")?;
    if devices.is_empty() {
        return Err("no --device given".into());
    }
    let registry = Registry::load(&spec_dirs(dirs)).map_err(chain)?;
    let bundle = config.parent().unwrap_or(std::path::Path::new("."));
    let mut spec = if config.file_name().is_some_and(|n| n == "config.json") {
        nvc_core::oci::read_spec(bundle).map_err(chain)?
    } else {
        return Err(format!("{}: not a config.json", config.display()));
    };
    registry.inject(&mut spec, &devices).map_err(chain)?;
    nvc_core::oci::write_spec(bundle, &spec).map_err(chain)
}

fn run() -> Result<(), String> {
    let mut p = lexopt::Parser::from_env();
    match p.next().map_err(|e| e.to_string())? {
        Some(Value(cmd)) if cmd == "generate" => generate(p),
        Some(Value(cmd)) if cmd == "list" => list(p),
        Some(Value(cmd)) if cmd == "inject" => inject(p),
        _ => Err("usage: nvc-cdi generate [OPTIONS] | list [--spec-dir DIR]... | inject --device NAME... [--spec-dir DIR]... CONFIG.json".into()),
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
