//! The whole probe: NVML facts plus the driver's files, as one owned value.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::discover::{RootCache, discover_files_with};
use crate::nvml::{self, DEFAULT_TIMEOUT};
use crate::root::Resolver;
use crate::{DiscoverOptions, DriverFiles, Error, Gpu, PciBusId};

/// Everything discovery learns about the host's driver. Made by a probe (or read back with
/// `serde`); `Default` gives an empty one to fill in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct DriverInfo {
    /// The NVRM version (`550.54.14`).
    pub nvrm_version: String,
    /// The driver's CUDA version (`12.4`); `None` when NVML was not asked.
    pub cuda_version: Option<String>,
    /// The GPUs, in NVML index order.
    pub gpus: Vec<Gpu>,
    /// The driver's files inside the root.
    pub files: DriverFiles,
    /// The root-relative path of the `libnvidia-ml.so.1` that was loaded.
    pub nvml_library: PathBuf,
    /// Whether NVML was asked ([`DriverOptions::nvml`]); without it `cuda_version`, each
    /// GPU's brand and architecture are `None` and MIG devices unknown.
    pub from_nvml: bool,
}

/// How to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverOptions {
    /// What to look for and where (the root is the driver root).
    pub discover: DiscoverOptions,
    /// How long NVML may take.
    pub nvml_timeout: Duration,
    /// Who the NVML helper runs as when the caller is root (`--user`); 65534:65534 if `None`.
    pub nvml_identity: Option<nvml::Identity>,
    /// Ask NVML (the default). Without it the GPUs are read from `/proc/driver/nvidia`
    /// (model, UUID, bus id, minor — what configuring a container needs) and no helper
    /// runs: NVML's initialisation, hundreds of milliseconds on hosts without the
    /// persistence daemon, is skipped. The CUDA version, brands, architectures and MIG
    /// devices are then unknown: a GPU with MIG devices is an error
    /// ([`Error::NeedsNvml`]), and so are requirements on them.
    pub nvml: bool,
    /// The program to execute as the NVML helper ([`nvml::Launch::Exec`]) instead of
    /// forking the caller: needed by statically linked callers. `None` (the default) forks.
    pub nvml_helper: Option<PathBuf>,
    /// Look for the driver's files (the default). Without it only the versions and the GPUs
    /// are probed — what `nvidia-container-cli info` prints: [`DriverInfo::files`] is empty,
    /// and the GPUs' `/proc` directories and MIG access minors, which planning needs, are
    /// not looked up. The root's `ld.so.cache` is still read, for NVML's library.
    pub files: bool,
}

impl DriverOptions {
    /// Defaults for a driver root.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DriverOptions {
            discover: DiscoverOptions::new(root),
            nvml_timeout: DEFAULT_TIMEOUT,
            nvml_identity: None,
            nvml: true,
            nvml_helper: None,
            files: true,
        }
    }
}

/// Finds `libnvidia-ml.so.1` inside the root: through its `ld.so.cache`, else in the fallback
/// library directories.
///
/// # Errors
///
/// [`Error::Nvml`] (`nvmlInit`) when the library is nowhere, [`Error::Ldcache`] for a
/// corrupt cache.
pub fn find_nvml(opts: &DiscoverOptions) -> Result<PathBuf, Error> {
    let mut paths = Resolver::new(&opts.root);
    let cache = RootCache::load(opts, &mut paths)?;
    find_nvml_with(opts, &mut paths, cache.as_ref())
}

/// [`find_nvml`] with the root's cache already read.
fn find_nvml_with(
    opts: &DiscoverOptions,
    paths: &mut Resolver,
    cache: Option<&RootCache>,
) -> Result<PathBuf, Error> {
    const SONAME: &str = "libnvidia-ml.so.1";
    if let Some(cache) = cache {
        let found = cache
            .parse()?
            .find(SONAME.as_bytes(), opts.platform.arch)
            .map_err(|e| cache.named(e))?;
        if let Some(entry) = found
            && let Some(real) = paths.resolve(entry.path())?
        {
            return Ok(real);
        }
    }
    for dir in opts.platform.fallback_lib_dirs {
        if let Some(real) = paths.resolve(&Path::new(dir).join(SONAME))? {
            return Ok(real);
        }
    }
    Err(Error::Nvml {
        call: "nvmlInit",
        message: format!("{SONAME} not found in {}", paths.root().display()),
    })
}

/// Probes the driver: NVML (from the root's own `libnvidia-ml.so.1`), then its files (unless
/// [`DriverOptions::files`] is off).
///
/// # Errors
///
/// NVML's failure or timeout, or a discovery error (see [`crate::discover_files`]).
pub fn probe_driver(opts: &DriverOptions) -> Result<DriverInfo, Error> {
    let root = &opts.discover.root;
    // The root's cache is read once and each path in the root looked at once, for NVML's
    // library and for discovery.
    let mut paths = Resolver::new(root);
    let cache = RootCache::load(&opts.discover, &mut paths)?;
    let nvml_library = find_nvml_with(&opts.discover, &mut paths, cache.as_ref())?;
    let mut discover =
        |version: &str| discover_files_with(&opts.discover, &mut paths, version, cache.as_ref());
    let (facts, files) = if !opts.files {
        let facts = if opts.nvml {
            nvml::probe(
                root,
                &nvml_library,
                opts.nvml_identity,
                launch(opts),
                opts.nvml_timeout,
            )?
        } else {
            probe_procfs(root)?
        };
        (facts, DriverFiles::default())
    } else if opts.nvml {
        // Discovery runs while the helper works, for the version the kernel module reports
        // (NVML's is the same driver's; where it names another, discovery runs again). NVML's
        // error comes first, as when discovery waited for it.
        let pending = nvml::start(
            root,
            &nvml_library,
            opts.nvml_identity,
            launch(opts),
            opts.nvml_timeout,
        )?;
        let early = proc_nvrm_version(root)
            .ok()
            .map(|version| (discover(&version), version));
        let facts = pending.wait()?;
        let files = match early {
            Some((files, version)) if version == facts.nvrm_version => files?,
            _ => discover(&facts.nvrm_version)?,
        };
        (facts, files)
    } else {
        let facts = probe_procfs(root)?;
        let files = discover(&facts.nvrm_version)?;
        (facts, files)
    };
    let mut gpus = facts.gpus;
    if opts.files {
        for g in &mut gpus {
            locate_in_proc(root, g);
        }
    }
    Ok(DriverInfo {
        nvrm_version: facts.nvrm_version,
        cuda_version: facts.cuda_version,
        gpus,
        files,
        nvml_library,
        from_nvml: opts.nvml,
    })
}

