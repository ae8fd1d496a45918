//! A set of library-name prefixes matched against cache keys in one walk.

/// "No slot" in the compiled trie.
const NONE: u32 = u32::MAX;

/// An ordered set of name prefixes (`libcuda.so`, `libnvidia-ml.so`, ...) compiled into a
/// byte trie with dense per-node transition tables, so that finding which prefix a cache key
/// starts with costs one table step per matching byte of the key instead of one comparison per
/// prefix.
///
/// When several prefixes match a key, the one listed first wins, as in libnvidia-container's
/// `ldcache_resolve`.
#[derive(Debug, Clone)]
pub struct PrefixSet {
    nodes: Vec<Node>,
    /// The bytes every prefix starts with (`lib` for library names), compared at once.
    common: Box<[u8]>,
    /// The node reached by `common`.
    start: u32,
    /// Child node indices of all nodes, `NONE` where a byte has no child.
    next: Vec<u32>,
    prefixes: Vec<Box<[u8]>>,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// Lowest byte with a child.
    lo: u8,
    /// Number of transition slots (`lo..lo + span`).
    span: u16,
    /// Index of this node's first transition in `next`.
    base: u32,
    /// The first-listed prefix that this node or an ancestor completes, or `NONE`.
    best: u32,
}

impl PrefixSet {
    /// Compiles `prefixes`; slot `i` of a resolution result belongs to the `i`-th prefix.
    ///
    /// A prefix listed twice keeps its first slot; the later slot never matches, and neither
    /// does a prefix with a NUL byte (keys are C strings).
    pub fn new<I, S>(prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let prefixes: Vec<Box<[u8]>> = prefixes.into_iter().map(|p| p.as_ref().into()).collect();
        // A plain trie first: children as sorted edge lists, the slot completed at each node.
        let mut edges: Vec<Vec<(u8, usize)>> = vec![Vec::new()];
        let mut ends: Vec<u32> = vec![NONE];
        let usable = || prefixes.iter().filter(|p| !p.contains(&0));
        let common: Box<[u8]> = match usable().next() {
            Some(first) => {
                let n = usable()
                    .map(|p| {
                        p.iter()
                            .zip(first.iter())
                            .take_while(|(a, b)| a == b)
                            .count()
                    })
                    .min()
                    .unwrap_or(0);
                first.get(..n).unwrap_or_default().into()
            }
            None => Box::default(),
        };
        for (slot, p) in prefixes.iter().enumerate() {
            if p.contains(&0) {
                continue;
            }
            let mut at = 0;
            for &b in p.iter() {
                let found = edges
                    .get(at)
                    .and_then(|e| e.iter().find(|e| e.0 == b))
                    .map(|e| e.1);
                at = match found {
                    Some(next) => next,
                    None => {
                        let next = edges.len();
                        edges.push(Vec::new());
                        ends.push(NONE);
                        if let Some(e) = edges.get_mut(at) {
                            e.push((b, next));
                        }
                        next
                    }
                };
            }
            if let Some(end) = ends.get_mut(at) {
                *end = (*end).min(u32::try_from(slot).unwrap_or(NONE));
            }
        }
        // Then dense tables; nodes keep their indices, parents come before children.
        let mut set = PrefixSet {
            nodes: Vec::with_capacity(edges.len()),
            common,
            start: 0,
            next: Vec::new(),
            prefixes,
        };
        let mut best = vec![NONE; edges.len()];
        if let (Some(b), Some(&e)) = (best.first_mut(), ends.first()) {
            *b = e;
        }
        for (at, children) in edges.iter().enumerate() {
            let here = best.get(at).copied().unwrap_or(NONE);
            let lo = children.iter().map(|e| e.0).min().unwrap_or(0);
            let hi = children.iter().map(|e| e.0).max().unwrap_or(0);
            let span = if children.is_empty() {
                0
            } else {
                u16::from(hi - lo) + 1
            };
            let base = set.next.len();
            set.next.resize(base + usize::from(span), NONE);
            for &(b, child) in children {
                if let Some(t) = set.next.get_mut(base + usize::from(b - lo)) {
                    *t = u32::try_from(child).unwrap_or(NONE);
                }
                if let (Some(cb), Some(&end)) = (best.get_mut(child), ends.get(child)) {
                    *cb = here.min(end);
                }
            }
            set.nodes.push(Node {
                lo,
                span,
                base: u32::try_from(base).unwrap_or(NONE),
                best: here,
            });
        }
        // Every prefix starts with `common`, a chain of single-child nodes (a prefix may end
        // at its last node, none inside it): walk it once here instead of per key.
        let mut start = 0;
        for &b in set.common.iter() {
            start = set.step(start, b).unwrap_or(start);
        }
        set.start = u32::try_from(start).unwrap_or(0);
        set
    }

