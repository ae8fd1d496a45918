#!/usr/bin/env bash
# nvc against upstream's nvidia-container-cli in the same run, on the simulated dgx host:
# `info` and `list` (50 runs each, the CLIs alternating) and `configure --device=all --compute
# --utility` with the image's ldconfig, with nvc's built-in update and without
# (benches/configure.sh: every variant of both CLIs interleaved on fresh containers); median
# and minimum in microseconds. As root, from the repository root:
#   cargo build --release --bin nvidia-container-cli --bin nvc-sim
#   benches/compare.sh /path/to/upstream/nvidia-container-cli
# Upstream 1.17.x built from NVIDIA/libnvidia-container loads the simulated host's fake NVML
# like the real one. Without an argument only nvc is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
sim=target/release/nvc-sim
nvc=$(realpath target/release/nvidia-container-cli)
clis=("$nvc")
[ $# -gt 0 ] && clis+=("$(realpath "$1")")
host=$(mktemp -d)
chmod 755 "$host" # the NVML helper runs as nobody inside it
trap 'rm -rf "$host"' EXIT
"$sim" create --scenario dgx "$host" >/dev/null

for cmd in info list; do
    # shellcheck disable=SC2016 # expanded by the inner shell
    "$sim" run "$host" -- sh -c 'host=$1 cmd=$2; shift 2
        for _ in $(seq 1 50); do for cli in "$@"; do
            s=$(date +%s%N); "$cli" --root "$host" "$cmd" >/dev/null; e=$(date +%s%N)
            printf "%s %s\t%d\n" "$cli" "$cmd" $(((e - s) / 1000)); done; done' \
        sh "$host" "$cmd" "${clis[@]}" | benches/stats.awk
done
variants=()
for cli in "${clis[@]}"; do
    variants+=("$cli configure" "$cli configure --no-ldconfig")
done
variants+=("$nvc configure --ldconfig=builtin")
"$sim" run "$host" -- benches/configure.sh "$host" "${variants[@]}" | benches/stats.awk
