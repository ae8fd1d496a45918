//! Each layout, each malformed-input error, and the write → parse round trip.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod common;

use common::exercise;
use nvc_ldcache::{
    Arch, CacheEntry, Error, Flags, Format, LdCache, NEW_MAGIC, OLD_MAGIC, PrefixSet, write_cache,
};
use proptest::prelude::*;
use std::path::Path;

fn sample() -> Vec<CacheEntry> {
    vec![
        CacheEntry::new(
            "libnvidia-ml.so.1",
            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
            Arch::X86_64,
        ),
        CacheEntry::new(
            "libcuda.so.1",
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            Arch::X86_64,
        ),
        CacheEntry::new(
            "libcuda.so.1",
            "/usr/lib/i386-linux-gnu/libcuda.so.1",
            Arch::I386,
        ),
        CacheEntry::new(
            "libcuda.so",
            "/usr/lib/x86_64-linux-gnu/libcuda.so",
            Arch::X86_64,
        ),
        CacheEntry::new("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6", Arch::X86_64),
    ]
}

fn owned(cache: &LdCache<'_>) -> Vec<CacheEntry> {
    cache
        .entries()
        .map(|e| CacheEntry::from(e.unwrap()))
        .collect()
}

#[test]
fn every_layout_parses_to_the_same_entries() {
    for format in [Format::Old, Format::New, Format::Combined] {
        let bytes = write_cache(&sample(), format, Some(b"nvc test"));
        let cache = LdCache::parse(&bytes).unwrap();
        assert_eq!(cache.format(), format);
        assert_eq!(owned(&cache), sample(), "{format:?}");
        let generator = (format != Format::Old).then_some(&b"nvc test"[..]);
        assert_eq!(cache.generator(), generator);
    }
}

#[test]
fn combined_layout_with_odd_count_pads_the_old_table() {
    let mut entries = sample();
    entries.pop();
    assert_eq!(entries.len() % 2, 0);
    entries.pop();
    let bytes = write_cache(&entries, Format::Combined, None);
    // Old header (16) + 4 padded entries (48) = 64, 8-aligned: the new header follows at once.
    assert_eq!(&bytes[64..64 + NEW_MAGIC.len()], NEW_MAGIC);
    assert_eq!(owned(&LdCache::parse(&bytes).unwrap()), entries);
}

#[test]
fn new_header_after_an_unaligned_old_table_is_found() {
    // Three old entries end at 52; the new header is aligned up to 56.
    let entries = &sample()[..3];
    let old = write_cache(entries, Format::Old, None);
    let new = write_cache(entries, Format::New, None);
    let mut bytes = old[..52].to_vec();
    bytes.resize(56, 0);
    // The new table's string offsets are relative to its own header, so it moves as is.
    bytes.extend_from_slice(&new);
    let cache = LdCache::parse(&bytes).unwrap();
    assert_eq!(cache.format(), Format::Combined);
    assert_eq!(owned(&cache), entries);
}

#[test]
fn resolve_keeps_the_last_acceptable_entry() {
    let mut entries = sample();
    entries.push(CacheEntry::new(
        "libcuda.so.1",
        "/opt/other/libcuda.so.1",
        Arch::X86_64,
    ));
    let mut not_elf = CacheEntry::new(
        "libnvidia-ml.so.1",
        "/libc5/libnvidia-ml.so.1",
        Arch::X86_64,
    );
    not_elf.flags = Flags(0x0302);
    entries.push(not_elf);
    let bytes = write_cache(&entries, Format::New, None);
    let cache = LdCache::parse(&bytes).unwrap();
    let set = PrefixSet::new(["libnvidia-ml.so", "libcuda.so", "libnvidia-opencl.so"]);

    let found = cache.resolve(&set, Arch::X86_64).unwrap();
    let paths: Vec<_> = found.iter().map(|e| e.map(|e| e.path())).collect();
    assert_eq!(
        paths,
        [
            Some(Path::new("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1")),
            Some(Path::new("/opt/other/libcuda.so.1")),
            None
        ]
    );
    let found32 = cache.resolve(&set, Arch::I386).unwrap();
    assert_eq!(
        found32[1].unwrap().path(),
        Path::new("/usr/lib/i386-linux-gnu/libcuda.so.1")
    );
    assert!(found32[0].is_none());

    // A selector that refuses /opt keeps the last entry before it (the `libcuda.so` dev link),
    // and is shown each slot's current winner.
    let mut seen_current = Vec::new();
    let picky = cache
        .resolve_with(&set, Arch::X86_64, |slot, current, candidate| {
            seen_current.push((slot, current.map(|c| c.path().to_owned())));
            Ok::<_, Error>(!candidate.path().starts_with("/opt"))
        })
        .unwrap();
    assert_eq!(
        picky[1].unwrap().path(),
        Path::new("/usr/lib/x86_64-linux-gnu/libcuda.so")
    );
    assert!(seen_current.contains(&(1, Some("/usr/lib/x86_64-linux-gnu/libcuda.so.1".into()))));
}

