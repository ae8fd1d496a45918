//! Finding the driver's files inside a driver root: libraries (through its `ld.so.cache`,
//! or a static search path where it has none), binaries, IPC endpoints, GSP firmware and
//! device nodes.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nvc_ldcache::elf::ElfInfo;
use nvc_ldcache::{Arch, LdCache, Platform, PrefixSet};

use crate::root::Resolver;
use crate::tables::{
    COMPUTE_BINS, FABRICMANAGER_SOCKET, LEGACY_GL_LIBS, MPS_PIPE_DIR, PERSISTENCED_SOCKET,
    UTILITY_BINS, library_prefixes,
};
use crate::{Error, host_path};

/// What to look for, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoverOptions {
    /// The driver root (`/`, or e.g. `/run/nvidia/driver`).
    pub root: PathBuf,
    /// The `ld.so.cache` path inside the root.
    pub ldcache: PathBuf,
    /// The `PATH` binaries are searched in (inside the root).
    pub path: OsString,
    /// The architecture whose libraries are looked for (their ELF machine and cache flag,
    /// the directories searched without a cache): [`Platform::host`] by default; another
    /// row only to inspect a root of another architecture's files.
    pub platform: &'static Platform,
    /// Directories (inside the root) searched for the libraries the `ld.so.cache` does not
    /// list, in order, before the built-in fallback directories of a root without a cache
    /// (`nvidia-ctk cdi generate --library-search-path`). Empty by default.
    pub library_search_path: Vec<PathBuf>,
    /// The MPS pipe directory (`CUDA_MPS_PIPE_DIRECTORY`), `/tmp/nvidia-mps` when `None`.
    pub mps_pipe_dir: Option<PathBuf>,
    /// Look for the persistence daemon's socket (driver option `no-persistenced` clears it).
    pub persistenced: bool,
    /// Look for the fabric manager's socket (`no-fabricmanager` clears it).
    pub fabricmanager: bool,
    /// Look for MPS binaries and the pipe directory (`no-mps` clears it).
    pub mps: bool,
    /// Look for GSP firmware (`no-gsp-firmware` clears it).
    pub gsp_firmware: bool,
    /// Use the GLVND vendor libraries (`no-glvnd` clears it for the legacy GL set).
    pub glvnd: bool,
    /// The host's `/proc/devices` (majors of `nvidia-caps` and
    /// `nvidia-caps-imex-channels`); a host path, not inside the root.
    pub proc_devices: PathBuf,
}

impl DiscoverOptions {
    /// Upstream's defaults for a driver root.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DiscoverOptions {
            root: root.into(),
            ldcache: PathBuf::from(nvc_ldcache::DEFAULT_PATH),
            path: OsString::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            platform: Platform::host(),
            library_search_path: Vec::new(),
            mps_pipe_dir: None,
            persistenced: true,
            fabricmanager: true,
            mps: true,
            gsp_firmware: true,
            glvnd: true,
            proc_devices: PathBuf::from("/proc/devices"),
        }
    }
}

/// A device node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct DeviceNode {
    /// Path inside the root (`/dev/nvidia-uvm`).
    pub path: PathBuf,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

/// The driver's files, as root-relative paths (each starting with `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct DriverFiles {
    /// 64-bit libraries (resolved real files), in lookup order.
    pub libraries: Vec<PathBuf>,
    /// 32-bit libraries.
    pub libraries32: Vec<PathBuf>,
    /// Binaries, resolved inside the root as upstream lists them (containers get each under
    /// its file name in their binary directory).
    pub binaries: Vec<PathBuf>,
    /// IPC endpoints (sockets, the MPS pipe directory).
    pub ipcs: Vec<PathBuf>,
    /// GSP firmware, at its canonical path (`/lib/firmware/nvidia/<version>/gsp_*.bin`),
    /// which is where containers get it and what `list` prints (as upstream); each file
    /// itself is in [`firmware_sources`](Self::firmware_sources).
    pub firmwares: Vec<PathBuf>,
    /// Each of [`firmwares`](Self::firmwares), in the same order, resolved inside the root
    /// (`/usr/lib/firmware/...` where `/lib` is a link to `usr/lib`; a file a link farm
    /// points at): the mount sources.
    pub firmware_sources: Vec<PathBuf>,
    /// The driver-wide device nodes (control, uvm, uvm-tools, modeset).
    pub devices: Vec<DeviceNode>,
    /// Copies of the driver's `/proc/driver/nvidia/{params,version,registry}`, read at
    /// discovery so that planning needs no I/O; missing files absent.
    pub proc_files: Vec<ProcFile>,
    /// `/proc/driver/nvidia-caps/mig-minors`: each MIG capability (`config`, `monitor`,
    /// `gpu0/gi1/access`, ...) with the minor of its `/dev/nvidia-caps` node.
    pub mig_minors: Vec<(String, u32)>,
    /// Major of `/dev/nvidia-caps/nvidia-cap*` (MIG capabilities), from `/proc/devices`.
    pub caps_major: Option<u32>,
    /// Major of `/dev/nvidia-caps-imex-channels/channel*`, from `/proc/devices`.
    pub imex_major: Option<u32>,
    /// Whether libraries came from the root's `ld.so.cache` (else from the fallback path).
    pub from_ldcache: bool,
    /// What was looked for and not found (`missing library libnvidia-nscq.so`, ...).
    pub warnings: Vec<String>,
}

