//! `libnvidia-container.so.1` built from nvc: the C API of NVIDIA's libnvidia-container
//! (`include/nvc.h`) on [`nvc_core`], so that an existing installation — NVIDIA's own
//! `nvidia-container-cli`, the toolkit's hook, any program written against `nvc.h` — runs on
//! nvc by swapping one file.
//!
//! Same ABI: the structs field for field (including the leading fields of `nvc_context` and
//! `nvc_container` that upstream's CLI reads and writes), the exported symbols and their
//! version node `NVC_1.0`, the SONAME, the option strings and their error texts, ownership
//! (what the caller frees, with which `_free`), `nvc_error`'s messages, the debug log in
//! `NVC_DEBUG_FILE`.
//!
//! Better behind it:
//! - misuse does not crash: every object handed out is registered, so a NULL, foreign or
//!   already-freed pointer gets "invalid argument" (or is ignored by a `_free`) instead of
//!   a double free; a panic inside becomes an error (`internal error: ...`), never an abort
//!   or an unwind into C;
//! - every mount call is nvc's transaction: a failure undoes that call's mounts and cgroup
//!   rules (upstream asserts instead of rolling back some of its steps);
//! - the image is treated as hostile as everywhere in nvc: every path is resolved inside
//!   the rootfs, `ldconfig` runs sandboxed;
//! - the NVML helper is nvc's (timeout, no leftover process).
//!
//! Calls on one context are serialised; different contexts run in parallel.
//!
//! # Kernel requirements
//!
//! Those of [`nvc_core::ContainerSetup::mount`] for the mount calls; `info`-style calls need
//! only what [`nvc_core::Context::driver`] needs.
#![deny(missing_docs)]

mod cmem;
mod container;
mod context;
mod info;
mod log;
mod mount;
pub mod options;
mod registry;
pub mod types;

/// What failed, as `nvc_error` reports it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
        }
    }

    /// Upstream's argument check (`validate_args`).
    pub(crate) fn invalid_argument() -> Self {
        Failure::new("invalid argument")
    }
}

impl From<nvc_core::Error> for Failure {
    fn from(e: nvc_core::Error) -> Self {
        Failure::new(e.detail())
    }
}

/// Exports `$name` (a C symbol of upstream's ABI) as a jump to `$imp`.
///
/// rustc links a cdylib with its own anonymous version script listing its `#[no_mangle]`
/// symbols, and a second script cannot move those to upstream's version node `NVC_1.0` (the
/// linker keeps the first assignment). The entry points are therefore private Rust
/// functions, and these assembler trampolines are the exported symbols: unknown to rustc,
/// they take their version from `libnvidia-container.ver` (build.rs), and nothing else is
/// exported. A tail jump leaves the arguments and the return address as the caller set them.
macro_rules! export {
    ($($name:literal => $imp:path;)*) => {$(
        #[cfg(target_arch = "x86_64")]
        std::arch::global_asm!(
            concat!(".globl ", $name),
            concat!(".type ", $name, ",@function"),
            concat!($name, ":"),
            "jmp {imp}",
            concat!(".size ", $name, ", . - ", $name),
            imp = sym $imp,
        );
        #[cfg(target_arch = "aarch64")]
        std::arch::global_asm!(
            concat!(".globl ", $name),
            concat!(".type ", $name, ",%function"),
            concat!($name, ":"),
            "b {imp}",
            concat!(".size ", $name, ", . - ", $name),
            imp = sym $imp,
        );
    )*};
}

export! {
    "nvc_version" => context::version;
    "nvc_context_new" => context::context_new;
    "nvc_context_free" => context::context_free;
    "nvc_config_new" => context::config_new;
    "nvc_config_free" => context::config_free;
    "nvc_init" => context::init;
    "nvc_shutdown" => context::shutdown;
    "nvc_error" => context::error;
    "nvc_container_config_new" => container::config_new;
    "nvc_container_config_free" => container::config_free;
    "nvc_container_new" => container::container_new;
    "nvc_container_free" => container::container_free;
    "nvc_driver_info_new" => info::driver_info_new;
    "nvc_driver_info_free" => info::driver_info_free;
    "nvc_device_info_new" => info::device_info_new;
    "nvc_device_info_free" => info::device_info_free;
    "nvc_nvcaps_style" => info::nvcaps_style;
    "nvc_nvcaps_device_from_proc_path" => info::nvcaps_device_from_proc_path;
    "nvc_driver_mount" => mount::driver_mount;
    "nvc_device_mount" => mount::device_mount;
    "nvc_mig_device_access_caps_mount" => mount::mig_device_access_caps_mount;
    "nvc_mig_config_global_caps_mount" => mount::mig_config_global_caps_mount;
    "nvc_mig_monitor_global_caps_mount" => mount::mig_monitor_global_caps_mount;
    "nvc_device_mig_caps_mount" => mount::device_mig_caps_mount;
    "nvc_imex_channel_mount" => mount::imex_channel_mount;
    "nvc_ldcache_update" => mount::ldcache_update;
}
