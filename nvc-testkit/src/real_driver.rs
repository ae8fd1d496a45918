//! NVIDIA's real driver userspace laid out as real hosts install it, over the simulated
//! kernel side.
//!
//! `real-driver/fetch.sh` (beside this crate's manifest) unpacks Debian's packages of
//! NVIDIA's 535 branch into a cache outside the repository; [`RealDriver::find`] finds it and
//! [`Host::build_real`](crate::Host::build_real) lays its files out in one of the
//! [`Layout`]s real hosts have: Debian's (alternatives links, absolute), the `.run`
//! installer's, an RPM/CUDA-repository host's (`/usr/lib64`), a GPU Operator driver
//! container's root (absolute links inside it) and NixOS's (`/run/opengl-driver/lib` into
//! `/nix/store`, no linker cache). The kernel side (`/proc`, `/dev`, PCI, IPC sockets) stays
//! the simulated one: there is no kernel module here, so NVIDIA's own `nvidia-smi` says it
//! cannot talk to the driver and `libcuda`'s `cuInit` fails, while `cuDriverGetVersion`
//! answers.

use std::fs;
use std::path::{Path, PathBuf};

use nvc_ldcache::Platform;

use crate::Error;
use crate::host::{mkdir, remove_if_exists, write};

/// The variable naming the cache `real-driver/fetch.sh` fills (its first argument, if given).
pub const CACHE_VAR: &str = "NVC_REAL_DRIVER_CACHE";

/// The CUDA driver API version of the 535 branch, as `cuDriverGetVersion` answers it.
pub const CUDA_VERSION: u32 = 12020;

/// An unpacked copy of NVIDIA's driver packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealDriver {
    /// `<cache>/nvidia`: `amd64/`, `arm64/` (each `dpkg -x` of the packages) and `VERSION`.
    dir: PathBuf,
    version: String,
}

/// The Debian architecture whose packages lay out a host: the machine's own, or arm64's
/// real aarch64 files (for the per-architecture tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackageArch {
    /// x86-64 (`amd64`).
    Amd64,
    /// aarch64 (`arm64`): only `libcuda`, `libnvidia-ml`, `libnvidia-ptxjitcompiler` and
    /// `nvidia-smi`.
    Arm64,
}

impl PackageArch {
    /// Debian's name of it.
    #[must_use]
    pub fn debian(self) -> &'static str {
        match self {
            PackageArch::Amd64 => "amd64",
            PackageArch::Arm64 => "arm64",
        }
    }

    /// Its row of nvc's per-architecture table.
    #[must_use]
    pub fn platform(self) -> &'static Platform {
        match self {
            PackageArch::Amd64 => &Platform::X86_64,
            PackageArch::Arm64 => &Platform::AARCH64,
        }
    }

    /// The multiarch tuple (`x86_64-linux-gnu`).
    #[must_use]
    pub fn tuple(self) -> &'static str {
        self.platform().multiarch
    }

    /// Whether it is this machine's architecture.
    #[must_use]
    pub fn is_host(self) -> bool {
        self.platform() == Platform::host()
    }
}

