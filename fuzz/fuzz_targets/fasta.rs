//! Fuzz target: the FASTA reader; see `protfam::fuzzing::fasta`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| protfam::fuzzing::run("fasta", data));
