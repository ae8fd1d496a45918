//! The lazy ELF reader: objects we write, the host's libc, and hostile objects.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::fs::{self, File};
use std::path::Path;
use std::time::Instant;

use nvc_ldcache::elf::{
    Class, ElfHeader, ElfInfo, Endian, SharedObject, machine, write_shared_object,
};
use nvc_ldcache::{Arch, Error};
use proptest::prelude::*;

fn object(class: Class, endian: Endian) -> SharedObject<'static> {
    SharedObject {
        class,
        endian,
        machine: machine::X86_64,
        flags: 0,
        soname: Some(b"libnvidia-tls.so.550.54.14"),
        needed: &[b"libc.so.6", b"libdl.so.2"],
        abi_tag: Some([0, 2, 3, 99]),
        padding: 100,
    }
}

#[test]
fn written_objects_read_back_in_every_class_and_byte_order() {
    for class in [Class::Elf32, Class::Elf64] {
        for endian in [Endian::Little, Endian::Big] {
            let so = object(class, endian);
            let bytes = write_shared_object(&so);
            let info = ElfInfo::parse(&bytes).unwrap();
            assert_eq!(info.header.class, class);
            assert_eq!(info.header.endian, endian);
            assert_eq!(info.header.machine, machine::X86_64);
            assert_eq!(info.header.kind, 3);
            assert_eq!(info.soname.as_deref(), so.soname);
            assert_eq!(info.needed, [b"libc.so.6".to_vec(), b"libdl.so.2".to_vec()]);
            assert_eq!(info.abi_tag, Some([0, 2, 3, 99]));
        }
    }
}

#[test]
fn file_reads_agree_with_memory_parses() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = write_shared_object(&object(Class::Elf32, Endian::Little));
    let path = dir.path().join("libx.so");
    fs::write(&path, &bytes).unwrap();
    assert_eq!(
        ElfInfo::read(&path).unwrap(),
        ElfInfo::parse(&bytes).unwrap()
    );
}

#[test]
fn cache_arch_follows_class_machine_and_float_abi() {
    let arch = |class, machine, flags| {
        let so = SharedObject {
            machine,
            flags,
            ..object(class, Endian::Little)
        };
        ElfInfo::parse(&write_shared_object(&so))
            .unwrap()
            .cache_arch()
    };
    assert_eq!(arch(Class::Elf64, machine::X86_64, 0), Some(Arch::X86_64));
    assert_eq!(arch(Class::Elf32, machine::X86_64, 0), Some(Arch::X32));
    assert_eq!(arch(Class::Elf32, machine::I386, 0), Some(Arch::I386));
    assert_eq!(arch(Class::Elf64, machine::AARCH64, 0), Some(Arch::Aarch64));
    assert_eq!(
        arch(Class::Elf32, machine::ARM, 0x0500_0400),
        Some(Arch::ArmHardFloat)
    );
    assert_eq!(
        arch(Class::Elf64, machine::RISCV, 4),
        Some(Arch::RiscvDoubleFloat)
    );
    assert_eq!(
        arch(Class::Elf64, machine::LOONGARCH, 1),
        Some(Arch::LoongArchSoftFloat)
    );
    assert_eq!(arch(Class::Elf64, machine::MIPS, 0), None);
}

#[test]
fn host_libc_soname_and_machine() {
    let path = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    if !cfg!(target_arch = "x86_64") || !path.exists() {
        eprintln!("skipped: {} is not here", path.display());
        return;
    }
    let info = ElfInfo::read(path).unwrap();
    assert_eq!(info.soname.as_deref(), Some(&b"libc.so.6"[..]));
    assert_eq!(info.header.class, Class::Elf64);
    assert_eq!(info.cache_arch(), Some(Arch::X86_64));
    assert!(
        info.needed
            .iter()
            .any(|n| n.starts_with(b"ld-linux-x86-64.so")),
        "{:?}",
        info.needed
    );
    // glibc carries a GNU/Linux ABI tag.
    assert_eq!(info.abi_tag.map(|t| t[0]), Some(0));
}

#[test]
fn only_the_pieces_are_read_not_the_whole_file() {
    // 64 GiB, sparse: reading it whole would take minutes and all memory.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libhuge.so");
    fs::write(
        &path,
        write_shared_object(&object(Class::Elf64, Endian::Little)),
    )
    .unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let start = Instant::now();
    let info = ElfInfo::read(&path).unwrap();
    assert_eq!(
        info.soname.as_deref(),
        Some(&b"libnvidia-tls.so.550.54.14"[..])
    );
    assert!(start.elapsed().as_secs() < 5);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = write_shared_object(&object(Class::Elf64, Endian::Little));
    let end = bytes.len() - 100; // the padding is not needed
    for cut in 0..end {
        let err = ElfInfo::parse(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, Error::Truncated { .. } | Error::BadMagic { .. }),
            "cut {cut}: {err}"
        );
    }
    ElfInfo::parse(&bytes[..end]).unwrap();
}

