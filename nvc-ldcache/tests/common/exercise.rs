//! The fuzz targets' bodies, shared by `fuzz/fuzz_targets/*` and the stable corpus replay
//! test, so that CI without nightly runs the corpora through exactly what the fuzzer ran.

use nvc_ldcache::elf::ElfInfo;
use nvc_ldcache::{Arch, LdCache, PrefixSet};

/// Every read path of the cache API over `data`: it may fail, it may not panic.
pub fn ldcache(data: &[u8]) {
    let Ok(cache) = LdCache::parse(data) else {
        return;
    };
    let _ = cache.check_extensions();
    for entry in cache.entries().flatten() {
        let _ = entry.to_string();
        let _ = entry.hwcaps_subdir();
    }
    let set = PrefixSet::new(["libcuda.so", "libnvidia-ml.so", "lib", ""]);
    let _ = cache.resolve_arches(&set, &[Arch::X86_64, Arch::I386]);
    for arch in [Arch::X86_64, Arch::I386] {
        let _ = cache.resolve(&set, arch);
        let _ = cache.find(b"libcuda.so.1", arch);
    }
    let _ = cache.write_listing("fuzz".as_ref(), &mut std::io::sink());
}

/// The lazy ELF reader over `data`.
pub fn elf(data: &[u8]) {
    if let Ok(info) = ElfInfo::parse(data) {
        let _ = info.cache_arch();
    }
}
