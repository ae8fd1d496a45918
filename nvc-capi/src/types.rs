//! libnvidia-container's structs, field for field (`nvc.h`, and the leading fields of the two
//! "opaque" structs that upstream's CLI reaches into through its internal header). The
//! layout tests (`tests/abi.rs`) compile a C file asserting `offsetof`/`sizeof` against
//! `include/nvc.h` and these definitions.
#![allow(non_camel_case_types, missing_docs)]

use std::ffi::{c_char, c_int, c_uint};

use libc::{dev_t, gid_t, pid_t, size_t, uid_t};

#[repr(C)]
#[derive(Debug)]
pub struct nvc_version {
    pub major: c_uint,
    pub minor: c_uint,
    pub patch: c_uint,
    pub string: *const c_char,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct nvc_imex_channel {
    pub id: c_int,
}

#[repr(C)]
#[derive(Debug)]
pub struct nvc_imex_info {
    pub chans: *mut nvc_imex_channel,
    pub nchans: size_t,
}

#[repr(C)]
#[derive(Debug)]
pub struct nvc_config {
    pub root: *mut c_char,
    pub ldcache: *mut c_char,
    pub uid: uid_t,
    pub gid: gid_t,
    pub imex: nvc_imex_info,
}

#[repr(C)]
#[derive(Debug)]
pub struct nvc_device_node {
    pub path: *mut c_char,
    pub id: dev_t,
}

#[repr(C)]
#[derive(Debug)]
pub struct nvc_driver_info {
    pub nvrm_version: *mut c_char,
    pub cuda_version: *mut c_char,
    pub bins: *mut *mut c_char,
    pub nbins: size_t,
    pub libs: *mut *mut c_char,
    pub nlibs: size_t,
    pub libs32: *mut *mut c_char,
    pub nlibs32: size_t,
    pub ipcs: *mut *mut c_char,
    pub nipcs: size_t,
    pub devs: *mut nvc_device_node,
    pub ndevs: size_t,
    pub firmwares: *mut *mut c_char,
    pub nfirmwares: size_t,
}

#[repr(C)]
#[derive(Debug)]
pub struct nvc_mig_device {
    pub parent: *mut nvc_device,
    pub uuid: *mut c_char,
    pub gi: c_uint,
    pub ci: c_uint,
    pub gi_caps_path: *mut c_char,
    pub ci_caps_path: *mut c_char,
}

#[repr(C)]
#[derive(Debug)]
pub struct nvc_mig_device_info {
    pub devices: *mut nvc_mig_device,
    pub ndevices: size_t,
}

#[repr(C)]
#[derive(Debug)]
pub struct nvc_device {
    pub model: *mut c_char,
    pub uuid: *mut c_char,
    pub busid: *mut c_char,
    pub arch: *mut c_char,
    pub brand: *mut c_char,
    pub node: nvc_device_node,
    pub mig_capable: bool,
    pub mig_caps_path: *mut c_char,
    pub mig_devices: nvc_mig_device_info,
}

#[repr(C)]
#[derive(Debug)]
pub struct nvc_device_info {
    pub gpus: *mut nvc_device,
    pub ngpus: size_t,
}

#[repr(C)]
#[derive(Debug)]
pub struct nvc_container_config {
    pub pid: pid_t,
    pub rootfs: *mut c_char,
    pub bins_dir: *mut c_char,
    pub libs_dir: *mut c_char,
    pub libs32_dir: *mut c_char,
    pub cudart_dir: *mut c_char,
    pub ldconfig: *mut c_char,
}

/// Upstream's `struct error` (its message is what `nvc_error` returns).
#[repr(C)]
#[derive(Debug)]
pub struct nvc_error_state {
    pub msg: *mut c_char,
    pub code: c_int,
}

/// Upstream's `struct nvc_context` up to `no_pivot`, which its CLI sets (`nvc->no_pivot`);
/// nothing after it is read by callers.
#[repr(C)]
#[derive(Debug)]
pub struct nvc_context {
    pub initialized: bool,
    pub err: nvc_error_state,
    pub cfg: nvc_config,
    pub mnt_ns: c_int,
    pub no_pivot: bool,
}

/// Upstream's `struct nvc_container`: its CLI reads `flags` and replaces `libs`/`nlibs`
/// (filtered CUDA compat libraries, allocated with `malloc`) and sets `cuda_compat_dir`.
#[repr(C)]
#[derive(Debug)]
pub struct nvc_container {
    pub flags: i32,
    pub cfg: nvc_container_config,
    pub uid: uid_t,
    pub gid: gid_t,
    pub mnt_ns: *mut c_char,
    pub dev_cg_version: c_int,
    pub dev_cg: *mut c_char,
    pub libs: *mut *mut c_char,
    pub nlibs: size_t,
    pub cuda_compat_dir: *mut c_char,
}
