//! ld.so.cache: parse, full iteration, NVIDIA prefix-set resolution.
#![allow(clippy::panic)] // a bench whose fixture is broken must stop loudly

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use nvc_benches::{NVIDIA_I386, host_cache_with_nvidia, nvidia_prefixes, synthetic_cache};
use nvc_ldcache::{Arch, LdCache, PrefixSet};

fn resolve_both(cache: &LdCache<'_>, set: &PrefixSet) -> usize {
    let mut found = 0;
    for arch in [Arch::X86_64, Arch::I386] {
        found += cache
            .resolve(set, arch)
            .map_or(0, |r| r.iter().flatten().count());
    }
    found
}

fn ldcache(c: &mut Criterion) {
    let prefixes = nvidia_prefixes();
    let set = PrefixSet::new(&prefixes);
    let expected = prefixes.len() + NVIDIA_I386;
    let mut inputs = vec![("synthetic_10k", synthetic_cache(10_000))];
    match host_cache_with_nvidia() {
        Some(host) => inputs.push(("host_plus_nvidia", host)),
        None => eprintln!("no readable /etc/ld.so.cache: host benches skipped"),
    }
    let mut g = c.benchmark_group("ldcache");
    for (name, bytes) in &inputs {
        let cache = LdCache::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(resolve_both(&cache, &set), expected, "{name}");
        g.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| LdCache::parse(black_box(bytes)).map(|c| c.len()))
        });
        g.bench_function(format!("iterate/{name}"), |b| {
            b.iter(|| cache.entries().filter(Result::is_ok).count())
        });
        g.bench_function(format!("resolve_x86_64/{name}"), |b| {
            b.iter(|| cache.resolve(&set, Arch::X86_64).map(|r| r.len()))
        });
        g.bench_function(format!("resolve_nvidia/{name}"), |b| {
            b.iter(|| {
                let cache = LdCache::parse(black_box(bytes)).unwrap_or_else(|e| panic!("{e}"));
                resolve_both(&cache, &set)
            })
        });
    }
    if std::path::Path::new(nvc_ldcache::DEFAULT_PATH).exists() {
        g.bench_function("read/host_file", |b| {
            b.iter(|| nvc_ldcache::read(nvc_ldcache::DEFAULT_PATH).map(|v| v.len()))
        });
        g.bench_function("read_parse_resolve/host_file", |b| {
            b.iter(|| {
                let bytes = nvc_ldcache::read(nvc_ldcache::DEFAULT_PATH).unwrap_or_default();
                LdCache::parse(&bytes).map_or(0, |c| resolve_both(&c, &set))
            })
        });
    }
    g.bench_function("prefix_set/compile", |b| {
        b.iter(|| PrefixSet::new(black_box(&prefixes)))
    });
    g.finish();
}

criterion_group!(benches, ldcache);
criterion_main!(benches);