    /// The child of node `at` for byte `b`.
    fn step(&self, at: usize, b: u8) -> Option<usize> {
        let node = self.nodes.get(at)?;
        let d = usize::from(b.wrapping_sub(node.lo));
        if d >= usize::from(node.span) {
            return None;
        }
        match self.next.get(node.base as usize + d) {
            Some(&child) if child != NONE => Some(child as usize),
            _ => None,
        }
    }

    /// The number of prefixes (result slots).
    #[must_use]
    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    /// Whether the set has no prefixes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// Prefix `slot` as given to [`PrefixSet::new`].
    #[must_use]
    pub fn prefix(&self, slot: usize) -> Option<&[u8]> {
        self.prefixes.get(slot).map(AsRef::as_ref)
    }

    /// The slot of the first-listed prefix that `key` starts with.
    ///
    /// `key` may run past the string: the walk stops at the first NUL byte.
    #[must_use]
    pub fn match_key(&self, key: &[u8]) -> Option<usize> {
        let rest = key.strip_prefix(&*self.common)?;
        let mut node = *self.nodes.get(self.start as usize)?;
        for &b in rest {
            let d = usize::from(b.wrapping_sub(node.lo));
            if d >= usize::from(node.span) {
                break;
            }
            match self.next.get(node.base as usize + d) {
                Some(&child) if child != NONE => match self.nodes.get(child as usize) {
                    Some(&n) => node = n,
                    None => break,
                },
                _ => break,
            }
        }
        (node.best != NONE).then_some(node.best as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_listed_prefix_wins() {
        let set = PrefixSet::new([
            "libnvidia-pkcs11.so",
            "libnvidia-pkcs11",
            "libGL.so",
            "libGLX_nvidia.so",
        ]);
        assert_eq!(
            set.match_key(b"libnvidia-pkcs11.so.550.54.14\0junk"),
            Some(0)
        );
        assert_eq!(set.match_key(b"libnvidia-pkcs11-openssl3.so.550"), Some(1));
        assert_eq!(set.match_key(b"libGLX_nvidia.so.0"), Some(3));
        assert_eq!(set.match_key(b"libGL.so.1"), Some(2));
        assert_eq!(set.match_key(b"libGLX.so.0"), None);
        assert_eq!(set.match_key(b"libGL\0.so"), None);
        assert_eq!(set.len(), 4);
        assert_eq!(set.prefix(2), Some(&b"libGL.so"[..]));
    }

    #[test]
    fn empty_prefix_matches_everything() {
        let set = PrefixSet::new(["libcuda.so", ""]);
        assert_eq!(set.match_key(b"libz.so.1"), Some(1));
        assert_eq!(set.match_key(b"libcuda.so.1"), Some(0));
        assert_eq!(PrefixSet::new::<_, &str>([]).match_key(b"x"), None);
        assert_eq!(
            PrefixSet::new(["lib\0x", "lib"]).match_key(b"lib\0x"),
            Some(1)
        );
        assert_eq!(
            PrefixSet::new(["lib", "libc"]).match_key(b"libc.so"),
            Some(0)
        );
    }

    #[test]
    fn bytes_across_the_whole_range_have_transitions() {
        let set = PrefixSet::new([&[0x01u8, 0xff][..], &[0xff, 0x01][..]]);
        assert_eq!(set.match_key(&[0x01, 0xff, 7]), Some(0));
        assert_eq!(set.match_key(&[0xff, 0x01]), Some(1));
        assert_eq!(set.match_key(&[0x80]), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        #[test]
        fn agrees_with_a_linear_scan(
            prefixes in prop::collection::vec("a?[ab.\u{1}\u{fe}]{0,4}", 0..8),
            key in "[ab.\u{1}\u{fe}]{0,8}",
        ) {
            let set = PrefixSet::new(&prefixes);
            let linear = prefixes.iter().position(|p| key.as_bytes().starts_with(p.as_bytes()));
            prop_assert_eq!(set.match_key(key.as_bytes()), linear);
        }
    }
}
