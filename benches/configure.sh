#!/usr/bin/env bash
# Whole-process `configure` timings on fresh paused containers and rootfs, several variants
# interleaved: each of the ROUNDS (default 20) runs every variant once, in an order that
# rotates, so that a drift of this VM's speed during the run hits every variant alike.
# Prints `VARIANT<TAB>MICROSECONDS` per run (benches/stats.awk sums them up). As root
# inside the simulated host:
#   nvc-sim create --scenario dgx /tmp/dgx
#   nvc-sim run /tmp/dgx -- benches/configure.sh /tmp/dgx \
#       'target/release/nvidia-container-cli configure' \
#       'target/release/nvidia-container-cli configure --no-ldconfig'
# A VARIANT is the CLI and its arguments up to the container's: it runs as
# `CLI --root DRIVER_ROOT ARGS... --device=all --compute --utility --pid=PID ROOTFS`.
# NVC_BENCH_DEV=dir gives the containers no /dev tmpfs (benches/lib.sh).
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
driver_root=$1
shift
variants=("$@")

# run VARIANT: one timed configure of a fresh container.
run() {
    rootfs=$(make_rootfs)
    start_container "$rootfs"
    # shellcheck disable=SC2206 # one word per argument
    local args=($1) start end
    # bash's clock: no process started around the one measured.
    start=${EPOCHREALTIME/./}
    "${args[0]}" --root "$driver_root" "${args[@]:1}" --device=all --compute --utility \
        --pid="$pid" "$rootfs"
    end=${EPOCHREALTIME/./}
    printf '%s\t%d\n' "$1" $((end - start))
}

interleaved run "${variants[@]}"
