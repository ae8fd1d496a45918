//! Building simulated hosts (target: under 200 ms each, `ldconfig -r` included).
#![allow(clippy::panic)] // a bench whose fixture is broken must stop loudly

use criterion::{Criterion, criterion_group, criterion_main};
use nvc_testkit::{BUILTIN, Host, Scenario};

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("testkit");
    g.sample_size(10);
    for name in BUILTIN {
        let scenario = Scenario::builtin(name).unwrap_or_else(|| panic!("{name}"));
        let dir =
            std::env::temp_dir().join(format!("nvc-bench-host-{name}-{}", std::process::id()));
        if let Err(e) = Host::build(&scenario, &dir) {
            eprintln!("testkit/build/{name} skipped: {e}");
            continue;
        }
        g.bench_function(format!("build/{name}"), |b| {
            b.iter(|| Host::build(&scenario, &dir).map(|h| h.device_nodes().len()))
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

criterion_group!(benches, build);
criterion_main!(benches);
