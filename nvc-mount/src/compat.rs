//! CUDA forward compatibility (upstream §9.1): the image's own newer `libcuda` and friends
//! from `<cudart>/compat`, used when they are newer than the host's driver.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nvc_driver::resolve_in_root;

use crate::Error;

/// What to do with the image's CUDA compat libraries (`--cuda-compat-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompatMode {
    /// Bind each kept library over its name in the container's library directory, so
    /// `ldconfig` points the SONAME at it (upstream's default).
    #[default]
    Mount,
    /// Mount nothing; add the compat directory to the container's `ldconfig` run.
    Ldconfig,
    /// Ignore them (`--no-cntlibs`).
    Disabled,
}

impl FromStr for CompatMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mount" => Ok(CompatMode::Mount),
            "ldconfig" => Ok(CompatMode::Ldconfig),
            "disabled" => Ok(CompatMode::Disabled),
            other => Err(format!(
                "invalid cuda-compat-mode {other:?} (expected mount, ldconfig or disabled)"
            )),
        }
    }
}

impl fmt::Display for CompatMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompatMode::Mount => "mount",
            CompatMode::Ldconfig => "ldconfig",
            CompatMode::Disabled => "disabled",
        })
    }
}

/// The leading number of the version after `.so.` (`libcuda.so.560.35.03` → 560).
fn major_of(name: &str) -> Option<u32> {
    let version = name.split_once(".so.")?.1;
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The image's compat libraries to use with a host driver of version `nvrm_version`:
/// `<cudart>/compat/lib*.so.*` resolved inside `rootfs` (so an absolute or `..` link cannot
/// lead out of it), de-duplicated, as container paths, keeping only those whose major
/// version is greater than the driver's.
///
/// Upstream keeps lower majors too in `mount` mode, which mounts an older `libcuda` over a
/// newer host driver (nvidia-container-runtime #180); and compares versions as strings. Here
/// both modes keep only newer libraries, compared as numbers.
///
/// # Errors
///
/// A resolution error inside the rootfs other than "not found".
pub fn compat_libraries(
    rootfs: &Path,
    cudart: &Path,
    nvrm_version: &str,
) -> Result<Vec<PathBuf>, Error> {
    let Some(host_major) = major_of(&format!(".so.{nvrm_version}")) else {
        return Ok(Vec::new());
    };
    let Some(dir) = resolve_in_root(rootfs, &cudart.join("compat"))? else {
        return Ok(Vec::new());
    };
    let Ok(entries) = std::fs::read_dir(rootfs.join(dir.strip_prefix("/").unwrap_or(&dir))) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("lib") && n.contains(".so."))
        .collect();
    names.sort();
    let mut libs: Vec<PathBuf> = Vec::new();
    for name in names {
        let Some(path) = resolve_in_root(rootfs, &dir.join(&name))? else {
            continue;
        };
        let resolved = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if major_of(resolved).is_some_and(|m| m > host_major) && !libs.contains(&path) {
            libs.push(path);
        }
    }
    Ok(libs)
}

/// The one directory holding `libs`, for `ldconfig` mode (`None` when there are none).
///
/// # Errors
///
/// A message naming two of the directories when the libraries live in several (upstream's
/// `ldconfig` mode can add only one directory).
pub fn compat_dir(libs: &[PathBuf]) -> Result<Option<PathBuf>, String> {
    let mut dirs = libs.iter().filter_map(|l| l.parent());
    let Some(first) = dirs.next() else {
        return Ok(None);
    };
    if let Some(other) = dirs.find(|d| *d != first) {
        return Err(format!(
            "CUDA compat libraries in more than one directory ({} and {})",
            first.display(),
            other.display()
        ));
    }
    Ok(Some(first.to_path_buf()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn keeps_only_newer_majors_resolved_inside_the_image() {
        let root = tempfile::tempdir().unwrap();
        let compat = root.path().join("usr/local/cuda-12.6/compat");
        std::fs::create_dir_all(&compat).unwrap();
        // /usr/local/cuda is an absolute link, resolved inside the image.
        symlink("/usr/local/cuda-12.6", root.path().join("usr/local/cuda")).unwrap();
        for f in [
            "libcuda.so.560.35.03",
            "libnvidia-ptxjitcompiler.so.560.35.03",
            "libcuda.so.550.54.14",
            "libcuda.so.1000.1",
            "notalib.txt",
        ] {
            std::fs::write(compat.join(f), b"").unwrap();
        }
        symlink("libcuda.so.560.35.03", compat.join("libcuda.so.1")).unwrap();
        let libs =
            compat_libraries(root.path(), Path::new("/usr/local/cuda"), "550.54.14").unwrap();
        let names: Vec<_> = libs.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            names,
            [
                // Glob order; libcuda.so.1 resolved to its target, counted once.
                "/usr/local/cuda-12.6/compat/libcuda.so.560.35.03",
                "/usr/local/cuda-12.6/compat/libcuda.so.1000.1",
                "/usr/local/cuda-12.6/compat/libnvidia-ptxjitcompiler.so.560.35.03",
            ]
        );
        assert_eq!(
            compat_dir(&libs).unwrap().unwrap(),
            Path::new("/usr/local/cuda-12.6/compat")
        );
        // A newer host driver: nothing to use.
        assert!(
            compat_libraries(root.path(), Path::new("/usr/local/cuda"), "2000.1")
                .unwrap()
                .is_empty()
        );
        // No CUDA in the image.
        assert!(
            compat_libraries(root.path(), Path::new("/opt/none"), "550.54.14")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn modes_parse_and_name_bad_values() {
        assert_eq!("ldconfig".parse::<CompatMode>(), Ok(CompatMode::Ldconfig));
        assert!(
            "mounted"
                .parse::<CompatMode>()
                .unwrap_err()
                .contains("\"mounted\"")
        );
        let two = [
            PathBuf::from("/a/libcuda.so.600"),
            PathBuf::from("/b/libcuda.so.600"),
        ];
        assert!(compat_dir(&two).unwrap_err().contains("/a and /b"));
    }
}