#[test]
fn hostile_headers_are_typed_errors() {
    let good = write_shared_object(&object(Class::Elf64, Endian::Little));
    assert!(matches!(
        ElfInfo::parse(b"#!/bin/sh\necho hi\n"),
        Err(Error::BadMagic { .. })
    ));

    let mut bad_class = good.clone();
    bad_class[4] = 9;
    assert!(matches!(
        ElfInfo::parse(&bad_class),
        Err(Error::UnsupportedElf { .. })
    ));

    // phentsize smaller than a program header.
    let mut small = good.clone();
    small[54..56].copy_from_slice(&8u16.to_le_bytes());
    assert!(matches!(
        ElfInfo::parse(&small),
        Err(Error::MalformedElf { .. })
    ));

    // 65535 entries of 65535 bytes: refused before anything is allocated.
    let mut huge = good.clone();
    huge[54..58].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        ElfInfo::parse(&huge),
        Err(Error::UnsupportedElf { .. })
    ));

    // DT_STRTAB pointing outside every PT_LOAD.
    let info_at = |tag: u64, bytes: &[u8]| {
        let dyn_at = bytes.len() - 100 - 6 * 16;
        (0..6)
            .map(|i| dyn_at + 16 * i)
            .find(|&at| bytes[at..at + 8] == tag.to_le_bytes())
            .unwrap()
    };
    let mut strtab = good.clone();
    let at = info_at(5, &strtab);
    strtab[at + 8..at + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let err = ElfInfo::parse(&strtab).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed ELF object: DT_STRTAB is outside every PT_LOAD"
    );

    // DT_SONAME past DT_STRSZ.
    let mut soname = good.clone();
    let at = info_at(14, &soname);
    soname[at + 8..at + 16].copy_from_slice(&9999u64.to_le_bytes());
    assert!(matches!(
        ElfInfo::parse(&soname),
        Err(Error::MalformedElf { .. })
    ));

    // More DT_NEEDED entries than any real library: refused, not read one by one.
    let names: Vec<&[u8]> = vec![b"libx.so"; nvc_ldcache::elf::MAX_NEEDED + 1];
    let many = write_shared_object(&SharedObject {
        needed: &names,
        ..object(Class::Elf64, Endian::Little)
    });
    assert!(matches!(
        ElfInfo::parse(&many),
        Err(Error::UnsupportedElf { .. })
    ));

    let missing = ElfInfo::read("/nonexistent/libcuda.so.1").unwrap_err();
    assert!(matches!(missing, Error::Io { .. }));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("libtrunc.so");
    fs::write(&file, &good[..70]).unwrap();
    let err = ElfInfo::read(&file).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}: truncated", file.display())),
        "{err}"
    );
}

/// 4096 program headers, each a 1 MiB `PT_NOTE` over the same bytes: 4 GiB of reads for
/// one file before notes were bounded; now refused after the first MiB.
#[test]
fn many_large_notes_are_refused_not_read() {
    const NOTES: u16 = 4096;
    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
    elf.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&0u64.to_le_bytes()); // entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // shoff
    elf.extend_from_slice(&0u32.to_le_bytes());
    for half in [64u16, 56, NOTES, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes());
    }
    for _ in 0..NOTES {
        elf.extend_from_slice(&4u32.to_le_bytes()); // PT_NOTE
        elf.extend_from_slice(&4u32.to_le_bytes());
        for field in [0u64, 0, 0, 1 << 20, 1 << 20, 4] {
            elf.extend_from_slice(&field.to_le_bytes());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libnotes.so");
    fs::write(&path, &elf).unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    let start = Instant::now();
    let err = ElfInfo::read(&path).unwrap_err();
    assert!(err.to_string().contains("PT_NOTE"), "{err}");
    assert!(start.elapsed().as_millis() < 500, "{:?}", start.elapsed());
}

#[test]
fn header_parse_needs_only_the_header() {
    let bytes = write_shared_object(&object(Class::Elf32, Endian::Big));
    let h = ElfHeader::parse(&bytes[..52]).unwrap();
    assert_eq!(
        (h.class, h.endian, h.phnum, h.phentsize),
        (Class::Elf32, Endian::Big, 3, 32)
    );
    assert_eq!(h.program_headers(&bytes[52..52 + 96]).unwrap().len(), 3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..256), class in 1u8..3, data in 1u8..3) {
        let mut bytes = vec![0x7f, b'E', b'L', b'F', class, data, 1];
        bytes.extend_from_slice(&tail);
        let _ = ElfInfo::parse(&bytes);
    }

    #[test]
    fn mutated_objects_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        wide in any::<bool>(),
        big in any::<bool>(),
    ) {
        let class = if wide { Class::Elf64 } else { Class::Elf32 };
        let endian = if big { Endian::Big } else { Endian::Little };
        let mut bytes = write_shared_object(&object(class, endian));
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        let _ = ElfInfo::parse(&bytes);
    }
}
