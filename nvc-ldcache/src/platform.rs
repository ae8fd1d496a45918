//! The one per-architecture table: what differs between the CPU architectures NVIDIA ships
//! its driver for — the ELF machine and `ld.so.cache` flag of the driver's libraries, the
//! multiarch directory names, glibc's trusted directories and hwcap subdirectories, and where
//! libraries are looked for on a host without a cache.
//!
//! The glibc rows are what Debian 12's `ldconfig` (glibc 2.36) of each architecture does,
//! observed with `ldconfig -v` (the foreign ones under qemu's user-mode emulator): the
//! directories it scans with an empty configuration, and which of some 60 candidate
//! subdirectory names it descends into. Every other part of nvc takes a [`Platform`] instead of naming
//! an architecture, so a test can lay out another architecture's real files and check them
//! with that architecture's row.

use crate::elf::machine;
use crate::flags::Arch;

/// The facts of one CPU architecture (a row of the table).
///
/// The rows are [`Platform::X86_64`], [`Platform::AARCH64`] and [`Platform::PPC64LE`], the
/// three architectures libnvidia-container supports; [`Platform::host`] is this build's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Platform {
    /// The name `uname -m` prints (`x86_64`, `aarch64`, `ppc64le`).
    pub name: &'static str,
    /// The cache flag of its native (64-bit) libraries (libnvidia-container's `LIB_ARCH`).
    pub arch: Arch,
    /// The ELF `e_machine` of its native libraries.
    pub elf_machine: u16,
    /// Debian's multiarch tuple (`x86_64-linux-gnu`): `/usr/lib/<tuple>` is a Debian image's
    /// library directory.
    pub multiarch: &'static str,
    /// The 32-bit compatibility set NVIDIA ships for it (`compat32`), if any.
    pub compat32: Option<Compat32>,
    /// glibc's trusted directories, which `ldconfig` scans after the configured ones, in
    /// order (Debian's and Ubuntu's multiarch build, then the generic ones).
    pub trusted_dirs: &'static [&'static str],
    /// The subdirectories of a library directory that glibc 2.36's `ldconfig` descends into
    /// and lists with hwcap flags here (`glibc-hwcaps`, `tls` and the legacy hwcap and
    /// platform names), as Debian's `ldconfig` of the architecture does.
    pub hwcap_dirs: &'static [&'static str],
    /// Where the driver's native libraries are looked for in a driver root without an
    /// `ld.so.cache` (NixOS and others), in order.
    pub fallback_lib_dirs: &'static [&'static str],
}

/// The 32-bit compatibility libraries of a [`Platform`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compat32 {
    /// Their cache flag (libnvidia-container's `LIB32_ARCH`).
    pub arch: Arch,
    /// Their ELF `e_machine`.
    pub elf_machine: u16,
    /// Debian's multiarch tuple (`i386-linux-gnu`).
    pub multiarch: &'static str,
    /// Where they are looked for in a driver root without an `ld.so.cache`, in order.
    pub fallback_lib_dirs: &'static [&'static str],
}

impl Platform {
    /// x86-64, with the i386 compatibility set.
    pub const X86_64: Platform = Platform {
        name: "x86_64",
        arch: Arch::X86_64,
        elf_machine: machine::X86_64,
        multiarch: "x86_64-linux-gnu",
        compat32: Some(Compat32 {
            arch: Arch::I386,
            elf_machine: machine::I386,
            multiarch: "i386-linux-gnu",
            fallback_lib_dirs: &[
                "/usr/lib/i386-linux-gnu",
                "/usr/lib32",
                "/lib/i386-linux-gnu",
                "/lib32",
                "/usr/lib",
                "/run/opengl-driver-32/lib",
            ],
        }),
        trusted_dirs: &[
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib",
            "/usr/lib",
        ],
        hwcap_dirs: &[
            "glibc-hwcaps",
            "tls",
            "x86_64",
            "i586",
            "i686",
            "haswell",
            "xeon_phi",
            "avx512_1",
            "sse2",
        ],
        fallback_lib_dirs: &[
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/lib/x86_64-linux-gnu",
            "/lib64",
            "/usr/lib",
            "/lib",
            "/usr/local/lib",
            "/run/opengl-driver/lib",
        ],
    };

