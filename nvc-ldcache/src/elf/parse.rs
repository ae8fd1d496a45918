//! Pure parsers for the ELF pieces nvc reads.

use super::{Class, ElfInfo, Endian, MAX_NEEDED, MAX_NOTES, MAX_PIECE};
use crate::Error;
use crate::bytes::array_at;

const MAGIC: &[u8; 4] = b"\x7fELF";
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_SONAME: u64 = 14;
const NT_GNU_ABI_TAG: u32 = 1;

/// The ELF header fields nvc uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ElfHeader {
    /// 32- or 64-bit.
    pub class: Class,
    /// Byte order.
    pub endian: Endian,
    /// `e_ident[EI_OSABI]` (0 System V, 3 GNU/Linux).
    pub os_abi: u8,
    /// `e_type` (3 = `ET_DYN`).
    pub kind: u16,
    /// `e_machine`.
    pub machine: u16,
    /// `e_flags` (float ABI on ARM, RISC-V, LoongArch).
    pub flags: u32,
    /// `e_phoff`.
    pub phoff: u64,
    /// `e_phentsize`.
    pub phentsize: u16,
    /// `e_phnum`.
    pub phnum: u16,
}

/// One program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProgramHeader {
    /// `p_type`.
    pub kind: u32,
    /// `p_offset`.
    pub offset: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_filesz`.
    pub filesz: u64,
}

/// Integer reader for one class and byte order.
#[derive(Clone, Copy)]
struct Reader {
    class: Class,
    endian: Endian,
}

impl Reader {
    fn u16(self, b: &[u8], off: usize) -> Option<u16> {
        let a = array_at(b, off)?;
        Some(match self.endian {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        })
    }

    fn u32(self, b: &[u8], off: usize) -> Option<u32> {
        let a = array_at(b, off)?;
        Some(match self.endian {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        })
    }

    fn u64(self, b: &[u8], off: usize) -> Option<u64> {
        let a = array_at(b, off)?;
        Some(match self.endian {
            Endian::Little => u64::from_le_bytes(a),
            Endian::Big => u64::from_be_bytes(a),
        })
    }

    /// An address-sized word (`Elf32_Addr`/`Elf64_Addr`, `Off`, `Xword`).
    fn word(self, b: &[u8], off: usize) -> Option<u64> {
        match self.class {
            Class::Elf32 => self.u32(b, off).map(u64::from),
            Class::Elf64 => self.u64(b, off),
        }
    }

    fn word_size(self) -> usize {
        match self.class {
            Class::Elf32 => 4,
            Class::Elf64 => 8,
        }
    }
}

fn malformed(reason: &'static str) -> Error {
    Error::MalformedElf { reason }
}

impl ElfHeader {
    /// Size of the header for a class.
    #[must_use]
    pub fn size(class: Class) -> usize {
        match class {
            Class::Elf32 => 52,
            Class::Elf64 => 64,
        }
    }

    /// Parses the ELF header at the start of `b` (52 or 64 bytes are enough).
    ///
    /// # Errors
    ///
    /// [`Error::BadMagic`] for input that is no ELF object, [`Error::Truncated`] when the
    /// header does not fit, [`Error::UnsupportedElf`] for an unknown class or byte order.
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        if !b.starts_with(MAGIC) {
            return Err(if MAGIC.starts_with(b) {
                Error::truncated("ELF header", 0, 52, b.len())
            } else {
                Error::BadMagic {
                    what: "an ELF object",
                    found: b.iter().take(16).copied().collect(),
                }
            });
        }
        let class = match b.get(4) {
            Some(1) => Class::Elf32,
            Some(2) => Class::Elf64,
            Some(_) => {
                return Err(Error::UnsupportedElf {
                    reason: "unknown EI_CLASS",
                });
            }
            None => return Err(Error::truncated("ELF header", 0, 52, b.len())),
        };
        let endian = match b.get(5) {
            Some(1) => Endian::Little,
            Some(2) => Endian::Big,
            Some(_) => {
                return Err(Error::UnsupportedElf {
                    reason: "unknown EI_DATA",
                });
            }
            None => return Err(Error::truncated("ELF header", 0, 52, b.len())),
        };
        let size = Self::size(class);
        if b.len() < size {
            return Err(Error::truncated("ELF header", 0, size, b.len()));
        }
        let r = Reader { class, endian };
        let short = || Error::truncated("ELF header", 0, size, b.len());
        // Offsets of e_phoff and what follows differ between the classes.
        let (phoff_at, flags_at) = match class {
            Class::Elf32 => (28, 36),
            Class::Elf64 => (32, 48),
        };
        Ok(ElfHeader {
            class,
            endian,
            os_abi: b.get(7).copied().ok_or_else(short)?,
            kind: r.u16(b, 16).ok_or_else(short)?,
            machine: r.u16(b, 18).ok_or_else(short)?,
            phoff: r.word(b, phoff_at).ok_or_else(short)?,
            flags: r.u32(b, flags_at).ok_or_else(short)?,
            phentsize: r.u16(b, flags_at + 6).ok_or_else(short)?,
            phnum: r.u16(b, flags_at + 8).ok_or_else(short)?,
        })
    }

    fn reader(&self) -> Reader {
        Reader {
            class: self.class,
            endian: self.endian,
        }
    }

    /// The minimum `e_phentsize` for the class.
    fn min_phentsize(&self) -> u16 {
        match self.class {
            Class::Elf32 => 32,
            Class::Elf64 => 56,
        }
    }

    /// Parses the program header table (`phnum` entries of `phentsize` bytes) in `b`.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedElf`] for an entry size below the class's, [`Error::Truncated`] when
    /// `b` is shorter than the table.
    pub fn program_headers(&self, b: &[u8]) -> Result<Vec<ProgramHeader>, Error> {
        if self.phnum > 0 && self.phentsize < self.min_phentsize() {
            return Err(malformed("e_phentsize is smaller than a program header"));
        }
        let r = self.reader();
        let step = usize::from(self.phentsize);
        (0..usize::from(self.phnum))
            .map(|i| {
                let at = i * step;
                let short = || Error::truncated("program header", at, step, b.len());
                Ok(match self.class {
                    Class::Elf32 => ProgramHeader {
                        kind: r.u32(b, at).ok_or_else(short)?,
                        offset: r.word(b, at + 4).ok_or_else(short)?,
                        vaddr: r.word(b, at + 8).ok_or_else(short)?,
                        filesz: r.word(b, at + 16).ok_or_else(short)?,
                    },
                    Class::Elf64 => ProgramHeader {
                        kind: r.u32(b, at).ok_or_else(short)?,
                        offset: r.word(b, at + 8).ok_or_else(short)?,
                        vaddr: r.word(b, at + 16).ok_or_else(short)?,
                        filesz: r.word(b, at + 32).ok_or_else(short)?,
                    },
                })
            })
            .collect()
    }
}

