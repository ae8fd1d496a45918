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
# NVC_BENCH_DEV=dir gives the containers no /dev tmpfs (see below).
set -euo pipefail
driver_root=$1
shift
variants=("$@")
n=${#variants[@]}
# A failing run stops the script: its container and rootfs go with it.
pid=
rootfs=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$rootfs" ] && rm -rf "$rootfs"' EXIT
for round in $(seq 0 $((${ROUNDS:-20} - 1))); do
    for i in $(seq 0 $((n - 1))); do
        variant=${variants[$(((round + i) % n))]}
        rootfs=$(mktemp -d)
        # The directories a real image has (Debian layout).
        mkdir -p "$rootfs"/{etc,sbin,dev,proc,sys,tmp,run,var,usr/bin,usr/lib/x86_64-linux-gnu,usr/lib/i386-linux-gnu,lib/firmware}
        # What a container's procfs shows on a host with the driver loaded (upstream's CLI
        # mounts over it and fails without it).
        mkdir -p "$rootfs/proc/driver/nvidia"
        ln -s /run "$rootfs/var/run"
        echo 12 >"$rootfs/etc/debian_version"
        : >"$rootfs/etc/ld.so.conf"
        cp /sbin/ldconfig "$rootfs/sbin/"
        # The image's linker cache, as its build leaves it.
        /sbin/ldconfig -r "$rootfs"
        # The container: `sleep` in a new mount namespace ($! is its pid) with a tmpfs on
        # the rootfs's /dev, as every OCI runtime mounts one before the hooks run (device
        # nodes are created there); NVC_BENCH_DEV=dir leaves /dev a directory of the image's
        # filesystem.
        if [ "${NVC_BENCH_DEV:-tmpfs}" = tmpfs ]; then
            unshare --mount --propagation private \
                sh -c 'mount -t tmpfs -o nosuid,mode=755 tmpfs "$1/dev" && exec sleep 60' sh "$rootfs" &
        else
            unshare --mount --propagation private sleep 60 &
        fi
        pid=$!
        until [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sleep ]; do sleep 0.01; done
        # shellcheck disable=SC2206 # one word per argument
        args=($variant)
        # bash's clock: no process started around the one measured.
        start=${EPOCHREALTIME/./}
        "${args[0]}" --root "$driver_root" "${args[@]:1}" --device=all --compute --utility \
            --pid="$pid" "$rootfs"
        end=${EPOCHREALTIME/./}
        printf '%s\t%d\n' "$variant" $((end - start))
        kill "$pid"
        wait "$pid" || true
        rm -rf "$rootfs"
        pid= rootfs=
    done
done
