#!/usr/bin/env bash
# What one `configure --device=all --compute --utility` leaves in a fresh container (the same
# rootfs and container as benches/configure.sh; DEVICE=ID for another selection): its mounts (point, options, filesystem), the
# files of its rootfs (path, type, mode) and its linker cache as `ldconfig -p` lists it. As
# root inside the simulated host:
#   benches/result.sh DRIVER_ROOT CLI [OPTION...]
# benches/compare.sh diffs nvc's against upstream's before timing them.
set -euo pipefail
driver_root=$1
cli=$2
shift 2
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
rootfs=$(make_rootfs)
pid=
trap '[ -n "$pid" ] && { kill "$pid"; wait "$pid" || true; }; rm -rf "$rootfs"' EXIT
start_container "$rootfs"
"$cli" --root "$driver_root" configure --device="${DEVICE:-all}" --compute --utility "$@" --pid="$pid" "$rootfs"
echo "# mounts"
# mountinfo: the mount point is field 5, its options field 6, the filesystem type the field
# after the " - " separator.
awk -v r="$rootfs" 'index($5, r) == 1 {
        for (i = 7; $i != "-"; i++) {}
        print substr($5, length(r) + 1), $6, $(i + 1)
    }' "/proc/$pid/mountinfo" | sort
echo "# files"
nsenter -t "$pid" -m find "$rootfs" -mindepth 1 -printf '%P %y %m\n' | sort
echo "# linker cache"
nsenter -t "$pid" -m /sbin/ldconfig -p -C "$rootfs/etc/ld.so.cache" | tail -n +2
