//! A CDI spec from a probed driver.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use nvc_driver::tables::development_link;
use nvc_driver::{Gpu, MigDevice, host_path};

use super::spec::{ContainerEdits, Device, DeviceNode, Hook, Mount, Spec};
use crate::{Driver, Error};

/// How devices are named in the spec (`--device-name-strategy`); several may be given,
/// each device then appears under each name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceNameStrategy {
    /// `0`, `1`, ... and `0:1` for MIG devices (nvidia-ctk's default).
    Index,
    /// `GPU-<uuid>` and `MIG-<uuid>`.
    Uuid,
    /// `gpu0` and `mig0:1`.
    TypeIndex,
}

impl FromStr for DeviceNameStrategy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "index" => Ok(DeviceNameStrategy::Index),
            "uuid" => Ok(DeviceNameStrategy::Uuid),
            "type-index" => Ok(DeviceNameStrategy::TypeIndex),
            other => Err(Error::input(format!(
                "invalid device name strategy {other:?} (expected index, uuid or type-index)"
            ))),
        }
    }
}

impl DeviceNameStrategy {
    fn gpu(self, g: &Gpu) -> String {
        match self {
            DeviceNameStrategy::Index => g.index.to_string(),
            DeviceNameStrategy::Uuid => g.uuid.clone(),
            DeviceNameStrategy::TypeIndex => format!("gpu{}", g.index),
        }
    }

    fn mig(self, g: &Gpu, m: &MigDevice) -> String {
        match self {
            DeviceNameStrategy::Index => format!("{}:{}", g.index, m.index),
            DeviceNameStrategy::Uuid => m.uuid.clone(),
            DeviceNameStrategy::TypeIndex => format!("mig{}:{}", g.index, m.index),
        }
    }
}

/// What [`Driver::cdi_spec`] generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdiOptions {
    /// The vendor (`nvidia.com`).
    pub vendor: String,
    /// The device class (`gpu`).
    pub class: String,
    /// How devices are named; at least one. By default by index and by UUID, as
    /// `nvidia-ctk cdi generate` 1.17 (`--device-name-strategy index --device-name-strategy uuid`).
    pub names: Vec<DeviceNameStrategy>,
    /// Where the device nodes are on the host (`--dev-root`); the driver root when `None`
    /// (as nvidia-ctk). Nodes under another root than `/` get a `hostPath`.
    pub dev_root: Option<PathBuf>,
    /// The `nvc-hook` to run as the spec's `createRuntime` hooks (`create-symlinks`: the
    /// development links such as `libcuda.so`; `update-ldcache`: the host's `ldconfig`,
    /// sandboxed, refreshes the container's linker cache); `None` for no hook (the image
    /// must find the libraries by itself).
    pub hook: Option<PathBuf>,
}

impl Default for CdiOptions {
    fn default() -> Self {
        CdiOptions {
            vendor: "nvidia.com".into(),
            class: "gpu".into(),
            names: vec![DeviceNameStrategy::Index, DeviceNameStrategy::Uuid],
            dev_root: None,
            hook: Some("/usr/local/bin/nvc-hook".into()),
        }
    }
}

/// OCI options of the mounts: read-only binds of the driver's files; writable, non-exec
/// binds of its IPC endpoints.
const FILE_OPTIONS: [&str; 4] = ["ro", "nosuid", "nodev", "bind"];
const IPC_OPTIONS: [&str; 4] = ["nosuid", "nodev", "noexec", "bind"];
/// Where containers find the driver's binaries (nvidia-ctk's and `configure`'s choice).
const CONTAINER_BIN_DIR: &str = "/usr/bin";

