//! NVIDIA driver discovery.
//!
//! This crate will hold what libnvidia-container learns about the host before it touches a
//! container: NVML queries (through `nvml-wrapper`, in a confined helper process) and a `/proc`
//! fallback turned into owned `DriverInfo`, `Gpu` and `MigDevice` values; the per-capability
//! tables of libraries, binaries, IPC endpoints, firmware and device nodes; library resolution
//! through `nvc-ldcache` inside a driver root; the `--device` selection grammar and the
//! `--require` requirement DSL.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
