//! Shared pieces of the example binaries: error reports, rendering driver information the
//! way `nvidia-container-cli` prints it.
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

/// Prints what a configure's caller should know to stderr, each line prefixed `prog:
/// warning:`: device programs left alone, procfs directories not masked.
pub fn warn(prog: &str, done: &nvc_core::Configured) {
    for note in done.notes() {
        eprintln!("{prog}: warning: {note}");
    }
    for dir in done.skipped() {
        eprintln!(
            "{prog}: warning: the container's procfs has no {} (made where the NVIDIA module is not loaded): nothing to mask there",
            dir.display()
        );
    }
}

pub mod toolkit;

pub mod render {
    //! `info` and `list` output, byte for byte as upstream's CLI.

    use std::io::{self, Write};
    use std::path::PathBuf;

    use nvc_core::DriverInfo;

    /// Prints `info` (text, or CSV with `csv`).
    ///
    /// # Errors
    ///
    /// The writer's.
    pub fn info(info: &DriverInfo, csv: bool, out: &mut dyn Write) -> io::Result<()> {
        // What only NVML knows reads `N/A` when it was not asked (`--no-nvml`).
        fn na(s: &Option<String>) -> &str {
            s.as_deref().unwrap_or("N/A")
        }
        let cuda = na(&info.cuda_version);
        if csv {
            writeln!(
                out,
                "NVRM version,CUDA version\n{},{cuda}",
                info.nvrm_version
            )?;
            writeln!(
                out,
                "\nDevice Index,Device Minor,Model,Brand,GPU UUID,Bus Location,Architecture"
            )?;
            for (i, g) in info.gpus.iter().enumerate() {
                writeln!(
                    out,
                    "{i},{},{},{},{},{},{}",
                    g.minor,
                    g.model,
                    na(&g.brand),
                    g.uuid,
                    g.bus_id,
                    na(&g.architecture)
                )?;
            }
        } else {
            writeln!(
                out,
                "{:<15} {}\n{:<15} {}",
                "NVRM version:", info.nvrm_version, "CUDA version:", cuda
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
                    na(&g.brand),
                    "GPU UUID:",
                    g.uuid,
                    "Bus Location:",
                    g.bus_id,
                    "Architecture:",
                    na(&g.architecture)
                )?;
            }
        }
        Ok(())
    }

    /// Prints `list`: one path a line ([`nvc_core::Driver::list`] gives them in upstream's
    /// order).
    ///
    /// # Errors
    ///
    /// The writer's.
    pub fn list(paths: &[PathBuf], out: &mut dyn Write) -> io::Result<()> {
        for path in paths {
            writeln!(out, "{}", path.display())?;
        }
        Ok(())
    }
}
