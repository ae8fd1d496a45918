//! Every `unsafe` line of the nvc workspace.
//!
//! This crate will hold one safe function per Linux syscall that `nix` does not cover
//! (`open_tree`, `move_mount`, `mount_setattr`, `pidfd_open`, `setns` by fd, `bpf(2)`, seccomp,
//! `memfd_create` + `fexecve`) and the capability calls, each with typed inputs, `OwnedFd`
//! outputs and an error that names the syscall, its salient arguments and the `errno`.
//! Every other nvc crate is `#![forbid(unsafe_code)]`.
#![deny(missing_docs)]
