//! `--load-kmods`: loading the NVIDIA kernel modules and creating their device nodes, as
//! libnvidia-container does through nvidia-modprobe (upstream's `nvc_init` with `load-kmods`).
//!
//! Everything here is best effort, as upstream: a module that does not load or a node that
//! cannot be made is a warning in the [`KmodReport`], never an error — the driver probe that
//! follows says whether the driver is usable.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use crate::procfs::{cap_device_minor, char_major, device_file_mode, mig_minors};

/// The major of `/dev/nvidia*` (fixed by the driver).
const NVIDIA_MAJOR: u32 = 195;
/// PCI vendor id of NVIDIA.
const NVIDIA_VENDOR: &str = "0x10de";

/// Where to load modules and make nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KmodOptions {
    /// The driver root: `modprobe` runs chrooted into it and the nodes are made under its
    /// `/dev` (`/` for an installed driver).
    pub root: PathBuf,
    /// `modprobe`, inside the root.
    pub modprobe: PathBuf,
    /// The host's PCI devices (`/sys/bus/pci/devices`), counted for NVIDIA display
    /// controllers.
    pub pci_devices: PathBuf,
    /// The host's `/proc/devices`, read after loading for the dynamic majors.
    pub proc_devices: PathBuf,
    /// IMEX channels whose nodes to make (`--imex-channel`).
    pub imex_channels: Vec<u32>,
    /// Make the IMEX channel nodes (`--no-create-imex-channels` clears it).
    pub create_imex_channels: bool,
}

impl KmodOptions {
    /// Upstream's defaults for a driver root.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        KmodOptions {
            root: root.into(),
            modprobe: "/sbin/modprobe".into(),
            pci_devices: "/sys/bus/pci/devices".into(),
            proc_devices: "/proc/devices".into(),
            imex_channels: Vec::new(),
            create_imex_channels: true,
        }
    }
}

/// What [`load_kernel_modules`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KmodReport {
    /// Modules `modprobe` loaded (or found loaded).
    pub loaded: Vec<&'static str>,
    /// Device nodes created (or replaced), host paths.
    pub created: Vec<PathBuf>,
    /// What failed, each naming the module or node.
    pub warnings: Vec<String>,
}

/// Loads `nvidia`, `nvidia_uvm` and `nvidia_modeset` with the root's `modprobe` and makes
/// the missing nodes under `<root>/dev`: `nvidiactl`, `nvidia0..N-1` (N = NVIDIA display
/// controllers on the PCI bus), the `nvidia-caps` nodes of every MIG capability the driver
/// lists in `/proc/driver/nvidia-caps/mig-minors` (for GPUs below N whose capability file
/// exists), the requested IMEX channels, `nvidia-uvm`, `nvidia-uvm-tools` and
/// `nvidia-modeset`. A node with the wrong type or numbers is replaced. Skipped inside a
/// user namespace (modules cannot be loaded there), with a warning.
///
/// # Effects on the calling process
///
/// Runs `modprobe` as a child process (chrooted into the root when it is not `/`) and waits
/// for it; needs `CAP_SYS_MODULE` (and `CAP_SYS_CHROOT`), `CAP_MKNOD` for the nodes.
#[must_use]
pub fn load_kernel_modules(opts: &KmodOptions) -> KmodReport {
    let mut report = KmodReport::default();
    if in_user_namespace() {
        report
            .warnings
            .push("in a user namespace: kernel modules not loaded".into());
        return report;
    }
    let gpus = nvidia_pci_functions(&opts.pci_devices).unwrap_or_else(|e| {
        report.warnings.push(format!(
            "failed to detect NVIDIA devices in {}: {e}",
            opts.pci_devices.display()
        ));
        0
    });
    let dev = opts.root.join("dev");
    report.modprobe(opts, "nvidia");
    report.node(&dev.join("nvidiactl"), NVIDIA_MAJOR, 255, 0o666);
    for minor in 0..gpus {
        report.node(
            &dev.join(format!("nvidia{minor}")),
            NVIDIA_MAJOR,
            minor,
            0o666,
        );
    }
    let majors = fs::read_to_string(&opts.proc_devices).unwrap_or_default();
    match char_major(&majors, "nvidia-caps") {
        Some(major) => report.caps_nodes(opts, major, gpus),
        None => report
            .warnings
            .push("no nvidia-caps major in /proc/devices: no capability nodes".into()),
    }
    if opts.create_imex_channels && !opts.imex_channels.is_empty() {
        match char_major(&majors, "nvidia-caps-imex-channels") {
            Some(major) => {
                let dir = dev.join("nvidia-caps-imex-channels");
                report.dir(&dir);
                for &channel in &opts.imex_channels {
                    report.node(
                        &dir.join(format!("channel{channel}")),
                        major,
                        channel,
                        0o666,
                    );
                }
            }
            None => report.warnings.push(
                "no nvidia-caps-imex-channels major in /proc/devices: no IMEX channel nodes".into(),
            ),
        }
    }
    report.modprobe(opts, "nvidia_uvm");
    // The uvm major exists only once the module is loaded: read the table again.
    let majors = fs::read_to_string(&opts.proc_devices).unwrap_or_default();
    match char_major(&majors, "nvidia-uvm") {
        Some(major) => {
            report.node(&dev.join("nvidia-uvm"), major, 0, 0o666);
            report.node(&dev.join("nvidia-uvm-tools"), major, 1, 0o666);
        }
        None => report
            .warnings
            .push("no nvidia-uvm major in /proc/devices: no uvm nodes".into()),
    }
    report.modprobe(opts, "nvidia_modeset");
    report.node(&dev.join("nvidia-modeset"), NVIDIA_MAJOR, 254, 0o666);
    report
}

