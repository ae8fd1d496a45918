//! Parsing the cache: formats, header validation, entries and extensions.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::bytes::{CStrError, align_up, cstr_at, i32_at, u32_at, u64_at};
use crate::{Arch, Error, Flags};

/// Magic of the old (libc5 / glibc 2.0) format: `"ld.so-1.7.0"`, no NUL.
pub const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
/// Magic and version of the new (glibc ≥ 2.2) format: `"glibc-ld.so.cache"` + `"1.1"`.
pub const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
/// Size of the old header (magic padded to 12, `u32 nlibs`).
pub(crate) const OLD_HEADER: usize = 16;
/// Size of an old entry (`i32 flags, u32 key, u32 value`).
pub(crate) const OLD_ENTRY: usize = 12;
/// Size of the new header.
pub(crate) const NEW_HEADER: usize = 48;
/// Size of a new entry (`i32 flags, u32 key, u32 value, u32 osversion, u64 hwcap`).
pub(crate) const NEW_ENTRY: usize = 24;
/// Alignment of the new header when it follows an old table.
pub(crate) const NEW_ALIGN: usize = 8;
/// Magic of the extension directory (`cache_extension_magic`).
pub(crate) const EXTENSION_MAGIC: u32 = 0xeaa4_2174;
/// Extension tag of the generator string.
pub(crate) const TAG_GENERATOR: u32 = 0;
/// Extension tag of the glibc-hwcaps subdirectory array.
pub(crate) const TAG_GLIBC_HWCAPS: u32 = 1;
/// `DL_CACHE_HWCAP_EXTENSION`: the hwcap field indexes the glibc-hwcaps array.
pub(crate) const HWCAP_EXTENSION: u64 = 1 << 62;
/// Mask of the ISA level bits above bit 32 of an extension hwcap.
pub(crate) const ISA_LEVEL_MASK: u64 = (1 << 10) - 1;
/// `cache_file_new_flags_endian_*` of this machine.
const ENDIAN_NATIVE: u8 = if cfg!(target_endian = "little") { 2 } else { 3 };

/// Which layouts a cache file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Only the old `ld.so-1.7.0` table (`ldconfig -c old`).
    Old,
    /// Only the new `glibc-ld.so.cache1.1` table (`ldconfig -c new`, glibc ≥ 2.32's default).
    New,
    /// An old table with the new format hidden in its string area (`ldconfig -c compat`);
    /// entries come from the new table, as glibc reads it.
    Combined,
}

/// Where the table that entries are read from lies.
#[derive(Debug, Clone, Copy)]
struct Table {
    /// Offset of entry 0.
    start: usize,
    /// Number of entries.
    count: usize,
    /// [`OLD_ENTRY`] or [`NEW_ENTRY`].
    entry_size: usize,
    /// Offset string offsets are relative to.
    strings: usize,
}

/// The parsed extension directory.
#[derive(Debug, Clone, Copy, Default)]
struct Extensions<'a> {
    generator: Option<&'a [u8]>,
    /// Offset and element count of the glibc-hwcaps `u32` array.
    hwcaps: Option<(usize, usize)>,
}

/// A validated view of an `ld.so.cache` file in memory.
///
/// [`LdCache::parse`] checks the headers and that the entry table lies inside the input, in
/// constant time; each entry's strings are checked when the entry is read, so a corrupt entry
/// is an error for that entry and never an out-of-bounds read.
#[derive(Clone, Copy)]
pub struct LdCache<'a> {
    bytes: &'a [u8],
    format: Format,
    table: Table,
    extensions: Extensions<'a>,
    extension_error: Option<ExtensionDefect>,
}

impl From<&'static str> for ExtensionDefect {
    fn from(reason: &'static str) -> Self {
        ExtensionDefect::Malformed(reason)
    }
}

/// What is wrong with an extension directory that [`LdCache::parse`] tolerated.
#[derive(Debug, Clone, Copy)]
enum ExtensionDefect {
    /// Its offset is not a multiple of 4.
    Misaligned(u32),
    /// Anything else.
    Malformed(&'static str),
}

impl fmt::Debug for LdCache<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdCache")
            .field("len", &self.bytes.len())
            .field("format", &self.format)
            .field("entries", &self.table.count)
            .finish_non_exhaustive()
    }
}

