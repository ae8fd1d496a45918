//! The namespace mount engine.
//!
//! This crate will hold the `MountPlan` (plain data built from a driver view and container
//! facts), its executor (a dedicated thread that enters the container's mount namespace,
//! resolves every path inside the container root and mounts by file descriptor, rolling back on
//! failure), device cgroup rules (v1 `devices.allow`, v2 eBPF), the sandboxed `ldconfig` run and
//! CUDA forward-compatibility handling.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
