//! nvc: make NVIDIA GPUs usable inside Linux containers.
//!
//! This crate will hold the public API, the builder flow
//! `Context::new()?.driver(..)?.container(pid)?.mount()?`, its options and its error type with
//! `Error::kind()`, CDI spec generation and OCI hook state handling, re-exporting what users of
//! the lower crates need.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