/// A copy of one of the driver's `/proc/driver/nvidia` files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ProcFile {
    /// Its name in `/proc/driver/nvidia` (`params`, `version`, `registry`).
    pub name: String,
    /// Its contents (at most 1 MiB).
    pub contents: Vec<u8>,
    /// Its permission bits (`0o777` at most), which the container's copy gets (as upstream's; 0444 in the
    /// kernel's procfs).
    pub mode: u32,
}

impl DriverFiles {
    /// Where firmware `fw` (one of [`firmwares`](Self::firmwares)) really is inside the
    /// root: every component resolved, so that opening it from the host follows no link of
    /// the root. `fw` itself for a value without sources (built by hand, or serialised by
    /// an nvc that did not record them).
    #[must_use]
    pub fn firmware_source(&self, fw: &Path) -> PathBuf {
        let i = self.firmwares.iter().position(|f| f == fw);
        i.and_then(|i| self.firmware_sources.get(i))
            .map_or_else(|| fw.to_path_buf(), Clone::clone)
    }

    /// The libraries a container with `caps` gets (upstream filters at mount time, by file
    /// name): the 64-bit set, then the 32-bit set with `compat32`.
    #[must_use]
    pub fn libraries_for(&self, caps: &[crate::tables::Capability], compat32: bool) -> Vec<&Path> {
        let wanted = |p: &&PathBuf| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| crate::tables::library_wanted(n, caps))
        };
        let libs32: &[PathBuf] = if compat32 { &self.libraries32 } else { &[] };
        self.libraries
            .iter()
            .chain(libs32)
            .filter(wanted)
            .map(PathBuf::as_path)
            .collect()
    }
}

/// Finds the files of driver `version` (the NVRM version, which library file names end
/// with) inside `opts.root`.
///
/// # Errors
///
/// [`Error::Ldcache`] for a cache that exists but cannot be read or parsed (a corrupt cache
/// is an error, not an empty result), [`Error::Resolve`] for an I/O error inside the root.
pub fn discover_files(opts: &DiscoverOptions, version: &str) -> Result<DriverFiles, Error> {
    let mut paths = Resolver::new(&opts.root);
    let cache = RootCache::load(opts, &mut paths)?;
    discover_files_with(opts, &mut paths, version, cache.as_ref())
}

/// The driver root's `ld.so.cache`, read once per probe.
#[derive(Debug)]
pub(crate) struct RootCache {
    /// Its host path.
    host: PathBuf,
    bytes: Vec<u8>,
}

impl RootCache {
    /// Reads the cache of the root, or `None` when the root has none.
    pub(crate) fn load(
        opts: &DiscoverOptions,
        paths: &mut Resolver,
    ) -> Result<Option<Self>, Error> {
        let Some(cache) = paths.resolve(&opts.ldcache)? else {
            return Ok(None);
        };
        let host = host_path(&opts.root, &cache);
        let bytes = nvc_ldcache::read(&host).map_err(|source| Error::Ldcache { source })?;
        Ok(Some(RootCache { host, bytes }))
    }

    /// The parsed cache; errors name the file.
    pub(crate) fn parse(&self) -> Result<LdCache<'_>, Error> {
        LdCache::parse(&self.bytes).map_err(|e| self.named(e))
    }

    /// `e` with this cache's path.
    pub(crate) fn named(&self, e: nvc_ldcache::Error) -> Error {
        Error::Ldcache {
            source: e.in_file(&self.host),
        }
    }
}

