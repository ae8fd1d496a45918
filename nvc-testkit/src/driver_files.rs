//! The files an NVIDIA driver installs, as the simulated host lays them out.

/// Which part of the install a file belongs to (see [`crate::Files`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// Always installed.
    Core,
    /// Graphics and display.
    Graphics,
    /// NVSwitch systems (fabric manager, NSCQ).
    Fabric,
}

/// How a library's SONAME is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Soname {
    /// `<stem>.so.<n>` (`libcuda.so.1`).
    Major(u32),
    /// `<stem>.so.<driver version>` (the driver's private libraries).
    Versioned,
}

/// One shared library: `<stem>.so.<driver version>` on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Library {
    /// File name up to `.so` (`libcuda`).
    pub stem: &'static str,
    /// Its SONAME.
    pub soname: Soname,
    /// Whether the driver ships an i386 build too.
    pub lib32: bool,
    /// Which part of the install it is.
    pub part: Part,
}

const fn lib(stem: &'static str, soname: Soname, lib32: bool, part: Part) -> Library {
    Library {
        stem,
        soname,
        lib32,
        part,
    }
}

use Part::{Core, Fabric, Graphics};
use Soname::{Major, Versioned};

/// The libraries of a 550-series driver that libnvidia-container knows about (its
/// utility, compute, video, graphics, GLVND and ngx tables).
pub const LIBRARIES: &[Library] = &[
    lib("libnvidia-ml", Major(1), true, Core),
    lib("libnvidia-cfg", Major(1), false, Core),
    lib("libnvidia-nscq", Major(2), false, Fabric),
    lib("libcuda", Major(1), true, Core),
    lib("libcudadebugger", Major(1), false, Core),
    lib("libnvidia-opencl", Major(1), true, Core),
    lib("libnvidia-gpucomp", Versioned, true, Core),
    lib("libnvidia-ptxjitcompiler", Major(1), true, Core),
    lib("libnvidia-allocator", Major(1), true, Core),
    lib("libnvidia-pkcs11", Versioned, false, Core),
    lib("libnvidia-pkcs11-openssl3", Versioned, false, Core),
    lib("libnvidia-nvvm", Major(4), false, Core),
    lib("libvdpau_nvidia", Major(1), true, Graphics),
    lib("libnvidia-encode", Major(1), true, Core),
    lib("libnvidia-opticalflow", Major(1), true, Core),
    lib("libnvcuvid", Major(1), true, Core),
    lib("libnvidia-eglcore", Versioned, true, Graphics),
    lib("libnvidia-glcore", Versioned, true, Graphics),
    lib("libnvidia-tls", Versioned, true, Graphics),
    lib("libnvidia-glsi", Versioned, true, Graphics),
    lib("libnvidia-fbc", Major(1), true, Graphics),
    lib("libnvidia-rtcore", Versioned, false, Graphics),
    lib("libnvoptix", Major(1), false, Graphics),
    lib("libGLX_nvidia", Major(0), true, Graphics),
    lib("libEGL_nvidia", Major(0), true, Graphics),
    lib("libGLESv2_nvidia", Major(2), true, Graphics),
    lib("libGLESv1_CM_nvidia", Major(1), true, Graphics),
    lib("libnvidia-glvkspirv", Versioned, true, Graphics),
    lib("libnvidia-ngx", Major(1), false, Graphics),
];

impl Library {
    /// The SONAME for a driver version.
    #[must_use]
    pub fn soname(&self, version: &str) -> String {
        match self.soname {
            Major(n) => format!("{}.so.{n}", self.stem),
            Versioned => format!("{}.so.{version}", self.stem),
        }
    }

    /// The file name for a driver version.
    #[must_use]
    pub fn file_name(&self, version: &str) -> String {
        format!("{}.so.{version}", self.stem)
    }
}

/// Binaries in `/usr/bin`, with the part they belong to.
pub const BINARIES: &[(&str, Part)] = &[
    ("nvidia-smi", Core),
    ("nvidia-debugdump", Core),
    ("nvidia-persistenced", Core),
    ("nv-fabricmanager", Fabric),
    ("nvidia-cuda-mps-control", Core),
    ("nvidia-cuda-mps-server", Core),
];

/// GSP firmware files in `/lib/firmware/nvidia/<version>/`.
pub const FIRMWARE: &[&str] = &["gsp_ga10x.bin", "gsp_tu10x.bin"];

/// Where 64-bit libraries go (Debian multiarch, as libnvidia-container expects on x86-64).
pub const LIB64_DIR: &str = "usr/lib/x86_64-linux-gnu";
/// Where i386 libraries go.
pub const LIB32_DIR: &str = "usr/lib/i386-linux-gnu";
