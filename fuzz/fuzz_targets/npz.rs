//! Fuzz target: the NumPy .npz weight loader; see `protfam::fuzzing::npz`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| protfam::fuzzing::run("npz", data));
