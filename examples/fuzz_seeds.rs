//! Writes the fuzz seeds that need the library to make them: real classifier
//! directory files and embedding-cache files, prefixed with the selector byte
//! their fuzz target reads first. Used by `scripts/fuzz_seeds.sh`.
//!
//! `cargo run --release --example fuzz_seeds -- fuzz/corpus`

use std::path::PathBuf;

use protfam::cache::{sequence_hash, Cache};
use protfam::embedder::{EmbedderSpec, Pooling};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let corpus = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let write = |target: &str, name: String, prefix: u8, bytes: &[u8]| -> std::io::Result<()> {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        let mut data = vec![prefix];
        data.extend_from_slice(bytes);
        std::fs::write(dir.join(name), data)
    };
    for which in 0..12u8 {
        let file = protfam::fuzzing::classifier_template_file(which);
        write("classifier_dir", format!("template-{which:02}"), which, &file)?;
    }
    let spec = EmbedderSpec {
        name: "fuzz".into(),
        architecture: "onehot".into(),
        weights_digest: "00".into(),
        dim: 4,
        layer: None,
        pooling: Pooling::Mean,
        max_residues: None,
        dtype: "f32".into(),
    };
    let root = tempfile::tempdir()?;
    let cache = Cache::new(root.path());
    let mut model = cache.open_model(&spec)?;
    model.insert(sequence_hash("MKVL"), &[0.5, -1.0, 2.0, 0.0])?;
    let shard = model.flush()?.expect("one vector pending");
    drop(model);
    let dir = cache.model_dir(&spec);
    write("cache_dir", "spec".into(), 0, &std::fs::read(dir.join("spec.json"))?)?;
    write("cache_dir", "index".into(), 1, &std::fs::read(dir.join("index.json"))?)?;
    let shard_bytes = std::fs::read(&shard)?;
    write("cache_dir", "shard".into(), 2, &shard_bytes)?;
    std::fs::create_dir_all(corpus.join("cache_shard"))?;
    std::fs::write(corpus.join("cache_shard").join("shard.safetensors"), &shard_bytes)?;
    println!("classifier_dir and cache seeds written under {}", corpus.display());
    Ok(())
}
