//! Whether the built-in update stands for the image's own `ldconfig`
//! ([`crate::Ldconfig::Auto`]): it does where that program's glibc is one the oracle test
//! proves the update equal to ([`PROVEN`]). Which glibc that is, the image's cache says where
//! glibc wrote it (the generator it records since 2.33); where the cache does not say — the
//! image has none, or nvc built it — the program itself says: glibc's `ldconfig` carries the
//! generator string it writes into every cache (`ldconfig (Debian GLIBC 2.36-9+deb12u14)
//! stable release version 2.36`) as a literal.

use std::io::Read;
use std::path::Path;

use nvc_ldcache::LdCache;

use super::image;
use crate::apply::Root;

/// The glibc versions whose `ldconfig` the update is proven to equal (the oracle test's:
/// Debian's bookworm, trixie and sid).
const PROVEN: std::ops::RangeInclusive<(u32, u32)> = (2, 36)..=(2, 43);

/// The most bytes of the program read (glibc's static `ldconfig` is about 1 MiB).
const PROGRAM_LIMIT: u64 = 16 << 20;
/// The longest generator string taken (glibc's are under 100 bytes).
const GENERATOR_LIMIT: usize = 256;
/// The most `release version` strings looked at in one program.
const HITS_LIMIT: usize = 64;

/// Whether the update stands for the image's own `program`: the program is there (a
/// regular file, links followed inside the root: where it is not, nothing runs and nothing
/// changes) and its glibc is one of [`PROVEN`] — as the generator of the image's `cache`
/// names it (a cache without one, as glibc before 2.33 writes, names none), or, where the
/// image has no cache (`None`) or nvc built it, as the program names it
/// ([`program_version`]). An image that lies
/// here gets the built-in update, which proves its own premises, instead of its own program.
/// Call inside the container's mount namespace ([`crate::ns`]).
pub(super) fn stands_for(root: &Root, program: &Path, cache: Option<&LdCache<'_>>) -> bool {
    let Ok(file) = image::open_regular(root, program) else {
        return false;
    };
    let version = match cache.map(LdCache::generator) {
        // No cache (or none that parses), or one nvc built: the program says.
        None => program_version(file),
        Some(Some(generator)) if generator == super::rebuild::GENERATOR => program_version(file),
        // glibc's: it says (an older glibc's, without a generator, says none).
        Some(generator) => generator.and_then(glibc_version),
    };
    version.is_some_and(|version| PROVEN.contains(&version))
}

/// The glibc version of the `ldconfig` whose file is `file` ([`generator_version`]), read up
/// to [`PROGRAM_LIMIT`] (a larger file names none, and is not read).
fn program_version(file: std::fs::File) -> Option<(u32, u32)> {
    let size = file.metadata().ok()?.len();
    if size > PROGRAM_LIMIT {
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).ok()?);
    file.take(PROGRAM_LIMIT + 1).read_to_end(&mut bytes).ok()?;
    if bytes.len() as u64 > PROGRAM_LIMIT {
        return None;
    }
    generator_version(&bytes)
}

/// The glibc version a program's generator strings name: its NUL-terminated strings that
/// start with `ldconfig ` and hold ` release version ` ([`glibc_version`]). `None` where
/// there is none, where two name different versions, or past [`HITS_LIMIT`] of them.
pub(super) fn generator_version(program: &[u8]) -> Option<(u32, u32)> {
    const TAG: &[u8] = b" release version ";
    let mut found = None;
    for (n, at) in memchr::memmem::find_iter(program, TAG).enumerate() {
        if n == HITS_LIMIT {
            return None;
        }
        let from = at.saturating_sub(GENERATOR_LIMIT);
        let to = program.len().min(at + GENERATOR_LIMIT);
        // A string of the program: from the NUL before the tag to the one after it.
        let (Some(start), Some(end)) = (
            program.get(from..at).and_then(|b| memchr::memrchr(0, b)),
            program.get(at..to).and_then(|b| memchr::memchr(0, b)),
        ) else {
            continue;
        };
        let Some(string) = program.get(from + start + 1..at + end) else {
            continue;
        };
        if !string.starts_with(b"ldconfig ") {
            continue;
        }
        match (found, glibc_version(string)) {
            (_, None) => {}
            (None, version) => found = version,
            (Some(known), Some(version)) if known != version => return None,
            _ => {}
        }
    }
    found
}

