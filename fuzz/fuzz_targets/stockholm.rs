//! Fuzz target: the Stockholm reader; see `protfam::fuzzing::stockholm`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| protfam::fuzzing::run("stockholm", data));
