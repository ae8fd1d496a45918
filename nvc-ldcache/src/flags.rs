//! Entry flags: library type and architecture (glibc `ldconfig.h` `FLAG_*`).

use std::fmt;

use crate::Error;

/// The `flags` word of a cache entry: a library type in the low byte and an architecture
/// ("required") value in the second byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flags(pub i32);

/// Mask of the library type (`FLAG_TYPE_MASK`).
pub const TYPE_MASK: i32 = 0x00ff;
/// Mask of the architecture value (`FLAG_REQUIRED_MASK`).
pub const ARCH_MASK: i32 = 0xff00;
/// Bit set for ELF libraries (`FLAG_ELF`); libnvidia-container only considers these.
pub const ELF: i32 = 0x0001;
/// An ELF library linked against glibc (`FLAG_ELF_LIBC6`).
pub const ELF_LIBC6: i32 = 0x0003;

impl Flags {
    /// The library type (`flags & 0xff`): 0 libc4, 1 ELF, 2 libc5, 3 libc6.
    #[must_use]
    pub fn lib_type(self) -> u8 {
        (self.0 & TYPE_MASK).to_le_bytes()[0]
    }

    /// Whether the ELF bit is set, as libnvidia-container requires (`flags & FLAG_ELF`).
    #[must_use]
    pub fn is_elf(self) -> bool {
        self.0 & ELF != 0
    }

    /// The architecture the entry is for.
    #[must_use]
    pub fn arch(self) -> Arch {
        Arch::from_flags(self.0)
    }

    /// Builds the flags of an ELF library for glibc (`FLAG_ELF_LIBC6`) of `arch`.
    #[must_use]
    pub fn libc6(arch: Arch) -> Self {
        Flags(ELF_LIBC6 | arch.value())
    }
}

impl Flags {
    /// Appends what `ldconfig -p` prints for these flags: `libc6,x86-64`, `ELF`, ...
    pub(crate) fn push_ldconfig(self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.lib_type() {
            0 => b"libc4",
            1 => b"ELF",
            2 => b"libc5",
            3 => b"libc6",
            _ => b"unknown",
        });
        let arch = self.arch();
        match arch.ldconfig_suffix() {
            Some(suffix) => out.extend_from_slice(suffix.as_bytes()),
            None => out.extend_from_slice(format!(",{}", arch.value()).as_bytes()),
        }
    }
}

/// Prints the flags as `ldconfig -p` does: `libc6,x86-64`, `ELF`, `libc6,AArch64`, ...
impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = Vec::with_capacity(16);
        self.push_ldconfig(&mut text);
        f.write_str(&String::from_utf8_lossy(&text))
    }
}

macro_rules! arches {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $label:literal, $suffix:expr;)*) => {
        /// The architecture value of an entry (`flags & 0xff00`), every one glibc defines.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Arch {
            $($(#[$doc])* $name,)*
            /// A value glibc does not define (kept so it can be printed and compared).
            Unknown(i32),
        }

        impl Arch {
            /// Every architecture glibc defines, in flag order.
            pub const ALL: &'static [Arch] = &[$(Arch::$name),*];

            /// The architecture encoded in an entry's `flags`.
            #[must_use]
            pub fn from_flags(flags: i32) -> Self {
                match flags & ARCH_MASK {
                    $($value => Arch::$name,)*
                    other => Arch::Unknown(other),
                }
            }

            /// The value in the `0xff00` byte of the flags.
            #[must_use]
            pub fn value(self) -> i32 {
                match self {
                    $(Arch::$name => $value,)*
                    Arch::Unknown(v) => v & ARCH_MASK,
                }
            }

            /// A short name for command lines: `x86_64`, `i386`, `aarch64`, `armhf`, ...
            #[must_use]
            pub fn name(self) -> &'static str {
                match self {
                    $(Arch::$name => $label,)*
                    Arch::Unknown(_) => "unknown",
                }
            }

            /// The architecture called `name` ([`Arch::name`]; `x86-64` and `amd64` are
            /// accepted for `x86_64`, `arm64` for `aarch64`).
            ///
            /// # Errors
            ///
            /// [`Error::UnknownArch`] naming the input.
            pub fn from_name(name: &str) -> Result<Self, Error> {
                match name {
                    "x86-64" | "amd64" => Ok(Arch::X86_64),
                    "arm64" => Ok(Arch::Aarch64),
                    $($label => Ok(Arch::$name),)*
                    _ => Err(Error::UnknownArch { name: name.to_owned() }),
                }
            }

            /// What `ldconfig -p` prints after the library type, with its comma; `None` where
            /// glibc's `print_entry` has no name and prints the number.
            fn ldconfig_suffix(self) -> Option<&'static str> {
                match self {
                    $(Arch::$name => $suffix,)*
                    Arch::Unknown(_) => None,
                }
            }
        }
    };
}

