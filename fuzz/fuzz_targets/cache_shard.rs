//! Fuzz target: the embedding-cache shard loader; see `protfam::fuzzing::cache_shard`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| protfam::fuzzing::run("cache_shard", data));
