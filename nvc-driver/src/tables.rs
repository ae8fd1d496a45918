//! What libnvidia-container looks for, per capability (upstream's `nvc_info.c` library and
//! binary tables).

/// Library name prefixes of the utility capability.
pub const UTILITY_LIBS: &[&str] = &["libnvidia-ml.so", "libnvidia-cfg.so", "libnvidia-nscq.so"];

/// Library name prefixes of the compute capability (also needed by video).
pub const COMPUTE_LIBS: &[&str] = &[
    "libcuda.so",
    "libcudadebugger.so",
    "libnvidia-opencl.so",
    "libnvidia-gpucomp.so",
    "libnvidia-ptxjitcompiler.so",
    "libnvidia-fatbinaryloader.so",
    "libnvidia-allocator.so",
    "libnvidia-compiler.so",
    "libnvidia-pkcs11.so",
    "libnvidia-pkcs11-openssl3.so",
    "libnvidia-nvvm.so",
    "libnvidia-tileiras.so",
];

/// Library name prefixes of the video capability.
pub const VIDEO_LIBS: &[&str] = &[
    "libvdpau_nvidia.so",
    "libnvidia-encode.so",
    "libnvidia-opticalflow.so",
    "libnvcuvid.so",
];

/// Library name prefixes of the graphics and display capabilities.
pub const GRAPHICS_LIBS: &[&str] = &[
    "libnvidia-eglcore.so",
    "libnvidia-glcore.so",
    "libnvidia-tls.so",
    "libnvidia-glsi.so",
    "libnvidia-fbc.so",
    "libnvidia-ifr.so",
    "libnvidia-rtcore.so",
    "libnvoptix.so",
];

/// The GLVND vendor libraries (the default).
pub const GLVND_LIBS: &[&str] = &[
    "libGLX_nvidia.so",
    "libEGL_nvidia.so",
    "libGLESv2_nvidia.so",
    "libGLESv1_CM_nvidia.so",
    "libnvidia-glvkspirv.so",
    "libnvidia-cbl.so",
];

/// The pre-GLVND GL libraries (driver option `no-glvnd`).
pub const LEGACY_GL_LIBS: &[&str] = &["libGL.so", "libEGL.so", "libGLESv1_CM.so", "libGLESv2.so"];

/// Library name prefixes of the ngx capability.
pub const NGX_LIBS: &[&str] = &["libnvidia-ngx.so"];

/// The lookup list, in upstream's order: utility, compute, ngx, video, graphics, then the
/// GLVND or the legacy GL set.
#[must_use]
pub fn library_prefixes(glvnd: bool) -> Vec<&'static str> {
    let gl = if glvnd { GLVND_LIBS } else { LEGACY_GL_LIBS };
    [
        UTILITY_LIBS,
        COMPUTE_LIBS,
        NGX_LIBS,
        VIDEO_LIBS,
        GRAPHICS_LIBS,
        gl,
    ]
    .concat()
}

/// Binaries of the utility capability.
pub const UTILITY_BINS: &[&str] = &[
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nv-fabricmanager",
];

/// Binaries of the compute capability (left out with `no-mps`).
pub const COMPUTE_BINS: &[&str] = &["nvidia-cuda-mps-control", "nvidia-cuda-mps-server"];

/// The development or dispatch link upstream adds next to a mounted library (by its file
/// name): `(link name, link target)`, e.g. `libcuda.so -> libcuda.so.1` next to
/// `libcuda.so.<version>`, `libGLX_indirect.so.0 -> libGLX_nvidia.so.<version>`.
#[must_use]
pub fn development_link(library: &str) -> Option<(&'static str, String)> {
    if library.starts_with("libcuda.so.") {
        Some(("libcuda.so", "libcuda.so.1".to_owned()))
    } else if library.starts_with("libGLX_nvidia.so.") {
        Some(("libGLX_indirect.so.0", library.to_owned()))
    } else if library.starts_with("libnvidia-opticalflow.so.") {
        Some((
            "libnvidia-opticalflow.so",
            "libnvidia-opticalflow.so.1".to_owned(),
        ))
    } else {
        None
    }
}

