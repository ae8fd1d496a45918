//! `list`: the host paths a container would get, in upstream's order.

use std::path::PathBuf;

use nvc_driver::{CAPS_DIR, Gpu, select_mig_access};

use crate::error::{Error, Step};
use crate::{Devices, Driver};

/// Where the MIG capability nodes are.
const CAPS_DEV_DIR: &str = "/dev/nvidia-caps";

/// What [`Driver::list`] lists (`nvidia-container-cli list`'s options).
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// The devices whose nodes to list; `None`: no device paths.
    pub devices: Option<Devices>,
    /// The driver's libraries.
    pub libraries: bool,
    /// Its binaries.
    pub binaries: bool,
    /// Its IPC endpoints (persistenced, fabric manager, MPS).
    pub ipcs: bool,
    /// Its GSP firmware.
    pub firmwares: bool,
    /// The 32-bit libraries too (with `libraries`).
    pub compat32: bool,
    /// `--mig-config` (only `all` is accepted): the MIG configuration capability files.
    pub mig_config: Option<String>,
    /// `--mig-monitor` (only `all`): the MIG monitoring capability files.
    pub mig_monitor: Option<String>,
    /// IMEX channels.
    pub imex_channels: Vec<u32>,
}

impl ListOptions {
    /// Everything, for every device (upstream's `list` without options).
    #[must_use]
    pub fn everything() -> Self {
        ListOptions {
            devices: Some(Devices::all()),
            libraries: true,
            binaries: true,
            ipcs: true,
            firmwares: true,
            compat32: true,
            ..ListOptions::default()
        }
    }
}

impl Driver {
    /// The host paths (relative to the driver root) a container configured with `opts`
    /// would get, in upstream's order: device nodes of the driver and of the selected
    /// GPUs, the selected MIG devices' access files and their capability nodes (unless MIG
    /// config or monitor is on), IMEX channels, MIG config and monitor files with their
    /// nodes, then binaries, libraries, IPC endpoints and firmware. Capability nodes are
    /// listed where `/proc/devices` has the `nvidia-caps` major, as upstream lists
    /// them. No I/O: everything comes from the probe.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput): a device that is not on this
    /// host (`device error: ...`), a MIG access value other than `all` or MIG access with
    /// specific MIG devices selected (`mig-config error: ...`).
    pub fn list(&self, opts: &ListOptions) -> Result<Vec<PathBuf>, Error> {
        let info = self.info();
        let selection = match &opts.devices {
            Some(d) => self.select(d)?,
            None => crate::Selection::default(),
        };
        let access = |option: &'static str, value: &Option<String>| match value {
            Some(v) => select_mig_access(option, v, &selection)
                .map(Some)
                .map_err(|e| Error::driver(Step::Mig(option), e)),
            None => Ok(None),
        };
        let config = access("mig-config", &opts.mig_config)?;
        let monitor = access("mig-monitor", &opts.mig_monitor)?;
        // The capability nodes are listed where the kernel has them (the `nvidia-caps`
        // major in /proc/devices; upstream's "dev" capability style).
        let caps_nodes = info.files.caps_major.is_some();
        let cap_node = |minor: u32| -> Option<PathBuf> {
            caps_nodes.then(|| format!("{CAPS_DEV_DIR}/nvidia-cap{minor}").into())
        };
        let minor_of = |name: &str| {
            let minors = info.files.mig_minors.iter();
            minors.filter(|(n, _)| n == name).map(|&(_, m)| m).next()
        };
        let mut paths: Vec<PathBuf> = Vec::new();
        if opts.devices.is_some() {
            paths.extend(info.files.devices.iter().map(|d| d.path.clone()));
            paths.extend(
                selection
                    .gpus
                    .iter()
                    .map(|g| format!("/dev/nvidia{}", g.minor).into()),
            );
            if config.is_none() && monitor.is_none() {
                for (g, m) in selection.migs() {
                    paths.push(format!("{}/access", g.gi_caps_path(m)).into());
                    paths.push(format!("{}/access", g.ci_caps_path(m)).into());
                    let (gi, ci) = m.access_minors;
                    paths.extend([gi, ci].into_iter().filter_map(|minor| cap_node(minor?)));
                }
            }
        }
        paths.extend(
            opts.imex_channels
                .iter()
                .map(|c| format!("/dev/nvidia-caps-imex-channels/channel{c}").into()),
        );
        for (file, gpus) in [("config", &config), ("monitor", &monitor)] {
            if let Some(gpus) = gpus {
                paths.push(format!("{CAPS_DIR}/mig/{file}").into());
                paths.extend(minor_of(file).and_then(cap_node));
                for g in gpus {
                    paths.push(Gpu::mig_caps_path(g).into());
                    if caps_nodes {
                        // The GPU's every MIG capability node, in mig-minors order.
                        paths.push(CAPS_DEV_DIR.into());
                        let prefix = format!("gpu{}/", g.minor);
                        let mine = info.files.mig_minors.iter();
                        let mine = mine.filter(|(name, _)| name.starts_with(&prefix));
                        paths.extend(mine.filter_map(|&(_, minor)| cap_node(minor)));
                    }
                }
            }
        }
        let files = &info.files;
        if opts.binaries {
            paths.extend_from_slice(&files.binaries);
        }
        if opts.libraries {
            paths.extend_from_slice(&files.libraries);
            if opts.compat32 {
                paths.extend_from_slice(&files.libraries32);
            }
        }
        if opts.ipcs {
            paths.extend_from_slice(&files.ipcs);
        }
        if opts.firmwares {
            paths.extend_from_slice(&files.firmwares);
        }
        Ok(paths)
    }
}
