#!/usr/bin/env bash
# Fetches the container engines users run — Debian 13 (trixie)'s docker.io 26.1 with
# docker-cli, containerd 1.7 and podman 5.4 — and unpacks them into a cache outside the
# repository, for the engine tests (examples/tests/engines.rs). Nothing is installed: the
# system's podman 4.3, runc and crun stay as they are.
#
#   nvc-testkit/engines/fetch.sh [CACHE]
#
# podman 5.4 and its network helper netavark need trixie's glibc (2.41; Debian 12 has 2.36):
# they are fetched with it and the libraries podman loads, unpacked beside them, and patched
# (patchelf: their ELF interpreter and RPATH) to load those instead of the system's, so that
# podman re-executing itself and conmon running podman's exit command work too.
#
# CACHE defaults to $NVC_ENGINES_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/nvc-testkit.
# Afterwards CACHE/engines/root holds the unpacked packages (usr/bin/dockerd, docker,
# containerd, ctr, containerd-shim-runc-v2, podman) and CACHE/engines/VERSIONS what they are.
# A second run reuses what is there. Uses a private apt state under CACHE (the system's sources
# are untouched); needs apt-get, dpkg-deb and the network to Debian's archive; any failure
# exits non-zero saying what failed.
set -euo pipefail

CACHE=${1:-${NVC_ENGINES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nvc-testkit}}
OUT=$CACHE/engines
PACKAGES=(docker.io docker-cli containerd podman netavark
          libc6 libsubid5 libsqlite3-0 libgpgme11t64 libassuan9 libgpg-error0 libseccomp2
          libaudit1 libcap-ng0 libbsd0 libmd0 libselinux1 libpcre2-8-0 libgcc-s1)
if [ -s "$OUT/VERSIONS" ] && [ -x "$OUT/root/usr/sbin/dockerd" ] && "$OUT/root/usr/bin/podman" --version >/dev/null 2>&1; then
    echo "engines: already in $OUT: $(tr '\n' ' ' <"$OUT/VERSIONS")"
    exit 0
fi

die() { echo "engines/fetch.sh: $*" >&2; exit 1; }
command -v apt-get >/dev/null || die "apt-get not found (a Debian-family host is needed)"
command -v patchelf >/dev/null || die "patchelf not found (Debian package patchelf)"

# shellcheck source=nvc-testkit/apt.sh
. "$(dirname "$0")/../apt.sh"
uri=$(archive_uri)

private_apt "$CACHE/apt-trixie" "$CACHE/apt-trixie-update.log" \
    "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" \
    amd64 ||
    die "apt-get update of $uri trixie failed (log: $CACHE/apt-trixie-update.log)"

dir=$CACHE/debs/engines
rm -rf "$dir" "$OUT.tmp"
mkdir -p "$dir" "$OUT.tmp/root"
(cd "$dir" && apt-get "${OPTS[@]}" -q download "${PACKAGES[@]}" >"$CACHE/download-engines.log" 2>&1) ||
    die "apt-get download of ${PACKAGES[*]} failed (log: $CACHE/download-engines.log)"
for deb in "$dir"/*.deb; do
    dpkg-deb -x "$deb" "$OUT.tmp/root" || die "dpkg-deb -x $deb failed"
    echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >>"$OUT.tmp/VERSIONS"
done
# Paths as they will be once $OUT.tmp is $OUT.
libs=$OUT/root/usr/lib/x86_64-linux-gnu:$OUT/root/lib/x86_64-linux-gnu
for exe in usr/bin/podman usr/lib/podman/netavark; do
    patchelf --set-interpreter "$OUT/root/usr/lib64/ld-linux-x86-64.so.2" --force-rpath \
        --set-rpath "$libs" "$OUT.tmp/root/$exe" || die "patchelf of $exe failed"
done
rm -rf "$dir" "$OUT"
mv "$OUT.tmp" "$OUT"
"$OUT/root/usr/bin/podman" --version >/dev/null || die "podman 5 does not start with trixie's glibc"
echo "engines: unpacked in $OUT: $(tr '\n' ' ' <"$OUT/VERSIONS")"