/// The persistence daemon's socket.
pub const PERSISTENCED_SOCKET: &str = "/var/run/nvidia-persistenced/socket";

/// The fabric manager's socket.
pub const FABRICMANAGER_SOCKET: &str = "/var/run/nvidia-fabricmanager/socket";

/// The MPS pipe directory when `CUDA_MPS_PIPE_DIRECTORY` is unset.
pub const MPS_PIPE_DIR: &str = "/tmp/nvidia-mps";

/// A driver capability a container asks for (`NVIDIA_DRIVER_CAPABILITIES`, `--compute`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// `--utility`: NVML, nvidia-smi.
    Utility,
    /// `--compute`: CUDA, OpenCL.
    Compute,
    /// `--video`: encode/decode (also brings the compute libraries).
    Video,
    /// `--graphics`: OpenGL, Vulkan, EGL.
    Graphics,
    /// `--display`: X11 display (the graphics libraries).
    Display,
    /// `--ngx`: NGX.
    Ngx,
}

impl Capability {
    /// Every capability (`NVIDIA_DRIVER_CAPABILITIES=all`).
    pub const ALL: [Capability; 6] = [
        Capability::Utility,
        Capability::Compute,
        Capability::Video,
        Capability::Graphics,
        Capability::Display,
        Capability::Ngx,
    ];

    /// The capability named as in `NVIDIA_DRIVER_CAPABILITIES` (`compute`, `utility`, ...).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "utility" => Capability::Utility,
            "compute" => Capability::Compute,
            "video" => Capability::Video,
            "graphics" => Capability::Graphics,
            "display" => Capability::Display,
            "ngx" => Capability::Ngx,
            _ => return None,
        })
    }
}

/// Whether a library (by file name) is mounted for `caps`, upstream's
/// `match_library_flags`: the lookup is capability-agnostic, the filter is applied here.
#[must_use]
pub fn library_wanted(file_name: &str, caps: &[Capability]) -> bool {
    use Capability::{Compute, Display, Graphics, Ngx, Utility, Video};
    let has = |c| caps.contains(&c);
    let in_set = |set: &[&str]| set.iter().any(|p| file_name.starts_with(p));
    (in_set(UTILITY_LIBS) && has(Utility))
        || (in_set(COMPUTE_LIBS) && (has(Compute) || has(Video)))
        || (in_set(VIDEO_LIBS) && has(Video))
        || ((in_set(GRAPHICS_LIBS) || in_set(GLVND_LIBS) || in_set(LEGACY_GL_LIBS))
            && (has(Graphics) || has(Display)))
        || (in_set(NGX_LIBS) && has(Ngx))
}

/// Whether a binary is mounted for `caps`.
#[must_use]
pub fn binary_wanted(name: &str, caps: &[Capability]) -> bool {
    (UTILITY_BINS.contains(&name) && caps.contains(&Capability::Utility))
        || (COMPUTE_BINS.contains(&name) && caps.contains(&Capability::Compute))
}

#[cfg(test)]
mod tests {
    use super::Capability::*;
    use super::*;

    #[test]
    fn capabilities_select_their_libraries() {
        assert!(library_wanted("libcuda.so.550.54.14", &[Compute]));
        assert!(library_wanted("libcuda.so.550.54.14", &[Video]));
        assert!(!library_wanted(
            "libcuda.so.550.54.14",
            &[Utility, Graphics]
        ));
        assert!(library_wanted("libnvidia-ml.so.550.54.14", &[Utility]));
        assert!(library_wanted("libGLX_nvidia.so.550.54.14", &[Display]));
        assert!(library_wanted("libnvcuvid.so.550.54.14", &[Video]));
        assert!(!library_wanted("libnvcuvid.so.550.54.14", &[Compute]));
        assert!(library_wanted("libnvidia-ngx.so.550.54.14", &[Ngx]));
        assert!(!library_wanted(
            "libz.so.1",
            &[Utility, Compute, Video, Graphics, Display, Ngx]
        ));
        assert!(binary_wanted("nvidia-smi", &[Utility]));
        assert!(binary_wanted("nvidia-cuda-mps-control", &[Compute]));
        assert!(!binary_wanted("nvidia-smi", &[Compute]));
    }
}