/// [`discover_files`] with the root's cache already read, resolving with `paths` (a resolver
/// for `opts.root`).
pub(crate) fn discover_files_with(
    opts: &DiscoverOptions,
    paths: &mut Resolver,
    version: &str,
    cache: Option<&RootCache>,
) -> Result<DriverFiles, Error> {
    let mut files = DriverFiles::default();
    let prefixes = library_prefixes(opts.glvnd);
    let platform = opts.platform;
    let arches: Vec<(Arch, &[&str], &str)> = [
        Some((platform.arch, platform.fallback_lib_dirs, "library")),
        platform
            .compat32
            .map(|c| (c.arch, c.fallback_lib_dirs, "compat32 library")),
    ]
    .into_iter()
    .flatten()
    .collect();
    files.from_ldcache = cache.is_some();
    for (i, (arch, fallback, what)) in arches.into_iter().enumerate() {
        let mut found = match cache {
            Some(cache) => from_ldcache(
                opts,
                paths,
                cache,
                arch,
                &prefixes,
                version,
                &mut files.warnings,
            )?,
            None => vec![None; prefixes.len()],
        };
        from_dirs(
            opts,
            paths,
            &opts.library_search_path,
            arch,
            &prefixes,
            version,
            &mut found,
        )?;
        if cache.is_none() {
            from_dirs(opts, paths, fallback, arch, &prefixes, version, &mut found)?;
        }
        for (prefix, path) in prefixes.iter().zip(&found) {
            if path.is_none() {
                files.warnings.push(format!("missing {what} {prefix}"));
            }
        }
        let found = found.into_iter().flatten().collect();
        if i == 0 {
            files.libraries = found;
        } else {
            files.libraries32 = found;
        }
    }
    files.binaries = binaries(opts, paths, &mut files.warnings)?;
    files.ipcs = ipcs(opts, paths, &mut files.warnings)?;
    (files.firmwares, files.firmware_sources) =
        firmwares(opts, paths, version, &mut files.warnings)?
            .into_iter()
            .unzip();
    files.devices = devices(opts, paths, &mut files.warnings)?;
    files.proc_files = proc_files(opts);
    files.mig_minors = mig_minors(opts);
    let proc_devices = fs::read_to_string(&opts.proc_devices).unwrap_or_default();
    files.caps_major = crate::procfs::char_major(&proc_devices, "nvidia-caps");
    files.imex_major = crate::procfs::char_major(&proc_devices, "nvidia-caps-imex-channels");
    Ok(files)
}

/// The driver's files containers get a copy of (`/proc/driver/nvidia/{params,version,registry}`
/// in the root), each at most [`PROC_FILE_LIMIT`] bytes; missing ones are left out.
fn proc_files(opts: &DiscoverOptions) -> Vec<ProcFile> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    ["params", "version", "registry"]
        .into_iter()
        .filter_map(|name| {
            let path = host_path(&opts.root, &Path::new(PROC_DRIVER_DIR).join(name));
            let file = fs::File::open(path).ok()?;
            let mode = file.metadata().ok()?.permissions().mode() & 0o777;
            let mut contents = Vec::new();
            file.take(PROC_FILE_LIMIT).read_to_end(&mut contents).ok()?;
            Some(ProcFile {
                name: name.to_owned(),
                contents,
                mode,
            })
        })
        .collect()
}

/// The `mig-minors` table of the driver root (empty where the driver has none).
fn mig_minors(opts: &DiscoverOptions) -> Vec<(String, u32)> {
    let path = host_path(&opts.root, Path::new("/proc/driver/nvidia-caps/mig-minors"));
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (name, minor) = l.split_once(' ')?;
            Some((name.to_owned(), minor.trim().parse().ok()?))
        })
        .collect()
}

/// Where the kernel module publishes the driver's state.
pub const PROC_DRIVER_DIR: &str = "/proc/driver/nvidia";

/// The most bytes kept of one `/proc/driver/nvidia` file (they are a few KiB).
const PROC_FILE_LIMIT: u64 = 1 << 20;