impl KmodReport {
    fn modprobe(&mut self, opts: &KmodOptions, module: &'static str) {
        let mut cmd = Command::new(&opts.modprobe);
        // Nothing of the caller's environment (a hook's may carry the runtime's
        // `LD_LIBRARY_PATH`): modprobe finds what it needs in the driver root.
        cmd.arg(module)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let result = nvc_sys::chrooted(&mut cmd, &opts.root).and_then(|()| cmd.output());
        match result {
            Ok(out) if out.status.success() => self.loaded.push(module),
            Ok(out) => self.warnings.push(format!(
                "modprobe {module}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => self.warnings.push(format!(
                "modprobe {module}: cannot run {}: {e}",
                opts.modprobe.display()
            )),
        }
    }

    /// Makes the character device `path` (`major`:`minor`, `mode`), replacing anything else
    /// found there; a correct node is left alone.
    fn node(&mut self, path: &Path, major: u32, minor: u32, mode: u32) {
        let want = makedev(u64::from(major), u64::from(minor));
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_char_device() && m.rdev() == want => return,
            Ok(m) if m.is_dir() => {
                self.warnings.push(format!(
                    "{}: a directory where a device node belongs; left",
                    path.display()
                ));
                return;
            }
            Ok(_) => {
                if let Err(e) = fs::remove_file(path) {
                    self.warnings
                        .push(format!("{}: cannot replace: {e}", path.display()));
                    return;
                }
            }
            Err(_) => {}
        }
        let made = mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(mode), want)
            .map_err(|e| io::Error::from_raw_os_error(e as i32))
            // mknod applies the umask: set the mode the driver's nodes have.
            .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)));
        match made {
            Ok(()) => self.created.push(path.to_path_buf()),
            Err(e) => self
                .warnings
                .push(format!("mknod {} ({major}:{minor}): {e}", path.display())),
        }
    }

    fn dir(&mut self, path: &Path) {
        if let Err(e) = fs::create_dir_all(path)
            .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o755)))
        {
            self.warnings.push(format!("mkdir {}: {e}", path.display()));
        }
    }

    /// The `/dev/nvidia-caps/nvidia-cap<minor>` nodes of `mig-minors`: `config`, `monitor`,
    /// and each `gpu<N>/gi<G>[/ci<C>]/access` whose capability file exists, for GPUs below
    /// `gpus`. Their mode is the capability file's `DeviceFileMode` (0444 without one).
    fn caps_nodes(&mut self, opts: &KmodOptions, major: u32, gpus: u32) {
        let proc = opts.root.join("proc/driver");
        let Ok(table) = fs::read_to_string(proc.join("nvidia-caps/mig-minors")) else {
            return;
        };
        let dir = opts.root.join("dev/nvidia-caps");
        let mut made_dir = false;
        for (cap, minor) in mig_minors(&table, gpus) {
            let Ok(text) = fs::read_to_string(proc.join("nvidia/capabilities").join(cap)) else {
                continue;
            };
            if cap_device_minor(&text) != Some(minor) {
                continue;
            }
            if !made_dir {
                self.dir(&dir);
                made_dir = true;
            }
            let mode = device_file_mode(&text).unwrap_or(0o444);
            self.node(&dir.join(format!("nvidia-cap{minor}")), major, minor, mode);
        }
    }
}

/// The NVIDIA display controllers (vendor 0x10de, class 0x03xxxx) among the PCI functions
/// in `dir`.
fn nvidia_pci_functions(dir: &Path) -> io::Result<u32> {
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let read = |f: &str| fs::read_to_string(path.join(f)).unwrap_or_default();
        if read("vendor").trim() == NVIDIA_VENDOR && read("class").trim().starts_with("0x03") {
            n += 1;
        }
    }
    Ok(n)
}

/// Whether this process runs in a user namespace other than the initial one (its uid map
/// is not the identity over the whole range).
fn in_user_namespace() -> bool {
    fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|map| map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
}
