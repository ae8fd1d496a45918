# Shared by the whole-process benchmark scripts (sourced, not run).

# sim_host SIM SCENARIO: a new simulated host of SCENARIO (its path on stdout), ready for both
# CLIs: readable by the NVML helper, which runs as nobody inside it, and with libgcc_s in the
# driver root, where upstream's helper chroots and glibc then loads it for its threads.
sim_host() {
    local host
    host=$(mktemp -d)
    chmod 755 "$host"
    "$1" create --scenario "$2" "$host" >/dev/null
    cp /lib/x86_64-linux-gnu/libgcc_s.so.1 "$host/usr/lib/x86_64-linux-gnu/"
    echo "$host"
}

# make_rootfs: a new rootfs with the directories a real image has (Debian layout), the
# `/proc/driver/nvidia` a container's procfs shows on a host with the driver loaded
# (upstream's CLI mounts over it and fails without it), glibc's static ldconfig and the linker
# cache the image's build leaves, synced to disk. Its path on stdout.
# NVC_BENCH_IMAGE=DIR starts from a copy of a real image instead (nvc-testkit/glibc/fetch.sh
# unpacks Debian ones: CACHE/glibc/bookworm/root) and writes its cache with its own
# ldconfig; NVC_BENCH_NO_CACHE=1 leaves the image without a cache.
make_rootfs() {
    local rootfs
    rootfs=$(mktemp -d)
    if [ -n "${NVC_BENCH_IMAGE:-}" ]; then
        cp -a "$NVC_BENCH_IMAGE/." "$rootfs/"
    else
        mkdir -p "$rootfs/etc" "$rootfs/sbin"
        : >"$rootfs/etc/ld.so.conf"
        cp /sbin/ldconfig "$rootfs/sbin/"
    fi
    mkdir -p "$rootfs"/proc/driver/nvidia \
        "$rootfs"/{etc,dev,sys,tmp,run,var,usr/bin,usr/lib/x86_64-linux-gnu,usr/lib/i386-linux-gnu,lib/firmware}
    [ -e "$rootfs/var/run" ] || ln -s /run "$rootfs/var/run"
    echo 12 >"$rootfs/etc/debian_version"
    if [ -z "${NVC_BENCH_NO_CACHE:-}" ]; then
        "$rootfs/sbin/ldconfig" -r "$rootfs"
    fi
    # Settled on disk, as an image unpacked before its container starts: a copy still being
    # written back makes the timed run's first file creations wait for the journal.
    sync -f "$rootfs"
    echo "$rootfs"
}

# interleaved RUN VARIANT...: ROUNDS (default 20) rounds, each calling `RUN VARIANT` once for
# every variant, in an order that rotates, so that a drift of this VM's speed during the run
# hits every variant alike. RUN sets `pid` and `rootfs` to the container and rootfs it made;
# both are removed after it, and when a failing run stops the script.
interleaved() {
    local run=$1 round i
    shift
    local variants=("$@")
    local n=${#variants[@]}
    pid= rootfs=
    trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$rootfs" ] && rm -rf "$rootfs"' EXIT
    for round in $(seq 0 $((${ROUNDS:-20} - 1))); do
        for i in $(seq 0 $((n - 1))); do
            "$run" "${variants[$(((round + i) % n))]}"
            kill "$pid"
            wait "$pid" || true
            rm -rf "$rootfs"
            pid= rootfs=
        done
    done
}

# start_container ROOTFS: sets `pid` to a container for ROOTFS — `sleep` in a new mount
# namespace with a tmpfs on the rootfs's /dev, as every OCI runtime mounts one before the
# hooks run (device nodes are created there); NVC_BENCH_DEV=dir leaves /dev a directory of
# the image's filesystem. Returns once the container is in place.
start_container() {
    if [ "${NVC_BENCH_DEV:-tmpfs}" = tmpfs ]; then
        unshare --mount --propagation private \
            sh -c 'mount -t tmpfs -o nosuid,mode=755 tmpfs "$1/dev" && exec sleep 60' sh "$1" &
    else
        unshare --mount --propagation private sleep 60 &
    fi
    pid=$!
    until [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sleep ]; do sleep 0.01; done
}