/// The glibc version a cache's generator names after its last `release version `; a
/// development snapshot (`2.43.9000`) is the next version's.
fn glibc_version(generator: &[u8]) -> Option<(u32, u32)> {
    const TAG: &[u8] = b"release version ";
    let at = memchr::memmem::rfind(generator, TAG)?;
    let rest = std::str::from_utf8(generator.get(at + TAG.len()..)?).ok()?;
    let mut numbers = rest.split(|c: char| !c.is_ascii_digit());
    let major: u32 = numbers.next()?.parse().ok()?;
    let minor: u32 = numbers.next()?.parse().ok()?;
    let development = numbers
        .next()
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n >= 9000);
    Some((major, minor + u32::from(development)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_names_the_glibc_version() {
        let version = |g: &str| glibc_version(g.as_bytes());
        let debian = "ldconfig (Debian GLIBC 2.36-9+deb12u13) stable release version 2.36";
        assert_eq!(version(debian), Some((2, 36)));
        assert_eq!(
            version("ldconfig (GNU libc) development release version 2.43.9000"),
            Some((2, 44))
        );
        assert_eq!(version("stable release version 2.41.1"), Some((2, 41)));
        assert_eq!(version("nvc-mount 0.1.0 built-in ldconfig"), None);
        assert_eq!(version("release version 2"), None);
        assert!(!PROVEN.contains(&(2, 35)));
        assert!(PROVEN.contains(&(2, 43)));
        assert!(!PROVEN.contains(&(2, 44)));
    }

    /// A program's strings, NUL-terminated, as its `.rodata` holds them.
    fn program(strings: &[&str]) -> Vec<u8> {
        let mut bytes = b"\x7fELF\x02\x01\x01\0".to_vec();
        for s in strings {
            bytes.extend_from_slice(s.as_bytes());
            bytes.push(0);
        }
        bytes
    }

    #[test]
    fn the_program_names_its_glibc_in_its_generator_string() {
        let generator = "ldconfig (Debian GLIBC 2.41-12+deb13u5) stable release version 2.41";
        let usage = "Usage: ldconfig [OPTION...]";
        // Twice (merged or not by the linker), among other strings.
        let bytes = program(&[usage, generator, "%s%s", generator]);
        assert_eq!(generator_version(&bytes), Some((2, 41)));
        // Only strings that start with `ldconfig `: a library's banner is not one.
        let libc = "GNU C Library (Debian GLIBC 2.36-9) stable release version 2.36.";
        assert_eq!(generator_version(&program(&[libc])), None);
        assert_eq!(
            generator_version(&program(&[libc, generator])),
            Some((2, 41))
        );
        // Two versions: none is sure.
        let other = "ldconfig (GNU libc) stable release version 2.36";
        assert_eq!(generator_version(&program(&[generator, other])), None);
        // Unterminated, too long, or the file's very start: none.
        assert_eq!(generator_version(generator.as_bytes()), None);
        let long = format!("ldconfig ({}) stable release version 2.41", "x".repeat(300));
        assert_eq!(generator_version(&program(&[&long])), None);
        // Many tags: bounded, and then none.
        let many = vec![" release version 2.41"; HITS_LIMIT + 1];
        let mut bytes = program(&many);
        bytes.extend_from_slice(program(&[generator]).as_slice());
        assert_eq!(generator_version(&bytes), None);
    }

    proptest::proptest! {
        /// Whatever bytes an image's program holds, the scan ends (no panic), and a generator
        /// string among bytes that name no other finds its version.
        #[test]
        fn any_program_is_scanned_without_panic(
            before in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            after in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        ) {
            let _ = generator_version(&before);
            let generator = b"\0ldconfig (GNU libc) stable release version 2.40\0";
            let bytes = [&before[..], generator, &after[..]].concat();
            let tag = b" release version ";
            let others = |b: &[u8]| b.windows(tag.len()).any(|w| w == tag);
            if !others(&before) && !others(&after) {
                proptest::prop_assert_eq!(generator_version(&bytes), Some((2, 40)));
            }
        }
    }
}