    /// AArch64 (Grace, Jetson-class servers, GH200/GB200). NVIDIA ships no 32-bit set for
    /// it (libnvidia-container's `/var/empty` compat directory).
    pub const AARCH64: Platform = Platform {
        name: "aarch64",
        arch: Arch::Aarch64,
        elf_machine: machine::AARCH64,
        multiarch: "aarch64-linux-gnu",
        compat32: None,
        trusted_dirs: &[
            "/lib/aarch64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/lib",
            "/usr/lib",
        ],
        hwcap_dirs: &["glibc-hwcaps", "tls", "atomics"],
        fallback_lib_dirs: &[
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib64",
            "/lib/aarch64-linux-gnu",
            "/lib64",
            "/usr/lib",
            "/lib",
            "/usr/local/lib",
            "/run/opengl-driver/lib",
        ],
    };

    /// Little-endian 64-bit PowerPC (POWER9 hosts), without a 32-bit set.
    pub const PPC64LE: Platform = Platform {
        name: "ppc64le",
        arch: Arch::PowerPc64,
        elf_machine: machine::PPC64,
        multiarch: "powerpc64le-linux-gnu",
        compat32: None,
        trusted_dirs: &[
            "/lib/powerpc64le-linux-gnu",
            "/usr/lib/powerpc64le-linux-gnu",
            "/lib",
            "/usr/lib",
        ],
        hwcap_dirs: &[
            "glibc-hwcaps",
            "tls",
            "power4",
            "power5",
            "power5+",
            "power6",
            "power6x",
            "power7",
            "power8",
            "power9",
            "power10",
            "altivec",
            "ppc970",
            "dfp",
            "ppca2",
        ],
        fallback_lib_dirs: &[
            "/usr/lib/powerpc64le-linux-gnu",
            "/usr/lib64",
            "/lib/powerpc64le-linux-gnu",
            "/lib64",
            "/usr/lib",
            "/lib",
            "/usr/local/lib",
            "/run/opengl-driver/lib",
        ],
    };

    /// Every row.
    pub const ALL: &'static [Platform] = &[Self::X86_64, Self::AARCH64, Self::PPC64LE];

    /// This build's row. (On architectures outside the table it does not exist, and the
    /// crates that need it do not build, as libnvidia-container.)
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        all(target_arch = "powerpc64", target_endian = "little")
    ))]
    #[must_use]
    pub fn host() -> &'static Platform {
        #[cfg(target_arch = "x86_64")]
        return &Self::X86_64;
        #[cfg(target_arch = "aarch64")]
        return &Self::AARCH64;
        #[cfg(target_arch = "powerpc64")]
        return &Self::PPC64LE;
    }

    /// The row called `name` ([`Platform::name`]; Debian's `amd64`, `arm64` and `ppc64el`
    /// are accepted too).
    #[must_use]
    pub fn from_name(name: &str) -> Option<&'static Platform> {
        let name = match name {
            "amd64" => "x86_64",
            "arm64" => "aarch64",
            "ppc64el" => "ppc64le",
            other => other,
        };
        Self::ALL.iter().find(|p| p.name == name)
    }

    /// The cache flags of its library sets: native first, then the compat32 one.
    pub fn arches(&self) -> impl Iterator<Item = Arch> + '_ {
        std::iter::once(self.arch).chain(self.compat32.map(|c| c.arch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::{Class, ElfInfo, SharedObject, write_shared_object};

    /// Each row's ELF machine is what its cache flag is read from, for both sets: a library
    /// of the row's machine lands under the row's flag.
    #[test]
    fn each_rows_elf_machine_reads_as_its_cache_flag() {
        for p in Platform::ALL {
            let mut sets = vec![(Class::Elf64, p.elf_machine, p.arch)];
            if let Some(c) = p.compat32 {
                sets.push((Class::Elf32, c.elf_machine, c.arch));
            }
            for (class, machine, arch) in sets {
                let mut so = SharedObject::x86(class, b"libcuda.so.1");
                so.machine = machine;
                let elf = ElfInfo::parse(&write_shared_object(&so)).unwrap();
                assert_eq!(elf.cache_arch(), Some(arch), "{}", p.name);
            }
        }
    }

    #[test]
    fn rows_are_named_as_uname_and_debian_name_them() {
        assert_eq!(Platform::from_name("arm64"), Some(&Platform::AARCH64));
        assert_eq!(Platform::from_name("x86_64"), Some(&Platform::X86_64));
        assert_eq!(Platform::from_name("ppc64el"), Some(&Platform::PPC64LE));
        assert_eq!(Platform::from_name("riscv64"), None);
        assert_eq!(
            Platform::host().name,
            std::env::consts::ARCH.replace("powerpc64", "ppc64le")
        );
        for p in Platform::ALL {
            assert!(p.fallback_lib_dirs[0].ends_with(p.multiarch), "{}", p.name);
            assert!(p.trusted_dirs.iter().any(|d| d.ends_with(p.multiarch)));
        }
    }
}
