//! Replacing a file atomically (CDI specs, bundle configs).

use std::io::Write;
use std::path::Path;

use crate::Error;

/// Writes `bytes` to a temporary file beside `path` (created exclusively), syncs it and
/// renames it over `path`: a reader sees the old content or the new, never part of it. A
/// file replaced keeps its mode and owner (a bundle's `config.json` may be private to its
/// runtime's user). On error the temporary file is removed and `path` is untouched.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::input(format!("{}: not a file name", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let io = |what: &str, p: &Path| {
        let what = format!("cannot {what} {}", p.display());
        move |e: std::io::Error| Error::io(what, e)
    };
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        if let Ok(old) = std::fs::metadata(path) {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let new = f.metadata().map_err(io("stat", &tmp))?;
            if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
                std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid()))
                    .map_err(io("set the owner of", &tmp))?;
            }
            let mode = std::fs::Permissions::from_mode(old.mode() & 0o7777);
            f.set_permissions(mode)
                .map_err(io("set the mode of", &tmp))?;
        }
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("rename onto", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
