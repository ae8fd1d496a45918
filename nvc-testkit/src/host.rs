//! Building a simulated host in a directory.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::errno::Errno;
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nvc_ldcache::elf::{Class, SharedObject, write_shared_object};

use crate::driver_files::{BINARIES, FIRMWARE, LIB32_DIR, LIB64_DIR, LIBRARIES};
use crate::procfs::{self, CAP_CONFIG, CAP_MONITOR, Majors, NVIDIA_MAJOR};
use crate::real_driver::{self, Layout, PackageArch, RealDriver};
use crate::{Error, Scenario};

/// Whether the device nodes could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceNodes {
    /// All nodes exist under `dev/`.
    Created,
    /// `mknod` is not permitted here; the reason says why.
    Skipped(String),
}

/// One device node of the simulated host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Path relative to the host root (`dev/nvidia0`).
    pub path: String,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

/// A simulated NVIDIA host laid out under one directory, as a host's `/` would be: the
/// driver's libraries, binaries, firmware and IPC endpoints, `/etc/ld.so.cache` written by
/// glibc's `ldconfig`, `/dev` nodes and `/proc` files.
///
/// The persistenced (and fabric manager) sockets listen for as long as the value lives.
#[derive(Debug)]
pub struct Host {
    root: PathBuf,
    scenario: Scenario,
    majors: Majors,
    devices: DeviceNodes,
    /// Held so that the sockets keep listening.
    sockets: Vec<UnixListener>,
}

impl Host {
    /// Lays out `scenario` in `root` (created if missing; existing files are replaced).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the path that could not be written, [`Error::Ldconfig`] when
    /// glibc's `ldconfig` fails.
    pub fn build(scenario: &Scenario, root: &Path) -> Result<Self, Error> {
        let ldconfig = system_ldconfig().ok_or_else(|| Error::Ldconfig {
            root: root.to_path_buf(),
            detail: "glibc's ldconfig is not installed".into(),
        })?;
        Self::build_with(scenario, root, &[ldconfig], |host| {
            host.libraries()?;
            host.binaries()?;
            host.firmware()
        })
    }

    /// Lays out `scenario`'s kernel side (`/proc`, `/dev`, PCI functions, IPC endpoints) in
    /// `root` as [`Host::build`] does, with NVIDIA's real driver files for `arch` in place of
    /// the simulated ones, installed as `layout` installs them; the scenario's driver
    /// version becomes the real one. With `fake_nvml` the real `libnvidia-ml` is replaced by
    /// the fake one answering from the scenario; without it NVIDIA's NVML stays (and, with no
    /// kernel module, fails `nvmlInit` with "driver not loaded").
    ///
    /// # Errors
    ///
    /// As [`Host::build`], naming the path that could not be written.
    pub fn build_real(
        scenario: &Scenario,
        root: &Path,
        driver: &RealDriver,
        arch: PackageArch,
        layout: Layout,
        fake_nvml: bool,
    ) -> Result<Self, Error> {
        let mut scenario = scenario.clone();
        scenario.driver_version = driver.version().to_owned();
        scenario.cuda_version = real_driver::CUDA_VERSION;
        scenario.files.ldcache = layout.has_ldcache();
        scenario.files.nvml = fake_nvml;
        let ldconfig = driver.ldconfig(arch).map_err(|detail| Error::Ldconfig {
            root: root.to_path_buf(),
            detail,
        })?;
        Self::build_with(&scenario, root, &ldconfig, |host| {
            real_driver::lay_out(driver, arch, layout, root)?;
            if fake_nvml {
                let dir = root.join(layout.library_dir(driver, arch).trim_start_matches('/'));
                host.fake_nvml_in(&dir)?;
            }
            Ok(())
        })
    }

