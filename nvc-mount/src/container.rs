//! What nvc needs to know about the container: where its libraries, binaries and ldconfig
//! live, who owns it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nvc_driver::resolve_in_root;

use crate::Error;

/// Where things go inside the container (upstream's `copy_config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDirs {
    /// Binaries (`/usr/bin`).
    pub bins: PathBuf,
    /// 64-bit libraries: `/usr/lib/x86_64-linux-gnu` on Debian-like images, else `/usr/lib64`.
    pub libs: PathBuf,
    /// 32-bit libraries: `/usr/lib/i386-linux-gnu`, or `/usr/lib32`, or `/usr/lib` when it
    /// exists and is not the 64-bit directory.
    pub libs32: PathBuf,
    /// The CUDA runtime directory (`/usr/local/cuda`), for forward compatibility.
    pub cudart: PathBuf,
    /// The container's ldconfig: `/sbin/ldconfig.real` when the image has it (Debian's
    /// `/sbin/ldconfig` is a shell wrapper), else `/sbin/ldconfig`.
    pub ldconfig: PathBuf,
}

impl ContainerDirs {
    /// Detects the directories of the image at `rootfs` (a host path), resolving every probe
    /// inside it so that the image's links cannot point the detection at the host.
    ///
    /// # Errors
    ///
    /// A resolution error other than "not found" (permission, link loop), naming the path.
    pub fn detect(rootfs: &Path) -> Result<Self, Error> {
        let exists = |p: &str| -> Result<Option<PathBuf>, Error> {
            Ok(resolve_in_root(rootfs, Path::new(p))?)
        };
        let debian = exists("/etc/debian_version")?.is_some();
        let (libs, libs32) = if debian {
            (
                PathBuf::from("/usr/lib/x86_64-linux-gnu"),
                PathBuf::from("/usr/lib/i386-linux-gnu"),
            )
        } else {
            let libs = PathBuf::from("/usr/lib64");
            let libs32 = if exists("/usr/lib32")?.is_some() {
                PathBuf::from("/usr/lib32")
            } else {
                match (exists("/usr/lib")?, exists("/usr/lib64")?) {
                    (Some(lib), lib64) if Some(&lib) != lib64.as_ref() => PathBuf::from("/usr/lib"),
                    _ => PathBuf::from("/usr/lib32"),
                }
            };
            (libs, libs32)
        };
        let ldconfig = if exists("/sbin/ldconfig.real")?.is_some() {
            "/sbin/ldconfig.real"
        } else {
            "/sbin/ldconfig"
        };
        Ok(ContainerDirs {
            bins: "/usr/bin".into(),
            libs,
            libs32,
            cudart: "/usr/local/cuda".into(),
            ldconfig: ldconfig.into(),
        })
    }
}

/// The container a runtime hands nvc: its init process and root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The container's init process (supervised mode).
    pub pid: u32,
    /// The root filesystem, a host path (before `pivot_root`).
    pub rootfs: PathBuf,
    /// Owner of the container (of `/proc/<pid>`), who owns created mountpoints.
    pub uid: u32,
    /// Group of the owner.
    pub gid: u32,
    /// Detected directories.
    pub dirs: ContainerDirs,
}

impl Container {
    /// Reads the facts of container process `pid` with root filesystem `rootfs`.
    ///
    /// # Errors
    ///
    /// [`Error::BadRootfs`] for a relative or `/` rootfs, [`Error::NoProcess`] when
    /// `/proc/<pid>` is gone, or a detection error.
    pub fn from_pid(pid: u32, rootfs: &Path) -> Result<Self, Error> {
        if !rootfs.is_absolute() || rootfs == Path::new("/") {
            return Err(Error::BadRootfs {
                rootfs: rootfs.into(),
            });
        }
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let meta = std::fs::metadata(&proc).map_err(|source| Error::NoProcess { pid, source })?;
        Ok(Container {
            pid,
            rootfs: rootfs.into(),
            uid: meta.uid(),
            gid: meta.gid(),
            dirs: ContainerDirs::detect(rootfs)?,
        })
    }
}
