#!/usr/bin/env bash
# Whole-process timings of giving one GPU (`--device=0 --compute --utility`) to a running
# container: nvc's `attach --pid` against upstream's `configure --pid ROOTFS`, upstream's only
# way in. Fresh rootfs (benches/lib.sh make_rootfs) and fresh paused container per run, the
# image's ldconfig run by both; variants interleaved as in benches/configure.sh: each of the
# ROUNDS (default 20) runs every variant once, in an order that rotates. Prints
# `VARIANT<TAB>MICROSECONDS` per run (benches/stats.awk sums them up). As root inside the
# simulated host, from the repository root:
#   cargo build --release --bin nvidia-container-cli --bin nvc-sim
#   nvc-sim create --scenario dgx /tmp/dgx
#   cp /lib/x86_64-linux-gnu/libgcc_s.so.1 /tmp/dgx/usr/lib/x86_64-linux-gnu/  # upstream's helper
#   nvc-sim run /tmp/dgx -- benches/attach.sh /tmp/dgx \
#       "$PWD/target/release/nvidia-container-cli attach" \
#       "$PWD/target/release/nvidia-container-cli configure" \
#       '/tmp/upstream/bin/nvidia-container-cli configure' | benches/stats.awk
# A VARIANT is the CLI and its arguments up to the container's: it runs as
# `CLI --root DRIVER_ROOT ARGS... --device=0 --compute --utility --pid=PID`, with ROOTFS last
# where ARGS name `configure`.
# The containers: `sleep` in a new mount namespace with a tmpfs on the rootfs's /dev. For
# `attach` its process is chrooted into the rootfs, as a running container is pivoted into
# its own: attach takes the container's root from /proc/PID/root. For `configure` it is not
# (benches/lib.sh start_container): the state a runtime's prestart hook sees, the only one
# upstream's configure handles — it resolves ROOTFS under /proc/PID/root to inspect the image
# but mounts at ROOTFS in the namespace's root, so that a pivoted container's `/` would be
# the host's. (And attach into lib.sh's unchrooted container would write the driver's files
# into the host's own /usr: the script refuses that.)
# NVC_BENCH_ATTACHED="CLI attach" has CLI attach GPU 1 to each container first, untimed: the
# timed attach then adds a GPU to a container that has the driver already (hot-plug; attach
# variants only).
# NVC_BENCH_DEV=dir gives the containers no /dev tmpfs (benches/lib.sh).
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
driver_root=$1
shift
variants=("$@")

# run_container ROOTFS: sets `pid` to a container for ROOTFS as lib.sh's start_container
# does, its process `sleep` (static busybox, copied into the image) chrooted into ROOTFS.
# Returns once the container is in place.
run_container() {
    cp /bin/busybox "$1/usr/bin/sleep"
    if [ "${NVC_BENCH_DEV:-tmpfs}" = tmpfs ]; then
        unshare --mount --propagation private sh -c \
            'mount -t tmpfs -o nosuid,mode=755 tmpfs "$1/dev" && exec chroot "$1" /usr/bin/sleep 60' \
            sh "$1" &
    else
        unshare --mount --propagation private chroot "$1" /usr/bin/sleep 60 &
    fi
    pid=$!
    until [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sleep ]; do sleep 0.01; done
}

# run VARIANT: one timed attach (or configure) of a fresh container.
run() {
    # shellcheck disable=SC2206 # one word per argument
    local args=($1) configure= a start end target=()
    for a in "${args[@]:1}"; do
        [ "$a" = configure ] && configure=1
    done
    rootfs=$(make_rootfs)
    if [ -n "$configure" ]; then
        [ -z "${NVC_BENCH_ATTACHED:-}" ] ||
            { echo "attach.sh: NVC_BENCH_ATTACHED is for attach variants" >&2; exit 1; }
        start_container "$rootfs"
        target=("$rootfs")
    else
        run_container "$rootfs"
        [ "$(readlink "/proc/$pid/root")" = "$rootfs" ] ||
            { echo "attach.sh: container $pid is not in $rootfs" >&2; exit 1; }
    fi
    if [ -n "${NVC_BENCH_ATTACHED:-}" ]; then
        # shellcheck disable=SC2206 # one word per argument
        local pre=($NVC_BENCH_ATTACHED)
        "${pre[0]}" --root "$driver_root" "${pre[@]:1}" --device=1 --compute --utility \
            --pid="$pid"
    fi
    # bash's clock: no process started around the one measured.
    start=${EPOCHREALTIME/./}
    "${args[0]}" --root "$driver_root" "${args[@]:1}" --device=0 --compute --utility \
        --pid="$pid" "${target[@]}"
    end=${EPOCHREALTIME/./}
    printf '%s\t%d\n' "$1" $((end - start))
}

interleaved run "${variants[@]}"
