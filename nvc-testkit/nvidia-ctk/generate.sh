#!/usr/bin/env bash
# Regenerates the oracle specs in specs/: NVIDIA's `nvidia-ctk cdi generate` 1.17.8 on every
# simulated scenario it takes (single, dgx, mig, nocache, legacy32; on nogpu it refuses,
# "empty device edits") and on the single-GPU host with NVIDIA's real 535 files in the run, debian
# and rpm layouts (the fake NVML reporting the real version: NVIDIA's needs a kernel module).
# examples/tests/nvidia_ctk_specs.rs checks nvc-cdi's spec for the same hosts against them.
#
#   generate.sh TOOLKIT_SRC
#
# TOOLKIT_SRC: NVIDIA/nvidia-container-toolkit at tag v1.17.8 (it vendors its Go modules).
# Go 1.23 comes from Debian's bookworm-backports through a private apt state under
# ~/.cache/nvc-go (no system package is installed); the real driver files from
# nvc-testkit/real-driver/fetch.sh. Host paths in the specs are written as {ROOT}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
src=$(cd "${1:?usage: generate.sh TOOLKIT_SRC}" && pwd)
cache=${NVC_GO_CACHE:-$HOME/.cache/nvc-go}

if [ ! -x "$cache/root/usr/lib/go-1.23/bin/go" ]; then
    a=$cache/apt
    mkdir -p "$a/etc/sources.list.d" "$a/etc/preferences.d" "$a/lists/partial" \
        "$a/cache/archives/partial" "$cache/debs"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main" \
        > "$a/etc/sources.list"
    opts=(-o "Dir::Etc::SourceList=$a/etc/sources.list" -o "Dir::Etc::SourceParts=$a/etc/sources.list.d"
        -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache"
        -o "Dir::Etc::Preferences=$a/etc/preferences" -o "Dir::Etc::PreferencesParts=$a/etc/preferences.d")
    apt-get "${opts[@]}" update
    (cd "$cache/debs" && apt-get "${opts[@]}" download golang-1.23-go golang-1.23-src)
    for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$cache/root"; done
fi
export GOROOT=$cache/root/usr/lib/go-1.23 GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local \
    GOCACHE=$cache/build
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$src" && "$GOROOT/bin/go" build -o "$work/nvidia-ctk" ./cmd/nvidia-ctk)

(cd "$repo" && cargo build -q -p nvc-testkit --bin nvc-sim)
sim=$repo/target/debug/nvc-sim
mkdir -p "$here/specs"
spec() { # NAME HOSTDIR DRIVER_ROOT CREATE_ARGS...
    local name=$1 dir=$2 root=$3
    shift 3
    "$sim" create "$@" "$dir" >/dev/null
    "$sim" run "$dir" -- "$work/nvidia-ctk" cdi generate --driver-root="$root" \
        --output="$work/$name.yaml" 2>"$work/$name.log"
    sed "s|$root|{ROOT}|g" "$work/$name.yaml" > "$here/specs/$name.yaml"
    echo "specs/$name.yaml"
}
for scenario in single dgx mig nocache legacy32; do
    spec "$scenario" "$work/$scenario" "$work/$scenario" --scenario "$scenario"
done
for layout in run debian rpm; do
    spec "real-$layout" "$work/$layout" "$work/$layout" --scenario single --real "$layout"
done
