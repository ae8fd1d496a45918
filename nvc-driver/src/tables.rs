//! What libnvidia-container looks for, per capability (spec §3.1–§3.3).

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

/// The persistence daemon's socket.
pub const PERSISTENCED_SOCKET: &str = "/var/run/nvidia-persistenced/socket";

/// The fabric manager's socket.
pub const FABRICMANAGER_SOCKET: &str = "/var/run/nvidia-fabricmanager/socket";

/// The MPS pipe directory when `CUDA_MPS_PIPE_DIRECTORY` is unset.
pub const MPS_PIPE_DIR: &str = "/tmp/nvidia-mps";

/// Where libraries are searched when the driver root has no `ld.so.cache` (NixOS and other
/// hosts without one; upstream cannot discover anything there), 64-bit.
pub const FALLBACK_LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/powerpc64le-linux-gnu",
    "/usr/lib",
    "/lib",
    "/usr/local/lib",
    "/run/opengl-driver/lib",
];

/// The 32-bit counterpart of [`FALLBACK_LIB_DIRS`].
pub const FALLBACK_LIB32_DIRS: &[&str] = &[
    "/usr/lib/i386-linux-gnu",
    "/usr/lib32",
    "/lib/i386-linux-gnu",
    "/lib32",
    "/usr/lib",
    "/run/opengl-driver-32/lib",
];
