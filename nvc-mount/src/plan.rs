//! The mount plan: every operation `configure` performs, in upstream's order, as plain data
//! that can be printed (`--dry-run`), compared and tested without privileges.

use std::fmt;
use std::path::{Path, PathBuf};

use nvc_driver::tables::{Capability, binary_wanted, development_link, library_wanted};
use nvc_driver::{DriverInfo, Gpu, MigDevice, Selection, host_path};

use crate::{ContainerDirs, Error};

/// How a bind mount is remounted (upstream's per-type flags).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MountKind {
    /// Libraries, binaries, firmware: `ro,nosuid,nodev`.
    File,
    /// IPC sockets and the MPS directory: `nosuid,nodev,noexec`, writable.
    Ipc,
    /// Device nodes: `ro,nosuid,noexec` (the mount is read-only, the device is not).
    Device,
    /// `/proc` files and directories of the driver: `ro,nosuid,nodev,noexec`.
    Proc,
}

/// Mount attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct MountFlags {
    /// `ro`.
    pub read_only: bool,
    /// `nosuid`.
    pub nosuid: bool,
    /// `nodev`.
    pub nodev: bool,
    /// `noexec`.
    pub noexec: bool,
}

impl MountKind {
    /// The attributes of this kind of mount.
    #[must_use]
    pub fn flags(self) -> MountFlags {
        let f = |read_only, nodev, noexec| MountFlags {
            read_only,
            nosuid: true,
            nodev,
            noexec,
        };
        match self {
            MountKind::File => f(true, true, false),
            MountKind::Ipc => f(false, true, true),
            MountKind::Device => f(true, false, true),
            MountKind::Proc => f(true, true, true),
        }
    }
}

impl fmt::Display for MountFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = vec![if self.read_only { "ro" } else { "rw" }];
        for (on, name) in [
            (self.nosuid, "nosuid"),
            (self.nodev, "nodev"),
            (self.noexec, "noexec"),
        ] {
            if on {
                parts.push(name);
            }
        }
        f.write_str(&parts.join(","))
    }
}

/// One step of the plan. Container paths are absolute paths inside the container's root;
/// sources are host paths.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Mount a tmpfs (`nosuid,nodev,noexec`).
    Tmpfs {
        /// Container path.
        target: PathBuf,
        /// Mode of its root.
        mode: u32,
    },
    /// Write a file into a tmpfs made by an earlier step.
    WriteFile {
        /// Container path.
        target: PathBuf,
        /// Contents.
        contents: Vec<u8>,
        /// Mode.
        mode: u32,
    },
    /// Bind-mount a host file, directory or node.
    Bind {
        /// Host path.
        source: PathBuf,
        /// Container path.
        target: PathBuf,
        /// Attributes.
        kind: MountKind,
    },
    /// Bind-mount a file of the container's own image (a CUDA compat library) over a
    /// library name, `ro,nosuid,nodev`; the source is resolved inside the container root.
    BindFromImage {
        /// Container path of the image's file.
        source: PathBuf,
        /// Container path.
        target: PathBuf,
    },
    /// Create a symlink if nothing is there.
    Symlink {
        /// Container path of the link.
        path: PathBuf,
        /// What it points to.
        target: PathBuf,
    },
    /// Allow the container's device cgroup `c <major>:<minor> rw`.
    AllowDevice {
        /// Major.
        major: u32,
        /// Minor.
        minor: u32,
    },
}

impl Op {
    /// The container path the step makes or changes (`None` for a cgroup rule).
    #[must_use]
    pub fn container_path(&self) -> Option<&Path> {
        match self {
            Op::Tmpfs { target, .. }
            | Op::WriteFile { target, .. }
            | Op::Bind { target, .. }
            | Op::BindFromImage { target, .. } => Some(target),
            Op::Symlink { path, .. } => Some(path),
            Op::AllowDevice { .. } => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Tmpfs { target, mode } => write!(f, "tmpfs {} mode={mode:04o}", target.display()),
            Op::WriteFile {
                target,
                mode,
                contents,
            } => {
                write!(
                    f,
                    "write {} mode={mode:04o} ({} bytes)",
                    target.display(),
                    contents.len()
                )
            }
            Op::Bind {
                source,
                target,
                kind,
            } => {
                write!(
                    f,
                    "bind {} {} <- {}",
                    kind.flags(),
                    target.display(),
                    source.display()
                )
            }
            Op::BindFromImage { source, target } => write!(
                f,
                "bind {} {} <- image:{}",
                MountKind::File.flags(),
                target.display(),
                source.display()
            ),
            Op::Symlink { path, target } => {
                write!(f, "symlink {} -> {}", path.display(), target.display())
            }
            Op::AllowDevice { major, minor } => write!(f, "cgroup allow c {major}:{minor} rw"),
        }
    }
}

