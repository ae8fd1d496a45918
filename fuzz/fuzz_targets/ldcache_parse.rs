#![no_main]

#[allow(dead_code)] // each target uses one of the shared bodies
#[path = "../../nvc-ldcache/tests/common/exercise.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::ldcache(data));
