# Sourced by nvc-testkit's fetch scripts: Debian's archive read through a private apt state
# under a cache directory, never the system's sources or lists.

# archive_uri: the archive the system already uses (deb822 or one-line sources), else
# deb.debian.org.
archive_uri() {
    local uri
    uri=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
    [ -n "$uri" ] || uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)
    echo "${uri:-http://deb.debian.org/debian}"
}

# private_apt DIR LOG SOURCE ARCH...: an apt state in DIR whose only source is the one-line
# SOURCE, for the architectures ARCH, its lists updated (apt-get's output in LOG); sets OPTS,
# the options that make apt-get use it. Fails as apt-get update does.
private_apt() {
    local dir=$1 log=$2 source=$3 arch
    shift 3
    mkdir -p "$dir"/etc/sources.list.d "$dir"/etc/preferences.d "$dir"/lists/partial \
        "$dir"/cache/archives/partial
    echo "$source" >"$dir/etc/sources.list"
    OPTS=(-o "Dir::Etc::SourceList=$dir/etc/sources.list" -o "Dir::Etc::SourceParts=$dir/etc/sources.list.d"
          -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
          -o "Dir::Etc::Preferences=$dir/etc/preferences" -o "Dir::Etc::PreferencesParts=$dir/etc/preferences.d")
    for arch in "$@"; do
        OPTS+=(-o "APT::Architectures::=$arch")
    done
    OPTS+=(-o "Debug::NoLocking=1")
    apt-get "${OPTS[@]}" -q update >"$log" 2>&1
}
