#!/usr/bin/env bash
# Fetches glibc's ldconfig and a small real image of each of three glibc versions — Debian 12
# (bookworm, glibc 2.36), 13 (trixie, 2.41) and sid (2.43) — and unpacks each into a cache
# outside the repository, for the built-in linker cache's oracle test
# (nvc-mount/tests/builtin_ldconfig.rs). Nothing is installed.
#
#   nvc-testkit/glibc/fetch.sh [CACHE]
#
# CACHE defaults to $NVC_GLIBC_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/nvc-testkit.
# Afterwards CACHE/glibc/SUITE/root is a merged-/usr image of that suite: libc6 (its loader
# link in /lib64), libc6-dev (linker scripts and development links), libc-bin (the static
# /sbin/ldconfig, /etc/ld.so.conf and ld.so.conf.d) and a few common libraries;
# CACHE/glibc/SUITE/i386 what libc6-i386 adds to it (/usr/lib32, its ld.so.conf.d include, the
# i386 loader's link), to copy over a copy of root; CACHE/glibc/SUITE/VERSIONS says what they
# are.
# A second run reuses what is there. Uses a private apt state per suite under CACHE (the
# system's sources are untouched); needs apt-get, dpkg-deb and the network to Debian's
# archive; any failure exits non-zero saying what failed.
set -euo pipefail

CACHE=${1:-${NVC_GLIBC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nvc-testkit}}
SUITES=(bookworm trixie sid)
PACKAGES=(libc-bin libc6 libc6-i386 libc6-dev libgcc-s1 libstdc++6 zlib1g zlib1g-dev
          libzstd1 liblzma5 libbz2-1.0 libcrypt1 libffi8 libtinfo6 libacl1 libattr1)

die() { echo "glibc/fetch.sh: $*" >&2; exit 1; }
command -v apt-get >/dev/null || die "apt-get not found (a Debian-family host is needed)"

# shellcheck source=nvc-testkit/apt.sh
. "$(dirname "$0")/../apt.sh"
uri=$(archive_uri)

for suite in "${SUITES[@]}"; do
    out=$CACHE/glibc/$suite
    if [ -s "$out/VERSIONS" ] && [ -d "$out/i386/usr/lib32" ] &&
        "$out/root/usr/sbin/ldconfig" --version >/dev/null 2>&1; then
        echo "glibc: $suite already in $out: $(head -n 1 "$out/root/VERSION-ldconfig")"
        continue
    fi
    private_apt "$CACHE/apt-$suite" "$CACHE/apt-$suite-update.log" \
        "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" \
        amd64 ||
        die "apt-get update of $uri $suite failed (log: $CACHE/apt-$suite-update.log)"
    debs=$CACHE/debs/glibc-$suite
    rm -rf "$debs" "$out.tmp"
    mkdir -p "$debs" "$out.tmp/staging" "$out.tmp/staging-i386"
    (cd "$debs" && apt-get "${OPTS[@]}" -q download "${PACKAGES[@]}" >"$CACHE/download-glibc-$suite.log" 2>&1) ||
        die "apt-get download of ${PACKAGES[*]} ($suite) failed (log: $CACHE/download-glibc-$suite.log)"
    for deb in "$debs"/*.deb; do
        staging=$out.tmp/staging
        [[ $(basename "$deb") = libc6-i386_* ]] && staging=$out.tmp/staging-i386
        dpkg-deb -x "$deb" "$staging" || die "dpkg-deb -x $deb failed"
        echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >>"$out.tmp/VERSIONS"
    done
    # Merged /usr, as Debian images are: /lib, /lib32, /lib64, /bin and /sbin are links into
    # /usr, and whatever a package put in the top-level directories moves there.
    for tree in root:staging i386:staging-i386; do
        root=$out.tmp/${tree%%:*}
        from=$out.tmp/${tree#*:}
        mkdir -p "$root/usr" "$root/etc"
        for d in lib lib32 lib64 bin sbin; do
            mkdir -p "$root/usr/$d"
            [ "$tree" = root:staging ] && ln -s "usr/$d" "$root/$d"
            if [ -d "$from/$d" ]; then
                cp -a "$from/$d/." "$root/usr/$d/"
            fi
        done
        [ -d "$from/usr" ] && cp -a "$from/usr/." "$root/usr/"
        [ -d "$from/etc" ] && cp -a "$from/etc/." "$root/etc/"
        rm -rf "$from"
    done
    root=$out.tmp/root
    rm -rf "$debs"
    "$root/usr/sbin/ldconfig" --version | head -n 1 >"$root/VERSION-ldconfig" ||
        die "the $suite ldconfig does not run here"
    rm -rf "$out"
    mv "$out.tmp" "$out"
    echo "glibc: $suite unpacked in $out: $(cat "$out/root/VERSION-ldconfig")"
done
