//! A set of library-name prefixes matched against cache keys in one walk.

/// "No slot" in the compiled trie.
const NONE: u32 = u32::MAX;

/// An ordered set of name prefixes (`libcuda.so`, `libnvidia-ml.so`, ...) compiled into a
/// radix tree with dense per-node transition tables, so that finding which prefix a cache key
/// starts with costs one table step per branch and one comparison per shared run of bytes,
/// instead of one comparison per prefix.
///
/// When several prefixes match a key, the one listed first wins, as in libnvidia-container's
/// `ldcache_resolve`.
#[derive(Debug, Clone)]
pub struct PrefixSet {
    /// Node 0 is the root; its label is the run of bytes every prefix starts with (`lib`).
    nodes: Vec<Node>,
    /// Child node indices of all nodes, `NONE` where a byte has no child.
    next: Vec<u32>,
    /// Node labels, back to back.
    labels: Vec<u8>,
    prefixes: Vec<Box<[u8]>>,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// The bytes to match on entering this node (after the transition byte), in `labels`.
    label: (u32, u32),
    /// A label of at most 8 bytes as a little-endian word, and the mask of its bytes: most
    /// labels are matched with one load and compare.
    word: u64,
    mask: u64,
    /// Lowest byte with a child.
    lo: u8,
    /// Number of transition slots (`lo..lo + span`).
    span: u16,
    /// Index of this node's first transition in `next`.
    base: u32,
    /// The first-listed prefix that this node or an ancestor completes, or `NONE`.
    best: u32,
}

/// The uncompressed trie the radix tree is built from.
struct Plain {
    /// Children by byte, in insertion order.
    edges: Vec<Vec<(u8, usize)>>,
    /// The first-listed prefix ending at each node.
    ends: Vec<u32>,
}

impl Plain {
    fn new(prefixes: &[Box<[u8]>]) -> Self {
        let mut t = Plain {
            edges: vec![Vec::new()],
            ends: vec![NONE],
        };
        for (slot, p) in prefixes.iter().enumerate() {
            // A key is a C string: a prefix holding a NUL can never match.
            if p.contains(&0) {
                continue;
            }
            let mut at = 0;
            for &b in p.iter() {
                let found = t
                    .edges
                    .get(at)
                    .and_then(|e| e.iter().find(|e| e.0 == b))
                    .map(|e| e.1);
                at = found.unwrap_or_else(|| {
                    let next = t.edges.len();
                    t.edges.push(Vec::new());
                    t.ends.push(NONE);
                    if let Some(e) = t.edges.get_mut(at) {
                        e.push((b, next));
                    }
                    next
                });
            }
            if let Some(end) = t.ends.get_mut(at) {
                *end = (*end).min(u32::try_from(slot).unwrap_or(NONE));
            }
        }
        t
    }

    fn end(&self, at: usize) -> u32 {
        self.ends.get(at).copied().unwrap_or(NONE)
    }

