#!/usr/bin/env bash
# Whole-process `configure --device=all --compute --utility` of hosts with 1, 8 and 64 GPUs
# (`dgx<N>` scenarios): median and minimum of 20 fresh containers each (benches/configure.sh),
# with the container's linker cache update by the image's `ldconfig` (the CLI's default), by
# the built-in update (`--ldconfig=builtin`, nvc-core's default) and without
# (`--no-ldconfig`). The hosts take turns, 5 containers at a time, so that a drift of the
# VM's speed hits each alike. With an
# upstream nvidia-container-cli as argument (benches/build-upstream.sh), its configure is
# measured in the same rounds. As root, from the repository root, after
#   cargo build --release --bin nvidia-container-cli --bin nvc-sim
#   benches/scaling.sh [/path/to/upstream/nvidia-container-cli]
set -euo pipefail
# shellcheck source=benches/lib.sh
. benches/lib.sh
sim=target/release/nvc-sim
cli=$(realpath target/release/nvidia-container-cli)
variants=("$cli configure" "$cli configure --ldconfig=builtin" "$cli configure --no-ldconfig")
[ $# -gt 0 ] && variants+=("$(realpath "$1") configure")
sizes=(1 8 64)
declare -A hosts
times=$(mktemp)
trap 'rm -rf "${hosts[@]}" "$times"' EXIT
for n in "${sizes[@]}"; do
    hosts[$n]=$(sim_host "$sim" "dgx$n")
done
for _ in 1 2 3 4; do
    for n in "${sizes[@]}"; do
        ROUNDS=5 "$sim" run "${hosts[$n]}" -- benches/configure.sh "${hosts[$n]}" \
            "${variants[@]}" | sed "s/^/$n GPUs: /" >>"$times"
    done
done
benches/stats.awk "$times"
