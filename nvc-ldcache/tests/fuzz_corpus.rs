//! Replays the fuzz seeds (`fuzz/seeds/<target>`), the promoted crash inputs
//! (`tests/regressions/<target>`) and, where a fuzzer has grown one here, its working corpus
//! (`fuzz/corpus/<target>`, not committed) through the fuzz targets' bodies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::exercise;
use nvc_ldcache::LdCache;
use nvc_ldcache::elf::ElfInfo;

fn inputs(target: &str) -> Vec<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        here.join("../fuzz/seeds").join(target),
        here.join("tests/regressions").join(target),
        here.join("../fuzz/corpus").join(target),
    ] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n != ".keep") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The input at `path`; `None` for a working-corpus input gone since it was listed (a fuzzer
/// running meanwhile removes inputs it has reduced).
fn read(path: &Path) -> Option<Vec<u8>> {
    match fs::read(path) {
        Ok(data) => Some(data),
        Err(_) if path.components().any(|c| c.as_os_str() == "corpus") => None,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

#[test]
fn ldcache_corpus_replays_and_seeds_parse() {
    let files = inputs("ldcache_parse");
    assert!(files.len() >= 6, "seed corpus missing: {files:?}");
    for path in &files {
        let Some(data) = read(path) else { continue };
        exercise::ldcache(&data);
        // The seeds are real caches (from ldconfig or our writer); what the fuzzer found
        // need only not panic.
        if path.parent().unwrap().ends_with("fuzz/seeds/ldcache_parse") {
            let cache = LdCache::parse(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            cache.check_extensions().unwrap();
            assert!(cache.entries().all(|e| e.is_ok()), "{}", path.display());
        }
    }
}

#[test]
fn elf_corpus_replays_and_seeds_parse() {
    let files = inputs("elf_parse");
    assert!(files.len() >= 6, "seed corpus missing: {files:?}");
    for path in &files {
        let Some(data) = read(path) else { continue };
        exercise::elf(&data);
        if path.parent().unwrap().ends_with("fuzz/seeds/elf_parse") {
            let info = ElfInfo::parse(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(info.soname.is_some(), "{}", path.display());
        }
    }
}
