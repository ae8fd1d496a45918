//! A simulated NVIDIA host for tests.
//!
//! This crate will hold scenario descriptions and a builder that writes a driver root with real
//! ELF libraries, a real `ld.so.cache` from glibc's `ldconfig`, device nodes,
//! `/proc/driver/nvidia` files and a fake `libnvidia-ml.so.1`, so that the production code paths
//! run unchanged without a GPU.
#![forbid(unsafe_code)]
