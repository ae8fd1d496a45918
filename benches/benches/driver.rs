//! Probing the driver of the `dgx` scenario (8 GPUs, the fake NVML answering instantly), the
//! start of every `info`, `list` and `configure`: the whole probe with NVML (the helper's fork,
//! chroot, `dlopen` and queries, then discovery), without NVML (`--no-nvml`: the GPUs from
//! `/proc/driver/nvidia`), and discovery alone (the root's `ld.so.cache`, each library path
//! resolved in the root, binaries, firmware, device nodes). The difference of the first two is
//! what the NVML helper costs. Prints why it skips when the probe cannot run here.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use nvc_driver::{DriverOptions, discover_files, probe_driver};
use nvc_testkit::{Host, Scenario};

fn probe(c: &mut Criterion) {
    let hostdir = tempfile::tempdir().unwrap();
    Host::build(&Scenario::builtin("dgx").unwrap(), hostdir.path()).unwrap();
    let mut opts = DriverOptions::new(hostdir.path());
    opts.discover.proc_devices = hostdir.path().join("proc/devices");
    let info = match probe_driver(&opts) {
        Ok(info) => info,
        Err(e) => {
            eprintln!("driver benches skipped: the probe fails here: {e}");
            return;
        }
    };
    let mut without = opts.clone();
    without.nvml = false;

    let mut g = c.benchmark_group("driver/dgx");
    g.sample_size(50);
    g.bench_function("probe", |b| b.iter(|| probe_driver(&opts).unwrap()));
    g.bench_function("probe-no-nvml", |b| {
        b.iter(|| probe_driver(&without).unwrap())
    });
    g.bench_function("discover", |b| {
        b.iter(|| discover_files(&opts.discover, &info.nvrm_version).unwrap())
    });
    g.finish();
}

criterion_group!(benches, probe);
criterion_main!(benches);
