//! Fuzz target: the classifier-directory loader (classifier.json, labels.json, weights.safetensors, train_ids.txt); see `protfam::fuzzing::classifier_dir`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| protfam::fuzzing::run("classifier_dir", data));