    /// Follows single-child nodes that complete no prefix from `at`, collecting their bytes.
    fn chain(&self, mut at: usize, label: &mut Vec<u8>) -> usize {
        while let Some([(b, next)]) = self.edges.get(at).map(Vec::as_slice) {
            if self.end(at) != NONE {
                break;
            }
            label.push(*b);
            at = *next;
        }
        at
    }
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
        let plain = Plain::new(&prefixes);
        let mut set = PrefixSet {
            nodes: Vec::new(),
            next: Vec::new(),
            labels: Vec::new(),
            prefixes,
        };
        let mut root_label = Vec::new();
        let root = plain.chain(0, &mut root_label);
        set.add(&plain, root, &root_label, NONE);
        set
    }

    /// Adds the radix node for plain node `at`, entered through `label`, and its subtree;
    /// returns its index.
    fn add(&mut self, plain: &Plain, at: usize, label: &[u8], parent_best: u32) -> u32 {
        let index = self.nodes.len();
        let children = plain.edges.get(at).map(Vec::as_slice).unwrap_or_default();
        let lo = children.iter().map(|e| e.0).min().unwrap_or(0);
        let hi = children.iter().map(|e| e.0).max().unwrap_or(0);
        let span = if children.is_empty() {
            0
        } else {
            u16::from(hi - lo) + 1
        };
        let base = self.next.len();
        self.next.resize(base + usize::from(span), NONE);
        let label_at = self.labels.len();
        self.labels.extend_from_slice(label);
        let best = parent_best.min(plain.end(at));
        let mut word = [0u8; 8];
        let mut mask = [0u8; 8];
        for (i, &b) in label.iter().take(8).enumerate() {
            if let (Some(w), Some(m)) = (word.get_mut(i), mask.get_mut(i)) {
                (*w, *m) = (b, 0xff);
            }
        }
        self.nodes.push(Node {
            label: (to_u32(label_at), to_u32(label.len())),
            word: u64::from_le_bytes(word),
            mask: u64::from_le_bytes(mask),
            lo,
            span,
            base: to_u32(base),
            best,
        });
        for &(b, child) in children {
            let mut child_label = Vec::new();
            let end = plain.chain(child, &mut child_label);
            let child_index = self.add(plain, end, &child_label, best);
            if let Some(t) = self.next.get_mut(base + usize::from(b - lo)) {
                *t = child_index;
            }
        }
        to_u32(index)
    }

    /// `key` after `node`'s label, or `None` when the key does not go on with it.
    #[inline]
    fn after_label<'k>(&self, node: &Node, key: &'k [u8]) -> Option<&'k [u8]> {
        let (at, len) = (node.label.0 as usize, node.label.1 as usize);
        if len <= 8
            && let Some(head) = key.first_chunk::<8>()
        {
            let same = (u64::from_le_bytes(*head) ^ node.word) & node.mask == 0;
            return if same { key.get(len..) } else { None };
        }
        let label = self.labels.get(at..at + len).unwrap_or_default();
        key.strip_prefix(label)
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
    /// `key` may run past the string: no prefix holds a NUL byte, so matching stops there.
    #[must_use]
    #[inline]
    pub fn match_key(&self, key: &[u8]) -> Option<usize> {
        let mut node = self.nodes.first()?;
        let mut rest = self.after_label(node, key)?;
        while let Some((&b, tail)) = rest.split_first() {
            let d = usize::from(b.wrapping_sub(node.lo));
            if d >= usize::from(node.span) {
                break;
            }
            let Some(child) = self
                .next
                .get(node.base as usize + d)
                .and_then(|&c| self.nodes.get(c as usize))
            else {
                break;
            };
            match self.after_label(child, tail) {
                Some(after) => (node, rest) = (child, after),
                None => break,
            }
        }
        (node.best != NONE).then_some(node.best as usize)
    }
}

fn to_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(NONE)
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
    fn long_labels_and_short_keys() {
        let set = PrefixSet::new(["libnvidia-ptxjitcompiler.so", "libnvidia-pkcs11.so"]);
        assert_eq!(set.match_key(b"libnvidia-ptxjitcompiler.so.1"), Some(0));
        assert_eq!(set.match_key(b"libnvidia-ptxjitcompiler.s"), None);
        assert_eq!(set.match_key(b"libnvidia-ptxjitcompilerXso"), None);
        assert_eq!(set.match_key(b"libnvidia-pkcs11.so"), Some(1));
        // Labels of exactly 8 and 9 bytes, keys shorter than a word.
        let set = PrefixSet::new(["a12345678", "b1234567", "c"]);
        assert_eq!(set.match_key(b"a12345678"), Some(0));
        assert_eq!(set.match_key(b"a1234567"), None);
        assert_eq!(set.match_key(b"b1234567"), Some(1));
        assert_eq!(set.match_key(b"b123456"), None);
        assert_eq!(set.match_key(b"c"), Some(2));
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
            prefixes in prop::collection::vec("(lib)?a?[ab.\u{1}\u{fe}]{0,12}", 0..8),
            key in "(lib)?[ab.\u{1}\u{fe}]{0,20}",
        ) {
            let set = PrefixSet::new(&prefixes);
            let linear = prefixes.iter().position(|p| key.as_bytes().starts_with(p.as_bytes()));
            prop_assert_eq!(set.match_key(key.as_bytes()), linear);
        }
    }
}
