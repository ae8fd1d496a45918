//! The image's `/etc/ld.so.conf`, read as glibc's `ldconfig` reads it, by pure functions over
//! bytes (fuzzed: `fuzz/fuzz_targets/ld_so_conf.rs`). The image is hostile: parsing is one pass
//! over the text, and matching an `include` pattern against a name is linear in
//! name × pattern with no recursion, so no pattern backtracks exponentially or overflows
//! the stack. The built-in cache update reads the files themselves under a budget.

/// A line of an `ld.so.conf` that names something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A library directory (an absolute path).
    Dir(&'a [u8]),
    /// `include PATTERN`: the files matching the pattern (relative to the including file's
    /// directory unless absolute) are read in its place.
    Include(&'a [u8]),
}

/// The lines of `text` that name something, in order: comments (`#` to the end of the line)
/// and blank lines dropped, surrounding whitespace trimmed.
///
/// # Errors
///
/// The first line nvc does not read as `ldconfig` does (a `hwcap` line, a relative path, a
/// directory with a type suffix `=TYPE` or several on one line), quoted.
pub fn parse(text: &[u8]) -> Result<Vec<Line<'_>>, String> {
    let mut lines = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let line = line.split(|&b| b == b'#').next().unwrap_or_default();
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if let Some(pattern) = line
            .strip_prefix(b"include")
            .filter(|r| r.starts_with(b" ") || r.starts_with(b"\t"))
        {
            lines.push(Line::Include(pattern.trim_ascii()));
        } else if line.starts_with(b"/")
            && !line
                .iter()
                .any(|&b| b.is_ascii_whitespace() || b == b'=' || b == b':' || b == b',')
        {
            lines.push(Line::Dir(line));
        } else {
            return Err(format!(
                "a line nvc does not read as ldconfig: {}",
                String::from_utf8_lossy(line)
            ));
        }
    }
    Ok(lines)
}

/// Whether `name` matches `pattern` (`*` any run of bytes, `?` one byte, anything else
/// itself), as `glob` matches a file name without brackets.
///
/// Iterative, with one backtrack point (the last `*`): at most `name.len() × pattern.len()`
/// steps and constant memory, whatever the pattern.
#[must_use]
pub fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and the name position it has absorbed up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || name.get(n) == Some(&c) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                // The last `*` absorbs one byte more; earlier ones need not be retried.
                Some((sp, sn)) => {
                    star = Some((sp, sn + 1));
                    p = sp + 1;
                    n = sn + 1;
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard(b"*.conf", b"x86_64-linux-gnu.conf"));
        assert!(!wildcard(b"*.conf", b"x.conf.bak"));
        assert!(wildcard(b"a?c*", b"abcdef"));
        assert!(!wildcard(b"a?c", b"ac"));
        assert!(wildcard(b"*", b""));
        assert!(wildcard(b"**a*", b"ba"));
        assert!(!wildcard(b"", b"a"));
        assert!(wildcard(b"*a*b", b"xaxxab"));
        assert!(!wildcard(b"*a*b", b"xaxxa"));
    }

    /// The attack that made the recursive matcher backtrack exponentially, and a million
    /// `*` that overflowed its stack, end at once.
    #[test]
    fn hostile_patterns_end_at_once() {
        let start = std::time::Instant::now();
        let pattern = [b"*a".repeat(14), b"*b".to_vec()].concat();
        assert!(!wildcard(&pattern, &b"a".repeat(60)));
        let stars = vec![b'*'; 1_000_000];
        assert!(wildcard(&stars, &b"a".repeat(4096)));
        assert!(!wildcard(
            &[stars.as_slice(), b"b"].concat(),
            &b"a".repeat(4096)
        ));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn lines_are_read_as_ldconfig_reads_them() {
        let conf =
            b"# c\ninclude /etc/ld.so.conf.d/*.conf\n\n  /usr/local/lib  # x\ninclude\tx.d/*\n";
        assert_eq!(
            parse(conf).unwrap(),
            [
                Line::Include(b"/etc/ld.so.conf.d/*.conf"),
                Line::Dir(b"/usr/local/lib"),
                Line::Include(b"x.d/*"),
            ]
        );
        for bad in [
            &b"hwcap 1 x"[..],
            b"lib",
            b"/usr/lib=glibc2",
            b"/a /b",
            b"includefoo",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