#[test]
fn find_matches_the_exact_soname_and_arch() {
    let bytes = write_cache(&sample(), Format::New, None);
    let cache = LdCache::parse(&bytes).unwrap();
    let e = cache.find(b"libcuda.so.1", Arch::I386).unwrap().unwrap();
    assert_eq!(e.path(), Path::new("/usr/lib/i386-linux-gnu/libcuda.so.1"));
    assert_eq!(
        e.to_string(),
        "libcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1"
    );
    assert!(cache.find(b"libcuda.so", Arch::I386).unwrap().is_none());
    assert!(cache.find(b"libcuda", Arch::X86_64).unwrap().is_none());
}

#[test]
fn empty_and_foreign_input_is_rejected() {
    assert!(matches!(LdCache::parse(b""), Err(Error::Truncated { .. })));
    assert!(matches!(
        LdCache::parse(&OLD_MAGIC[..5]),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        LdCache::parse(b"\x7fELF\x02\x01\x01"),
        Err(Error::BadMagic { .. })
    ));
    let err = LdCache::parse(b"hello world, not a cache").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("not an ld.so.cache: unknown magic"),
        "{err}"
    );
}

#[test]
fn truncated_headers_and_tables_are_rejected() {
    let bytes = write_cache(&sample(), Format::New, None);
    assert!(matches!(
        LdCache::parse(&bytes[..30]),
        Err(Error::Truncated { .. })
    ));
    // Header intact, table cut.
    assert!(
        matches!(LdCache::parse(&bytes[..48 + 24 * 2]), Err(Error::Truncated { what, .. }) if what == "ld.so.cache table")
    );
    let old = write_cache(&sample(), Format::Old, None);
    assert!(matches!(
        LdCache::parse(&old[..14]),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        LdCache::parse(&old[..40]),
        Err(Error::Truncated { .. })
    ));
}

#[test]
fn huge_counts_are_truncation_not_overflow_or_allocation() {
    let mut bytes = write_cache(&sample(), Format::New, None);
    bytes[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    let err = LdCache::parse(&bytes).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { .. } | Error::CountOverflow { .. }),
        "{err}"
    );
}

#[test]
fn other_byte_order_is_rejected() {
    let mut bytes = write_cache(&sample(), Format::New, None);
    let other = if cfg!(target_endian = "little") { 3 } else { 2 };
    bytes[28] = other;
    assert!(matches!(LdCache::parse(&bytes), Err(Error::WrongEndian { flags }) if flags == other));
    bytes[28] = 1; // "invalid" as written by an interrupted ldconfig
    assert!(matches!(
        LdCache::parse(&bytes),
        Err(Error::WrongEndian { .. })
    ));
    bytes[28] = 0; // unknown: accepted, as glibc does
    LdCache::parse(&bytes).unwrap();
}

