//! Shared pieces of the example binaries: error reports, and rendering driver information
//! the way `nvidia-container-cli` prints it.
#![forbid(unsafe_code)]

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

    use nvc_driver::{DeviceRequest, DriverInfo};

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

    /// Prints `list`: device nodes and MIG capability files of the selected devices, then
    /// binaries, libraries, IPC endpoints and firmware, as asked.
    ///
    /// # Errors
    ///
    /// A device list that does not parse or names an unknown device (`device error: ...`),
    /// or the writer's error.
    pub fn list(info: &DriverInfo, l: &List, out: &mut dyn Write) -> Result<(), String> {
        let mut lines: Vec<String> = Vec::new();
        if !l.devices.is_empty() {
            let mut request = DeviceRequest::default();
            for d in &l.devices {
                request.add(d).map_err(|e| format!("device error: {e}"))?;
            }
            let selection = if info.gpus.is_empty() {
                Default::default()
            } else {
                request
                    .select(&info.gpus)
                    .map_err(|e| format!("device error: {e}"))?
            };
            lines.extend(
                info.files
                    .devices
                    .iter()
                    .map(|d| d.path.display().to_string()),
            );
            for g in info
                .gpus
                .iter()
                .filter(|g| selection.gpus.contains(&g.index))
            {
                lines.push(format!("/dev/nvidia{}", g.minor));
            }
            for &(gi, mi) in &selection.migs {
                let Some(g) = info.gpus.iter().find(|g| g.index == gi) else {
                    continue;
                };
                let Some(m) = g.mig_devices.iter().find(|m| m.index == mi) else {
                    continue;
                };
                let caps = format!(
                    "/proc/driver/nvidia/capabilities/gpu{}/mig/gi{}",
                    g.minor, m.gi
                );
                lines.push(format!("{caps}/access"));
                lines.push(format!("{caps}/ci{}/access", m.ci));
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
