#!/usr/bin/env bash
# Whole-process `configure` of the dgx host with the fake NVML's initialisation taking 0 and
# 200 ms, with NVML and with `--no-nvml`: median and minimum of 20 fresh containers each
# (benches/configure.sh). As root, from the repository root, after
#   cargo build --release --bin nvidia-container-cli --bin nvc-sim
set -euo pipefail
sim=target/release/nvc-sim
cli=target/release/nvidia-container-cli
for delay in 0 200; do
    host=$(mktemp -d)
    chmod 755 "$host" # the NVML helper runs as nobody inside it
    "$sim" create --scenario dgx "$host" >/dev/null
    sed -i "s/^init_delay_ms .*/init_delay_ms $delay/" "$(find "$host" -name nvc-fake-nvml.conf)"
    for opts in "" "--no-nvml"; do
        times=$(NVC_GLOBAL_OPTS="$opts" "$sim" run "$host" -- benches/configure.sh "$host" "$cli" | sort -n)
        median=$(awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}' <<<"$times")
        echo "NVML init ${delay} ms, ${opts:-with NVML}: median ${median} us, min $(head -1 <<<"$times") us"
    done
    rm -rf "$host"
done
