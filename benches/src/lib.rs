//! Fixtures for the benchmarks: realistic caches built in memory, never checked in.
#![allow(clippy::indexing_slicing)] // fixture code, not library code

use nvc_ldcache::{Arch, CacheEntry, Format, write_cache};

/// The library name prefixes driver discovery looks up (nvc-driver's table, GLVND set).
#[must_use]
pub fn nvidia_prefixes() -> Vec<&'static str> {
    nvc_driver::tables::library_prefixes(true)
}

/// How many NVIDIA prefixes also get an i386 library in [`nvidia_entries`].
pub const NVIDIA_I386: usize = 21;

/// The NVIDIA driver's entries: every prefix (37) for x86-64, the first [`NVIDIA_I386`] for
/// i386 (58 libraries in all), each as SONAME link and `.so` dev link like a real install.
#[must_use]
pub fn nvidia_entries() -> Vec<CacheEntry> {
    let prefixes = nvidia_prefixes();
    let mut entries = Vec::new();
    for (arch, dir, count) in [
        (Arch::X86_64, "/usr/lib/x86_64-linux-gnu", prefixes.len()),
        (Arch::I386, "/usr/lib/i386-linux-gnu", NVIDIA_I386),
    ] {
        for prefix in prefixes.iter().take(count) {
            entries.push(CacheEntry::new(
                format!("{prefix}.1"),
                format!("{dir}/{prefix}.1"),
                arch,
            ));
            entries.push(CacheEntry::new(*prefix, format!("{dir}/{prefix}"), arch));
        }
    }
    entries
}

/// A cache of `others` generic libraries plus [`nvidia_entries`], sorted as ldconfig sorts
/// (descending by name), in the new format with a generator string.
#[must_use]
pub fn synthetic_cache(others: usize) -> Vec<u8> {
    let mut entries = nvidia_entries();
    for i in 0..others {
        let arch = if i % 5 == 0 { Arch::I386 } else { Arch::X86_64 };
        let dir = if arch == Arch::I386 { "i386" } else { "x86_64" };
        let name = format!(
            "lib{}-{}.so.{}",
            ["a", "gtk", "nv", "x", "z"][i % 5],
            i,
            i % 7
        );
        entries.push(CacheEntry::new(
            name.clone(),
            format!("/usr/lib/{dir}-linux-gnu/{name}"),
            arch,
        ));
    }
    entries.sort_by(|a, b| b.soname.cmp(&a.soname));
    write_cache(
        &entries,
        Format::New,
        Some(b"ldconfig (nvc-benches) synthetic"),
    )
}

/// The host's cache with [`nvidia_entries`] added: the size of a real host's cache with a
/// driver installed. `None` where the host has no readable cache.
#[must_use]
pub fn host_cache_with_nvidia() -> Option<Vec<u8>> {
    let bytes = std::fs::read(nvc_ldcache::DEFAULT_PATH).ok()?;
    let cache = nvc_ldcache::LdCache::parse(&bytes).ok()?;
    let mut entries = nvidia_entries();
    for e in cache.entries() {
        entries.push(CacheEntry::from(e.ok()?));
    }
    entries.sort_by(|a, b| b.soname.cmp(&a.soname));
    Some(write_cache(&entries, Format::New, cache.generator()))
}
