#!/usr/bin/env bash
# Whole-process `configure --device=all --compute --utility` of hosts with 1, 8 and 64 GPUs
# (`dgx<N>` scenarios): median and minimum of 20 fresh containers each (benches/configure.sh),
# with the container's linker cache update and without (`--no-ldconfig`). As root, from the
# repository root, after
#   cargo build --release --bin nvidia-container-cli --bin nvc-sim
set -euo pipefail
sim=target/release/nvc-sim
cli=target/release/nvidia-container-cli
for n in 1 8 64; do
    host=$(mktemp -d)
    chmod 755 "$host" # the NVML helper runs as nobody inside it
    "$sim" create --scenario "dgx$n" "$host" >/dev/null
    for extra in "" "--no-ldconfig"; do
        # shellcheck disable=SC2086 # no option or one
        times=$("$sim" run "$host" -- benches/configure.sh "$host" "$cli" $extra | sort -n)
        median=$(awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}' <<<"$times")
        echo "$n GPUs ${extra:-(ldconfig)}: median ${median} us, min $(head -1 <<<"$times") us"
    done
    rm -rf "$host"
done
