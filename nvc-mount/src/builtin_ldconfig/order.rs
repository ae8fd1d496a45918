//! glibc's cache order.

use std::cmp::Ordering;

use nvc_ldcache::CacheEntry;

/// glibc's cache order (`ldconfig`'s `compare`): names by `_dl_cache_libcmp`, descending,
/// then flags and OS version descending (no hwcap entries here).
pub(super) fn glibc_order(a: &CacheEntry, b: &CacheEntry) -> Ordering {
    libcmp(&b.soname, &a.soname)
        .then(b.flags.0.cmp(&a.flags.0))
        .then(b.osversion.cmp(&a.osversion))
}

/// glibc's `_dl_cache_libcmp`: digit runs compare as numbers, a digit sorts after a
/// non-digit, other bytes as bytes.
pub(super) fn libcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (n, di) = number(a.get(i..).unwrap_or_default());
                let (m, dj) = number(b.get(j..).unwrap_or_default());
                if n != m {
                    return n.cmp(&m);
                }
                (i, j) = (i + di, j + dj);
            }
            (Some(x), Some(_)) if x.is_ascii_digit() => return Ordering::Greater,
            (Some(_), Some(y)) if y.is_ascii_digit() => return Ordering::Less,
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => (i, j) = (i + 1, j + 1),
        }
    }
}

/// The number a digit run starts with (saturating) and its length.
fn number(s: &[u8]) -> (u64, usize) {
    let digits = s.iter().take_while(|c| c.is_ascii_digit());
    let n = digits.clone().fold(0u64, |n, c| {
        n.saturating_mul(10).saturating_add(u64::from(c - b'0'))
    });
    (n, digits.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libcmp_is_glibcs() {
        use Ordering::*;
        assert_eq!(libcmp(b"libc.so.6", b"libc.so.6"), Equal);
        assert_eq!(libcmp(b"libfoo.so.10", b"libfoo.so.9"), Greater);
        assert_eq!(libcmp(b"libfoo.so.1", b"libfoo.so"), Greater);
        assert_eq!(libcmp(b"lib2", b"liba"), Greater);
        assert_eq!(libcmp(b"libA", b"liba"), Less);
    }
}
