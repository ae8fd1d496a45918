#!/usr/bin/env bash
# NVIDIA's own nvidia-container-cli on nvc's libnvidia-container.so.1, against the same CLI on
# its own library: `info`, `list` and a `configure --device=all --compute --utility` of a
# fresh container (its mounts, files and linker cache, benches/result.sh) on the simulated dgx
# host must be the same. As root, from the repository root:
#   cargo build --release -p nvc-capi --bin nvc-sim
#   nvc-capi/upstream-cli.sh /path/to/upstream/bin/nvidia-container-cli
# The upstream CLI finds its library through its rpath ($ORIGIN/../$LIB): benches/build-upstream.sh
# builds such a layout. nvc's library goes into a copy of that layout.
set -euo pipefail
cd "$(dirname "$0")/.."
upstream=$(realpath "$1")
sim=target/release/nvc-sim
# shellcheck source=benches/lib.sh
. benches/lib.sh
host=$(sim_host "$sim" dgx)
work=$(mktemp -d)
trap 'rm -rf "$work" "$host"' EXIT
mkdir -p "$work/nvc/bin" "$work/nvc/lib/x86_64-linux-gnu"
cp "$upstream" "$work/nvc/bin/"
cp target/release/libnvidia_container.so "$work/nvc/lib/x86_64-linux-gnu/libnvidia-container.so.1"
ondrop=$work/nvc/bin/nvidia-container-cli
# The copy of the CLI loads nvc's library (its rpath), not an installed one.
LD_DEBUG=libs "$ondrop" --version 2>&1 | grep -q "calling init: $work/nvc/bin/../lib/x86_64-linux-gnu/libnvidia-container.so.1" ||
    { echo "the CLI does not load nvc's library from $work/nvc/lib"; exit 1; }
failed=0
check() {
    local what=$1
    shift
    if diff <("$sim" run "$host" -- "$@" 2>&1 | sed "s|$ondrop|CLI|g; s|$upstream|CLI|g") \
        <("$sim" run "$host" -- "${@/#$upstream/$ondrop}" 2>&1 | sed "s|$ondrop|CLI|g; s|$upstream|CLI|g"); then
        echo "$what: the same on nvc's library"
    else
        echo "$what: DIFFERENT on nvc's library"
        failed=1
    fi
}
check info "$upstream" --root "$host" info
check list "$upstream" --root "$host" list
check configure benches/result.sh "$host" "$upstream"
exit $failed
