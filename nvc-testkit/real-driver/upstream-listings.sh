#!/usr/bin/env bash
# Regenerates nvc-testkit/real-driver/upstream/<layout>.list: what upstream's
# `nvidia-container-cli list` prints for NVIDIA's real driver files laid out as each real host
# lays them out (nvc-sim create --real LAYOUT, one GPU, the fake NVML reporting the real
# version), with the driver version written @VERSION@. examples/tests/real_driver.rs checks
# nvc's list against them.
#
#   nvc-testkit/real-driver/upstream-listings.sh UPSTREAM_CLI
#
# And mig-<n>.list: upstream's list on the `mig` scenario (MIG devices with the capability
# files, mig-minors and nvidia-caps major the kernel module writes) with the installer's
# layout, for the option sets of MIG_ARGS (the first line of each file).
#
# UPSTREAM_CLI: upstream's CLI built by benches/build-upstream.sh (1.17.0 made these). Needs
# root (nvc-sim run) and the unpacked driver (real-driver/fetch.sh). Upstream cannot list the
# NixOS layout (it loads NVML through the linker cache, which NixOS does not have): no file.
set -euo pipefail
cd "$(dirname "$0")/../.."
upstream=$(realpath "$1")
cargo build -q -p nvc-testkit --bin nvc-sim
sim=target/debug/nvc-sim
version=$(cat "${NVC_REAL_DRIVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nvc-testkit}/nvidia/VERSION")
out=nvc-testkit/real-driver/upstream
mkdir -p "$out"
for layout in debian run rpm driver-container; do
    host=$(mktemp -d)
    chmod 755 "$host"
    "$sim" create --scenario single --real "$layout" "$host" >/dev/null
    "$sim" run "$host" -- "$upstream" --root "$host" list | sed "s/$version/@VERSION@/g" >"$out/$layout.list"
    rm -rf "$host"
    echo "$out/$layout.list"
done
MIG_ARGS=("--device=all" "--device=0:1" "--device=0:0,1"
          "--mig-config=all --device=all" "--mig-monitor=all --device=0"
          "--mig-config=all --mig-monitor=all --device=all")
host=$(mktemp -d)
chmod 755 "$host"
"$sim" create --scenario mig --real run "$host" >/dev/null
for i in "${!MIG_ARGS[@]}"; do
    # shellcheck disable=SC2086
    { echo "${MIG_ARGS[$i]}"; "$sim" run "$host" -- "$upstream" --root "$host" list ${MIG_ARGS[$i]} |
        sed "s/$version/@VERSION@/g"; } >"$out/mig-$i.list"
    echo "$out/mig-$i.list"
done
rm -rf "$host"
