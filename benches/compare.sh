#!/usr/bin/env bash
# nvc against upstream's nvidia-container-cli in the same run, on the simulated dgx host:
# `info` and `list` (50 runs each) and `configure --device=all --compute --utility` with and
# without the linker cache update (20 fresh containers each, benches/configure.sh); median
# and minimum in microseconds. As root, from the repository root:
#   cargo build --release --bin nvidia-container-cli --bin nvc-sim
#   benches/compare.sh /path/to/upstream/nvidia-container-cli
# Upstream 1.17.x built from NVIDIA/libnvidia-container loads the simulated host's fake NVML
# like the real one. Without an argument only nvc is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
sim=target/release/nvc-sim
clis=("$(realpath target/release/nvidia-container-cli)")
[ $# -gt 0 ] && clis+=("$(realpath "$1")")
host=$(mktemp -d)
chmod 755 "$host" # the NVML helper runs as nobody inside it
trap 'rm -rf "$host"' EXIT
"$sim" create --scenario dgx "$host" >/dev/null

# Median and minimum of the numbers on stdin.
stats() { sort -n | awk '{a[NR] = $1} END {printf "median %d us, min %d us\n", a[int((NR + 1) / 2)], a[1]}'; }

for cli in "${clis[@]}"; do
    for cmd in info list; do
        echo -n "$cli $cmd: "
        # shellcheck disable=SC2016 # expanded by the inner shell
        "$sim" run "$host" -- sh -c 'for _ in $(seq 1 50); do
                s=$(date +%s%N); "$0" --root "$1" "$2" >/dev/null; e=$(date +%s%N)
                echo $(((e - s) / 1000)); done' "$cli" "$host" "$cmd" | stats
    done
    for extra in "" "--no-ldconfig"; do
        echo -n "$cli configure ${extra:-(ldconfig)}: "
        # shellcheck disable=SC2086 # no option or one
        "$sim" run "$host" -- benches/configure.sh "$host" "$cli" $extra | stats
    done
done
