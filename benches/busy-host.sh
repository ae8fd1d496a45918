#!/usr/bin/env bash
# benches/configure.sh on a busy host: N more mounts in this mount namespace (tmpfs, one
# directory each), as a node with many containers has, then the configure timings; the
# mounts are removed after. As root inside the simulated host:
#   nvc-sim run /tmp/dgx -- benches/busy-host.sh /tmp/dgx 1000 VARIANT...
# (VARIANT as for benches/configure.sh). The containers are copies of this namespace, so
# their mount tables grow alike.
set -euo pipefail
driver_root=$1
mounts=$2
shift 2
busy=$(mktemp -d)
mount -t tmpfs nvc-busy "$busy"
trap 'umount -R "$busy"; rmdir "$busy"' EXIT
for i in $(seq "$mounts"); do
    mkdir "$busy/$i"
    mount -t tmpfs "nvc-busy-$i" "$busy/$i"
done
echo "$(wc -l </proc/self/mountinfo) mounts" >&2
"$(dirname "$0")/configure.sh" "$driver_root" "$@"
