#!/usr/bin/env bash
# Builds the release nvc-hook statically linked (glibc's static libc: no dynamic loader, so
# LD_PRELOAD and LD_LIBRARY_PATH in the hook's environment load nothing) into OUT, default
# target/static-hook/nvc-hook. Install it beside a dynamically linked `nvc-nvml` (the NVML
# helper it executes): `cargo install --path examples --bin nvc-nvml`.
# Needs libc6-dev (libc.a). Only the hook's crates are built static: build scripts and
# proc-macros stay dynamic (`--target` keeps RUSTFLAGS off them).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/static-hook}
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
    -p nvc-examples --bin nvc-hook \
    --target "$host" --target-dir target/static
mkdir -p "$out"
cp "target/static/$host/release/nvc-hook" "$out/nvc-hook"
echo "$out/nvc-hook"