arches! {
    /// No flag: i386 on x86 hosts, and the 32-bit base ABI of other architectures
    /// (libnvidia-container's `LD_I386_LIB32`).
    I386 = 0x0000, "i386", Some("");
    /// 64-bit SPARC.
    Sparc64 = 0x0100, "sparc64", Some(",64bit");
    /// IA-64.
    Ia64 = 0x0200, "ia64", Some(",IA-64");
    /// x86-64.
    X86_64 = 0x0300, "x86_64", Some(",x86-64");
    /// 64-bit s390x.
    S390x = 0x0400, "s390x", Some(",64bit");
    /// 64-bit PowerPC (ppc64 and ppc64le).
    PowerPc64 = 0x0500, "ppc64", Some(",64bit");
    /// MIPS64 n32 ABI.
    Mips64N32 = 0x0600, "mips64-n32", Some(",N32");
    /// MIPS64 n64 ABI.
    Mips64N64 = 0x0700, "mips64", Some(",64bit");
    /// x86-64 x32 ABI.
    X32 = 0x0800, "x32", Some(",x32");
    /// 32-bit ARM, hard-float ABI.
    ArmHardFloat = 0x0900, "armhf", Some(",hard-float");
    /// AArch64.
    Aarch64 = 0x0a00, "aarch64", Some(",AArch64");
    /// 32-bit ARM, soft-float ABI.
    ArmSoftFloat = 0x0b00, "armel", Some(",soft-float");
    /// 32-bit MIPS with NaN2008.
    MipsNan2008 = 0x0c00, "mips-nan2008", Some(",nan2008");
    /// MIPS64 n32 with NaN2008.
    Mips64N32Nan2008 = 0x0d00, "mips64-n32-nan2008", Some(",N32,nan2008");
    /// MIPS64 n64 with NaN2008.
    Mips64N64Nan2008 = 0x0e00, "mips64-nan2008", Some(",64bit,nan2008");
    /// RISC-V, soft-float ABI.
    RiscvSoftFloat = 0x0f00, "riscv-soft", Some(",soft-float");
    /// RISC-V, double-float ABI.
    RiscvDoubleFloat = 0x1000, "riscv", Some(",double-float");
    /// LoongArch, soft-float ABI (`ldconfig -p` prints its number, `4352`).
    LoongArchSoftFloat = 0x1100, "loongarch-soft", None;
    /// LoongArch, double-float ABI (`ldconfig -p` prints its number, `4608`).
    LoongArchDoubleFloat = 0x1200, "loongarch", None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_flags() {
        for &arch in Arch::ALL {
            assert_eq!(Arch::from_flags(Flags::libc6(arch).0), arch);
            assert_eq!(Flags::libc6(arch).lib_type(), 3);
        }
        assert_eq!(Arch::from_flags(0x7f03), Arch::Unknown(0x7f00));
        assert_eq!(Arch::ALL.len(), 19);
        for &arch in Arch::ALL {
            assert_eq!(Arch::from_name(arch.name()).unwrap(), arch);
        }
        assert_eq!(Arch::from_name("amd64").unwrap(), Arch::X86_64);
        let err = Arch::from_name("vax").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown architecture \"vax\" (expected one of i386, sparc64, ia64, x86_64, s390x, ppc64, mips64-n32, mips64, x32, armhf, aarch64, armel, mips-nan2008, mips64-n32-nan2008, mips64-nan2008, riscv-soft, riscv, loongarch-soft, loongarch)"
        );
    }

    #[test]
    fn display_matches_ldconfig() {
        assert_eq!(Flags(0x0303).to_string(), "libc6,x86-64");
        assert_eq!(Flags(0x0003).to_string(), "libc6");
        assert_eq!(Flags(0x0001).to_string(), "ELF");
        assert_eq!(Flags(0x0a03).to_string(), "libc6,AArch64");
        assert_eq!(Flags(0x0e03).to_string(), "libc6,64bit,nan2008");
        assert_eq!(Flags(0x7f09).to_string(), "unknown,32512");
        assert_eq!(Flags(0x1203).to_string(), "libc6,4608");
    }

    #[test]
    fn elf_bit_is_what_libnvidia_container_checks() {
        assert!(Flags(0x0303).is_elf());
        assert!(Flags(0x0001).is_elf());
        assert!(!Flags(0x0302).is_elf());
        assert!(!Flags(0x0300).is_elf());
    }
}