/// What the container asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Driver capabilities (`--compute`, `--utility`, ...).
    pub capabilities: Vec<Capability>,
    /// The selected GPUs and MIG devices ([`nvc_driver::DeviceRequest::select`]).
    pub devices: Selection,
    /// Mount the 32-bit libraries too.
    pub compat32: bool,
    /// Do not bind device nodes (cgroup rules still apply).
    pub no_devbind: bool,
    /// No cgroup rules.
    pub no_cgroups: bool,
    /// IMEX channels.
    pub imex_channels: Vec<u32>,
    /// GPUs whose MIG configuration capability the container gets (`--mig-config`,
    /// [`nvc_driver::select_mig_access`]); `devices` then holds no MIG devices
    /// ([`Selection::without_migs`]).
    pub mig_config: Vec<Gpu>,
    /// GPUs whose MIG monitoring capability the container gets (`--mig-monitor`).
    pub mig_monitor: Vec<Gpu>,
    /// CUDA compat libraries of the image to bind over the library directory (container
    /// paths, from [`compat_libraries`](crate::compat_libraries); `mount` mode only).
    pub compat_libs: Vec<PathBuf>,
    /// Only this part of `configure` (`None`: all of it, in order). The device fields above
    /// are then ignored: the part names what it mounts.
    pub part: Option<Part>,
}

/// One part of `configure`, as upstream's C API makes each a call of its own (the C ABI
/// drop-in, `nvc-capi`, plans and applies one part per call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// `nvc_driver_mount`: `/proc/driver/nvidia`, binaries, libraries, compat libraries,
    /// links, firmware, IPC, driver-wide device nodes.
    Driver,
    /// `nvc_device_mount`: one GPU's node, `/proc` directory and rule.
    Gpu(Gpu),
    /// `nvc_mig_device_access_caps_mount`: one MIG device (with its parent).
    MigAccess(Gpu, MigDevice),
    /// `nvc_mig_{config,monitor}_global_caps_mount`.
    MigGlobal(MigCapability),
    /// `nvc_device_mig_caps_mount`: every MIG capability of one GPU.
    GpuMigCaps(Gpu),
    /// `nvc_imex_channel_mount`.
    Imex(u32),
    /// `nvc_ldcache_update`: no mount, only the `ldconfig` step.
    Ldcache,
}

/// A global MIG capability (`/proc/driver/nvidia/capabilities/mig/{config,monitor}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MigCapability {
    /// `--mig-config`.
    Config,
    /// `--mig-monitor`.
    Monitor,
}

/// What every step of [`MountPlan::build`] reads.
struct Context<'a> {
    root: &'a Path,
    info: &'a DriverInfo,
    opts: &'a PlanOptions,
}

/// The ordered operations of one `configure`, with what was skipped and why.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountPlan {
    /// The operations, in order.
    pub ops: Vec<Op>,
    /// Things left out (a missing `/proc` file, ...).
    pub warnings: Vec<String>,
    /// How binds are made.
    pub mount_api: MountApi,
}

/// How [`MountPlan::apply`] makes binds.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MountApi {
    /// `open_tree` + `mount_setattr` + `move_mount` where the kernel has them (5.12), each
    /// missing piece falling back to `mount(2)`.
    #[default]
    Auto,
    /// Upstream's bind + remount with `mount(2)` only.
    Legacy,
}

impl fmt::Display for MountPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for op in &self.ops {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or_default()
}

impl MountPlan {
    /// Builds the plan for `info` (probed in `driver_root`) and a container with `dirs`,
    /// in the order of upstream's `nvc_driver_mount`, `nvc_device_mount`, MIG access and
    /// IMEX mounts; with [`PlanOptions::part`] only that part. Pure: no I/O — everything
    /// comes from `info` (a probe's result, which may have been serialised on another
    /// machine with the `serde` feature).
    ///
    /// # Errors
    ///
    /// [`Error::Device`] for a selected GPU, MIG device or IMEX channel the driver does not
    /// have.
    pub fn build(
        driver_root: &Path,
        info: &DriverInfo,
        dirs: &ContainerDirs,
        opts: &PlanOptions,
    ) -> Result<Self, Error> {
        let mut plan = MountPlan::default();
        let at = Context {
            root: driver_root,
            info,
            opts,
        };
        if let Some(part) = &opts.part {
            match part {
                Part::Driver => plan.driver(&at, dirs),
                Part::Gpu(g) => plan.gpu(&at, g),
                Part::MigAccess(g, m) => plan.mig_access(&at, g, m),
                Part::MigGlobal(cap) => plan.mig_global(&at, *cap),
                Part::GpuMigCaps(g) => plan.gpu_mig_caps(&at, g),
                Part::Imex(channel) => plan.imex(&at, *channel)?,
                Part::Ldcache => {}
            }
            return Ok(plan);
        }
        plan.driver(&at, dirs);
        for g in &opts.devices.gpus {
            plan.gpu(&at, g);
        }
        for (g, m) in opts.devices.migs() {
            plan.mig_access(&at, g, m);
        }
        let global = [
            (MigCapability::Config, &opts.mig_config),
            (MigCapability::Monitor, &opts.mig_monitor),
        ];
        for (cap, gpus) in global.into_iter().filter(|(_, g)| !g.is_empty()) {
            plan.mig_global(&at, cap);
            for g in gpus.iter() {
                plan.gpu_mig_caps(&at, g);
            }
        }
        for &channel in &opts.imex_channels {
            plan.imex(&at, channel)?;
        }
        Ok(plan)
    }

