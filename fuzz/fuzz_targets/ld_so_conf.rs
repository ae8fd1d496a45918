#![no_main]

#[allow(dead_code)] // each target uses one of the shared bodies
#[path = "../bodies/mod.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::ld_so_conf(data));
