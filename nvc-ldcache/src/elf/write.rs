//! A minimal shared-object writer: just enough ELF for glibc's `ldconfig` and for
//! [`super::ElfInfo`], for tests and simulated driver roots.

use super::{Class, ElfHeader, Endian};

/// What [`write_shared_object`] puts into the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedObject<'a> {
    /// 32- or 64-bit.
    pub class: Class,
    /// Byte order.
    pub endian: Endian,
    /// `e_machine` (see [`super::machine`]).
    pub machine: u16,
    /// `e_flags`.
    pub flags: u32,
    /// `DT_SONAME`.
    pub soname: Option<&'a [u8]>,
    /// `DT_NEEDED` entries; `ldconfig` flags an entry `libc6` only with `libc.so.6` here.
    pub needed: &'a [&'a [u8]],
    /// A GNU ABI tag note (OS, major, minor, patch).
    pub abi_tag: Option<[u32; 4]>,
    /// Zero bytes appended, to give the file a realistic size.
    pub padding: usize,
}

impl<'a> SharedObject<'a> {
    /// A little-endian x86-64 (`Elf64`) or i386 (`Elf32`) object linked against `libc.so.6`.
    #[must_use]
    pub fn x86(class: Class, soname: &'a [u8]) -> Self {
        SharedObject {
            class,
            endian: Endian::Little,
            machine: match class {
                Class::Elf32 => super::machine::I386,
                Class::Elf64 => super::machine::X86_64,
            },
            flags: 0,
            soname: Some(soname),
            needed: &[b"libc.so.6"],
            abi_tag: None,
            padding: 0,
        }
    }
}

struct Out {
    bytes: Vec<u8>,
    class: Class,
    endian: Endian,
}

impl Out {
    fn u16(&mut self, v: u16) {
        let b = match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        self.bytes.extend_from_slice(&b);
    }

    fn u32(&mut self, v: u32) {
        let b = match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        self.bytes.extend_from_slice(&b);
    }

    fn u64(&mut self, v: u64) {
        let b = match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        self.bytes.extend_from_slice(&b);
    }

    fn word(&mut self, v: u64) {
        match self.class {
            Class::Elf32 => self.u32(u32::try_from(v).unwrap_or(u32::MAX)),
            Class::Elf64 => self.u64(v),
        }
    }

    fn phdr(&mut self, kind: u32, offset: u64, size: u64, align: u64) {
        const PF_R: u32 = 4;
        match self.class {
            Class::Elf32 => {
                self.u32(kind);
                for v in [offset, offset, offset, size, size] {
                    self.word(v);
                }
                self.u32(PF_R);
                self.word(align);
            }
            Class::Elf64 => {
                self.u32(kind);
                self.u32(PF_R);
                for v in [offset, offset, offset, size, size, align] {
                    self.word(v);
                }
            }
        }
    }
}

/// Serialises `so` as an `ET_DYN` object with one `PT_LOAD` mapping the whole file at address
/// 0, a `PT_DYNAMIC` (`DT_NEEDED`..., `DT_SONAME`, `DT_STRTAB`, `DT_STRSZ`) and, with an ABI
/// tag, a `PT_NOTE`. It has no code: it is loaded by nothing, only inspected.
#[must_use]
pub fn write_shared_object(so: &SharedObject<'_>) -> Vec<u8> {
    let word = match so.class {
        Class::Elf32 => 4,
        Class::Elf64 => 8,
    };
    let (ehsize, phentsize) = match so.class {
        Class::Elf32 => (52u16, 32u16),
        Class::Elf64 => (64, 56),
    };
    debug_assert_eq!(usize::from(ehsize), ElfHeader::size(so.class));
    let phnum: u16 = if so.abi_tag.is_some() { 3 } else { 2 };

    // The dynamic string table: a leading NUL, then the names.
    let mut strtab = vec![0u8];
    let mut add = |s: &[u8]| {
        let at = strtab.len() as u64;
        strtab.extend_from_slice(s);
        strtab.push(0);
        at
    };
    let needed: Vec<u64> = so.needed.iter().map(|n| add(n)).collect();
    let soname = so.soname.map(add);

    let note_at = u64::from(ehsize) + u64::from(phnum) * u64::from(phentsize);
    let note_len = if so.abi_tag.is_some() { 32 } else { 0 };
    let strtab_at = note_at + note_len;
    let dynamic_at = (strtab_at + strtab.len() as u64).next_multiple_of(word);
    let dyn_count = needed.len() as u64 + u64::from(soname.is_some()) + 3;
    let dynamic_len = dyn_count * 2 * word;
    let end = dynamic_at + dynamic_len;
    let total = end + so.padding as u64;

    let mut out = Out {
        bytes: Vec::with_capacity(usize::try_from(end).unwrap_or(0)),
        class: so.class,
        endian: so.endian,
    };
    out.bytes.extend_from_slice(b"\x7fELF");
    out.bytes.push(match so.class {
        Class::Elf32 => 1,
        Class::Elf64 => 2,
    });
    out.bytes.push(match so.endian {
        Endian::Little => 1,
        Endian::Big => 2,
    });
    out.bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.u16(3); // ET_DYN
    out.u16(so.machine);
    out.u32(1); // EV_CURRENT
    out.word(0); // e_entry
    out.word(u64::from(ehsize)); // e_phoff
    out.word(0); // e_shoff
    out.u32(so.flags);
    out.u16(ehsize);
    out.u16(phentsize);
    out.u16(phnum);
    out.u16(0); // e_shentsize
    out.u16(0); // e_shnum
    out.u16(0); // e_shstrndx

    out.phdr(1, 0, total, 0x1000); // PT_LOAD
    out.phdr(2, dynamic_at, dynamic_len, word); // PT_DYNAMIC
    if let Some(tag) = so.abi_tag {
        out.phdr(4, note_at, note_len, 4); // PT_NOTE
        out.u32(4);
        out.u32(16);
        out.u32(1); // NT_GNU_ABI_TAG
        out.bytes.extend_from_slice(b"GNU\0");
        for v in tag {
            out.u32(v);
        }
    }
    out.bytes.extend_from_slice(&strtab);
    out.bytes
        .resize(usize::try_from(dynamic_at).unwrap_or(0), 0);
    for n in needed {
        out.word(1);
        out.word(n);
    }
    if let Some(s) = soname {
        out.word(14);
        out.word(s);
    }
    out.word(5);
    out.word(strtab_at);
    out.word(10);
    out.word(strtab.len() as u64);
    out.word(0);
    out.word(0);
    out.bytes.resize(usize::try_from(total).unwrap_or(0), 0);
    out.bytes
}
