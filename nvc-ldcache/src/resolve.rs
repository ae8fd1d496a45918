//! Lookups: one SONAME, or a whole prefix set in one pass with upstream's winner rule.

use crate::bytes::{i32_at, u32_at};
use crate::cache::RawEntry;
use crate::flags::{ARCH_MASK, ELF};
use crate::{Arch, Entry, Error, LdCache, PrefixSet};

impl<'a> LdCache<'a> {
    /// The first entry, in cache order, whose SONAME is exactly `soname` and whose
    /// architecture is `arch` (glibc sorts glibc-hwcaps variants first).
    ///
    /// # Errors
    ///
    /// A corrupt entry met on the way ([`Error::StringOutOfRange`], [`Error::MissingNul`]).
    pub fn find(&self, soname: &[u8], arch: Arch) -> Result<Option<Entry<'a>>, Error> {
        for (index, chunk) in self.chunks().enumerate() {
            let raw = RawEntry::read(chunk);
            if raw.flags & ARCH_MASK != arch.value() {
                continue;
            }
            let key = self.string(index, "soname", raw.key)?;
            if key == soname {
                return self.entry_from(index, raw).map(Some);
            }
        }
        Ok(None)
    }

    /// Resolves every prefix of `set` for `arch`, keeping the **last** matching entry in cache
    /// order, as libnvidia-container's `ldcache_resolve` with native selection does.
    ///
    /// Slot `i` of the result belongs to `set.prefix(i)`; `None` means no entry matched.
    ///
    /// # Errors
    ///
    /// A corrupt entry anywhere in the table, as upstream's "corrupted ldcache entry".
    pub fn resolve(&self, set: &PrefixSet, arch: Arch) -> Result<Vec<Option<Entry<'a>>>, Error> {
        self.resolve_with(set, arch, |_, _, _| Ok::<_, Error>(true))
    }

    /// Resolves `set` for several architectures in one pass over the cache (driver discovery
    /// wants the 64-bit and the 32-bit set); result `i` belongs to `arches[i]`, with the same
    /// rule as [`LdCache::resolve`].
    ///
    /// # Errors
    ///
    /// A corrupt entry anywhere in the table.
    pub fn resolve_arches(
        &self,
        set: &PrefixSet,
        arches: &[Arch],
    ) -> Result<Vec<Vec<Option<Entry<'a>>>>, Error> {
        let wanted: Vec<i32> = arches.iter().map(|a| a.value()).collect();
        let mut out = vec![vec![None; set.len()]; arches.len()];
        self.scan(set, &wanted, |which, slot, candidate| {
            if let Some(current) = out.get_mut(which).and_then(|o| o.get_mut(slot)) {
                *current = Some(candidate);
            }
            Ok::<_, Error>(())
        })?;
        Ok(out)
    }

    /// Resolves `set` for `arch`, letting `select` decide whether each candidate replaces the
    /// slot's current winner (upstream's `ldcache_select_fn`).
    ///
    /// Entries are visited in cache order; an entry is a candidate when its ELF bit is set,
    /// its architecture is `arch` and its SONAME starts with a prefix of `set` (the first
    /// listed one). `select(slot, current, candidate)` returns `Ok(true)` to make the candidate
    /// the slot's winner. Driver discovery uses it to resolve the path inside a driver root and
    /// to check the driver version; WSL selection uses `current` to keep `/wsl/lib` winners.
    ///
    /// # Errors
    ///
    /// A corrupt entry (converted into `E`), or the first error `select` returns.
    pub fn resolve_with<E, F>(
        &self,
        set: &PrefixSet,
        arch: Arch,
        mut select: F,
    ) -> Result<Vec<Option<Entry<'a>>>, E>
    where
        E: From<Error>,
        F: FnMut(usize, Option<&Entry<'a>>, &Entry<'a>) -> Result<bool, E>,
    {
        let mut out: Vec<Option<Entry<'a>>> = vec![None; set.len()];
        self.scan(set, &[arch.value()], |_, slot, candidate| {
            if let Some(current) = out.get_mut(slot)
                && select(slot, current.as_ref(), &candidate)?
            {
                *current = Some(candidate);
            }
            Ok::<_, E>(())
        })?;
        Ok(out)
    }

    /// The one pass behind the resolvers: for each entry in cache order whose ELF bit is set,
    /// whose architecture value is `wanted[i]` and whose SONAME starts with a prefix of `set`,
    /// calls `found(i, slot, entry)`.
    fn scan<E, F>(&self, set: &PrefixSet, wanted: &[i32], mut found: F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(usize, usize, Entry<'a>) -> Result<(), E>,
    {
        let bytes = self.bytes();
        for (index, chunk) in self.chunks().enumerate() {
            let flags = i32_at(chunk, 0).unwrap_or_default();
            let key = u32_at(chunk, 4).unwrap_or_default();
            // Every key must lie inside the file, as upstream checks before filtering.
            let key_at = self.string_offset(index, "soname", key)?;
            if flags & ELF == 0 {
                continue;
            }
            let Some(which) = wanted.iter().position(|&w| w == flags & ARCH_MASK) else {
                continue;
            };
            let Some(slot) = set.match_key(bytes.get(key_at..).unwrap_or_default()) else {
                continue;
            };
            found(which, slot, self.entry_from(index, RawEntry::read(chunk))?)?;
        }
        Ok(())
    }
}