/// How `opts` has the NVML helper started.
fn launch(opts: &DriverOptions) -> nvml::Launch<'_> {
    opts.nvml_helper
        .as_deref()
        .map_or(nvml::Launch::Fork, nvml::Launch::Exec)
}

/// `path`, a kernel file of a few hundred bytes inside `root`: at most 64 KiB of it.
fn read_proc(root: &Path, path: &Path) -> Result<String, Error> {
    let mut text = String::new();
    std::fs::File::open(crate::host_path(root, path))
        .and_then(|f| f.take(64 * 1024).read_to_string(&mut text))
        .map(|_| text)
        .map_err(|e| bad_proc(path, e.to_string()))
}

fn bad_proc(path: &Path, what: String) -> Error {
    Error::DriverProc {
        path: path.to_path_buf(),
        what,
    }
}

/// The NVRM version `/proc/driver/nvidia/version` inside `root` names.
fn proc_nvrm_version(root: &Path) -> Result<String, Error> {
    let file = Path::new(crate::discover::PROC_DRIVER_DIR).join("version");
    crate::procfs::nvrm_version(&read_proc(root, &file)?)
        .map(str::to_owned)
        .ok_or_else(|| bad_proc(&file, "no NVRM version".into()))
}

/// The driver version and GPUs from `/proc/driver/nvidia` inside `root`, without NVML:
/// GPUs in PCI bus order (NVML's order), brand and architecture unknown (empty).
fn probe_procfs(root: &Path) -> Result<nvml::NvmlInfo, Error> {
    let proc = Path::new(crate::discover::PROC_DRIVER_DIR);
    let nvrm_version = proc_nvrm_version(root)?;
    let gpus_dir = proc.join("gpus");
    // A driver without GPUs has no `gpus` directory.
    let entries = match std::fs::read_dir(crate::host_path(root, &gpus_dir)) {
        Ok(entries) => entries.collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(bad_proc(&gpus_dir, e.to_string())),
    };
    let mut gpus = Vec::new();
    for entry in entries {
        let name = entry
            .map_err(|e| bad_proc(&gpus_dir, e.to_string()))?
            .file_name();
        let file = gpus_dir.join(&name).join("information");
        let info = crate::procfs::gpu_information(&read_proc(root, &file)?)
            .ok_or_else(|| bad_proc(&file, "not a GPU information file".into()))?;
        let bus_id: PciBusId = info.bus_location.parse()?;
        let mig = proc.join(format!("capabilities/gpu{}/mig", info.minor));
        let has_migs = std::fs::read_dir(crate::host_path(root, &mig)).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("gi"))
        });
        if has_migs {
            return Err(Error::NeedsNvml {
                what: format!("the MIG devices of GPU {bus_id}"),
            });
        }
        gpus.push(Gpu {
            index: 0,
            minor: info.minor,
            uuid: info.uuid,
            bus_id,
            model: info.model,
            brand: None,
            architecture: None,
            mig_capable: false,
            mig_devices: Vec::new(),
            proc_dir: PathBuf::new(),
        });
    }
    gpus.sort_by_key(|g| g.bus_id);
    for (index, g) in (0u32..).zip(&mut gpus) {
        g.index = index;
    }
    Ok(nvml::NvmlInfo {
        nvrm_version,
        cuda_version: None,
        gpus,
    })
}

/// Fills in what planning needs from the GPU's `/proc` files: its `gpus/<busid>` directory
/// (full bus id, else without the domain, as older drivers name it) and the device minors
/// of its MIG devices' `access` files.
fn locate_in_proc(root: &Path, g: &mut Gpu) {
    let gpus = Path::new(crate::discover::PROC_DRIVER_DIR).join("gpus");
    let busid = g.bus_id.to_string();
    let long = gpus.join(&busid);
    g.proc_dir = if crate::host_path(root, &long).exists() {
        long
    } else {
        gpus.join(busid.get(4..).unwrap_or(&busid))
    };
    let minor = |caps_dir: String| {
        let access = Path::new(&caps_dir).join("access");
        std::fs::read_to_string(crate::host_path(root, &access))
            .ok()
            .and_then(|t| crate::procfs::cap_device_minor(&t))
    };
    let dirs: Vec<(String, String)> = g
        .mig_devices
        .iter()
        .map(|m| (g.gi_caps_path(m), g.ci_caps_path(m)))
        .collect();
    for (m, (gi, ci)) in g.mig_devices.iter_mut().zip(dirs) {
        m.access_minors = (minor(gi), minor(ci));
    }
}
