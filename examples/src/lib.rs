//! Shared pieces of the example binaries: error reports, rendering driver information the
//! way `nvidia-container-cli` prints it, and the OCI hook's inputs.
#![forbid(unsafe_code)]

pub mod hook;

/// An error and its sources, `: `-separated (`cannot read X: No such file or directory`).
#[must_use]
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg = format!("{msg}: {c}");
        cause = c.source();
    }
    msg
}

pub mod render {
    //! `info` and `list` output, byte for byte as upstream's CLI.

    use std::io::{self, Write};

    use nvc_driver::{CAPS_DIR, DeviceRequest, DriverInfo, Gpu, Selection, select_mig_access};

    /// What `list` prints.
    #[derive(Debug, Clone, Default)]
    pub struct List {
        /// Device lists (`--device`), empty: no device paths.
        pub devices: Vec<String>,
        /// Libraries.
        pub libraries: bool,
        /// Binaries.
        pub binaries: bool,
        /// IPC endpoints.
        pub ipcs: bool,
        /// GSP firmware.
        pub firmwares: bool,
        /// 32-bit libraries too.
        pub compat32: bool,
        /// Leave the persistenced socket out.
        pub no_persistenced: bool,
        /// Leave the fabric manager socket out.
        pub no_fabricmanager: bool,
        /// `--mig-config` (only `all`).
        pub mig_config: Option<String>,
        /// `--mig-monitor` (only `all`).
        pub mig_monitor: Option<String>,
        /// `--imex-channel` ids.
        pub imex_channels: Vec<u32>,
    }

    /// Resolves `--device` lists against the GPUs, as upstream: only when there are GPUs.
    ///
    /// # Errors
    ///
    /// `device error: ...` naming a token that is no device.
    pub fn select(info: &DriverInfo, devices: &[String]) -> Result<Selection, String> {
        let mut request = DeviceRequest::default();
        for d in devices {
            request.add(d).map_err(|e| format!("device error: {e}"))?;
        }
        if info.gpus.is_empty() {
            return Ok(Selection::default());
        }
        request
            .select(&info.gpus)
            .map_err(|e| format!("device error: {e}"))
    }

    /// Prints `info` (text, or CSV with `csv`).
    ///
    /// # Errors
    ///
    /// The writer's.
    pub fn info(info: &DriverInfo, csv: bool, out: &mut dyn Write) -> io::Result<()> {
        if csv {
            writeln!(
                out,
                "NVRM version,CUDA version\n{},{}",
                info.nvrm_version, info.cuda_version
            )?;
            writeln!(
                out,
                "\nDevice Index,Device Minor,Model,Brand,GPU UUID,Bus Location,Architecture"
            )?;
            for (i, g) in info.gpus.iter().enumerate() {
                writeln!(
                    out,
                    "{i},{},{},{},{},{},{}",
                    g.minor, g.model, g.brand, g.uuid, g.bus_id, g.architecture
                )?;
            }
        } else {
            writeln!(
                out,
                "{:<15} {}\n{:<15} {}",
                "NVRM version:", info.nvrm_version, "CUDA version:", info.cuda_version
            )?;
            for (i, g) in info.gpus.iter().enumerate() {
                writeln!(
                    out,
                    "\n{:<15} {i}\n{:<15} {}\n{:<15} {}\n{:<15} {}\n{:<15} {}\n{:<15} {}\n{:<15} {}",
                    "Device Index:",
                    "Device Minor:",
                    g.minor,
                    "Model:",
                    g.model,
                    "Brand:",
                    g.brand,
                    "GPU UUID:",
                    g.uuid,
                    "Bus Location:",
                    g.bus_id,
                    "Architecture:",
                    g.architecture
                )?;
            }
        }
        Ok(())
    }

    /// Prints `list` in upstream's order: device nodes of the driver and of the selected GPUs,
    /// the selected MIG devices' access files (unless MIG config or monitor is on), IMEX
    /// channels, MIG config and monitor files, then binaries, libraries, IPC endpoints and
    /// firmware, as asked.
    ///
    /// # Errors
    ///
    /// A device list that does not parse or names an unknown device (`device error: ...`),
    /// a bad `--mig-config`/`--mig-monitor` (`mig-config error: ...`), or the writer's error.
    pub fn list(info: &DriverInfo, l: &List, out: &mut dyn Write) -> Result<(), String> {
        let mut lines: Vec<String> = Vec::new();
        let selection = select(info, &l.devices)?;
        let access = |option: &'static str, value: &Option<String>| match value {
            Some(v) => select_mig_access(option, v, &selection, &info.gpus)
                .map(Some)
                .map_err(|e| format!("{option} error: {e}")),
            None => Ok(None),
        };
        let config = access("mig-config", &l.mig_config)?;
        let monitor = access("mig-monitor", &l.mig_monitor)?;
        let gpu = |i: u32| info.gpus.iter().find(|g| g.index == i);
        if !l.devices.is_empty() {
            lines.extend(
                info.files
                    .devices
                    .iter()
                    .map(|d| d.path.display().to_string()),
            );
            lines.extend(
                selection
                    .gpus
                    .iter()
                    .filter_map(|&i| gpu(i))
                    .map(|g| format!("/dev/nvidia{}", g.minor)),
            );
            if config.is_none() && monitor.is_none() {
                for &(gi, mi) in &selection.migs {
                    let Some(g) = gpu(gi) else { continue };
                    let Some(m) = g.mig_devices.iter().find(|m| m.index == mi) else {
                        continue;
                    };
                    lines.push(format!("{}/access", g.gi_caps_path(m)));
                    lines.push(format!("{}/access", g.ci_caps_path(m)));
                }
            }
        }
        lines.extend(
            l.imex_channels
                .iter()
                .map(|c| format!("/dev/nvidia-caps-imex-channels/channel{c}")),
        );
        for (file, gpus) in [("config", &config), ("monitor", &monitor)] {
            if let Some(gpus) = gpus {
                lines.push(format!("{CAPS_DIR}/mig/{file}"));
                lines.extend(gpus.iter().filter_map(|&i| gpu(i)).map(Gpu::mig_caps_path));
            }
        }
        let paths = |v: &[std::path::PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        if l.binaries {
            lines.extend(paths(&info.files.binaries));
        }
        if l.libraries {
            lines.extend(paths(&info.files.libraries));
            if l.compat32 {
                lines.extend(paths(&info.files.libraries32));
            }
        }
        if l.ipcs {
            lines.extend(paths(&info.files.ipcs));
        }
        if l.firmwares {
            lines.extend(paths(&info.files.firmwares));
        }
        for line in lines {
            writeln!(out, "{line}").map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
