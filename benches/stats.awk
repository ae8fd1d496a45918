#!/usr/bin/awk -f
# Median and minimum per variant of `VARIANT<TAB>MICROSECONDS` lines (benches/configure.sh),
# variants in the order they first appear.
BEGIN { FS = "\t" }
{
    if (!($1 in count)) order[++variants] = $1
    times[$1, ++count[$1]] = $2
}
END {
    for (v = 1; v <= variants; v++) {
        name = order[v]
        k = count[name]
        for (i = 1; i <= k; i++) sorted[i] = times[name, i]
        # Insertion sort: a few dozen runs per variant.
        for (i = 2; i <= k; i++) {
            x = sorted[i]
            for (j = i - 1; j > 0 && sorted[j] > x; j--) sorted[j + 1] = sorted[j]
            sorted[j + 1] = x
        }
        printf "%s: median %d us, min %d us (%d runs)\n", name, sorted[int((k + 1) / 2)], sorted[1], k
    }
}
