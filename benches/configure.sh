#!/usr/bin/env bash
# Whole-process `configure` timings (microseconds, one per line) on 20 fresh paused containers
# and rootfs. Run as root inside the simulated host:
#   nvc-sim create --scenario dgx /tmp/dgx
#   nvc-sim run /tmp/dgx -- benches/configure.sh /tmp/dgx target/release/nvidia-container-cli [--no-ldconfig]
# Global options of the CLI (e.g. `--no-nvml`) come from $NVC_GLOBAL_OPTS; NVC_BENCH_DEV=dir
# gives the container no /dev tmpfs (see below).
set -euo pipefail
driver_root=$1
cli=$(realpath "$2")
shift 2
for _ in $(seq 1 20); do
    rootfs=$(mktemp -d)
    # The directories a real image has (Debian layout).
    mkdir -p "$rootfs"/{etc,sbin,dev,proc,sys,tmp,run,var,usr/bin,usr/lib/x86_64-linux-gnu,usr/lib/i386-linux-gnu,lib/firmware}
    ln -s /run "$rootfs/var/run"
    echo 12 >"$rootfs/etc/debian_version"
    : >"$rootfs/etc/ld.so.conf"
    cp /sbin/ldconfig "$rootfs/sbin/"
    # The image's linker cache, as its build leaves it.
    /sbin/ldconfig -r "$rootfs"
    # The container: `sleep` in a new mount namespace ($! is its pid) with a tmpfs on the
    # rootfs's /dev, as every OCI runtime mounts one before the hooks run (device nodes are
    # created there); NVC_BENCH_DEV=dir leaves /dev a directory of the image's filesystem.
    if [ "${NVC_BENCH_DEV:-tmpfs}" = tmpfs ]; then
        unshare --mount --propagation private \
            sh -c 'mount -t tmpfs -o nosuid,mode=755 tmpfs "$1/dev" && exec sleep 60' sh "$rootfs" &
    else
        unshare --mount --propagation private sleep 60 &
    fi
    pid=$!
    until [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sleep ]; do sleep 0.01; done
    start=$(date +%s%N)
    # shellcheck disable=SC2086 # one word per option
    "$cli" --root "$driver_root" ${NVC_GLOBAL_OPTS:-} configure --device=all --compute --utility "$@" --pid="$pid" "$rootfs"
    end=$(date +%s%N)
    echo $(((end - start) / 1000))
    kill "$pid"
    wait "$pid" || true
    rm -rf "$rootfs"
done
