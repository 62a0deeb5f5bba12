//! Embedding-cache directory loader: a model directory whose `spec.json`,
//! `index.json` or one shard is the fuzz input, next to a valid shard.
#![no_main]
use libfuzzer_sys::fuzz_target;
use protfam::cache::{sequence_hash, Cache, ModelCache};
use protfam::embedder::{EmbedderSpec, Pooling};

fn spec() -> EmbedderSpec {
    EmbedderSpec {
        name: "fuzz".into(),
        architecture: "onehot".into(),
        weights_digest: "00".into(),
        dim: 4,
        layer: None,
        pooling: Pooling::Mean,
        max_residues: None,
        dtype: "f32".into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let cache = Cache::new(root.path());
    let dir = cache.model_dir(&spec());
    {
        let mut m = cache.open_model(&spec()).unwrap();
        m.insert(sequence_hash("MKV"), &[1.0, 2.0, 3.0, 4.0]).unwrap();
        m.flush().unwrap();
    }
    match which % 3 {
        0 => std::fs::write(dir.join("spec.json"), rest).unwrap(),
        1 => std::fs::write(dir.join("index.json"), rest).unwrap(),
        _ => std::fs::write(dir.join("shards").join("shard-9999999999999-x.safetensors"), rest).unwrap(),
    }
    if let Ok(mut m) = ModelCache::open_existing(&dir) {
        let _ = m.stats();
        let _ = m.for_each_vector(|_, v| assert_eq!(v.len(), 4));
        let _ = m.verify_all();
    }
    if let Ok(mut m) = cache.open_model(&spec()) {
        let _ = m.get(&sequence_hash("MKV"));
    }
});
