#!/usr/bin/env bash
# Fetches NVIDIA's real driver userspace (Debian bookworm's non-free 535 branch) and unpacks it
# into a cache outside the repository, for nvc-testkit's real-driver hosts (RealDriver).
#
#   nvc-testkit/real-driver/fetch.sh [CACHE]
#
# CACHE defaults to $NVC_REAL_DRIVER_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/nvc-testkit.
# Afterwards CACHE/nvidia/amd64 and CACHE/nvidia/arm64 hold the unpacked packages (dpkg -x,
# nothing installed), CACHE/nvidia/VERSION the driver version and, on amd64 machines,
# CACHE/nvidia/qemu/qemu-aarch64-static qemu's user-mode emulator (from qemu-user-static), which
# runs arm64's static glibc ldconfig (CACHE/nvidia/arm64/sbin/ldconfig) here. A second run reuses what is
# there. Uses a private apt state under CACHE: the system's sources are untouched. Needs
# apt-get, dpkg-deb and the network to Debian's archive; any failure exits non-zero saying
# what failed.
set -euo pipefail

CACHE=${1:-${NVC_REAL_DRIVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nvc-testkit}}
OUT=$CACHE/nvidia
# The aarch64 cache oracle (arm64's static ldconfig under qemu) runs on amd64 machines only.
QEMU=
[ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] && QEMU=$OUT/qemu/qemu-aarch64-static
if [ -s "$OUT/VERSION" ] && [ -d "$OUT/amd64" ] && [ -x "$OUT/arm64/sbin/ldconfig" ] &&
    { [ -z "$QEMU" ] || [ -x "$QEMU" ]; }; then
    echo "real driver: $(cat "$OUT/VERSION") already in $OUT"
    exit 0
fi

die() { echo "real-driver/fetch.sh: $*" >&2; exit 1; }
command -v apt-get >/dev/null || die "apt-get not found (a Debian-family host is needed)"

# The archive the system already uses, bookworm's non-free parts.
# shellcheck source=nvc-testkit/apt.sh
. "$(dirname "$0")/../apt.sh"
uri=$(archive_uri)

mkdir -p "$CACHE"/debs
private_apt "$CACHE/apt" "$CACHE/apt-update.log" \
    "deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bookworm main non-free non-free-firmware" \
    amd64 arm64 ||
    die "apt-get update of $uri bookworm non-free failed (log: $CACHE/apt-update.log)"

# What a compute host has (the libraries upstream's tables name, nvidia-smi, GSP firmware),
# plus the graphics stack upstream mounts for `graphics`/`display` and CDI specs name.
AMD64=(libcuda1 libnvidia-ml1 nvidia-smi libnvidia-ptxjitcompiler1 libnvidia-pkcs11-openssl3
       libnvidia-nvvm4 libnvidia-encode1 libnvcuvid1 libnvidia-opticalflow1 libnvidia-cfg1
       libnvidia-allocator1 libnvidia-glcore libnvidia-eglcore libnvidia-glvkspirv
       libnvidia-rtcore libnvoptix1 libnvidia-fbc1 libnvidia-api1 firmware-nvidia-gsp
       libglx-nvidia0 libegl-nvidia0 libgles-nvidia1 libgles-nvidia2 nvidia-egl-icd
       nvidia-vulkan-icd libcudadebugger1)
# aarch64: the ELF files the per-architecture table is checked against, with the aarch64 glibc
# (an image's libraries, and its static ldconfig as the oracle of an aarch64 host's cache).
ARM64=(libcuda1:arm64 libnvidia-ml1:arm64 nvidia-smi:arm64 libnvidia-ptxjitcompiler1:arm64
       libc6:arm64 libc-bin:arm64)

version=$(apt-cache "${OPTS[@]}" show libcuda1:amd64 | sed -n 's/^Version: *\(.*\)-.*/\1/p' | head -n1)
[ -n "$version" ] || die "libcuda1 not found in bookworm non-free at $uri"
case $version in 535.*) ;; *) die "libcuda1 is $version in the archive; the real-driver hosts expect the 535 branch" ;; esac

fetch() { # ARCH PACKAGE...
    local arch=$1; shift
    local dir=$CACHE/debs/$arch
    rm -rf "$dir" # no package of an earlier version unpacked beside this one
    mkdir -p "$dir"
    (cd "$dir" && apt-get "${OPTS[@]}" -q download "$@" >"$CACHE/download-$arch.log" 2>&1) ||
        die "apt-get download failed for $arch (log: $CACHE/download-$arch.log)"
    rm -rf "$OUT.tmp/$arch"
    mkdir -p "$OUT.tmp/$arch"
    for deb in "$dir"/*.deb; do
        dpkg-deb -x "$deb" "$OUT.tmp/$arch" || die "dpkg-deb -x $deb failed"
    done
}
fetch amd64 "${AMD64[@]}"
fetch arm64 "${ARM64[@]}"
if [ -n "$QEMU" ]; then
    # Only the one emulator of the package's 380 MB.
    dir=$CACHE/debs/qemu
    rm -rf "$dir" && mkdir -p "$dir" "$OUT.tmp/qemu"
    (cd "$dir" && apt-get "${OPTS[@]}" -q download qemu-user-static:amd64 >"$CACHE/download-qemu.log" 2>&1) ||
        die "apt-get download of qemu-user-static failed (log: $CACHE/download-qemu.log)"
    dpkg-deb --fsys-tarfile "$dir"/qemu-user-static_*.deb |
        tar -xO ./usr/bin/qemu-aarch64-static >"$OUT.tmp/qemu/qemu-aarch64-static" ||
        die "qemu-aarch64-static not found in $(ls "$dir")"
    chmod 755 "$OUT.tmp/qemu/qemu-aarch64-static"
    rm -rf "$dir"
fi
echo "$version" >"$OUT.tmp/VERSION"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "real driver: $version unpacked in $OUT"
