#!/usr/bin/awk -f
# Median and minimum per variant of `VARIANT<TAB>MICROSECONDS` lines (benches/configure.sh),
# variants in the order they first appear. With `-v base=VARIANT`, also each variant's
# paired ratio against it: the median over the rounds of the variant's nth run over base's
# nth run (the two ran in the same round, back to back, so the VM's drift moves the ratio
# less than the medians).
BEGIN { FS = "\t" }
{
    if (!($1 in count)) order[++variants] = $1
    times[$1, ++count[$1]] = $2
}

# median(a, k): the median of a[1..k], sorted in place (insertion sort: a few dozen runs).
function median(a, k,    i, j, x) {
    for (i = 2; i <= k; i++) {
        x = a[i]
        for (j = i - 1; j > 0 && a[j] > x; j--) a[j + 1] = a[j]
        a[j + 1] = x
    }
    return a[int((k + 1) / 2)]
}

END {
    for (v = 1; v <= variants; v++) {
        name = order[v]
        k = count[name]
        for (i = 1; i <= k; i++) sorted[i] = times[name, i]
        m = median(sorted, k)
        line = sprintf("%s: median %d us, min %d us (%d runs)", name, m, sorted[1], k)
        if (base != "" && base in count && name != base) {
            n = k < count[base] ? k : count[base]
            for (i = 1; i <= n; i++) ratio[i] = times[name, i] / times[base, i]
            line = line sprintf(", %.3f x %s (paired)", median(ratio, n), base)
        }
        print line
    }
}
