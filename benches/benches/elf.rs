//! Lazy ELF checks on real libraries on disk: cost must not grow with the file size.
#![allow(clippy::panic)] // a bench whose fixture is broken must stop loudly

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use nvc_ldcache::elf::{Class, ElfInfo, SharedObject, write_shared_object};

fn elf(c: &mut Criterion) {
    let mut g = c.benchmark_group("elf");
    let dir = std::env::temp_dir().join(format!("nvc-bench-elf-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let written = dir.join("libcuda.so.550.54.14");
    let so = SharedObject {
        padding: 32 << 20,
        ..SharedObject::x86(Class::Elf64, b"libcuda.so.1")
    };
    let mut files = Vec::new();
    if std::fs::write(&written, write_shared_object(&so)).is_ok() {
        files.push(("written_32MiB", written.clone()));
    }
    for (name, path) in [
        ("libc", "/lib/x86_64-linux-gnu/libc.so.6"),
        ("libLLVM_117MB", "/lib/x86_64-linux-gnu/libLLVM-15.so.1"),
    ] {
        if Path::new(path).exists() {
            files.push((name, path.into()));
        } else {
            eprintln!("{path} is not here: elf/{name} skipped");
        }
    }
    for (name, path) in &files {
        g.bench_function(format!("read_soname/{name}"), |b| {
            b.iter(|| ElfInfo::read(black_box(path)).map(|i| i.soname.map(|s| s.len())))
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, elf);
criterion_main!(benches);
