//! Fuzz target: the embedding-cache directory (spec.json, index.json, shards) loader; see `protfam::fuzzing::cache_dir`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| protfam::fuzzing::run("cache_dir", data));