/// The fields of a table entry before its strings are looked up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawEntry {
    pub(crate) flags: i32,
    pub(crate) key: u32,
    pub(crate) value: u32,
    pub(crate) osversion: u32,
    pub(crate) hwcap: u64,
}

impl RawEntry {
    /// Reads an entry from its table chunk: [`OLD_ENTRY`] bytes without OS version and hwcap,
    /// [`NEW_ENTRY`] bytes with them.
    pub(crate) fn read(chunk: &[u8]) -> Self {
        RawEntry {
            flags: i32_at(chunk, 0).unwrap_or_default(),
            key: u32_at(chunk, 4).unwrap_or_default(),
            value: u32_at(chunk, 8).unwrap_or_default(),
            osversion: u32_at(chunk, 12).unwrap_or_default(),
            hwcap: u64_at(chunk, 16).unwrap_or_default(),
        }
    }
}

impl<'a> LdCache<'a> {
    /// Parses a cache in any of glibc's layouts (old, new, old + new combined).
    ///
    /// The byte order is this machine's, as for glibc; a new-format header marked for the
    /// other byte order is rejected.
    ///
    /// # Errors
    ///
    /// [`Error::BadMagic`] for input that is no cache, [`Error::Truncated`] when a header or
    /// the entry table does not fit, [`Error::CountOverflow`] for an absurd entry count and
    /// [`Error::WrongEndian`]. A malformed extension directory is not an error here (the
    /// entries are still usable); see [`LdCache::check_extensions`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let len = bytes.len();
        if bytes.starts_with(OLD_MAGIC) {
            let count = u32_at(bytes, OLD_MAGIC.len() + 1)
                .ok_or_else(|| Error::truncated("ld.so.cache old header", 0, OLD_HEADER, len))?;
            let table = table_at(bytes, OLD_HEADER, count, OLD_ENTRY, "ld.so.cache old table")?;
            let end = table.start + table.count * OLD_ENTRY;
            let old = Table {
                strings: end,
                ..table
            };
            match align_up(end, NEW_ALIGN) {
                Some(at) if bytes.get(at..).is_some_and(|t| t.starts_with(NEW_MAGIC)) => {
                    Self::parse_new(bytes, at, Format::Combined)
                }
                _ => Ok(LdCache {
                    bytes,
                    format: Format::Old,
                    table: old,
                    extensions: Extensions::default(),
                    extension_error: None,
                }),
            }
        } else if bytes.starts_with(NEW_MAGIC) {
            Self::parse_new(bytes, 0, Format::New)
        } else if OLD_MAGIC.starts_with(bytes) || NEW_MAGIC.starts_with(bytes) {
            Err(Error::truncated(
                "ld.so.cache header",
                0,
                NEW_MAGIC.len(),
                len,
            ))
        } else {
            Err(Error::BadMagic {
                what: "an ld.so.cache",
                found: bytes.iter().take(20).copied().collect(),
            })
        }
    }

    fn parse_new(bytes: &'a [u8], at: usize, format: Format) -> Result<Self, Error> {
        let len = bytes.len();
        let truncated = || Error::truncated("ld.so.cache header", at, NEW_HEADER, len);
        if len.saturating_sub(at) < NEW_HEADER {
            return Err(truncated());
        }
        let count = u32_at(bytes, at + 20).ok_or_else(truncated)?;
        let flags = bytes.get(at + 28).copied().ok_or_else(truncated)?;
        if flags != 0 && flags & 3 != ENDIAN_NATIVE {
            return Err(Error::WrongEndian { flags });
        }
        let ext_offset = u32_at(bytes, at + 32).ok_or_else(truncated)?;
        let table = Table {
            strings: at,
            ..table_at(
                bytes,
                at + NEW_HEADER,
                count,
                NEW_ENTRY,
                "ld.so.cache table",
            )?
        };
        let (extensions, extension_error) = match load_extensions(bytes, ext_offset) {
            Ok(ext) => (ext, None),
            Err(reason) => (Extensions::default(), Some(reason)),
        };
        Ok(LdCache {
            bytes,
            format,
            table,
            extensions,
            extension_error,
        })
    }

    /// The layouts present in the file.
    #[must_use]
    pub fn format(&self) -> Format {
        self.format
    }

    /// The number of entries (of the new table when there is one).
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.count
    }

    /// Whether the cache has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.table.count == 0
    }

    /// The `ldconfig` that wrote the cache (glibc ≥ 2.33 extension), e.g.
    /// `ldconfig (Debian GLIBC 2.36-9) stable release version 2.36`.
    #[must_use]
    pub fn generator(&self) -> Option<&'a [u8]> {
        self.extensions.generator
    }

    /// Checks the extension directory, which [`LdCache::parse`] tolerates being malformed.
    ///
    /// # Errors
    ///
    /// [`Error::Misaligned`] for a directory offset that is not a multiple of 4, otherwise
    /// [`Error::BadExtension`] saying what is wrong, as `ldconfig -p` refuses such a file.
    pub fn check_extensions(&self) -> Result<(), Error> {
        match self.extension_error {
            Some(ExtensionDefect::Misaligned(offset)) => Err(Error::Misaligned {
                what: "ld.so.cache extension directory",
                offset: offset.into(),
                align: 4,
            }),
            Some(ExtensionDefect::Malformed(reason)) => Err(Error::BadExtension { reason }),
            None => Ok(()),
        }
    }

    /// Entry `index`, in file order.
    ///
    /// # Errors
    ///
    /// [`Error::StringOutOfRange`] or [`Error::MissingNul`] for a corrupt entry;
    /// [`Error::Truncated`] for an index past the table.
    pub fn entry(&self, index: usize) -> Result<Entry<'a>, Error> {
        self.entry_from(index, self.raw(index)?)
    }

    pub(crate) fn entry_from(&self, index: usize, raw: RawEntry) -> Result<Entry<'a>, Error> {
        Ok(Entry {
            soname: self.string(index, "soname", raw.key)?,
            path: self.string(index, "path", raw.value)?,
            flags: Flags(raw.flags),
            osversion: raw.osversion,
            hwcap: raw.hwcap,
            hwcaps_subdir: self.hwcaps_subdir(raw.hwcap),
        })
    }

    /// All entries in file order (the order `ldconfig -p` prints them).
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            cache: *self,
            chunks: self.chunks().enumerate(),
        }
    }

    /// Writes the whole cache as `ldconfig -p -C <name>` prints it: a count line, one line per
    /// entry and, when the cache records it, the generator line.
    ///
    /// # Errors
    ///
    /// The writer's error, or an [`io::ErrorKind::InvalidData`] error whose source is the
    /// [`Error`] of a corrupt entry or a malformed extension directory (which `ldconfig -p`
    /// refuses too).
    pub fn write_listing(&self, name: &OsStr, w: &mut dyn io::Write) -> io::Result<()> {
        let invalid = |e: Error| io::Error::new(io::ErrorKind::InvalidData, e);
        self.check_extensions().map_err(invalid)?;
        // Built in memory and written at once: one write, and nothing written for a cache
        // with a corrupt entry.
        let mut out = Vec::with_capacity(self.bytes.len() + 16 * self.len() + 64);
        out.extend_from_slice(format!("{} libs found in cache `", self.len()).as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"'\n");
        for entry in self.entries() {
            entry.map_err(invalid)?.push_ldconfig_line(&mut out);
        }
        if let Some(generator) = self.generator() {
            out.extend_from_slice(b"Cache generated by: ");
            out.extend_from_slice(generator);
            out.push(b'\n');
        }
        w.write_all(&out)
    }

    pub(crate) fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The entry table, whose bounds `parse` checked.
    pub(crate) fn table(&self) -> &'a [u8] {
        let t = &self.table;
        self.bytes
            .get(t.start..t.start + t.count * t.entry_size)
            .unwrap_or_default()
    }

    /// The table's entries as fixed-size chunks, in file order.
    pub(crate) fn chunks(&self) -> std::slice::ChunksExact<'a, u8> {
        self.table().chunks_exact(self.table.entry_size)
    }

    /// The fields of entry `index`.
    pub(crate) fn raw(&self, index: usize) -> Result<RawEntry, Error> {
        let t = &self.table;
        let chunk = self.chunks().nth(index).ok_or_else(|| {
            Error::truncated("ld.so.cache entry", t.start, t.entry_size, self.bytes.len())
        })?;
        Ok(RawEntry::read(chunk))
    }

    /// Absolute offset of a string stored relative to the string base.
    pub(crate) fn string_offset(
        &self,
        index: usize,
        field: &'static str,
        rel: u32,
    ) -> Result<usize, Error> {
        let len = self.bytes.len();
        self.table
            .strings
            .checked_add(rel as usize)
            .filter(|&o| o < len)
            .ok_or_else(|| Error::StringOutOfRange {
                index,
                field,
                offset: self.table.strings as u64 + u64::from(rel),
                len: len as u64,
            })
    }

    pub(crate) fn string(
        &self,
        index: usize,
        field: &'static str,
        rel: u32,
    ) -> Result<&'a [u8], Error> {
        let offset = self.string_offset(index, field, rel)?;
        cstr_at(self.bytes, offset).map_err(|e| match e {
            CStrError::OutOfRange => Error::StringOutOfRange {
                index,
                field,
                offset: offset as u64,
                len: self.bytes.len() as u64,
            },
            CStrError::MissingNul => Error::MissingNul {
                index,
                field,
                offset: offset as u64,
            },
        })
    }

    /// The glibc-hwcaps subdirectory an extension hwcap value names, if it names a valid one.
    fn hwcaps_subdir(&self, hwcap: u64) -> Option<&'a [u8]> {
        let (array, count) = self.extensions.hwcaps?;
        if (hwcap >> 32) & !ISA_LEVEL_MASK != HWCAP_EXTENSION >> 32 {
            return None;
        }
        let index = usize::try_from(hwcap & 0xffff_ffff)
            .ok()
            .filter(|&i| i < count)?;
        let string = u32_at(self.bytes, array + 4 * index)?;
        cstr_at(self.bytes, string as usize).ok()
    }
}

