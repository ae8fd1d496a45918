//! Lazy ELF checks: class, machine, OS ABI, SONAME, `DT_NEEDED` and the ABI note.
//!
//! Only the ELF header, the program headers, `PT_DYNAMIC`, the dynamic string table and
//! `PT_NOTE` are read — never section headers, symbol tables or relocations — so the cost
//! does not grow with the size of the library (libcuda is hundreds of MB). [`ElfInfo::parse`]
//! works on bytes in memory; [`ElfInfo::read`] reads the same pieces from a file with
//! positioned reads.

mod parse;
mod write;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub use parse::{ElfHeader, ProgramHeader};
pub use write::{SharedObject, write_shared_object};

use crate::{Arch, Error};

/// `e_ident[EI_CLASS]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `ELFCLASS32`.
    Elf32,
    /// `ELFCLASS64`.
    Elf64,
}

/// `e_ident[EI_DATA]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endian {
    /// `ELFDATA2LSB`.
    Little,
    /// `ELFDATA2MSB`.
    Big,
}

/// `e_machine` values nvc names.
pub mod machine {
    /// Intel 80386.
    pub const I386: u16 = 3;
    /// SPARC v9.
    pub const SPARCV9: u16 = 43;
    /// MIPS.
    pub const MIPS: u16 = 8;
    /// 64-bit PowerPC.
    pub const PPC64: u16 = 21;
    /// IBM S/390.
    pub const S390: u16 = 22;
    /// 32-bit ARM.
    pub const ARM: u16 = 40;
    /// IA-64.
    pub const IA_64: u16 = 50;
    /// x86-64 (and x32 with `ELFCLASS32`).
    pub const X86_64: u16 = 62;
    /// AArch64.
    pub const AARCH64: u16 = 183;
    /// RISC-V.
    pub const RISCV: u16 = 243;
    /// LoongArch.
    pub const LOONGARCH: u16 = 258;
}

/// Upper bound on the bytes read for the program header table, `PT_DYNAMIC` and `PT_NOTE`
/// each (real ones are a few KiB); a hostile header cannot make a check allocate more.
pub const MAX_PIECE: u64 = 1 << 20;

/// Upper bound on `DT_NEEDED` entries read (each costs a read of its name).
pub const MAX_NEEDED: usize = 1024;

/// The most `PT_NOTE` segments read from one object (together at most [`MAX_PIECE`] bytes).
pub const MAX_NOTES: usize = 16;

/// What nvc needs to know about a shared object.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ElfInfo {
    /// The ELF header.
    pub header: ElfHeader,
    /// `DT_SONAME`, if any.
    pub soname: Option<Vec<u8>>,
    /// `DT_NEEDED` entries in order.
    pub needed: Vec<Vec<u8>>,
    /// The GNU ABI tag note (`.note.ABI-tag`: OS, major, minor, patch), if any.
    pub abi_tag: Option<[u32; 4]>,
    /// `PT_INTERP`: the program interpreter named, up to its NUL, if any.
    pub interpreter: Option<Vec<u8>>,
    /// Whether the object has a `PT_DYNAMIC` segment (glibc's `ldconfig` lists none without).
    pub dynamic: bool,
}

impl ElfInfo {
    /// Reads the checks' pieces from a whole object in memory.
    ///
    /// # Errors
    ///
    /// [`Error::BadMagic`], [`Error::Truncated`], [`Error::MalformedElf`] or
    /// [`Error::UnsupportedElf`] describing the first defect found.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        parse::collect(&mut |offset: u64, len: u64, what: &'static str| {
            let start = usize::try_from(offset).ok();
            let end = offset
                .checked_add(len)
                .and_then(|e| usize::try_from(e).ok());
            match (start, end) {
                (Some(s), Some(e)) if e <= bytes.len() => {
                    Ok(bytes.get(s..e).unwrap_or_default().to_vec())
                }
                _ => Err(truncated(what, offset, len, bytes.len() as u64)),
            }
        })
    }

    /// Opens `path` and reads only the checks' pieces with positioned reads.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be opened or read, otherwise the errors of
    /// [`ElfInfo::parse`] wrapped in [`Error::File`] naming `path`.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let io_err = |source: io::Error| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        let mut io_failure = None;
        let result = parse::collect(&mut |offset: u64, len: u64, what: &'static str| {
            if offset.checked_add(len).is_none_or(|end| end > size) {
                return Err(truncated(what, offset, len, size));
            }
            let mut buf = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
            match file.read_exact_at(&mut buf, offset) {
                Ok(()) => Ok(buf),
                Err(e) => {
                    io_failure = Some(e);
                    Err(Error::UnsupportedElf {
                        reason: "read failed",
                    })
                }
            }
        });
        match (result, io_failure) {
            (_, Some(source)) => Err(io_err(source)),
            (Ok(info), None) => Ok(info),
            (Err(e), None) => Err(e.in_file(path)),
        }
    }

    /// The `ld.so.cache` architecture ldconfig would record for this object, or `None` for
    /// machines whose flag depends on more than the header (MIPS) or that glibc does not know.
    #[must_use]
    pub fn cache_arch(&self) -> Option<Arch> {
        let h = &self.header;
        let is64 = h.class == Class::Elf64;
        Some(match h.machine {
            machine::I386 => Arch::I386,
            machine::X86_64 if is64 => Arch::X86_64,
            machine::X86_64 => Arch::X32,
            machine::AARCH64 if is64 => Arch::Aarch64,
            machine::PPC64 if is64 => Arch::PowerPc64,
            machine::S390 if is64 => Arch::S390x,
            machine::SPARCV9 if is64 => Arch::Sparc64,
            machine::IA_64 => Arch::Ia64,
            // EF_ARM_ABI_FLOAT_HARD (0x400) under EABI v5.
            machine::ARM if h.flags & 0x400 != 0 => Arch::ArmHardFloat,
            machine::ARM => Arch::ArmSoftFloat,
            // EF_RISCV_FLOAT_ABI (0x6): 0 soft, 4 double.
            machine::RISCV if h.flags & 0x6 == 0 => Arch::RiscvSoftFloat,
            machine::RISCV if h.flags & 0x6 == 4 => Arch::RiscvDoubleFloat,
            // EF_LARCH_ABI_MODIFIER_MASK (0x7): 1 soft, 3 double.
            machine::LOONGARCH if h.flags & 0x7 == 1 => Arch::LoongArchSoftFloat,
            machine::LOONGARCH if h.flags & 0x7 == 3 => Arch::LoongArchDoubleFloat,
            _ => return None,
        })
    }
}

fn truncated(what: &'static str, offset: u64, len: u64, size: u64) -> Error {
    Error::Truncated {
        what,
        offset,
        needed: len,
        len: size,
    }
}