    /// Steps 1-8, upstream's `nvc_driver_mount`: `/proc/driver/nvidia`, the application
    /// profiles, binaries, libraries (and the image's compat libraries), links, firmware,
    /// IPC and the driver-wide device nodes.
    fn driver(&mut self, at: &Context<'_>, dirs: &ContainerDirs) {
        let (info, opts) = (at.info, at.opts);
        let caps = &opts.capabilities;
        let has = |c| caps.contains(&c);
        let nv = Path::new("/proc/driver/nvidia");

        // 1. /proc/driver/nvidia: a tmpfs with copies; the driver must not touch device files.
        self.ops.push(Op::Tmpfs {
            target: nv.into(),
            mode: 0o555,
        });
        for name in ["params", "version", "registry"] {
            match info.files.proc_files.iter().find(|f| f.name == name) {
                Some(file) => {
                    let contents = if name == "params" {
                        String::from_utf8_lossy(&file.contents)
                            .replace("ModifyDeviceFiles: 1", "ModifyDeviceFiles: 0")
                            .into_bytes()
                    } else {
                        file.contents.clone()
                    };
                    // The driver's own mode, as upstream (0444 from the kernel's procfs).
                    self.ops.push(Op::WriteFile {
                        target: nv.join(name),
                        contents,
                        mode: file.mode,
                    });
                }
                None => self
                    .warnings
                    .push(format!("missing file /proc/driver/nvidia/{name}")),
            }
        }
        // 2. The application-profile directory for graphics.
        if has(Capability::Graphics) || has(Capability::Display) {
            self.ops.push(Op::Tmpfs {
                target: "/etc/nvidia/nvidia-application-profiles-rc.d".into(),
                mode: 0o555,
            });
        }
        // 3-4. Binaries and libraries, filtered by capability.
        for bin in info
            .files
            .binaries
            .iter()
            .filter(|b| binary_wanted(file_name(b), caps))
        {
            self.bind(
                at.root,
                bin,
                &dirs.bins.join(file_name(bin)),
                MountKind::File,
            );
        }
        let libs = info.files.libraries.iter().map(|l| (l, &dirs.libs));
        let libs32 = info.files.libraries32.iter().map(|l| (l, &dirs.libs32));
        let mut mounted_libs = Vec::new();
        for (lib, dir) in libs.chain(libs32.filter(|_| opts.compat32)) {
            if library_wanted(file_name(lib), caps) {
                let target = dir.join(file_name(lib));
                self.bind(at.root, lib, &target, MountKind::File);
                mounted_libs.push(target);
            }
        }
        // The image's newer CUDA compat libraries over the driver's (forward compatibility).
        for lib in &opts.compat_libs {
            self.ops.push(Op::BindFromImage {
                source: lib.clone(),
                target: dirs.libs.join(file_name(lib)),
            });
        }
        // 5. The development and dispatch links upstream adds next to mounted libraries.
        for target in &mounted_libs {
            let name = file_name(target);
            let dir = target.parent().unwrap_or(Path::new("/"));
            let link = development_link(name);
            if let Some((path, to)) = link {
                self.ops.push(Op::Symlink {
                    path: dir.join(path),
                    target: to.into(),
                });
            }
        }
        // 6. Firmware, whatever the capabilities.
        for fw in &info.files.firmwares {
            self.bind(
                at.root,
                &info.files.firmware_source(fw),
                fw,
                MountKind::File,
            );
        }
        // 7. IPC: the daemons' sockets with utility, the MPS directory with compute.
        for ipc in &info.files.ipcs {
            let socket = ipc.ends_with("socket");
            if (socket && has(Capability::Utility)) || (!socket && has(Capability::Compute)) {
                self.bind(at.root, ipc, ipc, MountKind::Ipc);
            }
        }
        // 8. Driver-wide devices: uvm only with compute, modeset only with display.
        for dev in &info.files.devices {
            let compute_only = dev.major != 195;
            let display_only = dev.major == 195 && dev.minor == 254;
            if (compute_only && !has(Capability::Compute))
                || (display_only && !has(Capability::Display))
            {
                continue;
            }
            self.device(at, &dev.path, dev.major, dev.minor);
        }
    }

