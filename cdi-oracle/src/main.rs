//! `nvc-cdi-oracle`: what the `container-device-interface` crate makes of CDI specs.
//!
//! ```text
//! nvc-cdi-oracle validate SPEC...                      # one qualified device name per line
//! nvc-cdi-oracle inject CONFIG.json SPEC_DIR DEVICE... # the OCI spec with the devices' edits
//! ```
//!
//! `validate` reads each spec as the crate's registry does (`read_spec`: the CDI JSON schema,
//! the version rules, device names and edits) and fails on the first error. `inject` loads the
//! specs of one directory into a cache and applies the named devices' edits to `CONFIG.json`,
//! printing the result as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use container_device_interface::cache::{new_cache, with_auto_refresh};
use container_device_interface::spec::read_spec;
use container_device_interface::spec_dirs::with_spec_dirs;
use oci_spec::runtime::Spec;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((cmd, rest)) if cmd == "validate" && !rest.is_empty() => validate(rest),
        Some((cmd, [config, dir, devices @ ..])) if cmd == "inject" && !devices.is_empty() => {
            inject(config, dir, devices)
        }
        _ => Err(
            "usage: nvc-cdi-oracle validate SPEC... | inject CONFIG.json SPEC_DIR DEVICE..."
                .to_owned(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nvc-cdi-oracle: {err}");
            ExitCode::FAILURE
        }
    }
}

fn validate(paths: &[String]) -> Result<(), String> {
    let mut names = Vec::new();
    for path in paths {
        let spec = read_spec(&PathBuf::from(path), 0).map_err(|e| format!("{path}: {e:#}"))?;
        let kind = format!("{}/{}", spec.get_vendor(), spec.get_class());
        names.extend(spec.devices.keys().map(|name| format!("{kind}={name}")));
    }
    names.sort();
    for name in names {
        println!("{name}");
    }
    Ok(())
}

fn inject(config: &str, dir: &str, devices: &[String]) -> Result<(), String> {
    let mut spec = Spec::load(config).map_err(|e| format!("{config}: {e}"))?;
    let cache = new_cache(vec![with_spec_dirs(&[dir]), with_auto_refresh(false)]);
    let mut cache = cache.lock().map_err(|e| e.to_string())?;
    cache.refresh().map_err(|e| format!("{dir}: {e}"))?;
    cache
        .inject_devices(Some(&mut spec), devices.to_vec())
        .map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&spec).map_err(|e| e.to_string())?;
    println!("{json}");
    Ok(())
}