/// Checks that `count` entries of `size` bytes fit at `start`.
fn table_at(
    bytes: &[u8],
    start: usize,
    count: u32,
    size: usize,
    what: &'static str,
) -> Result<Table, Error> {
    let count = count as usize;
    let table_len = count.checked_mul(size).ok_or(Error::CountOverflow {
        what,
        count: count as u64,
    })?;
    let end = start.checked_add(table_len).ok_or(Error::CountOverflow {
        what,
        count: count as u64,
    })?;
    if end > bytes.len() {
        return Err(Error::truncated(what, start, table_len, bytes.len()));
    }
    Ok(Table {
        start,
        count,
        entry_size: size,
        strings: 0,
    })
}

/// Reads the extension directory as glibc's `cache_extension_load` does.
fn load_extensions(bytes: &[u8], offset: u32) -> Result<Extensions<'_>, ExtensionDefect> {
    let mut ext = Extensions::default();
    if offset == 0 {
        return Ok(ext);
    }
    if !offset.is_multiple_of(4) {
        return Err(ExtensionDefect::Misaligned(offset));
    }
    let at = offset as usize;
    let magic = u32_at(bytes, at).ok_or("directory lies beyond the end of the file")?;
    let count = u32_at(bytes, at + 4).ok_or("directory lies beyond the end of the file")?;
    if magic != EXTENSION_MAGIC {
        return Err("bad directory magic".into());
    }
    (count as usize)
        .checked_mul(16)
        .and_then(|n| n.checked_add(at + 8))
        .filter(|&end| end <= bytes.len())
        .ok_or("section table lies beyond the end of the file")?;
    for i in 0..count as usize {
        let s = at + 8 + 16 * i;
        let field = |k: usize| {
            u32_at(bytes, s + 4 * k).ok_or("section table lies beyond the end of the file")
        };
        let (tag, data, size) = (field(0)?, field(2)?, field(3)?);
        let end = data.checked_add(size).ok_or("section data overflows")?;
        if end as usize > bytes.len() {
            return Err("section data lies beyond the end of the file".into());
        }
        match tag {
            TAG_GENERATOR => ext.generator = bytes.get(data as usize..end as usize),
            // cache_extension_verify: drop an empty, misaligned or ragged array.
            TAG_GLIBC_HWCAPS if size != 0 && data.is_multiple_of(4) && size.is_multiple_of(4) => {
                ext.hwcaps = Some((data as usize, size as usize / 4));
            }
            TAG_GLIBC_HWCAPS => ext.hwcaps = None,
            _ => {}
        }
    }
    Ok(ext)
}

