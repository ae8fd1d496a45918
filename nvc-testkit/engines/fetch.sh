#!/usr/bin/env bash
# Fetches the container engines users run — Debian 13 (trixie)'s docker.io 26.1 with
# docker-cli, containerd 1.7 and podman 5.4 — and unpacks them into a cache outside the
# repository, for the engine tests (examples/tests/engines.rs). Nothing is installed: the
# system's podman 4.3, runc and crun stay as they are.
#
#   nvc-testkit/engines/fetch.sh [CACHE]
#
# podman 5.4 is fetched but needs glibc 2.38 (trixie's), which Debian 12 does not have: the engine
# tests run it only where it starts.
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
PACKAGES=(docker.io docker-cli containerd podman)
if [ -s "$OUT/VERSIONS" ] && [ -x "$OUT/root/usr/sbin/dockerd" ] && [ -x "$OUT/root/usr/bin/podman" ]; then
    echo "engines: already in $OUT: $(tr '\n' ' ' <"$OUT/VERSIONS")"
    exit 0
fi

die() { echo "engines/fetch.sh: $*" >&2; exit 1; }
command -v apt-get >/dev/null || die "apt-get not found (a Debian-family host is needed)"

uri=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
[ -n "$uri" ] || uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)
[ -n "$uri" ] || uri=http://deb.debian.org/debian

A=$CACHE/apt-trixie
mkdir -p "$A"/etc/sources.list.d "$A"/etc/preferences.d "$A"/lists/partial "$A"/cache/archives/partial
echo "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" \
    >"$A/etc/sources.list"
OPTS=(-o "Dir::Etc::SourceList=$A/etc/sources.list" -o "Dir::Etc::SourceParts=$A/etc/sources.list.d"
      -o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache"
      -o "Dir::Etc::Preferences=$A/etc/preferences" -o "Dir::Etc::PreferencesParts=$A/etc/preferences.d"
      -o "APT::Architectures::=amd64" -o "Debug::NoLocking=1")
apt-get "${OPTS[@]}" -q update >"$CACHE/apt-trixie-update.log" 2>&1 ||
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
rm -rf "$dir" "$OUT"
mv "$OUT.tmp" "$OUT"
echo "engines: unpacked in $OUT: $(tr '\n' ' ' <"$OUT/VERSIONS")"
