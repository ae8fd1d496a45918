//! Upstream's option strings (upstream's `nvc.h`): space-separated tokens, each setting bits.

use crate::Failure;

/// The longest option string accepted, NUL included (`NVC_ARG_MAX`).
pub const NVC_ARG_MAX: usize = 256;

/// Library options (`nvc_init`).
pub(crate) const LIBRARY: &[(&str, i32)] =
    &[("load-kmods", 1), ("no-create-imex-channels", 1 << 1)];
pub(crate) const LOAD_KMODS: i32 = 1;
pub(crate) const NO_CREATE_IMEX_CHANNELS: i32 = 1 << 1;

/// Driver options (`nvc_driver_info_new`).
pub(crate) const DRIVER: &[(&str, i32)] = &[
    ("no-glvnd", NO_GLVND),
    ("no-uvm", NO_UVM),
    ("no-modeset", NO_MODESET),
    ("no-mps", NO_MPS),
    ("no-persistenced", NO_PERSISTENCED),
    ("no-fabricmanager", NO_FABRICMANAGER),
    ("no-gsp-firmware", NO_GSP_FIRMWARE),
];
pub(crate) const NO_GLVND: i32 = 1;
pub(crate) const NO_UVM: i32 = 1 << 1;
pub(crate) const NO_MODESET: i32 = 1 << 2;
pub(crate) const NO_MPS: i32 = 1 << 3;
pub(crate) const NO_PERSISTENCED: i32 = 1 << 4;
pub(crate) const NO_FABRICMANAGER: i32 = 1 << 5;
pub(crate) const NO_GSP_FIRMWARE: i32 = 1 << 6;

/// Container flags (`nvc_container.flags`), upstream's bit values: its CLI tests them.
pub(crate) mod container {
    pub(crate) const SUPERVISED: i32 = 1;
    pub(crate) const STANDALONE: i32 = 1 << 1;
    pub(crate) const NO_CGROUPS: i32 = 1 << 2;
    pub(crate) const NO_DEVBIND: i32 = 1 << 3;
    pub(crate) const UTILITY_LIBS: i32 = 1 << 5;
    pub(crate) const COMPUTE_LIBS: i32 = 1 << 6;
    pub(crate) const NGX_LIBS: i32 = 1 << 7;
    pub(crate) const VIDEO_LIBS: i32 = 1 << 8;
    pub(crate) const GRAPHICS_LIBS: i32 = 1 << 9;
    pub(crate) const DISPLAY: i32 = 1 << 10;
    pub(crate) const UTILITY_BINS: i32 = 1 << 11;
    pub(crate) const COMPUTE_BINS: i32 = 1 << 12;
    pub(crate) const COMPAT32: i32 = 1 << 13;
    pub(crate) const COMPAT_DISABLED: i32 = 1 << 14;
    pub(crate) const COMPAT_LDCONFIG: i32 = 1 << 15;
    pub(crate) const COMPAT_MOUNT: i32 = 1 << 16;
}

/// Container options (`nvc_container_new`).
pub(crate) const CONTAINER: &[(&str, i32)] = {
    use container::*;
    &[
        ("supervised", SUPERVISED),
        ("standalone", STANDALONE),
        ("no-cgroups", NO_CGROUPS),
        ("no-devbind", NO_DEVBIND),
        ("utility", UTILITY_BINS | UTILITY_LIBS),
        ("compute", COMPUTE_BINS | COMPUTE_LIBS),
        ("video", VIDEO_LIBS | COMPUTE_LIBS),
        ("graphics", GRAPHICS_LIBS),
        ("display", DISPLAY | GRAPHICS_LIBS),
        ("ngx", NGX_LIBS),
        ("compat32", COMPAT32),
        ("cuda-compat-mode=disabled", COMPAT_DISABLED),
        ("cuda-compat-mode=mount", COMPAT_MOUNT),
        ("cuda-compat-mode=ldconfig", COMPAT_LDCONFIG),
    ]
};

/// The container options when the caller gives none.
pub(crate) const DEFAULT_CONTAINER: &[u8] = b"standalone no-cgroups no-devbind utility";

/// Parses an option string against `table`, as upstream: empty tokens skipped, an unknown
/// one is `invalid option: TOKEN`, a string of `NVC_ARG_MAX` bytes or more is `too many
/// options`.
pub(crate) fn parse(s: &[u8], table: &[(&str, i32)]) -> Result<i32, Failure> {
    if s.len() >= NVC_ARG_MAX {
        return Err(Failure::new("too many options"));
    }
    let mut flags = 0;
    for token in s.split(|&b| b == b' ').filter(|t| !t.is_empty()) {
        match table.iter().find(|(name, _)| name.as_bytes() == token) {
            Some((_, bits)) => flags |= bits,
            None => {
                return Err(Failure::new(format!(
                    "invalid option: {}",
                    String::from_utf8_lossy(token)
                )));
            }
        }
    }
    Ok(flags)
}

/// Checks and completes the container flags as upstream's `nvc_container_new`: exactly one
/// mode, and one CUDA compat mode (`mount` when none, `disabled` overriding the others).
pub(crate) fn container_flags(mut flags: i32) -> Result<i32, Failure> {
    use container::*;
    if (flags & SUPERVISED != 0) == (flags & STANDALONE != 0) {
        return Err(Failure::new("invalid mode of operation"));
    }
    if flags & COMPAT_DISABLED != 0 {
        flags &= !(COMPAT_MOUNT | COMPAT_LDCONFIG);
    } else if flags & (COMPAT_MOUNT | COMPAT_LDCONFIG) == 0 {
        flags |= COMPAT_MOUNT;
    } else if flags & COMPAT_MOUNT != 0 && flags & COMPAT_LDCONFIG != 0 {
        return Err(Failure::new(
            "only one cuda-compat-mode can be specified at a time",
        ));
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_as_upstream() {
        assert_eq!(parse(b" load-kmods  ", LIBRARY).ok(), Some(LOAD_KMODS));
        assert_eq!(
            parse(b"no-uvm bogus", DRIVER).err().map(|e| e.message),
            Some("invalid option: bogus".to_owned())
        );
        let long = vec![b'a'; NVC_ARG_MAX];
        assert_eq!(
            parse(&long, DRIVER).err().map(|e| e.message),
            Some("too many options".to_owned())
        );
        let flags = parse(DEFAULT_CONTAINER, CONTAINER).and_then(container_flags);
        use container::*;
        assert_eq!(
            flags.ok(),
            Some(STANDALONE | NO_CGROUPS | NO_DEVBIND | UTILITY_BINS | UTILITY_LIBS | COMPAT_MOUNT)
        );
        let both = parse(b"supervised standalone", CONTAINER).and_then(container_flags);
        assert_eq!(
            both.err().map(|e| e.message),
            Some("invalid mode of operation".into())
        );
        let two = parse(
            b"supervised cuda-compat-mode=mount cuda-compat-mode=ldconfig",
            CONTAINER,
        )
        .and_then(container_flags);
        assert_eq!(
            two.err().map(|e| e.message),
            Some("only one cuda-compat-mode can be specified at a time".into())
        );
        let off = parse(
            b"supervised cuda-compat-mode=disabled cuda-compat-mode=ldconfig",
            CONTAINER,
        )
        .and_then(container_flags);
        assert_eq!(off.ok(), Some(SUPERVISED | COMPAT_DISABLED));
    }
}
