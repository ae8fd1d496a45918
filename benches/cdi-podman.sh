#!/usr/bin/env bash
# What a GPU adds to a container's start through CDI: whole `podman run --rm` of `true` in a
# local busybox image, on the simulated dgx host (8 GPUs), three variants interleaved:
#   none  no GPU (no --device)
#   nvc   --device nvidia.com/gpu=all, nvc's spec (nvc-cdi generate, hooks = nvc-hook)
#   ctk   --device nvidia.com/gpu=all, NVIDIA's spec (nvidia-ctk cdi generate 1.17.8, hooks =
#         `nvidia-ctk hook ...`)
# Each of the ROUNDS (default 20) runs every variant once, in an order that rotates, on a
# fresh copy of the image (the hooks write its linker cache and links; --rootfs would keep
# them). One untimed run of each first (podman's storage is made then), in which the GPU
# variants' containers check that they have the GPUs, libcuda and its cache entry. Prints
# median and minimum per variant (benches/stats.awk) and each GPU variant's overhead over
# `none` in ms: median minus median, minimum minus minimum, and the median of the per-round
# differences; the raw `VARIANT<TAB>MICROSECONDS` lines are kept where NVC_BENCH_RAW=FILE.
#
# As root, from the repository root, after
#   cargo build --release --bin nvc-sim --bin nvc-cdi --bin nvc-hook
#   nvc-testkit/engines/fetch.sh          # podman 5.4.2 (Debian trixie), unpacked in a cache
#   benches/cdi-podman.sh /path/to/nvidia-ctk
# nvidia-ctk: built from NVIDIA/nvidia-container-toolkit v1.17.8 (`go build ./cmd/nvidia-ctk`,
# as nvc-testkit/nvidia-ctk/generate.sh does); without it only `none` and `nvc` are measured.
# NVC_BIN=DIR takes nvc-sim, nvc-cdi and nvc-hook from DIR instead of target/release;
# NVC_ENGINES_CACHE as for fetch.sh. podman runs as the engine tests run it
# (examples/tests/e2e/mod.rs PODMAN_RUN): vfs storage and file events of its own under a
# temporary directory, cgroupfs with a cgroup parent of its own (removed after), runc, no
# network; the unified cgroup hierarchy is unmounted in the simulated host's namespace (runc
# and podman then use the v1 hierarchies alone); the spec is the only one in tmpfs-masked
# /etc/cdi and /var/run/cdi. Nothing outside the temporary directory is left changed.
set -euo pipefail

