#!/usr/bin/env bash
# Whole-process timings: `nvc-ldcache` against glibc's `ldconfig -p` on this machine's cache.
# Needs hyperfine (apt-get install hyperfine). Usage: benches/process.sh [CACHE]
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${1:-/etc/ld.so.cache}
cargo build --release --quiet --bin nvc-ldcache
bin=target/release/nvc-ldcache
cmp -s <("$bin" --cache "$cache") <(ldconfig -p -C "$cache") || echo "warning: outputs differ" >&2
hyperfine -N --warmup 50 --runs 1000 \
    "ldconfig -p -C $cache" \
    "$bin --cache $cache" \
    "$bin --cache $cache --resolve libcuda.so libnvidia-ml.so libGLX_nvidia.so"
