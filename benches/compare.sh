#!/usr/bin/env bash
# nvc against upstream's nvidia-container-cli in the same run, on the simulated dgx host:
# `info` and `list` (50 runs each, the CLIs alternating), `configure --device=all --compute
# --utility` (benches/configure.sh: upstream's and nvc's with the image's ldconfig, nvc's with
# its built-in update and without, interleaved on fresh containers), median
# and minimum in microseconds; then each CLI's peak RSS for `info` and `configure`
# (/usr/bin/time). As root, from the repository root:
#   cargo build --release --bin nvidia-container-cli --bin nvc-sim
#   benches/compare.sh /path/to/upstream/nvidia-container-cli
# Upstream's CLI finds its libnvidia-container.so.1 through its rpath ($ORIGIN/../$LIB) or
# LD_LIBRARY_PATH, and loads the simulated host's fake NVML like the real one. Without an
# argument only nvc is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
sim=target/release/nvc-sim
nvc=$(realpath target/release/nvidia-container-cli)
clis=("$nvc")
[ $# -gt 0 ] && clis+=("$(realpath "$1")")
# shellcheck source=benches/lib.sh
. benches/lib.sh
host=$(sim_host "$sim" dgx)
trap 'rm -rf "$host"' EXIT

# The same work: both CLIs' configure leaves the same mounts, files and linker cache (and
# nvc's built-in cache update the same cache as the image's ldconfig).
if [ ${#clis[@]} -gt 1 ]; then
    want=$("$sim" run "$host" -- benches/result.sh "$host" "${clis[1]}")
    for opt in "" "--ldconfig=builtin"; do
        # shellcheck disable=SC2086 # no option or one
        got=$("$sim" run "$host" -- benches/result.sh "$host" "$nvc" $opt)
        if [ "$got" = "$want" ]; then
            echo "configure ${opt:-(image ldconfig)}: the same mounts, files and cache as upstream's"
        else
            echo "configure ${opt:-(image ldconfig)}: NOT the same result as upstream's:"
            diff <(echo "$want") <(echo "$got") || true
        fi
    done
fi

for cmd in info list; do
    # shellcheck disable=SC2016 # expanded by the inner shell
    "$sim" run "$host" -- bash -c 'host=$1 cmd=$2; shift 2
        for _ in $(seq 1 50); do for cli in "$@"; do
            s=${EPOCHREALTIME/./}; "$cli" --root "$host" "$cmd" >/dev/null; e=${EPOCHREALTIME/./}
            printf "%s %s\t%d\n" "$cli" "$cmd" $((e - s)); done; done' \
        bash "$host" "$cmd" "${clis[@]}" | benches/stats.awk
done
# Upstream always updates the linker cache (it has no --no-ldconfig).
variants=("$nvc configure" "$nvc configure --ldconfig=builtin" "$nvc configure --no-ldconfig")
[ ${#clis[@]} -gt 1 ] && variants+=("${clis[1]} configure")
"$sim" run "$host" -- benches/configure.sh "$host" "${variants[@]}" | benches/stats.awk

# Peak RSS: the CLI run under /usr/bin/time by a wrapper (one configure of a fresh container).
wrapper=$(mktemp)
trap 'rm -rf "$host" "$wrapper"' EXIT
chmod 755 "$wrapper"
for cli in "${clis[@]}"; do
    echo -n "$cli info: peak RSS "
    "$sim" run "$host" -- /usr/bin/time -f "%M KiB" "$cli" --root "$host" info 2>&1 >/dev/null | awk 'END {print}'
    printf '#!/bin/sh\nexec /usr/bin/time -f "%%M KiB" "%s" "$@"\n' "$cli" >"$wrapper"
    echo -n "$cli configure: peak RSS "
    ROUNDS=1 "$sim" run "$host" -- benches/configure.sh "$host" "$wrapper configure" 2>&1 | awk '/KiB/ {print $1, $2}'
done