# The timed part, inside the simulated host (`nvc-sim run`): WORK as the outer part made it.
if [ "${1:-}" = --inner ]; then
    work=$2
    shift 2
    umount -l /sys/fs/cgroup/unified 2>/dev/null || true
    mkdir -p /etc/cdi /var/run/cdi
    mount -t tmpfs tmpfs /etc/cdi
    mount -t tmpfs tmpfs /var/run/cdi
    export PODMAN_IGNORE_CGROUPSV1_WARNING=1 CONTAINERS_CONF=$work/containers.conf
    cgroup=nvc-bench-cdi-$$
    podman=(podman --root "$work/podman/storage" --runroot "$work/podman/run"
        --storage-driver=vfs --cgroup-manager=cgroupfs --events-backend=file --runtime=runc
        run --rm --network=none --ulimit=nofile=1024:1024 --ulimit=nproc=1024:1024
        --cgroup-parent="/$cgroup")
    rootfs=
    cleanup() {
        [ -n "$rootfs" ] && rm -rf "$rootfs"
        # conmon may still be leaving its cgroup: a second and third try.
        for _ in 1 2 3; do
            for cg in /sys/fs/cgroup/*/"$cgroup" /sys/fs/cgroup/"$cgroup"; do
                [ -d "$cg" ] || continue
                find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
            done
            compgen -G "/sys/fs/cgroup/*/$cgroup" >/dev/null || break
            sleep 0.5
        done
    }
    trap cleanup EXIT
    variants=("$@")
    n=${#variants[@]}
    # run VARIANT [COMMAND...]: one container of COMMAND (default `true`), its time in
    # microseconds in `us`.
    run() {
        local v=$1 device=()
        shift
        [ $# -gt 0 ] || set -- true
        rm -f /var/run/cdi/*
        if [ "$v" != none ]; then
            cp "$work/cdi-$v.json" /var/run/cdi/nvidia.json
            device=(--device nvidia.com/gpu=all)
        fi
        rootfs=$work/rootfs
        cp -a "$work/image" "$rootfs"
        local start end rc=0
        start=${EPOCHREALTIME/./}
        "${podman[@]}" "${device[@]}" --rootfs "$rootfs" /bin/busybox "$@" || rc=$?
        end=${EPOCHREALTIME/./}
        rm -rf "$rootfs"
        rootfs=
        us=$((end - start))
        return $rc
    }
    # Untimed, once each: the GPU variants' containers have GPU 7's node, libcuda mounted
    # read-only, its development link and its linker cache entry.
    lib=/usr/lib/x86_64-linux-gnu
    check="test -c /dev/nvidia7 && grep -q ' $lib/libcuda[.]so[.][0-9.]* ro,' /proc/self/mountinfo &&
        test -L $lib/libcuda.so && /sbin/ldconfig -p | grep -q 'libcuda.so.1 '"
    for v in "${variants[@]}"; do
        if [ "$v" = none ]; then
            run none
        else
            run "$v" sh -c "$check" ||
                { echo "cdi-podman.sh: the $v container lacks its GPUs" >&2; exit 1; }
        fi
    done
    for round in $(seq 0 $((${ROUNDS:-20} - 1))); do
        for i in $(seq 0 $((n - 1))); do
            v=${variants[$(((round + i) % n))]}
            run "$v"
            printf '%s\t%d\n' "$v" "$us"
        done
    done
    exit 0
fi

cd "$(dirname "$0")/.."
bin=$(realpath "${NVC_BIN:-target/release}")
engines=${NVC_ENGINES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nvc-testkit}/engines/root
ctk=${1:+$(realpath "$1")}
for f in "$bin/nvc-sim" "$bin/nvc-cdi" "$bin/nvc-hook" "$engines/usr/bin/podman" /bin/busybox \
    /sbin/ldconfig ${ctk:+"$ctk"}; do
    [ -x "$f" ] || { echo "cdi-podman.sh: $f is missing (see the header)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "cdi-podman.sh: needs root" >&2; exit 1; }
# shellcheck source=benches/lib.sh
. benches/lib.sh
host=$(sim_host "$bin/nvc-sim" dgx)
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$host" "$work"' EXIT

# The image: busybox and glibc's static ldconfig in a Debian layout (ld.so.conf including
# ld.so.conf.d, the multiarch directory listed there), with the linker cache a Debian image
# ships: nvidia-ctk's update-ldcache only writes a cache where the image has one (`-N`
# otherwise). NVC_BENCH_IMAGE=DIR starts from a copy of a real image instead (as in lib.sh).
img=$work/image
mkdir -p "$img"
[ -z "${NVC_BENCH_IMAGE:-}" ] || cp -a "$NVC_BENCH_IMAGE/." "$img/"
mkdir -p "$img"/{bin,sbin,etc/ld.so.conf.d,dev,proc,sys,tmp,usr/lib/x86_64-linux-gnu}
cp /bin/busybox "$img/bin/"
[ -e "$img/sbin/ldconfig" ] || cp /sbin/ldconfig "$img/sbin/"
if [ -z "${NVC_BENCH_IMAGE:-}" ]; then
    echo 'include /etc/ld.so.conf.d/*.conf' >"$img/etc/ld.so.conf"
    printf '/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n' \
        >"$img/etc/ld.so.conf.d/x86_64-linux-gnu.conf"
    echo 12 >"$img/etc/debian_version"
fi
"$img/sbin/ldconfig" -r "$img"
# podman's network helper from the unpacked engines (conmon and runc from PATH).
printf '[engine]\nhelper_binaries_dir = ["%s"]\n' "$engines/usr/lib/podman" >"$work/containers.conf"

variants=(none nvc)
"$bin/nvc-cdi" generate --driver-root "$host" --hook "$bin/nvc-hook" \
    --output "$work/cdi-nvc.json" --format json
if [ -n "$ctk" ]; then
    # Its hook is the binary itself (`nvidia-ctk hook ...`) where the path names nvidia-ctk.
    "$bin/nvc-sim" run "$host" -- "$ctk" cdi generate --driver-root="$host" \
        --nvidia-cdi-hook-path="$ctk" --output="$work/cdi-ctk.json" --format=json \
        2>"$work/ctk.log" || { cat "$work/ctk.log" >&2; exit 1; }
    variants+=(ctk)
fi

raw=${NVC_BENCH_RAW:-$work/times}
echo "$(date -u +%FT%TZ) $(uname -r) $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
PATH=$engines/usr/bin:$engines/usr/sbin:$PATH "$bin/nvc-sim" run "$host" -- \
    "$PWD/benches/cdi-podman.sh" --inner "$work" "${variants[@]}" >"$raw"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
benches/stats.awk "$raw"
# Overheads: median minus median, minimum minus minimum, and the median of the rounds'
# paired differences (a variant's run minus the `none` run of the same round: the drift of a
# shared VM's speed between rounds cancels).
awk -F '\t' '
    { v[NR] = $1; us[NR] = $2; if (!($1 in seen)) { seen[$1]; order[++n] = $1 } }
    function sort(a, m,   i, j, x) {
        for (i = 2; i <= m; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    }
    END {
        for (i = 1; i <= NR; i++) { r = int((i - 1) / n); t[v[i], r] = us[i]; all[v[i], ++k[v[i]]] = us[i] }
        rounds = NR / n
        for (i = 1; i <= n; i++) {
            name = order[i]
            m = k[name]
            delete s; for (j = 1; j <= m; j++) s[j] = all[name, j]; sort(s, m)
            med[name] = s[int((m + 1) / 2)]; min[name] = s[1]
        }
        for (i = 1; i <= n; i++) {
            name = order[i]
            if (name == "none") continue
            delete d; for (r = 0; r < rounds; r++) d[r + 1] = t[name, r] - t["none", r]; sort(d, rounds)
            printf "%s over none: median %+.1f ms, min %+.1f ms, paired median %+.1f ms (%d rounds)\n", name,
                (med[name] - med["none"]) / 1000, (min[name] - min["none"]) / 1000, d[int((rounds + 1) / 2)] / 1000, rounds
        }
    }' "$raw"