/// The `PT_DYNAMIC` entries nvc uses.
#[derive(Debug, Default)]
struct Dynamic {
    soname: Option<u64>,
    needed: Vec<u64>,
    strtab: Option<u64>,
    strsz: Option<u64>,
}

fn parse_dynamic(r: Reader, b: &[u8]) -> Dynamic {
    let w = r.word_size();
    let mut d = Dynamic::default();
    for at in (0..b.len() / (2 * w)).map(|i| i * 2 * w) {
        let (Some(tag), Some(val)) = (r.word(b, at), r.word(b, at + w)) else {
            break;
        };
        match tag {
            DT_NULL => break,
            DT_NEEDED => d.needed.push(val),
            DT_SONAME => d.soname = Some(val),
            DT_STRTAB => d.strtab = Some(val),
            DT_STRSZ => d.strsz = Some(val),
            _ => {}
        }
    }
    d
}

/// The GNU ABI tag from the contents of a `PT_NOTE` segment.
fn abi_tag(r: Reader, b: &[u8]) -> Option<[u32; 4]> {
    let mut at = 0usize;
    while at < b.len() {
        let namesz = r.u32(b, at)? as usize;
        let descsz = r.u32(b, at + 4)? as usize;
        let kind = r.u32(b, at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at.checked_add(namesz.checked_add(3)? & !3)?;
        if kind == NT_GNU_ABI_TAG && b.get(name_at..name_at + namesz)? == b"GNU\0" && descsz >= 16 {
            return Some([
                r.u32(b, desc_at)?,
                r.u32(b, desc_at + 4)?,
                r.u32(b, desc_at + 8)?,
                r.u32(b, desc_at + 12)?,
            ]);
        }
        at = desc_at.checked_add(descsz.checked_add(3)? & !3)?;
    }
    None
}

/// Maps a virtual address to a file offset through the `PT_LOAD` segments.
fn file_offset(phdrs: &[ProgramHeader], vaddr: u64) -> Option<u64> {
    phdrs
        .iter()
        .filter(|p| p.kind == PT_LOAD)
        .find(|p| vaddr >= p.vaddr && vaddr - p.vaddr < p.filesz)
        .and_then(|p| p.offset.checked_add(vaddr - p.vaddr))
}

/// Longest dynamic string read (SONAMEs and needed names are file names).
const MAX_NAME: u64 = 4096;

/// The string at `off` in the dynamic string table at file offset `table` of `size` bytes,
/// read on its own (the table of a large library is megabytes of symbol names).
fn dynamic_string(
    fetch: &mut Fetch<'_>,
    table: u64,
    size: u64,
    off: u64,
) -> Result<Vec<u8>, Error> {
    if off >= size {
        return Err(malformed("dynamic string offset is outside DT_STRSZ"));
    }
    let at = table
        .checked_add(off)
        .ok_or_else(|| malformed("dynamic string offset overflows"))?;
    let room = size - off;
    let mut window = room.min(256);
    loop {
        let bytes = fetch(at, window, "dynamic string")?;
        if let Some(end) = bytes.iter().position(|&c| c == 0) {
            return Ok(bytes.get(..end).unwrap_or_default().to_vec());
        }
        if window == room || window >= MAX_NAME {
            return Err(malformed("dynamic string is not NUL-terminated"));
        }
        window = room.min(MAX_NAME);
    }
}

/// Reads `len` bytes at `offset` of the object; `what` names the piece for errors.
pub(super) type Fetch<'f> = dyn FnMut(u64, u64, &'static str) -> Result<Vec<u8>, Error> + 'f;