impl RealDriver {
    /// The cache `real-driver/fetch.sh` filled: `$NVC_REAL_DRIVER_CACHE`, else
    /// `${XDG_CACHE_HOME:-$HOME/.cache}/nvc-testkit`.
    ///
    /// # Errors
    ///
    /// A sentence saying which cache is missing and the command that fills it.
    pub fn find() -> Result<Self, String> {
        let cache = std::env::var_os(CACHE_VAR)
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("nvc-testkit"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/nvc-testkit"))
            })
            .ok_or("neither NVC_REAL_DRIVER_CACHE nor HOME is set")?;
        let dir = cache.join("nvidia");
        let version = fs::read_to_string(dir.join("VERSION"))
            .map(|v| v.trim().to_owned())
            .map_err(|e| {
                format!(
                    "NVIDIA's real driver is not unpacked in {} ({e}): run nvc-testkit/real-driver/fetch.sh",
                    dir.display()
                )
            })?;
        Ok(RealDriver { dir, version })
    }

    /// The driver version (`535.261.03`).
    #[must_use]
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where the packages of `arch` are unpacked (as `dpkg -x` lays them out).
    #[must_use]
    pub fn unpacked(&self, arch: PackageArch) -> PathBuf {
        self.dir.join(arch.debian())
    }

    /// glibc's `ldconfig` for `arch`'s libraries, as a command (program and arguments before
    /// `ldconfig`'s own): this machine's for its own architecture; for arm64 on an x86-64
    /// machine, Debian's static arm64 `ldconfig` (`libc-bin:arm64`) under qemu's user-mode
    /// emulator, both unpacked by `fetch.sh` — the aarch64 glibc's own cache writer.
    ///
    /// # Errors
    ///
    /// A sentence naming what is missing.
    pub fn ldconfig(&self, arch: PackageArch) -> Result<Vec<PathBuf>, String> {
        if arch.is_host() {
            return crate::host::system_ldconfig()
                .map(|p| vec![p])
                .ok_or_else(|| "glibc's ldconfig is not installed".to_owned());
        }
        let qemu = self
            .dir
            .join(format!("qemu/qemu-{}-static", arch.platform().name));
        let ldconfig = self.unpacked(arch).join("sbin/ldconfig");
        match (qemu.exists(), ldconfig.exists()) {
            (true, true) => Ok(vec![qemu, ldconfig]),
            _ => Err(format!(
                "{} or {} is missing: run nvc-testkit/real-driver/fetch.sh (on an amd64 machine)",
                qemu.display(),
                ldconfig.display()
            )),
        }
    }

    /// The libraries' directory of the unpacked `arch` packages (most libraries; a few are
    /// in its parent).
    fn current(&self, arch: PackageArch) -> PathBuf {
        self.unpacked(arch)
            .join("usr/lib")
            .join(arch.tuple())
            .join("nvidia/current")
    }

    /// Every library file and link the packages ship, as (file name, what it is): a regular
    /// file's path in the cache, or a link's target.
    fn libraries(&self, arch: PackageArch) -> Result<Vec<(String, Dir, Entry)>, Error> {
        let current = self.current(arch);
        let plain = current
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf);
        let dirs = [(Dir::Current, Some(current)), (Dir::Plain, plain)];
        let mut out = Vec::new();
        for (which, dir) in dirs.into_iter().filter_map(|(w, d)| Some((w, d?))) {
            let entries = fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.contains(".so") {
                    continue;
                }
                let path = entry.path();
                let meta = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
                if meta.file_type().is_symlink() {
                    let to = fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
                    let to = to.to_string_lossy().into_owned();
                    out.push((name, which, Entry::Link(to)));
                } else if meta.is_file() {
                    out.push((name, which, Entry::File(path)));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// A library entry of the packages.
#[derive(Debug, Clone)]
enum Entry {
    File(PathBuf),
    Link(String),
}

/// Where the packages put a library: `nvidia/current` (most) or the plain multiarch
/// directory (the version-named private libraries of the GL stack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Current,
    Plain,
}

/// How a host installs the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Debian's packages: libraries in `/usr/lib/<tuple>/nvidia/current`, reached through
    /// update-alternatives' absolute links (`/usr/lib/<tuple>/libcuda.so.1 ->
    /// /etc/alternatives/nvidia--libcuda.so.1-<tuple> -> .../nvidia/current/libcuda.so.1`),
    /// `/usr/bin/nvidia-smi -> /etc/alternatives/nvidia--nvidia-smi ->
    /// /usr/lib/nvidia/current/nvidia-smi`, merged `/usr` (`/lib -> usr/lib`).
    Debian,
    /// NVIDIA's `.run` installer: every library in `/usr/lib/<tuple>` with relative
    /// SONAME and development links, `nvidia-smi` in `/usr/bin`, firmware in `/lib/firmware`.
    RunInstaller,
    /// An RPM/CUDA-repository host (RHEL, Fedora, SUSE): libraries in `/usr/lib64`, merged
    /// `/usr` (`/lib64 -> usr/lib64`, `/lib -> usr/lib`).
    Rpm,
    /// A GPU Operator driver container's root, seen from the host at `/run/nvidia/driver`:
    /// the installer's files, with absolute links (SONAME links, `/lib -> /usr/lib`) that mean
    /// the container's paths, not the host's.
    DriverContainer,
    /// NixOS: the driver in `/nix/store/<hash>-nvidia-x11-<version>`, reached through
    /// `/run/opengl-driver/lib` (absolute links) and `/run/current-system/sw/bin`; no
    /// `/etc/ld.so.cache`, no `/lib/firmware` (firmware under `/run/current-system/firmware`).
    NixOs,
}