/// Upstream's native selection: the resolved file must be named for the driver version,
/// `libnvidia-tls` must carry the "new TLS ABI" note, and legacy GL libraries must be
/// NVIDIA's (need `libnvidia-glcore`/`libnvidia-eglcore`).
fn acceptable(
    opts: &DiscoverOptions,
    prefix: &str,
    real: &Path,
    version: &str,
) -> Result<bool, Error> {
    let named = real
        .file_name()
        .is_some_and(|n| n.as_bytes().ends_with(version.as_bytes()));
    if !named {
        return Ok(false);
    }
    let needs_elf = prefix == "libnvidia-tls.so" || LEGACY_GL_LIBS.contains(&prefix);
    if !needs_elf {
        return Ok(true);
    }
    let host = host_path(&opts.root, real);
    let info = ElfInfo::read(&host).map_err(|source| Error::Elf { source })?;
    Ok(if prefix == "libnvidia-tls.so" {
        info.abi_tag == Some([0, 2, 3, 99])
    } else {
        info.needed.iter().any(|n| {
            n.starts_with(b"libnvidia-glcore.so") || n.starts_with(b"libnvidia-eglcore.so")
        })
    })
}

fn from_ldcache(
    opts: &DiscoverOptions,
    paths: &mut Resolver,
    cache: &RootCache,
    arch: Arch,
    prefixes: &[&str],
    version: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Option<PathBuf>>, Error> {
    let parsed = cache.parse()?;
    let set = PrefixSet::new(prefixes);
    let mut real: Vec<Option<PathBuf>> = vec![None; set.len()];
    parsed
        .resolve_with(&set, arch, |slot, _, candidate| {
            let Some(path) = paths.resolve(candidate.path())? else {
                return Ok(false);
            };
            let (Some(current), Some(prefix)) = (real.get_mut(slot), prefixes.get(slot)) else {
                return Ok(false);
            };
            if current.as_deref() == Some(path.as_path()) {
                return Ok(false);
            }
            if !acceptable(opts, prefix, &path, version)? {
                warnings.push(format!("skipping {}", path.display()));
                return Ok(false);
            }
            *current = Some(path);
            Ok::<_, Error>(true)
        })
        .map_err(|e| match e {
            Error::Ldcache { source } => cache.named(source),
            other => other,
        })?;
    Ok(real)
}

/// Fills the libraries still missing in `found` (one slot per prefix) from `dirs`, in order:
/// the first file that starts with the prefix, is an object of `arch` and is named for the
/// driver version.
fn from_dirs(
    opts: &DiscoverOptions,
    paths: &mut Resolver,
    dirs: &[impl AsRef<Path>],
    arch: Arch,
    prefixes: &[&str],
    version: &str,
    found: &mut [Option<PathBuf>],
) -> Result<(), Error> {
    for dir in dirs {
        if found.iter().all(Option::is_some) {
            break;
        }
        let Some(dir) = paths.resolve(dir.as_ref())? else {
            continue;
        };
        let host_dir = host_path(&opts.root, &dir);
        let Ok(entries) = fs::read_dir(&host_dir) else {
            continue;
        };
        let mut names: Vec<OsString> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for (slot, prefix) in prefixes.iter().enumerate() {
            if found.get(slot).is_some_and(Option::is_some) {
                continue;
            }
            for name in names
                .iter()
                .filter(|n| n.as_bytes().starts_with(prefix.as_bytes()))
            {
                let Some(real) = paths.resolve(&dir.join(name))? else {
                    continue;
                };
                let host = host_path(&opts.root, &real);
                let right_arch =
                    ElfInfo::read(&host).ok().and_then(|i| i.cache_arch()) == Some(arch);
                if right_arch && acceptable(opts, prefix, &real, version)? {
                    if let Some(f) = found.get_mut(slot) {
                        *f = Some(real);
                    }
                    break;
                }
            }
        }
    }
    Ok(())
}

fn binaries(
    opts: &DiscoverOptions,
    paths: &mut Resolver,
    warnings: &mut Vec<String>,
) -> Result<Vec<PathBuf>, Error> {
    let mut names: Vec<&str> = UTILITY_BINS.to_vec();
    if opts.mps {
        names.extend(COMPUTE_BINS);
    }
    let dirs: Vec<&OsStr> = opts
        .path
        .as_bytes()
        .split(|&b| b == b':')
        .map(|d| {
            if d.is_empty() {
                OsStr::new(".")
            } else {
                OsStr::from_bytes(d)
            }
        })
        .collect();
    let mut out = Vec::new();
    for name in names {
        let mut hit = None;
        for dir in &dirs {
            // Resolved in the root, as upstream lists it (`/usr/bin/nvidia-smi ->
            // /etc/alternatives/... -> /usr/lib/nvidia/current/nvidia-smi` on Debian):
            // the absolute links mean the root's paths, not the host's.
            if let Some(real) = paths.resolve(&Path::new(dir).join(name))? {
                let host = host_path(&opts.root, &real);
                if host.is_file() {
                    hit = Some(real);
                    break;
                }
            }
        }
        match hit {
            Some(path) => out.push(path),
            None => warnings.push(format!("missing binary {name}")),
        }
    }
    Ok(out)
}

fn ipcs(
    opts: &DiscoverOptions,
    paths: &mut Resolver,
    warnings: &mut Vec<String>,
) -> Result<Vec<PathBuf>, Error> {
    let mut wanted: Vec<PathBuf> = Vec::new();
    if opts.persistenced {
        wanted.push(PERSISTENCED_SOCKET.into());
    }
    if opts.fabricmanager {
        wanted.push(FABRICMANAGER_SOCKET.into());
    }
    if opts.mps {
        wanted.push(
            opts.mps_pipe_dir
                .clone()
                .unwrap_or_else(|| MPS_PIPE_DIR.into()),
        );
    }
    let mut out = Vec::new();
    for path in wanted {
        match paths.resolve(&path) {
            Ok(Some(real)) => out.push(real),
            Ok(None) => warnings.push(format!("missing ipc path {}", path.display())),
            // Unprivileged `list`: a directory we may not search is as good as missing.
            Err(Error::Resolve { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                warnings.push(format!(
                    "missing ipc path {} (insufficient permissions)",
                    path.display()
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The GSP firmware files of the canonical firmware directory: each canonical path with the
/// regular file it resolves to inside the root, in name order.
fn firmwares(
    opts: &DiscoverOptions,
    paths: &mut Resolver,
    version: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<(PathBuf, PathBuf)>, Error> {
    if !opts.gsp_firmware {
        return Ok(Vec::new());
    }
    let canonical = PathBuf::from(format!("/lib/firmware/nvidia/{version}"));
    let mut names: Vec<OsString> = match paths.resolve(&canonical)? {
        Some(dir) => fs::read_dir(host_path(&opts.root, &dir))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name())
                    .filter(|n| n.as_bytes().starts_with(b"gsp") && n.as_bytes().ends_with(b".bin"))
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let path = canonical.join(name);
        if let Some(real) = paths.resolve(&path)?
            && host_path(&opts.root, &real).is_file()
        {
            out.push((path, real));
        }
    }
    if out.is_empty() {
        warnings.push("missing firmware path".into());
    }
    Ok(out)
}

/// `rdev` split as glibc's `gnu_dev_major`/`gnu_dev_minor` (nix's `major`/`minor`).
fn split_dev(rdev: u64) -> (u32, u32) {
    let part = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    (
        part(nix::sys::stat::major(rdev)),
        part(nix::sys::stat::minor(rdev)),
    )
}

fn devices(
    opts: &DiscoverOptions,
    paths: &mut Resolver,
    warnings: &mut Vec<String>,
) -> Result<Vec<DeviceNode>, Error> {
    let mut out = vec![DeviceNode {
        path: "/dev/nvidiactl".into(),
        major: 195,
        minor: 255,
    }];
    for path in [
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",
        "/dev/nvidia-modeset",
    ] {
        let node = paths
            .resolve(Path::new(path))?
            .and_then(|real| fs::metadata(host_path(&opts.root, &real)).ok())
            .filter(|m| m.file_type().is_char_device());
        match node {
            Some(meta) => {
                let (major, minor) = split_dev(meta.rdev());
                out.push(DeviceNode {
                    path: path.into(),
                    major,
                    minor,
                });
            }
            None => warnings.push(format!("missing device {path}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::split_dev;

    #[test]
    fn device_numbers_split_like_glibc() {
        // glibc's makedev.
        let make = |major: u64, minor: u64| {
            ((major & 0xfff) << 8)
                | ((major & !0xfff) << 32)
                | (minor & 0xff)
                | ((minor & !0xff) << 12)
        };
        for (major, minor) in [
            (195, 255),
            (195, 0),
            (511, 1),
            (0x1234, 0x12_3456),
            (4095, 1 << 19),
        ] {
            let want = (u32::try_from(major).unwrap(), u32::try_from(minor).unwrap());
            assert_eq!(split_dev(make(major, minor)), want);
        }
    }
}
