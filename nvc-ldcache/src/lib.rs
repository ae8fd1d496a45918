//! Reader for glibc's `ld.so.cache`, the file the dynamic loader and libnvidia-container use to
//! find shared libraries, plus lazy ELF checks.
//!
//! **Stability:** an implementation crate of `nvc-core`, published for it: its API changes
//! whenever nvc-core needs it to, in any release, without a deprecation period. Depend on
//! `nvc-core`.
//!
//! - [`LdCache::parse`] validates a cache held in memory in constant time and borrows from
//!   it: the old `ld.so-1.7.0` layout, the new `glibc-ld.so.cache1.1` layout and the two
//!   combined, with every architecture flag glibc defines ([`Arch`]) and the glibc ≥ 2.33
//!   extension directory (generator string, glibc-hwcaps subdirectories).
//! - [`LdCache::entries`] lists entries in file order (what `ldconfig -p` prints, see
//!   [`Entry::write_ldconfig_line`]); [`LdCache::find`] looks one SONAME up; and
//!   [`LdCache::resolve`] resolves a whole [`PrefixSet`] (the NVIDIA library names) in one pass
//!   with libnvidia-container's rule: the **last** acceptable entry in cache order wins.
//! - [`elf`] reads class, machine, SONAME, `DT_NEEDED` and the ABI note of a shared object
//!   without reading the whole file.
//! - [`write_cache`] writes a cache in glibc's layouts (`configure`'s built-in update of an
//!   image's cache, simulated hosts); [`elf::write_shared_object`] minimal objects for tests.
//!
//! Malformed input of any kind is a typed [`Error`], never a panic or an out-of-bounds read;
//! the parsers are fuzzed (`fuzz/`) and property-tested.
//!
//! ```
//! use nvc_ldcache::{Arch, CacheEntry, Format, LdCache, PrefixSet, write_cache};
//!
//! let bytes = write_cache(
//!     &[
//!         CacheEntry::new("libcuda.so.1", "/usr/lib64/libcuda.so.1", Arch::X86_64),
//!         CacheEntry::new("libcuda.so.1", "/usr/lib/libcuda.so.1", Arch::I386),
//!     ],
//!     Format::New,
//!     None,
//! );
//! let cache = LdCache::parse(&bytes)?;
//! let set = PrefixSet::new(["libnvidia-ml.so", "libcuda.so"]);
//! let found = cache.resolve(&set, Arch::X86_64)?;
//! assert!(found[0].is_none());
//! assert_eq!(found[1].unwrap().path(), std::path::Path::new("/usr/lib64/libcuda.so.1"));
//! # Ok::<(), nvc_ldcache::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bytes;
mod cache;
pub mod elf;
mod error;
mod flags;
mod platform;
mod prefix;
mod read;
mod resolve;
mod write;

pub use cache::{Entries, Entry, Format, LdCache, NEW_MAGIC, OLD_MAGIC};
pub use error::Error;
pub use flags::{Arch, Flags};
pub use platform::{Compat32, Platform};
pub use prefix::PrefixSet;
pub use read::read;
pub use write::{CacheEntry, write_cache};

/// The default cache location.
pub const DEFAULT_PATH: &str = "/etc/ld.so.cache";