impl Layout {
    /// Every layout.
    pub const ALL: [Layout; 5] = [
        Layout::Debian,
        Layout::RunInstaller,
        Layout::Rpm,
        Layout::DriverContainer,
        Layout::NixOs,
    ];

    /// Its name (`debian`, `run`, `rpm`, `driver-container`, `nixos`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Layout::Debian => "debian",
            Layout::RunInstaller => "run",
            Layout::Rpm => "rpm",
            Layout::DriverContainer => "driver-container",
            Layout::NixOs => "nixos",
        }
    }

    /// The layout called `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Whether the host has an `/etc/ld.so.cache` (all but NixOS).
    #[must_use]
    pub fn has_ldcache(self) -> bool {
        self != Layout::NixOs
    }

    /// The `PATH` under which the host's `nvidia-smi` is found (NixOS's is not in the
    /// default one).
    #[must_use]
    pub fn path(self) -> &'static str {
        match self {
            Layout::NixOs => "/run/current-system/sw/bin:/usr/bin:/bin",
            _ => "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        }
    }

    /// Where `nvidia-smi` really is, inside the root (what `list` prints for it).
    #[must_use]
    pub fn nvidia_smi(self, driver: &RealDriver) -> String {
        match self {
            Layout::Debian => "/usr/lib/nvidia/current/nvidia-smi".into(),
            Layout::NixOs => format!("{}/bin/nvidia-smi", nix_store(driver)),
            _ => "/usr/bin/nvidia-smi".into(),
        }
    }

    /// The directory the real library files are in, inside the root.
    #[must_use]
    pub fn library_dir(self, driver: &RealDriver, arch: PackageArch) -> String {
        let tuple = arch.tuple();
        match self {
            Layout::Debian => format!("/usr/lib/{tuple}/nvidia/current"),
            Layout::RunInstaller | Layout::DriverContainer => format!("/usr/lib/{tuple}"),
            Layout::Rpm => "/usr/lib64".into(),
            Layout::NixOs => format!("{}/lib", nix_store(driver)),
        }
    }
}

/// The driver's store path on NixOS.
fn nix_store(driver: &RealDriver) -> String {
    format!(
        "/nix/store/3x7dwzq014bblazs7kq20p9hyzz0qh8g-nvidia-x11-{}",
        driver.version
    )
}

/// The glibc files a host has beside the driver (NVIDIA's NVML helper and upstream's
/// chroot into the driver root and load these there), copied from this machine; also what
/// a glibc test image needs besides the loader.
pub const GLIBC: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libgcc_s.so.1",
];