#[test]
fn corrupt_string_offsets_are_errors_for_that_entry() {
    let mut bytes = write_cache(&sample(), Format::New, None);
    let len = bytes.len() as u32;
    // Entry 1's key points past the end.
    bytes[48 + 24 + 4..48 + 24 + 8].copy_from_slice(&(len + 10).to_ne_bytes());
    let cache = LdCache::parse(&bytes).unwrap();
    cache.entry(0).unwrap();
    let err = cache.entry(1).unwrap_err();
    assert!(
        matches!(
            err,
            Error::StringOutOfRange {
                index: 1,
                field: "soname",
                ..
            }
        ),
        "{err}"
    );
    // Resolution refuses the whole cache, as upstream's "corrupted ldcache entry".
    let set = PrefixSet::new(["libcuda.so"]);
    cache.resolve(&set, Arch::X86_64).unwrap_err();
    assert_eq!(cache.entries().filter(Result::is_err).count(), 1);
}

#[test]
fn strings_without_nul_are_errors() {
    let mut bytes = write_cache(&sample()[..1], Format::New, None);
    let last = bytes.len() - 1;
    assert_eq!(bytes[last], 0);
    bytes[last] = b'x';
    let cache = LdCache::parse(&bytes).unwrap();
    assert!(matches!(
        cache.entry(0),
        Err(Error::MissingNul { field: "path", .. })
    ));
}

#[test]
fn malformed_extensions_spare_the_entries() {
    let mut bytes = write_cache(&sample(), Format::New, Some(b"gen"));
    let ext = u32::from_ne_bytes(bytes[32..36].try_into().unwrap()) as usize;
    bytes[ext] ^= 0xff; // break the directory magic
    let cache = LdCache::parse(&bytes).unwrap();
    assert_eq!(owned(&cache), sample());
    assert!(matches!(
        cache.check_extensions(),
        Err(Error::BadExtension { .. })
    ));
    assert_eq!(cache.generator(), None);

    let mut misaligned = write_cache(&sample(), Format::New, Some(b"gen"));
    misaligned[32..36].copy_from_slice(&((ext as u32) + 1).to_ne_bytes());
    let err = LdCache::parse(&misaligned)
        .unwrap()
        .check_extensions()
        .unwrap_err();
    assert!(matches!(err, Error::Misaligned { align: 4, .. }), "{err}");
    let mut beyond = write_cache(&sample(), Format::New, Some(b"gen"));
    beyond[32..36].copy_from_slice(&(u32::MAX - 3).to_ne_bytes());
    let err = LdCache::parse(&beyond)
        .unwrap()
        .check_extensions()
        .unwrap_err();
    assert!(matches!(err, Error::BadExtension { .. }), "{err}");
}

#[test]
fn hwcaps_subdirectories_and_legacy_hwcaps_are_reported() {
    let mut v3 = CacheEntry::new(
        "libfoo.so.1",
        "/usr/lib/glibc-hwcaps/x86-64-v3/libfoo.so.1",
        Arch::X86_64,
    );
    v3.hwcaps_subdir = Some(b"x86-64-v3".to_vec());
    let mut legacy = CacheEntry::new("libbar.so.1", "/usr/lib/tls/libbar.so.1", Arch::X86_64);
    legacy.hwcap = 0x8000_0000_0000_0001;
    legacy.osversion = 0x0003_0200;
    let bytes = write_cache(&[v3, legacy], Format::New, None);
    let cache = LdCache::parse(&bytes).unwrap();
    let v3 = cache.entry(0).unwrap();
    assert_eq!(v3.hwcaps_subdir().unwrap(), "x86-64-v3");
    assert_eq!(
        v3.to_string(),
        "libfoo.so.1 (libc6,x86-64, hwcap: \"x86-64-v3\") => /usr/lib/glibc-hwcaps/x86-64-v3/libfoo.so.1"
    );
    assert_eq!(
        cache.entry(1).unwrap().to_string(),
        "libbar.so.1 (libc6,x86-64, hwcap: 0x8000000000000001) => /usr/lib/tls/libbar.so.1"
    );
}

#[test]
fn errors_name_their_file() {
    let err = LdCache::parse(b"junk")
        .unwrap_err()
        .in_file("/etc/ld.so.cache");
    assert!(
        err.to_string()
            .starts_with("/etc/ld.so.cache: not an ld.so.cache"),
        "{err}"
    );
    let missing = nvc_ldcache::read("/nonexistent/ld.so.cache").unwrap_err();
    assert!(
        matches!(&missing, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    );
    assert_eq!(missing.to_string(), "cannot read /nonexistent/ld.so.cache");
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..=255, 0..24)
}

