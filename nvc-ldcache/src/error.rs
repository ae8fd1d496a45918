//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong reading an `ld.so.cache` or an ELF object.
///
/// Parse errors describe the defect and where it sits in the input; [`Error::File`] wraps
/// one of them with the path of the file it came from, and [`Error::Io`] keeps the OS error
/// of a failed read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ends before a structure it announces.
    #[error("truncated {what}: needs {needed} bytes at offset {offset}, input has {len}")]
    Truncated {
        /// The structure that does not fit.
        what: &'static str,
        /// Where the structure starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// How many bytes the input has.
        len: u64,
    },
    /// The input does not start with a known magic number.
    #[error("not {what}: unknown magic {found:02x?}")]
    BadMagic {
        /// The format that was expected.
        what: &'static str,
        /// The first bytes of the input (at most 20).
        found: Vec<u8>,
    },
    /// An entry count or size field is so large that computing the table size overflows.
    #[error("{what} count {count} overflows the address space")]
    CountOverflow {
        /// The table whose size overflows.
        what: &'static str,
        /// The count read from the input.
        count: u64,
    },
    /// A string offset in cache entry `index` points outside the input.
    #[error(
        "corrupted ld.so.cache entry {index}: {field} offset {offset} is outside the file ({len} bytes)"
    )]
    StringOutOfRange {
        /// Index of the entry in the cache table.
        index: usize,
        /// `"soname"` or `"path"`.
        field: &'static str,
        /// The offset as stored relative to the file start.
        offset: u64,
        /// Length of the input.
        len: u64,
    },
    /// A string in cache entry `index` runs to the end of the input without a NUL.
    #[error(
        "corrupted ld.so.cache entry {index}: {field} at offset {offset} has no NUL terminator"
    )]
    MissingNul {
        /// Index of the entry in the cache table.
        index: usize,
        /// `"soname"` or `"path"`.
        field: &'static str,
        /// The offset of the string relative to the file start.
        offset: u64,
    },
    /// A structure that must be aligned is not.
    #[error("misaligned {what} at offset {offset} (needs {align}-byte alignment)")]
    Misaligned {
        /// The structure.
        what: &'static str,
        /// Its offset.
        offset: u64,
        /// The alignment it needs.
        align: u64,
    },
    /// The cache was written for the other byte order (or marked invalid by ldconfig).
    #[error("ld.so.cache byte-order flag {flags:#x} does not match this machine")]
    WrongEndian {
        /// The header's flags byte.
        flags: u8,
    },
    /// The glibc ≥ 2.33 extension directory is malformed.
    #[error("malformed ld.so.cache extension directory: {reason}")]
    BadExtension {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An ELF object is well-formed but uses a layout this reader does not handle.
    #[error("unsupported ELF object: {reason}")]
    UnsupportedElf {
        /// What is unsupported.
        reason: &'static str,
    },
    /// An ELF structure is internally inconsistent.
    #[error("malformed ELF object: {reason}")]
    MalformedElf {
        /// What is inconsistent.
        reason: &'static str,
    },
    /// An architecture name no [`crate::Arch`] has.
    #[error("unknown architecture {name:?} (expected one of {})", crate::Arch::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", "))]
    UnknownArch {
        /// The name given.
        name: String,
    },
    /// A parse error in a named file. Its message includes the inner error's, so the inner
    /// error is not repeated as a `source`.
    #[error("{}: {error}", path.display())]
    File {
        /// The file the input came from.
        path: PathBuf,
        /// The parse error.
        error: Box<Error>,
    },
    /// Reading a file failed.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error, with its errno.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Attaches the path of the file the input came from, for an error that names its input.
    #[must_use]
    pub fn in_file(self, path: impl Into<PathBuf>) -> Self {
        match self {
            e @ (Error::File { .. } | Error::Io { .. }) => e,
            e => Error::File {
                path: path.into(),
                error: Box::new(e),
            },
        }
    }

    pub(crate) fn truncated(what: &'static str, offset: usize, needed: usize, len: usize) -> Self {
        Error::Truncated {
            what,
            offset: offset as u64,
            needed: needed as u64,
            len: len as u64,
        }
    }
}