    fn build_with(
        scenario: &Scenario,
        root: &Path,
        ldconfig: &[PathBuf],
        driver_files: impl FnOnce(&Host) -> Result<(), Error>,
    ) -> Result<Self, Error> {
        let host_devices = fs::read_to_string("/proc/devices").unwrap_or_default();
        let majors = Majors::unused_in(&host_devices);
        let mut host = Host {
            root: root.to_path_buf(),
            scenario: scenario.clone(),
            majors,
            devices: DeviceNodes::Created,
            sockets: Vec::new(),
        };
        driver_files(&host)?;
        host.ipc()?;
        host.proc(&host_devices)?;
        host.sys()?;
        host.devices = host.device_nodes_create()?;
        if scenario.files.ldcache {
            host.ldconfig(ldconfig)?;
        }
        Ok(host)
    }

    /// The host root.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The scenario it simulates.
    #[must_use]
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The majors chosen for the dynamically numbered devices.
    #[must_use]
    pub fn majors(&self) -> Majors {
        self.majors
    }

    /// Whether the device nodes exist.
    #[must_use]
    pub fn device_nodes_state(&self) -> &DeviceNodes {
        &self.devices
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn libraries(&self) -> Result<(), Error> {
        let version = &self.scenario.driver_version;
        let mut dirs = vec![(Class::Elf64, LIB64_DIR)];
        if self.scenario.files.lib32 {
            dirs.push((Class::Elf32, LIB32_DIR));
        }
        for (class, dir) in dirs {
            let dir = self.path(dir);
            mkdir(&dir)?;
            for lib in LIBRARIES
                .iter()
                .filter(|l| self.scenario.files.installs(l.part))
            {
                if class == Class::Elf32 && !lib.lib32 {
                    continue;
                }
                let soname = lib.soname(version);
                let file = lib.file_name(version);
                let tls = lib.stem == "libnvidia-tls";
                let so = SharedObject {
                    // The "new TLS ABI" note upstream checks on libnvidia-tls.
                    abi_tag: tls.then_some([0, 2, 3, 99]),
                    ..SharedObject::x86(class, soname.as_bytes())
                };
                write(&dir.join(&file), &write_shared_object(&so))?;
                // The installer's links: SONAME -> file, and the `.so` development link.
                if soname != file {
                    link(&file, &dir.join(&soname))?;
                }
                link(&soname, &dir.join(format!("{}.so", lib.stem)))?;
            }
        }
        self.fake_nvml_in(&self.path(LIB64_DIR))?;
        write(
            &self.path("etc/ld.so.conf"),
            format!("/{LIB64_DIR}\n/{LIB32_DIR}\n").as_bytes(),
        )
    }

    /// Replaces the 64-bit `libnvidia-ml` stub by the fake NVML and writes its configuration
    /// next to it (or removes the library, for a host without NVML).
    fn fake_nvml_in(&self, dir: &Path) -> Result<(), Error> {
        let lib = dir.join(format!("libnvidia-ml.so.{}", self.scenario.driver_version));
        if !self.scenario.files.nvml {
            return remove_if_exists(&lib);
        }
        remove_if_exists(&lib)?;
        fs::copy(crate::FAKE_NVML, &lib).map_err(|e| Error::io(&lib, e))?;
        write(
            &dir.join("nvc-fake-nvml.conf"),
            self.scenario.fake_nvml_config().as_bytes(),
        )
    }

    fn binaries(&self) -> Result<(), Error> {
        let dir = self.path("usr/bin");
        mkdir(&dir)?;
        for (name, part) in BINARIES {
            if !self.scenario.files.installs(*part) {
                continue;
            }
            let path = dir.join(name);
            let script = format!(
                "#!/bin/sh\necho \"{name}: simulated NVIDIA driver {}\"\n",
                self.scenario.driver_version
            );
            write(&path, script.as_bytes())?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    fn firmware(&self) -> Result<(), Error> {
        if !self.scenario.files.firmware {
            return Ok(());
        }
        let dir = self.path(&format!(
            "lib/firmware/nvidia/{}",
            self.scenario.driver_version
        ));
        mkdir(&dir)?;
        for name in FIRMWARE {
            write(
                &dir.join(name),
                format!("simulated GSP firmware {name}\n").as_bytes(),
            )?;
        }
        Ok(())
    }

    fn ipc(&mut self) -> Result<(), Error> {
        let mut sockets = vec!["var/run/nvidia-persistenced/socket"];
        if self.scenario.files.fabricmanager {
            sockets.push("var/run/nvidia-fabricmanager/socket");
        }
        for rel in sockets {
            let path = self.path(rel);
            if let Some(parent) = path.parent() {
                mkdir(parent)?;
            }
            remove_if_exists(&path)?;
            let listener = UnixListener::bind(&path).map_err(|e| Error::io(&path, e))?;
            self.sockets.push(listener);
        }
        mkdir(&self.path("tmp/nvidia-mps"))
    }

    /// `sys/bus/pci/devices/<bus id>/{vendor,class}` for each GPU (NVIDIA's vendor id, a 3D
    /// controller), and a non-NVIDIA device beside them, as the kernel lists PCI functions.
    fn sys(&self) -> Result<(), Error> {
        let pci = self.path("sys/bus/pci/devices");
        let mut functions: Vec<(String, &str, &str)> = self
            .scenario
            .gpus
            .iter()
            .map(|g| (g.pci.proc_name(), "0x10de\n", "0x030200\n"))
            .collect();
        functions.push(("0000:00:1f.2".into(), "0x8086\n", "0x010601\n"));
        for (name, vendor, class) in functions {
            let dir = pci.join(name);
            mkdir(&dir)?;
            write(&dir.join("vendor"), vendor.as_bytes())?;
            write(&dir.join("class"), class.as_bytes())?;
        }
        Ok(())
    }

    fn proc(&self, host_devices: &str) -> Result<(), Error> {
        let s = &self.scenario;
        let nv = self.path("proc/driver/nvidia");
        mkdir(&nv)?;
        write(
            &self.path("proc/devices"),
            procfs::devices(host_devices, self.majors).as_bytes(),
        )?;
        // Read-only, as the kernel's procfs shows them (configure copies their mode).
        for (name, text) in [
            ("version", procfs::version(s)),
            ("params", procfs::params()),
            ("registry", procfs::registry()),
        ] {
            let path = nv.join(name);
            write(&path, text.as_bytes())?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o444))
                .map_err(|e| Error::io(&path, e))?;
        }
        for g in &s.gpus {
            let dir = nv.join("gpus").join(g.pci.proc_name());
            mkdir(&dir)?;
            write(&dir.join("information"), procfs::information(g).as_bytes())?;
        }
        let caps = nv.join("capabilities");
        mkdir(&caps.join("mig"))?;
        write(
            &caps.join("mig/config"),
            procfs::capability(CAP_CONFIG).as_bytes(),
        )?;
        write(
            &caps.join("mig/monitor"),
            procfs::capability(CAP_MONITOR).as_bytes(),
        )?;
        for g in s.gpus.iter().filter(|g| g.mig_mode.is_some()) {
            let gpu = caps.join(format!("gpu{}", g.minor));
            for m in &g.mig_devices {
                let gi = gpu.join(format!("mig/gi{}", m.gi));
                let ci = gi.join(format!("ci{}", m.ci));
                mkdir(&ci)?;
                write(
                    &gi.join("access"),
                    procfs::capability(procfs::gi_minor(g.minor, m.gi)).as_bytes(),
                )?;
                write(
                    &ci.join("access"),
                    procfs::capability(procfs::ci_minor(g.minor, m.gi, m.ci)).as_bytes(),
                )?;
            }
        }
        let minors = self.path("proc/driver/nvidia-caps");
        mkdir(&minors)?;
        write(&minors.join("mig-minors"), procfs::mig_minors(s).as_bytes())
    }

    /// Every device node the scenario has, with its numbers.
    #[must_use]
    pub fn device_nodes(&self) -> Vec<DeviceNode> {
        let node = |path: String, major, minor| DeviceNode { path, major, minor };
        let mut nodes = vec![
            node("dev/nvidiactl".into(), NVIDIA_MAJOR, 255),
            node("dev/nvidia-modeset".into(), NVIDIA_MAJOR, 254),
            node("dev/nvidia-uvm".into(), self.majors.uvm, 0),
            node("dev/nvidia-uvm-tools".into(), self.majors.uvm, 1),
        ];
        for g in &self.scenario.gpus {
            nodes.push(node(
                format!("dev/nvidia{}", g.minor),
                NVIDIA_MAJOR,
                g.minor,
            ));
        }
        let caps = |minor| {
            node(
                format!("dev/nvidia-caps/nvidia-cap{minor}"),
                self.majors.caps,
                minor,
            )
        };
        if self.scenario.gpus.iter().any(|g| g.mig_mode.is_some()) {
            nodes.push(caps(CAP_CONFIG));
            nodes.push(caps(CAP_MONITOR));
        }
        for g in &self.scenario.gpus {
            for m in &g.mig_devices {
                nodes.push(caps(procfs::gi_minor(g.minor, m.gi)));
                nodes.push(caps(procfs::ci_minor(g.minor, m.gi, m.ci)));
            }
        }
        nodes.dedup_by(|a, b| a.path == b.path);
        nodes
    }

    fn device_nodes_create(&self) -> Result<DeviceNodes, Error> {
        for n in self.device_nodes() {
            let path = self.path(&n.path);
            if let Some(parent) = path.parent() {
                mkdir(parent)?;
            }
            remove_if_exists(&path)?;
            let dev = makedev(u64::from(n.major), u64::from(n.minor));
            match mknod(&path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), dev) {
                Ok(()) => {}
                Err(e @ (Errno::EPERM | Errno::EACCES)) => {
                    return Ok(DeviceNodes::Skipped(format!(
                        "mknod {} c {} {}: {e} (device nodes need CAP_MKNOD)",
                        path.display(),
                        n.major,
                        n.minor
                    )));
                }
                Err(e) => return Err(Error::io(&path, e.into())),
            }
        }
        Ok(DeviceNodes::Created)
    }

