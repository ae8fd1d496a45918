//! glibc's `ldconfig` choosing among one directory's files (its `search_dir`), as pure
//! functions: which names it looks at, when a link counts as a link, and which file of a
//! SONAME it lists. Proven against glibc 2.36, 2.41 and 2.43 by the oracle test
//! (`nvc-mount/tests/builtin_ldconfig.rs`).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use nvc_ldcache::Flags;

use super::order::libcmp;

/// What a directory name is to `ldconfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Name {
    /// A library's name (`lib*.so*`, `ld-*.so*`): read.
    Library,
    /// Not looked at.
    Skipped,
    /// A name whose treatment differs between glibc versions (`ld.so.*` and `ld64.so.*`,
    /// DSO names since 2.35) or that `ldconfig` descends into as a hwcap subdirectory when it
    /// is a directory or a link (`glibc-hwcaps`, and 2.36's `tls`, `x86_64`, `haswell`, ...):
    /// nvc is unsure.
    Unsure,
}

/// What `ldconfig` makes of the directory entry `name`, given the platform's hwcap
/// subdirectory names and whether the entry is a regular file (not a link or a directory).
pub(super) fn classify(name: &[u8], regular: bool, hwcap_dirs: &[&str]) -> Name {
    if name.starts_with(b"ld.so.") || name.starts_with(b"ld64.so.") {
        return Name::Unsure;
    }
    let dso = (name.starts_with(b"lib") || name.starts_with(b"ld-"))
        && name.windows(3).any(|w| w == b".so");
    if !dso {
        let hwcap = hwcap_dirs.iter().any(|h| h.as_bytes() == name);
        return match hwcap && !regular {
            true => Name::Unsure,
            false => Name::Skipped,
        };
    }
    if is_prelink_temporary(name) {
        return Name::Skipped;
    }
    Name::Library
}

/// The temporary files of the `prelink` program (`*.#prelink#`, `*.#prelink#.XXXXXX`),
/// which `ldconfig` never reads.
fn is_prelink_temporary(name: &[u8]) -> bool {
    const MARK: &[u8] = b".#prelink#";
    name.ends_with(MARK)
        || name
            .len()
            .checked_sub(MARK.len() + 7)
            .and_then(|at| name.get(at..at + MARK.len() + 1))
            .is_some_and(|s| s.strip_suffix(b".") == Some(MARK))
}

/// Whether a link named `name` to a library with `soname` stays a link for `ldconfig`: its
/// name is the SONAME, or it is the development link `NAME.so` of a SONAME starting with it.
/// Any other link is weighed as a file of that SONAME.
pub(super) fn stays_link(name: &[u8], soname: &[u8]) -> bool {
    name == soname || (name.ends_with(b".so") && soname.starts_with(name))
}

/// A library file (or link) of one directory as `ldconfig` read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate {
    /// The directory entry's name.
    pub(super) name: OsString,
    /// A link that stays a link ([`stays_link`]).
    pub(super) is_link: bool,
    /// Its SONAME: `DT_SONAME`, else its name; a link's own name.
    pub(super) soname: Vec<u8>,
    /// Its cache flags.
    pub(super) flags: Flags,
}