fn bounded(len: u64, what: &'static str) -> Result<u64, Error> {
    if len > MAX_PIECE {
        return Err(Error::UnsupportedElf { reason: what });
    }
    Ok(len)
}

/// Reads the header, program headers, dynamic section, string table and notes through
/// `fetch`, which serves bytes from memory or from a file.
pub(super) fn collect(fetch: &mut Fetch<'_>) -> Result<ElfInfo, Error> {
    let ident = fetch(0, 16, "ELF identification")?;
    let class = match ident.get(4) {
        Some(2) => Class::Elf64,
        _ => Class::Elf32,
    };
    let header = if ident.starts_with(MAGIC) {
        ElfHeader::parse(&fetch(0, ElfHeader::size(class) as u64, "ELF header")?)?
    } else {
        ElfHeader::parse(&ident)?
    };
    let r = header.reader();
    let table_len = bounded(
        u64::from(header.phnum) * u64::from(header.phentsize),
        "program header table is too large",
    )?;
    let table = fetch(header.phoff, table_len, "program header table")?;
    let phdrs = header.program_headers(&table)?;

    let mut info = ElfInfo {
        header,
        soname: None,
        needed: Vec::new(),
        abi_tag: None,
        interpreter: None,
        dynamic: false,
    };
    if let Some(interp) = phdrs.iter().find(|p| p.kind == PT_INTERP) {
        let len = interp.filesz.min(MAX_NAME);
        let bytes = fetch(interp.offset, len, "PT_INTERP")?;
        let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
        info.interpreter = Some(bytes.get(..end).unwrap_or_default().to_vec());
    }
    // A real object has a few notes (build id, GNU properties, ABI tag); a hostile one may
    // have 65535 program headers of 1 MiB notes: the count and the bytes read are bounded.
    let mut note_bytes = 0u64;
    for (i, note) in phdrs.iter().filter(|p| p.kind == PT_NOTE).enumerate() {
        note_bytes = note_bytes.saturating_add(note.filesz);
        if i >= MAX_NOTES || note_bytes > MAX_PIECE {
            return Err(Error::UnsupportedElf {
                reason: "more PT_NOTE segments or bytes than MAX_NOTES or MAX_PIECE",
            });
        }
        let bytes = fetch(note.offset, note.filesz, "PT_NOTE")?;
        if let Some(tag) = abi_tag(r, &bytes) {
            info.abi_tag = Some(tag);
            break;
        }
    }
    let Some(dynamic) = phdrs.iter().find(|p| p.kind == PT_DYNAMIC) else {
        return Ok(info);
    };
    info.dynamic = true;
    let bytes = fetch(
        dynamic.offset,
        bounded(dynamic.filesz, "PT_DYNAMIC is too large")?,
        "PT_DYNAMIC",
    )?;
    let dynamic = parse_dynamic(r, &bytes);
    if dynamic.needed.len() > MAX_NEEDED {
        return Err(Error::UnsupportedElf {
            reason: "more DT_NEEDED entries than MAX_NEEDED",
        });
    }
    if dynamic.soname.is_none() && dynamic.needed.is_empty() {
        return Ok(info);
    }
    let strtab = dynamic
        .strtab
        .ok_or_else(|| malformed("DT_STRTAB is missing"))?;
    let strsz = dynamic
        .strsz
        .ok_or_else(|| malformed("DT_STRSZ is missing"))?;
    let at = file_offset(&phdrs, strtab)
        .ok_or_else(|| malformed("DT_STRTAB is outside every PT_LOAD"))?;
    let mut string = |off: u64| dynamic_string(fetch, at, strsz, off);
    info.soname = dynamic.soname.map(&mut string).transpose()?;
    info.needed = dynamic
        .needed
        .iter()
        .map(|&o| string(o))
        .collect::<Result<_, _>>()?;
    Ok(info)
}
