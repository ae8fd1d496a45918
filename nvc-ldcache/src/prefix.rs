//! A set of library-name prefixes matched against cache keys in one walk.

/// An ordered set of name prefixes (`libcuda.so`, `libnvidia-ml.so`, ...) compiled into a
/// byte trie, so that finding which prefix a cache key starts with costs one walk over the
/// key's first bytes instead of one comparison per prefix.
///
/// When several prefixes match a key, the one listed first wins, as in libnvidia-container's
/// `ldcache_resolve`.
#[derive(Debug, Clone)]
pub struct PrefixSet {
    nodes: Vec<Node>,
    prefixes: Vec<Box<[u8]>>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Children, by next byte.
    edges: Vec<(u8, u32)>,
    /// The first-listed prefix that ends here.
    slot: Option<u32>,
}

impl PrefixSet {
    /// Compiles `prefixes`; slot `i` of a resolution result belongs to the `i`-th prefix.
    ///
    /// A prefix listed twice keeps its first slot; the later slot never matches.
    pub fn new<I, S>(prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut set = PrefixSet {
            nodes: vec![Node::default()],
            prefixes: Vec::new(),
        };
        for p in prefixes {
            let p = p.as_ref();
            let slot = u32::try_from(set.prefixes.len()).unwrap_or(u32::MAX);
            let mut at = 0usize;
            for &b in p {
                at = set.child_or_insert(at, b);
            }
            if let Some(node) = set.nodes.get_mut(at) {
                node.slot.get_or_insert(slot);
            }
            set.prefixes.push(p.into());
        }
        set
    }

    fn child_or_insert(&mut self, at: usize, b: u8) -> usize {
        if let Some(next) = self.child(at, b) {
            return next;
        }
        let next = self.nodes.len();
        self.nodes.push(Node::default());
        if let Some(node) = self.nodes.get_mut(at) {
            node.edges
                .push((b, u32::try_from(next).unwrap_or(u32::MAX)));
        }
        next
    }

    fn child(&self, at: usize, b: u8) -> Option<usize> {
        let node = self.nodes.get(at)?;
        node.edges.iter().find(|e| e.0 == b).map(|e| e.1 as usize)
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
        let mut best = self.nodes.first()?.slot;
        let mut at = 0usize;
        for &b in key {
            if b == 0 {
                break;
            }
            match self.child(at, b) {
                Some(next) => at = next,
                None => break,
            }
            if let Some(slot) = self.nodes.get(at).and_then(|n| n.slot) {
                best = Some(best.map_or(slot, |s| s.min(slot)));
            }
        }
        best.map(|s| s as usize)
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
    }

    #[test]
    fn empty_prefix_matches_everything() {
        let set = PrefixSet::new(["libcuda.so", ""]);
        assert_eq!(set.match_key(b"libz.so.1"), Some(1));
        assert_eq!(set.match_key(b"libcuda.so.1"), Some(0));
        assert_eq!(PrefixSet::new::<_, &str>([]).match_key(b"x"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn agrees_with_a_linear_scan(
            prefixes in prop::collection::vec("[ab.]{0,4}", 0..8),
            key in "[ab.]{0,8}",
        ) {
            let set = PrefixSet::new(&prefixes);
            let linear = prefixes.iter().position(|p| key.as_bytes().starts_with(p.as_bytes()));
            prop_assert_eq!(set.match_key(key.as_bytes()), linear);
        }
    }
}
