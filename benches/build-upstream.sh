#!/usr/bin/env bash
# Builds upstream's nvidia-container-cli and libnvidia-container.so.1 for benches/compare.sh,
# offline, from two source trees already on this machine:
#   benches/build-upstream.sh LIBNVIDIA_CONTAINER_SRC NVIDIA_MODPROBE_SRC OUT
# LIBNVIDIA_CONTAINER_SRC: an exported NVIDIA/libnvidia-container tree (`git archive` of a
# release, e.g. v1.17.0 = 63d366ee3b41); NVIDIA_MODPROBE_SRC: NVIDIA/nvidia-modprobe at the
# tag the tree's mk/nvidia-modprobe.mk names (550.54.14). Debian packages: gcc make m4
# libelf-dev libseccomp-dev libcap-dev rpcsvc-proto libtirpc-dev. Built with the Makefile's
# own flags (WITH_NVCGO=no WITH_LIBELF=yes WITH_SECCOMP=yes), against Debian's shared
# libtirpc instead of the tarball the Makefile downloads. Installs OUT/bin/nvidia-container-cli
# and OUT/lib/x86_64-linux-gnu/libnvidia-container.so.1 (where the CLI's rpath,
# $ORIGIN/../$LIB, finds it).
set -euo pipefail
src=$(realpath "$1")
modprobe=$(realpath "$2")
out=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -a "$src/." "$work/"
cd "$work"
version=$(sed -n 's/^VERSION *:= *//p' mk/nvidia-modprobe.mk)
deps=deps/src/nvidia-modprobe-$version
mkdir -p "$deps"
cp -a "$modprobe/modprobe-utils" "$deps/"
patch -d "$deps" -p1 <mk/nvidia-modprobe.patch
touch "$deps/.download_stamp"
# Debian's libtirpc: its headers and shared library, nothing downloaded.
sed -i -e 's|-isystem $(DEPS_DIR)$(includedir)/tirpc -DWITH_TIRPC|-isystem /usr/include/tirpc -DWITH_TIRPC|' \
    -e 's|^LIB_LDLIBS_STATIC  += -l:libtirpc.a|LIB_LDLIBS_SHARED  += -ltirpc|' \
    -e 's|^\t$(MAKE) -f $(MAKE_DIR)/libtirpc.mk DESTDIR=$(DEPS_DIR) install|\ttrue|' Makefile
# The release's version (only the library's file name carries it): LIB_VERSION, 1.17.0 unless set.
make -j"$(nproc)" REVISION=unknown LIB_VERSION="${LIB_VERSION:-1.17.0}" GIT_COMMIT=unknown \
    WITH_NVCGO=no WITH_LIBELF=yes WITH_TIRPC=yes WITH_SECCOMP=yes >build.log 2>&1 ||
    { tail -20 build.log; exit 1; }
mkdir -p "$out/bin" "$out/lib/x86_64-linux-gnu"
cp nvidia-container-cli "$out/bin/"
cp libnvidia-container.so.*.*.* "$out/lib/x86_64-linux-gnu/"
ln -sf "$(basename libnvidia-container.so.*.*.*)" "$out/lib/x86_64-linux-gnu/libnvidia-container.so.1"
echo "$out/bin/nvidia-container-cli"
