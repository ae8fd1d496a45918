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
