#!/usr/bin/env bash
# Whole-process `configure` of the dgx host with the fake NVML's initialisation taking 0 and
# 200 ms, with NVML and with `--no-nvml` (interleaved): median and minimum of 20 fresh
# containers each (benches/configure.sh). As root, from the repository root, after
#   cargo build --release --bin nvidia-container-cli --bin nvc-sim
set -euo pipefail
# shellcheck source=benches/lib.sh
. benches/lib.sh
sim=target/release/nvc-sim
cli=$(realpath target/release/nvidia-container-cli)
for delay in 0 200; do
    host=$(sim_host "$sim" dgx)
    sed -i "s/^init_delay_ms .*/init_delay_ms $delay/" "$(find "$host" -name nvc-fake-nvml.conf)"
    echo "NVML initialisation ${delay} ms:"
    "$sim" run "$host" -- benches/configure.sh "$host" "$cli configure" \
        "$cli --no-nvml configure" | benches/stats.awk
    rm -rf "$host"
done