    /// Step 9, upstream's `nvc_device_mount`: a GPU's node, its `/proc` directory, its
    /// cgroup rule.
    fn gpu(&mut self, at: &Context<'_>, g: &Gpu) {
        let node = format!("/dev/nvidia{}", g.minor);
        self.device(at, Path::new(&node), 195, g.minor);
        self.bind(at.root, &g.proc_dir, &g.proc_dir, MountKind::Proc);
    }

    /// Step 10, upstream's `nvc_mig_device_access_caps_mount`: a MIG device's access files
    /// and capability nodes.
    fn mig_access(&mut self, at: &Context<'_>, g: &Gpu, m: &MigDevice) {
        let (gi_minor, ci_minor) = m.access_minors;
        for (caps_dir, minor) in [(g.gi_caps_path(m), gi_minor), (g.ci_caps_path(m), ci_minor)] {
            let access = PathBuf::from(caps_dir).join("access");
            self.bind(at.root, &access, &access, MountKind::Proc);
            if let (Some(major), Some(minor)) = (at.info.files.caps_major, minor) {
                let node = PathBuf::from(format!("/dev/nvidia-caps/nvidia-cap{minor}"));
                self.device(at, &node, major, minor);
            }
        }
    }

    /// Step 10b, upstream's `nvc_mig_{config,monitor}_global_caps_mount`: the capabilities
    /// tree and `/dev/nvidia-caps` (once per plan), the global capability's rule.
    fn mig_global(&mut self, at: &Context<'_>, cap: MigCapability) {
        let tree = Path::new(nvc_driver::CAPS_DIR);
        self.push_new(Op::Bind {
            source: host_path(at.root, tree),
            target: tree.into(),
            kind: MountKind::Proc,
        });
        let Some(major) = at.info.files.caps_major else {
            return;
        };
        if !at.opts.no_devbind {
            let dir = Path::new("/dev/nvidia-caps");
            self.push_new(Op::Bind {
                source: host_path(at.root, dir),
                target: dir.into(),
                kind: MountKind::Device,
            });
        }
        let file = match cap {
            MigCapability::Config => "config",
            MigCapability::Monitor => "monitor",
        };
        let global = at.info.files.mig_minors.iter().find(|(n, _)| n == file);
        if let Some(&(_, minor)) = global {
            self.allow_new(at, major, minor);
        }
    }

    /// Step 10b per GPU, upstream's `nvc_device_mig_caps_mount`: a rule for every MIG
    /// capability of the GPU.
    fn gpu_mig_caps(&mut self, at: &Context<'_>, g: &Gpu) {
        let Some(major) = at.info.files.caps_major else {
            return;
        };
        let prefix = format!("gpu{}/", g.minor);
        let minors = at.info.files.mig_minors.iter();
        for &(_, minor) in minors.filter(|(n, _)| n.starts_with(&prefix)) {
            self.allow_new(at, major, minor);
        }
    }

    /// Step 11, upstream's `nvc_imex_channel_mount`.
    fn imex(&mut self, at: &Context<'_>, channel: u32) -> Result<(), Error> {
        let major = at.info.files.imex_major.ok_or_else(|| Error::Device {
            what: format!("IMEX channel {channel} not found: no nvidia-caps-imex-channels device"),
        })?;
        let node = PathBuf::from(format!("/dev/nvidia-caps-imex-channels/channel{channel}"));
        self.device(at, &node, major, channel);
        Ok(())
    }

    /// The device cgroup rules of the plan (`c major:minor rw` each), in order.
    #[must_use]
    pub fn device_rules(&self) -> Vec<(u32, u32)> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::AllowDevice { major, minor } => Some((*major, *minor)),
                _ => None,
            })
            .collect()
    }

    fn bind(&mut self, root: &Path, source: &Path, target: &Path, kind: MountKind) {
        self.ops.push(Op::Bind {
            source: host_path(root, source),
            target: target.into(),
            kind,
        });
    }

    fn device(&mut self, at: &Context<'_>, path: &Path, major: u32, minor: u32) {
        if !at.opts.no_devbind {
            self.bind(at.root, path, path, MountKind::Device);
        }
        if !at.opts.no_cgroups {
            self.ops.push(Op::AllowDevice { major, minor });
        }
    }

    /// A cgroup rule, unless the options say no cgroups or the plan has it already.
    fn allow_new(&mut self, at: &Context<'_>, major: u32, minor: u32) {
        if !at.opts.no_cgroups {
            self.push_new(Op::AllowDevice { major, minor });
        }
    }

    fn push_new(&mut self, op: Op) {
        if !self.ops.contains(&op) {
            self.ops.push(op);
        }
    }
}