    /// Runs glibc's `ldconfig -r` on the root (as root, or in a user namespace where
    /// `unshare -r` works), writing `etc/ld.so.cache`; `ldconfig` is the command (the
    /// program, or an emulator and the program).
    fn ldconfig(&self, ldconfig: &[PathBuf]) -> Result<(), Error> {
        let (program, args) = ldconfig.split_first().ok_or_else(|| Error::Ldconfig {
            root: self.root.clone(),
            detail: "no ldconfig command".into(),
        })?;
        let run = |cmd: &mut Command| cmd.output().map_err(|e| Error::io(program, e));
        let mut out = run(Command::new(program).args(args).arg("-r").arg(&self.root))?;
        if !out.status.success() && !nix::unistd::geteuid().is_root() {
            // ldconfig -r chroots: without root, do it as root of a user namespace.
            out = run(Command::new("unshare")
                .arg("-r")
                .args(ldconfig)
                .arg("-r")
                .arg(&self.root))?;
        }
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Ldconfig {
                root: self.root.clone(),
                detail: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            })
        }
    }
}

/// This machine's glibc `ldconfig`.
pub(crate) fn system_ldconfig() -> Option<PathBuf> {
    ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

pub(crate) fn mkdir(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|e| Error::io(path, e))
}

pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        mkdir(parent)?;
    }
    remove_if_exists(path)?;
    fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

pub(crate) fn link(target: &str, path: &Path) -> Result<(), Error> {
    remove_if_exists(path)?;
    symlink(target, path).map_err(|e| Error::io(path, e))
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}
