//! Minimal container images for configure tests.

use std::fs;
use std::io;
use std::path::Path;

/// Lays out a minimal Debian-like image at `root`: `etc/debian_version` (so the driver's
/// libraries go to the multiarch directories), an empty `etc/ld.so.conf`, the directories
/// `dirs`, and, with `ldconfig`, the host's glibc `ldconfig` (statically linked on Debian)
/// at `sbin/ldconfig` for the sandboxed ldconfig step.
///
/// # Errors
///
/// The first directory, file or copy that fails.
pub fn debian_image(root: &Path, dirs: &[&str], ldconfig: bool) -> io::Result<()> {
    for dir in ["etc"].iter().chain(dirs) {
        fs::create_dir_all(root.join(dir))?;
    }
    fs::write(root.join("etc/debian_version"), "12\n")?;
    fs::write(root.join("etc/ld.so.conf"), "")?;
    if ldconfig {
        fs::create_dir_all(root.join("sbin"))?;
        fs::copy("/sbin/ldconfig", root.join("sbin/ldconfig"))?;
    }
    Ok(())
}

/// Adds a CUDA forward-compatibility `libcuda` of driver `version` (`999.1`) to the image at
/// `root`: `usr/local/cuda/compat/libcuda.so.<version>`, an x86-64 ELF shared object whose
/// SONAME is `libcuda.so.1`, as NVIDIA's `cuda-compat` packages install it. Returns its
/// container path.
///
/// # Errors
///
/// The directory or file that cannot be written.
pub fn add_cuda_compat(root: &Path, version: &str) -> io::Result<std::path::PathBuf> {
    use nvc_ldcache::elf::{Class, SharedObject, write_shared_object};
    let dir = Path::new("usr/local/cuda/compat");
    fs::create_dir_all(root.join(dir))?;
    let name = dir.join(format!("libcuda.so.{version}"));
    let so = SharedObject::x86(Class::Elf64, b"libcuda.so.1");
    fs::write(root.join(&name), write_shared_object(&so))?;
    Ok(Path::new("/").join(name))
}

/// The libraries a loader would find for `soname` in the image at `root`, in the order its
/// `etc/ld.so.cache` lists them (the loader takes the first), as glibc's own
/// `ldconfig -p -C` reads the cache — glibc, not nvc, is the reader.
///
/// # Errors
///
/// `ldconfig` cannot run or fails.
pub fn cached_paths(root: &Path, soname: &str) -> io::Result<Vec<String>> {
    let ldconfig = crate::host::system_ldconfig()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no glibc ldconfig"))?;
    let out = std::process::Command::new(ldconfig)
        .arg("-p")
        .arg("-C")
        .arg(root.join("etc/ld.so.cache"))
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ldconfig -p: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let prefix = format!("{soname} (");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with(&prefix))
        .filter_map(|l| l.split_once(" => ").map(|(_, p)| p.trim().to_owned()))
        .collect())
}