impl Driver {
    /// The CDI spec of this driver: one device per GPU and MIG device under each naming
    /// strategy, plus `all`; each device's nodes (a MIG device's: its parent's node and its
    /// two capability nodes); and, for any of them, the driver's control nodes, its
    /// libraries, binaries, firmware and IPC endpoints bound read-only (IPC writable), the
    /// `create-symlinks` and `update-ldcache` hooks, and `NVIDIA_VISIBLE_DEVICES=void` (so a legacy hook in the same
    /// runtime does nothing). The version is the lowest the content needs; the spec is
    /// validated. Everything comes from the probe but one `stat`: whether Vulkan's producer
    /// library (`libnvidia-vulkan-producer.so.<version>`, which nvidia-ctk gives and
    /// upstream's tables do not name) is beside the driver's libraries in the driver root;
    /// planning for another machine ([`Context::with_info`](crate::Context::with_info)) leaves it out.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) for an invalid vendor/class, no
    /// naming strategy, or a spec that breaks a CDI rule (naming it).
    pub fn cdi_spec(&self, opts: &CdiOptions) -> Result<Spec, Error> {
        if opts.names.is_empty() {
            return Err(Error::input("no device name strategy"));
        }
        let info = self.info();
        let dev_root = opts.dev_root.as_deref().unwrap_or(self.root());
        let node = |path: &Path| DeviceNode {
            path: path.to_path_buf(),
            host_path: (dev_root != Path::new("/")).then(|| host_path(dev_root, path)),
            kind: None,
            major: None,
            minor: None,
            file_mode: None,
            permissions: None,
            uid: None,
            gid: None,
        };
        let gpu_nodes = |g: &Gpu| vec![node(Path::new(&format!("/dev/nvidia{}", g.minor)))];
        let mig_nodes = |g: &Gpu, m: &MigDevice| {
            let mut nodes = gpu_nodes(g);
            let (gi, ci) = m.access_minors;
            for minor in [gi, ci].into_iter().flatten() {
                nodes.push(node(Path::new(&format!(
                    "/dev/nvidia-caps/nvidia-cap{minor}"
                ))));
            }
            nodes
        };
        let device = |name: String, device_nodes: Vec<DeviceNode>| Device {
            name,
            annotations: Default::default(),
            container_edits: ContainerEdits {
                device_nodes,
                ..ContainerEdits::default()
            },
        };
        let mut devices = Vec::new();
        let mut all: Vec<DeviceNode> = Vec::new();
        for strategy in &opts.names {
            for g in &info.gpus {
                devices.push(device(strategy.gpu(g), gpu_nodes(g)));
                for m in &g.mig_devices {
                    devices.push(device(strategy.mig(g, m), mig_nodes(g, m)));
                }
            }
        }
        for g in &info.gpus {
            all.extend(gpu_nodes(g));
            for m in &g.mig_devices {
                all.extend(mig_nodes(g, m));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        all.retain(|n| seen.insert(n.path.clone()));
        if !info.gpus.is_empty() {
            devices.push(device("all".into(), all));
        }

        let root = self.root();
        let mount = |source: &Path, path: &Path, options: &[&str]| Mount {
            host_path: host_path(root, source),
            container_path: path.to_path_buf(),
            // Bind mounts say so (CDI 0.4.0): every runtime then takes them as such, whether
            // or not it reads the `bind` option.
            kind: Some("bind".to_owned()),
            options: options.iter().map(|o| (*o).to_owned()).collect(),
        };
        let files = &info.files;
        let mut mounts: Vec<Mount> = files
            .libraries
            .iter()
            .chain(&files.libraries32)
            .map(|p| mount(p, p, &FILE_OPTIONS))
            .collect();
        // Binaries where a container's PATH finds them (they are resolved in the driver
        // root: Debian's nvidia-smi is /usr/lib/nvidia/current/nvidia-smi), firmware from
        // its resolved directory to its canonical path.
        for bin in &files.binaries {
            let Some(name) = bin.file_name() else {
                continue;
            };
            mounts.push(mount(
                bin,
                &Path::new(CONTAINER_BIN_DIR).join(name),
                &FILE_OPTIONS,
            ));
        }
        for fw in &files.firmwares {
            mounts.push(mount(&files.firmware_source(fw), fw, &FILE_OPTIONS));
        }
        mounts.extend(files.ipcs.iter().map(|p| mount(p, p, &IPC_OPTIONS)));
        // The directories holding the driver's libraries (several where a library search
        // path found some elsewhere), added to the container's ldconfig run.
        let mut folders: Vec<&Path> = Vec::new();
        for dir in files.libraries.iter().filter_map(|l| l.parent()) {
            if !folders.contains(&dir) {
                folders.push(dir);
            }
        }
        // Vulkan's producer library (drivers up to 535 ship it), which nvidia-ctk mounts with
        // its development link and upstream's tables (so `list` and `configure`) do not
        // name: looked up beside the driver's libraries, under this driver's version.
        let producer = format!("libnvidia-vulkan-producer.so.{}", info.nvrm_version);
        let producers: Vec<PathBuf> = folders
            .iter()
            .map(|dir| dir.join(&producer))
            .filter(|lib| std::fs::metadata(host_path(root, lib)).is_ok_and(|m| m.is_file()))
            .collect();
        mounts.extend(producers.iter().map(|p| mount(p, p, &FILE_OPTIONS)));
        // The development links (`libcuda.so -> libcuda.so.1`) next to the mounted
        // libraries, as `configure` makes them.
        let mut links: Vec<String> = files
            .libraries
            .iter()
            .filter_map(|lib| {
                let (link, target) = development_link(&lib.file_name()?.to_string_lossy())?;
                Some(format!("{target}::{}", lib.with_file_name(link).display()))
            })
            .collect();
        // GBM's backend for the NVIDIA DRM driver, as nvidia-ctk links it: Mesa's GBM loads
        // `<libdir>/gbm/nvidia-drm_gbm.so`, which is the driver's allocator.
        links.extend(files.libraries.iter().filter_map(|lib| {
            let name = lib.file_name()?.to_string_lossy();
            name.starts_with("libnvidia-allocator.so.").then(|| {
                format!(
                    "../libnvidia-allocator.so.1::{}",
                    lib.with_file_name("gbm/nvidia-drm_gbm.so").display()
                )
            })
        }));
        // The producer's unversioned name, as nvidia-ctk links it.
        links.extend(producers.iter().map(|lib| {
            format!(
                "{producer}::{}",
                lib.with_file_name("libnvidia-vulkan-producer.so").display()
            )
        }));
        let mut hooks = Vec::new();
        if let Some(path) = &opts.hook {
            let hook = |args: Vec<String>| Hook {
                hook_name: "createRuntime".into(),
                path: path.clone(),
                args,
                env: Vec::new(),
                timeout: None,
            };
            if !links.is_empty() {
                let mut args = vec!["nvc-hook".to_owned(), "create-symlinks".to_owned()];
                for link in links {
                    args.push("--link".into());
                    args.push(link);
                }
                hooks.push(hook(args));
            }
            let mut args = vec!["nvc-hook".to_owned(), "update-ldcache".to_owned()];
            let libcuda = files.libraries.iter().any(|l| {
                l.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("libcuda.so"))
            });
            if libcuda {
                // CUDA forward compatibility, as `configure` gives it with compute: the
                // image's compat libcuda first where it is newer than this driver
                // (nvidia-ctk's `enable-cuda-compat` hook).
                args.push(format!("--host-driver-version={}", info.nvrm_version));
            }
            for folder in folders {
                args.push("--folder".into());
                args.push(folder.display().to_string());
            }
            hooks.push(hook(args));
        }
        let mut spec = Spec {
            cdi_version: String::new(),
            kind: format!("{}/{}", opts.vendor, opts.class),
            annotations: Default::default(),
            devices,
            container_edits: ContainerEdits {
                env: vec!["NVIDIA_VISIBLE_DEVICES=void".into()],
                device_nodes: files.devices.iter().map(|d| node(&d.path)).collect(),
                hooks,
                mounts,
                additional_gids: Vec::new(),
            },
        };
        spec.cdi_version = spec.minimum_version().to_owned();
        spec.validate()
            .map_err(|e| Error::input(format!("invalid CDI spec: {e}")))?;
        Ok(spec)
    }
}
