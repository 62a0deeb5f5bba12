//! Fuzz target: the Hugging Face model.safetensors checkpoint loader; see `protfam::fuzzing::safetensors_checkpoint`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| protfam::fuzzing::run("safetensors", data));
