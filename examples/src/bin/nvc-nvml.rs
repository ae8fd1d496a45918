//! `nvc-nvml`: the NVML helper program that a statically linked `nvc-hook` executes, since it
//! cannot load NVML's shared library itself (`nvc_core::ContextBuilder::nvml_helper`).
//!
//! ```text
//! nvc-nvml ROOT LIBRARY UID:GID|-
//! ```
//!
//! As root it chroots into `ROOT` (unless `/`) and drops to `UID:GID` (65534:65534 for `-`),
//! loads `LIBRARY` (inside `ROOT`) and prints what NVML says, one fact per line. Install it
//! dynamically linked, beside `nvc-hook`; the hook runs it with an empty environment.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(u8::try_from(nvc_core::nvml_helper_main()).unwrap_or(1))
}