/// Lays out `driver`'s files for `arch` in `root` as `layout` installs them, with
/// `etc/ld.so.conf` naming the library directory (the caller runs `ldconfig -r`).
pub(crate) fn lay_out(
    driver: &RealDriver,
    arch: PackageArch,
    layout: Layout,
    root: &Path,
) -> Result<(), Error> {
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let tuple = arch.tuple();
    let version = driver.version();
    let lib_dir = at(&layout.library_dir(driver, arch));
    mkdir(&lib_dir)?;
    // Merged /usr, as today's distributions and driver images have it.
    let (lib_link, lib64_link) = match layout {
        Layout::DriverContainer => ("/usr/lib", "/usr/lib64"),
        _ => ("usr/lib", "usr/lib64"),
    };
    if layout != Layout::NixOs {
        mkdir(&at("usr/lib64"))?;
        link(lib_link, &at("lib"))?;
        link(lib64_link, &at("lib64"))?;
    }
    for (name, which, entry) in driver.libraries(arch)? {
        let dir = match (layout, which) {
            (Layout::Debian, Dir::Plain) => at(&format!("usr/lib/{tuple}")),
            _ => lib_dir.clone(),
        };
        match entry {
            Entry::File(from) => place(&from, &dir.join(&name))?,
            Entry::Link(to) if layout == Layout::DriverContainer => {
                let abs = format!("{}/{to}", layout.library_dir(driver, arch));
                link(&abs, &lib_dir.join(&name))?;
            }
            Entry::Link(to) => link(&to, &dir.join(&name))?,
        }
        if layout == Layout::Debian && is_alternative(&name) {
            // update-alternatives' two absolute links.
            let alt = format!("/etc/alternatives/nvidia--{name}-{tuple}");
            link(
                &format!("/usr/lib/{tuple}/nvidia/current/{name}"),
                &at(&alt),
            )?;
            link(&alt, &at(&format!("usr/lib/{tuple}/{name}")))?;
        }
        if layout == Layout::NixOs {
            let store = format!("{}/lib/{name}", nix_store(driver));
            link(&store, &at(&format!("{NIX_DRIVERS}/lib/{name}")))?;
        }
    }
    // This machine's glibc for its own architecture, Debian's arm64 libc6 for arm64.
    let glibc = if arch.is_host() {
        PathBuf::from("/lib")
    } else {
        driver.unpacked(arch).join("lib")
    };
    for lib in GLIBC {
        let from = glibc.join(tuple).join(lib);
        if from.exists() {
            let to = match layout {
                Layout::Debian => at(&format!("usr/lib/{tuple}/{lib}")),
                _ => lib_dir.join(lib),
            };
            place(&from, &to)?;
        }
    }
    // nvidia-smi.
    let smi_from = driver
        .unpacked(arch)
        .join("usr/lib/nvidia/current/nvidia-smi");
    let smi = layout.nvidia_smi(driver);
    place(&smi_from, &at(&smi))?;
    match layout {
        Layout::Debian => {
            let alt = "/etc/alternatives/nvidia--nvidia-smi";
            link(&smi, &at(alt))?;
            link(alt, &at("usr/bin/nvidia-smi"))?;
        }
        Layout::NixOs => {
            link(&smi, &at("run/current-system/sw/bin/nvidia-smi"))?;
            link(NIX_DRIVERS, &at("run/opengl-driver"))?;
        }
        _ => {}
    }
    // GSP firmware.
    let fw_from = driver
        .unpacked(arch)
        .join(format!("lib/firmware/nvidia/{version}"));
    let fw_dir = match layout {
        Layout::NixOs => at(&format!("run/current-system/firmware/nvidia/{version}")),
        _ => at(&format!("usr/lib/firmware/nvidia/{version}")),
    };
    if fw_from.is_dir() {
        let entries = fs::read_dir(&fw_from).map_err(|e| Error::io(&fw_from, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&fw_from, e))?;
            place(&entry.path(), &fw_dir.join(entry.file_name()))?;
        }
    }
    let conf = match layout {
        Layout::Debian => format!("/usr/local/lib/{tuple}\n/lib/{tuple}\n/usr/lib/{tuple}\n"),
        _ => format!("{}\n", layout.library_dir(driver, arch)),
    };
    write(&at("etc/ld.so.conf"), conf.as_bytes())
}

/// Where NixOS's graphics-drivers profile is (`/run/opengl-driver` points at it).
const NIX_DRIVERS: &str = "/nix/store/6b1cm2kl4jkbq0ql1mzsh3dxlg7p5a2a-graphics-drivers";

/// Whether Debian's `nvidia-alternative` routes `name` through `/etc/alternatives` (the
/// SONAME links and `libcuda.so`; the version-named private libraries are reached directly).
fn is_alternative(name: &str) -> bool {
    match name.split_once(".so") {
        Some((_, "")) => name == "libcuda.so",
        Some((_, rest)) => rest.len() <= 2 && rest.starts_with('.'),
        None => false,
    }
}

/// A file of the cache at `to`: a hard link where the cache is on the same file system
/// (the files are hundreds of megabytes, mounted read-only), else a copy.
fn place(from: &Path, to: &Path) -> Result<(), Error> {
    if let Some(parent) = to.parent() {
        mkdir(parent)?;
    }
    remove_if_exists(to)?;
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to).map(drop).map_err(|e| Error::io(to, e))
}

fn link(target: &str, path: &Path) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        mkdir(parent)?;
    }
    crate::host::link(target, path)
}

#[cfg(test)]
mod tests {
    use super::is_alternative;

    #[test]
    fn alternatives_are_the_soname_links_and_libcuda_so() {
        for name in [
            "libcuda.so.1",
            "libnvidia-nvvm.so.4",
            "libGLX_nvidia.so.0",
            "libcuda.so",
        ] {
            assert!(is_alternative(name), "{name}");
        }
        for name in ["libcuda.so.535.261.03", "libnvidia-ml.so", "nvoptix.bin"] {
            assert!(!is_alternative(name), "{name}");
        }
    }
}
