//! Writes the fuzz seeds that need the library to make them
//! ([`protfam::fuzzing::library_seeds`]: real classifier directory files and
//! embedding-cache files, prefixed with the selector byte their fuzz target reads
//! first) into a cargo-fuzz corpus. Used by `scripts/fuzz_seeds.sh`.
//!
//! `cargo run --release --example fuzz_seeds -- fuzz/corpus`

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let corpus = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    for (target, name, bytes) in protfam::fuzzing::library_seeds() {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("classifier_dir and cache seeds written under {}", corpus.display());
    Ok(())
}