/// Iterator over a cache's entries, in file order.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    cache: LdCache<'a>,
    chunks: std::iter::Enumerate<std::slice::ChunksExact<'a, u8>>,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let (index, chunk) = self.chunks.next()?;
        Some(self.cache.entry_from(index, RawEntry::read(chunk)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for Entries<'_> {}

/// One library in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry<'a> {
    soname: &'a [u8],
    path: &'a [u8],
    flags: Flags,
    osversion: u32,
    hwcap: u64,
    hwcaps_subdir: Option<&'a [u8]>,
}

impl<'a> Entry<'a> {
    /// The key: the library's SONAME, e.g. `libcuda.so.1`.
    #[must_use]
    pub fn soname(&self) -> &'a OsStr {
        OsStr::from_bytes(self.soname)
    }

    /// The value: the path ldconfig found the library at, usually the SONAME symlink.
    #[must_use]
    pub fn path(&self) -> &'a Path {
        Path::new(OsStr::from_bytes(self.path))
    }

    /// The entry's flags (library type and architecture).
    #[must_use]
    pub fn flags(&self) -> Flags {
        self.flags
    }

    /// The architecture the entry is for.
    #[must_use]
    pub fn arch(&self) -> Arch {
        self.flags.arch()
    }

    /// The minimum OS version from the library's ABI note (`(os << 24) | (major << 16) | ...`),
    /// 0 when none (always 0 in the old format).
    #[must_use]
    pub fn osversion(&self) -> u32 {
        self.osversion
    }

    /// The raw hwcap word (legacy hwcap bits, or a glibc-hwcaps extension reference).
    #[must_use]
    pub fn hwcap(&self) -> u64 {
        self.hwcap
    }

    /// The glibc-hwcaps subdirectory (`x86-64-v3`, ...) the entry lives in, if any.
    #[must_use]
    pub fn hwcaps_subdir(&self) -> Option<&'a OsStr> {
        self.hwcaps_subdir.map(OsStr::from_bytes)
    }

    /// Writes the entry as one line of `ldconfig -p`, tab and newline included, byte for byte.
    ///
    /// # Errors
    ///
    /// Whatever the writer returns.
    pub fn write_ldconfig_line(&self, w: &mut dyn io::Write) -> io::Result<()> {
        let mut line = Vec::with_capacity(self.soname.len() + self.path.len() + 32);
        self.push_ldconfig_line(&mut line);
        w.write_all(&line)
    }

    /// Appends the `ldconfig -p` line (glibc `print_entry`). Like glibc ≥ 2.35, whose ldconfig
    /// no longer reads ABI notes, it leaves the OS version out.
    pub(crate) fn push_ldconfig_line(&self, out: &mut Vec<u8>) {
        out.push(b'\t');
        self.push_text(out);
        out.push(b'\n');
    }

    /// `soname (flags[, hwcap: ...]) => path`.
    fn push_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.soname);
        out.extend_from_slice(b" (");
        self.flags.push_ldconfig(out);
        if let Some(dir) = self.hwcaps_subdir {
            out.extend_from_slice(b", hwcap: \"");
            out.extend_from_slice(dir);
            out.push(b'"');
        } else if self.hwcap != 0 {
            out.extend_from_slice(format!(", hwcap: {:#018x}", self.hwcap).as_bytes());
        }
        out.extend_from_slice(b") => ");
        out.extend_from_slice(self.path);
    }
}

/// The `ldconfig -p` form: `libcuda.so.1 (libc6,x86-64) => /usr/lib/.../libcuda.so.1`, with
/// non-UTF-8 bytes replaced.
impl fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = Vec::with_capacity(self.soname.len() + self.path.len() + 32);
        self.push_text(&mut text);
        f.write_str(&String::from_utf8_lossy(&text))
    }
}
