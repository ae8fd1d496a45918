#!/usr/bin/env bash
# Whole-process `configure --device=all --compute --utility` of hosts with 1, 8 and 64 GPUs
# (`dgx<N>` scenarios): median and minimum of 20 fresh containers each (benches/configure.sh),
# with the container's linker cache update and without (`--no-ldconfig`), the two
# interleaved. As root, from the repository root, after
#   cargo build --release --bin nvidia-container-cli --bin nvc-sim
set -euo pipefail
sim=target/release/nvc-sim
cli=$(realpath target/release/nvidia-container-cli)
for n in 1 8 64; do
    host=$(mktemp -d)
    chmod 755 "$host" # the NVML helper runs as nobody inside it
    "$sim" create --scenario "dgx$n" "$host" >/dev/null
    echo "$n GPUs:"
    "$sim" run "$host" -- benches/configure.sh "$host" "$cli configure" \
        "$cli configure --no-ldconfig" | benches/stats.awk
    rm -rf "$host"
done