/// The file `ldconfig` lists for each SONAME of a directory, sorted by SONAME: a file before a
/// link, else the greater name in `_dl_cache_libcmp` order (`libfoo.so.1.10` over
/// `libfoo.so.1.9`). The choice does not depend on the order the directory lists them in.
///
/// # Errors
///
/// Two files of one SONAME with different flags (glibc keeps the first one's flags, or
/// warns, depending on which it read first and its version): why.
pub(super) fn choose(candidates: Vec<Candidate>) -> Result<Vec<Candidate>, String> {
    let mut chosen: HashMap<Vec<u8>, Candidate> = HashMap::new();
    for c in candidates {
        let Some(held) = chosen.get_mut(&c.soname) else {
            chosen.insert(c.soname.clone(), c);
            continue;
        };
        if held.flags != c.flags {
            return Err(format!(
                "{} and {} have the SONAME {} but different types",
                held.name.to_string_lossy(),
                c.name.to_string_lossy(),
                String::from_utf8_lossy(&c.soname)
            ));
        }
        let newer = libcmp(held.name.as_bytes(), c.name.as_bytes()) == Ordering::Less;
        if (!c.is_link && held.is_link) || (c.is_link == held.is_link && newer) {
            *held = c;
        }
    }
    let mut chosen: Vec<Candidate> = chosen.into_values().collect();
    chosen.sort_by(|a, b| a.soname.cmp(&b.soname));
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HWCAPS: &[&str] = &["glibc-hwcaps", "tls", "x86_64"];

    fn c(name: &str, is_link: bool, soname: &str) -> Candidate {
        Candidate {
            name: name.into(),
            is_link,
            soname: soname.as_bytes().to_vec(),
            flags: Flags(0x303),
        }
    }

    #[test]
    fn names_ldconfig_reads() {
        assert_eq!(classify(b"libz.so.1", true, HWCAPS), Name::Library);
        assert_eq!(classify(b"ld-linux.so.2", true, HWCAPS), Name::Library);
        assert_eq!(classify(b"libz.a", true, HWCAPS), Name::Skipped);
        assert_eq!(classify(b"zlib.so", true, HWCAPS), Name::Skipped);
        assert_eq!(classify(b"tls", false, HWCAPS), Name::Unsure);
        assert_eq!(classify(b"tls", true, HWCAPS), Name::Skipped);
        assert_eq!(classify(b"glibc-hwcaps", false, HWCAPS), Name::Unsure);
        assert_eq!(classify(b"ld.so.1", true, HWCAPS), Name::Unsure);
        assert_eq!(
            classify(b"libz.so.1.#prelink#", true, HWCAPS),
            Name::Skipped
        );
        assert_eq!(
            classify(b"libz.so.1.#prelink#.a1B2c3", true, HWCAPS),
            Name::Skipped
        );
        assert_eq!(
            classify(b"libz.so.1.#prelink#.toolong", true, HWCAPS),
            Name::Library
        );
    }

    #[test]
    fn links_that_stay_links() {
        assert!(stays_link(b"libz.so.1", b"libz.so.1"));
        assert!(stays_link(b"libz.so", b"libz.so.1"));
        assert!(!stays_link(b"libz.so.1.2", b"libz.so.1"));
        assert!(!stays_link(b"libzz.so", b"libz.so.1"));
    }

    #[test]
    fn a_file_over_a_link_then_the_greater_name() {
        let got = choose(vec![
            c("libfoo.so.1", true, "libfoo.so.1"),
            c("libfoo.so.1.9", false, "libfoo.so.1"),
            c("libfoo.so.1.10", false, "libfoo.so.1"),
            c("libbar.so.2", true, "libbar.so.2"),
        ])
        .unwrap();
        let names: Vec<_> = got.iter().map(|c| c.name.to_str().unwrap()).collect();
        assert_eq!(names, ["libbar.so.2", "libfoo.so.1.10"]);
        // The same whatever order the directory lists them in.
        let got = choose(vec![
            c("libfoo.so.1.10", false, "libfoo.so.1"),
            c("libfoo.so.1.9", false, "libfoo.so.1"),
            c("libfoo.so.1", true, "libfoo.so.1"),
        ])
        .unwrap();
        assert_eq!(got[0].name, "libfoo.so.1.10");
    }

    #[test]
    fn one_soname_two_types_is_unsure() {
        let mut elf = c("libfoo.so.1.2", false, "libfoo.so.1");
        elf.flags = Flags(0x1);
        let err = choose(vec![c("libfoo.so.1.1", false, "libfoo.so.1"), elf]).unwrap_err();
        assert!(err.contains("different types"), "{err}");
    }
}
