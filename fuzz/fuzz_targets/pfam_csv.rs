//! Fuzz target: the Pfam split CSV shard reader; see `protfam::fuzzing::pfam_csv`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| protfam::fuzzing::run("pfam_csv", data));
