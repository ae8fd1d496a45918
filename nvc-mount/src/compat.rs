//! CUDA forward compatibility (upstream's `cuda_compat_mode`): the image's own newer `libcuda` and friends
//! from `<cudart>/compat`, used when they are newer than the host's driver.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::Error;
use crate::inroot::InRoot;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::OFlag;

/// What to do with the image's CUDA compat libraries (`--cuda-compat-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
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
    let root = InRoot::new(rootfs).map_err(crate::apply::fail("open", rootfs))?;
    let Some(dir) = root.resolve(&cudart.join("compat"))? else {
        return Ok(Vec::new());
    };
    let too_many = |dir: PathBuf, what: &str| Error::Apply {
        op: "list CUDA compat directory",
        path: dir,
        error: std::io::Error::other(format!("{what}: refused (a hostile or broken image)")),
    };
    let mut names: Vec<String> = match list_in_root(&root, &dir) {
        Ok(names) => names
            .into_iter()
            .filter(|n| n.starts_with("lib") && n.contains(".so."))
            .collect(),
        // Gone, or not a directory (any more): no compat libraries, as upstream.
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(Vec::new()),
        Err(Errno::E2BIG) => {
            return Err(too_many(dir, &format!("more than {LIST_LIMIT} entries")));
        }
        Err(e) => {
            return Err(Error::Apply {
                op: "list CUDA compat directory",
                path: dir,
                error: std::io::Error::from_raw_os_error(e as i32),
            });
        }
    };
    // Each name costs a resolution of up to 40 links.
    if names.len() > LIBRARY_LIMIT {
        return Err(too_many(
            dir,
            &format!("more than {LIBRARY_LIMIT} libraries"),
        ));
    }
    names.sort();
    let mut libs: Vec<PathBuf> = Vec::new();
    for name in names {
        let Some(path) = root.resolve(&dir.join(&name))? else {
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

/// The most entries of the image's compat directory listed (a CUDA image has about ten).
const LIST_LIMIT: usize = 1 << 16;
/// The most compat library names resolved.
const LIBRARY_LIMIT: usize = 1024;

/// The UTF-8 names (at most [`LIST_LIMIT`] entries, else `E2BIG`) in directory `dir` of the
/// image, opened in it again ([`InRoot::open`]) so that a link swapped in after the
/// resolution cannot make nvc list a host directory.
fn list_in_root(root: &InRoot, dir: &Path) -> Result<Vec<String>, Errno> {
    let fd = root.open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NONBLOCK,
    )?;
    let mut listing = Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for (i, entry) in listing.iter().enumerate() {
        if i >= LIST_LIMIT {
            return Err(Errno::E2BIG);
        }
        if let Ok(name) = entry?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
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
    fn a_compat_fifo_or_a_link_to_a_host_directory_lists_nothing_of_the_host() {
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("libcuda.so.999.1"), b"").unwrap();
        std::fs::create_dir_all(root.path().join("usr/local")).unwrap();
        // The image's cuda/compat is an absolute link to a host directory holding a newer
        // libcuda: resolved inside the image, where that directory does not exist.
        std::fs::create_dir_all(root.path().join("usr/local/cuda")).unwrap();
        symlink(host.path(), root.path().join("usr/local/cuda/compat")).unwrap();
        let cuda = Path::new("/usr/local/cuda");
        assert!(
            compat_libraries(root.path(), cuda, "550.54.14")
                .unwrap()
                .is_empty()
        );
        // A FIFO where the directory should be: no hang, nothing listed.
        std::fs::remove_file(root.path().join("usr/local/cuda/compat")).unwrap();
        nix::unistd::mkfifo(
            &root.path().join("usr/local/cuda/compat"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        assert!(
            compat_libraries(root.path(), cuda, "550.54.14")
                .unwrap()
                .is_empty()
        );
    }

    /// Thousands of compat names, each a chain of 39 links: each name costs a 40-link
    /// resolution, so the count is bounded and the configure refused at once.
    #[test]
    fn a_compat_directory_of_link_chains_is_refused_at_once() {
        let root = tempfile::tempdir().unwrap();
        let compat = root.path().join("usr/local/cuda/compat");
        std::fs::create_dir_all(&compat).unwrap();
        for hop in 0..39 {
            symlink(format!("l{}", hop + 1), compat.join(format!("l{hop}"))).unwrap();
        }
        std::fs::write(compat.join("l39"), b"").unwrap();
        for i in 0..=LIBRARY_LIMIT {
            symlink("l0", compat.join(format!("libcuda.so.999.{i}"))).unwrap();
        }
        let start = std::time::Instant::now();
        let err =
            compat_libraries(root.path(), Path::new("/usr/local/cuda"), "550.54.14").unwrap_err();
        let why = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(
            why.as_deref(),
            Some("more than 1024 libraries: refused (a hostile or broken image)"),
            "{err}"
        );
        assert!(start.elapsed() < std::time::Duration::from_millis(200));
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