fn entry(format: Format) -> impl Strategy<Value = CacheEntry> {
    let extended = format != Format::Old;
    (
        name(),
        name(),
        any::<i32>(),
        any::<u32>(),
        any::<u64>(),
        prop::option::of(prop::collection::vec(1u8..=255, 1..12)),
    )
        .prop_map(move |(soname, path, flags, osversion, hwcap, subdir)| {
            // Legacy hwcap values that look like extension references are not ours to write.
            let hwcap = hwcap & !(1 << 62);
            CacheEntry {
                soname,
                path,
                flags: Flags(flags),
                osversion: if extended { osversion } else { 0 },
                hwcap: if extended && subdir.is_none() {
                    hwcap
                } else {
                    0
                },
                hwcaps_subdir: if extended { subdir } else { None },
            }
        })
}

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(Format::Old), Just(Format::New), Just(Format::Combined)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn write_then_parse_round_trips(
        (format, entries) in format().prop_flat_map(|f| (Just(f), prop::collection::vec(entry(f), 0..48))),
        generator in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
    ) {
        let bytes = write_cache(&entries, format, generator.as_deref());
        let cache = LdCache::parse(&bytes)?;
        prop_assert_eq!(cache.format(), format);
        cache.check_extensions()?;
        prop_assert_eq!(owned(&cache), entries);
        if format != Format::Old {
            prop_assert_eq!(cache.generator(), generator.as_deref());
        }
    }

    #[test]
    fn one_pass_for_several_arches_equals_one_pass_each(
        entries in prop::collection::vec(
            (prop::sample::select(vec!["libcuda.so.1", "libcuda.so", "libnvidia-ml.so.1", "libz.so.1", "libGL.so.1"]),
             prop::sample::select(vec![Arch::X86_64, Arch::I386, Arch::Aarch64]),
             0u8..4,
             "/[a-z]{1,6}"),
            0..40),
    ) {
        let entries: Vec<CacheEntry> = entries
            .into_iter()
            .map(|(soname, arch, kind, dir)| {
                let mut e = CacheEntry::new(soname, format!("{dir}/{soname}"), arch);
                e.flags = Flags(arch.value() | i32::from(kind));
                e
            })
            .collect();
        let bytes = write_cache(&entries, Format::New, None);
        let cache = LdCache::parse(&bytes)?;
        let set = PrefixSet::new(["libnvidia-ml.so", "libcuda.so", "libGL"]);
        let arches = [Arch::X86_64, Arch::I386];
        let together = cache.resolve_arches(&set, &arches)?;
        for (arch, got) in arches.iter().zip(&together) {
            prop_assert_eq!(got, &cache.resolve(&set, *arch)?);
        }
        // The last ELF entry of an arch and prefix wins.
        for (arch, got) in arches.iter().zip(&together) {
            let last = entries.iter().rev().find(|e| e.flags.is_elf() && e.flags.arch() == *arch && e.soname.starts_with(b"libcuda.so"));
            prop_assert_eq!(got[1].map(|e| e.path().as_os_str().as_encoded_bytes().to_vec()), last.map(|e| e.path.clone()));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), magic in 0u8..3) {
        let mut input = match magic {
            0 => OLD_MAGIC.to_vec(),
            1 => NEW_MAGIC.to_vec(),
            _ => Vec::new(),
        };
        input.extend_from_slice(&bytes);
        exercise::ldcache(&input);
    }

    #[test]
    fn mutated_caches_never_panic(
        (format, entries) in format().prop_flat_map(|f| (Just(f), prop::collection::vec(entry(f), 0..8))),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = write_cache(&entries, format, Some(b"g"));
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        exercise::ldcache(&bytes);
        let keep = cut.index(bytes.len() + 1);
        exercise::ldcache(&bytes[..keep]);
    }
}
