//! The bodies of the `cargo fuzz` targets in `fuzz/` (one function per
//! reader or loader), here so that the crash inputs the fuzzers found are
//! replayed by an ordinary test (`tests/fuzz_regressions.rs`) on every
//! `cargo test`, without the nightly fuzzing build.
//!
//! Each function takes arbitrary bytes and must return without panicking:
//! errors are fine, a panic is a bug. None of this is used by the product.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cache::shard::ShardFile;
use crate::cache::{sequence_hash, Cache, ModelCache};
use crate::classify::saved::{ClassifierKind, ClassifierParams, SavedClassifier};
use crate::embedder::{EmbedderSpec, Pooling};
use crate::io::Family;
use crate::vectors::VectorSet;

/// The fuzz targets, by name (the `fuzz/fuzz_targets/<name>.rs` files).
pub const TARGETS: [&str; 8] = [
    "fasta",
    "stockholm",
    "pfam_csv",
    "cache_shard",
    "cache_dir",
    "classifier_dir",
    "npz",
    "safetensors",
];

/// Runs the target `name` on `data`. Unknown names panic (a harness bug).
pub fn run(name: &str, data: &[u8]) {
    match name {
        "fasta" => fasta(data),
        "stockholm" => stockholm(data),
        "pfam_csv" => pfam_csv(data),
        "cache_shard" => cache_shard(data),
        "cache_dir" => cache_dir(data),
        "classifier_dir" => classifier_dir(data),
        "npz" => npz(data),
        "safetensors" => safetensors_checkpoint(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// FASTA reader: records or errors naming the line.
pub fn fasta(data: &[u8]) {
    let mut reader =
        crate::io::fasta::Reader::with_name(data, "fuzz.fa").reject_duplicates(data.first() == Some(&b'>'));
    for record in reader.records() {
        match record {
            Ok(r) => {
                let _ = crate::io::alphabet::check(&r.sequence);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let _ = reader.duplicates().len();
    // The format-detecting entry point too.
    if let Ok(reader) =
        crate::io::input::SequenceReader::from_reader(Box::new(std::io::Cursor::new(data.to_vec())), "fuzz", None)
    {
        for item in reader.take(100_000) {
            let _ = item.map(|r| r.sequence.len());
        }
    }
}

/// Stockholm reader.
pub fn stockholm(data: &[u8]) {
    let mut reader = crate::io::stockholm::Reader::with_name(data, "fuzz.sto");
    // A reader yields errors then ends; the bound stops one that would not.
    for _ in 0..10_000 {
        match reader.next_alignment() {
            None => break,
            Some(Ok(a)) => {
                let _ = format!("{a:?}").len();
            }
            Some(Err(e)) => {
                let _ = e.to_string();
            }
        }
    }
}

/// Pfam split CSV shard reader.
pub fn pfam_csv(data: &[u8]) {
    let Ok(reader) = crate::io::pfam_csv::ShardReader::from_reader(data, "data-00000-of-00001") else {
        return;
    };
    for record in reader.reject_duplicates(data.len().is_multiple_of(2)).take(100_000) {
        if let Err(e) = record {
            let _ = e.to_string();
        }
    }
}

/// A scratch directory per process (tmpfs when there is one: fuzzing writes a lot).
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("temporary directory")
}

/// Embedding-cache shard loader: open, read every tensor, verify the checksums.
pub fn cache_shard(data: &[u8]) {
    let dir = scratch();
    let path = dir.path().join("shard.safetensors");
    std::fs::write(&path, data).expect("scratch write");
    let Ok(file) = ShardFile::open(&path) else {
        return;
    };
    let names: Vec<String> = file.tensor_names().iter().map(|s| s.to_string()).collect();
    for name in &names {
        let _ = file.shape(name);
        for dtype in [
            safetensors::Dtype::F32,
            safetensors::Dtype::U8,
            safetensors::Dtype::U32,
            safetensors::Dtype::F16,
        ] {
            let _ = file.bytes(name, dtype);
        }
        for row in 0..3 {
            let _ = file.f32_row(name, row);
        }
    }
    let _ = file.verify();
}

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

/// Embedding-cache directory loader: a model directory whose `spec.json`
/// (byte 0 = 0), `index.json` (1) or an extra shard (2) is the input, next to
/// a valid shard; opening, listing, verifying and looking up must not panic.
pub fn cache_dir(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let root = scratch();
    let cache = Cache::new(root.path());
    let dir = cache.model_dir(&spec());
    {
        let mut m = cache.open_model(&spec()).expect("fresh cache");
        m.insert(sequence_hash("MKV"), &[1.0, 2.0, 3.0, 4.0]).expect("insert");
        m.flush().expect("flush");
    }
    let target = match which % 3 {
        0 => dir.join("spec.json"),
        1 => dir.join("index.json"),
        _ => dir.join("shards").join("shard-9999999999999-fuzz.safetensors"),
    };
    std::fs::write(target, rest).expect("scratch write");
    if let Ok(mut m) = ModelCache::open_read_only(&dir) {
        let _ = m.stats();
        let _ = m.for_each_vector(|_, v| assert_eq!(v.len(), 4));
    }
    if let Ok(mut m) = ModelCache::open_existing(&dir) {
        let _ = m.stats();
        let _ = m.for_each_vector(|_, v| assert_eq!(v.len(), 4));
        let _ = m.verify_all();
    }
    let _ = cache.verify();
    if let Ok(mut m) = cache.open_model(&spec()) {
        if let Ok(Some(v)) = m.get(&sequence_hash("MKV")) {
            assert_eq!(v.len(), 4);
        }
    }
}

/// Classifier-directory files, in the order `classifier_dir`'s first byte picks them.
const CLASSIFIER_FILES: [&str; 4] = ["classifier.json", "labels.json", "weights.safetensors", "train_ids.txt"];

fn vectors() -> VectorSet {
    let mut set = VectorSet::default();
    for i in 0..12 {
        let f = i % 3;
        let v = [f as f32, (i % 2) as f32, 0.5 * i as f32, 1.0];
        set.push(
            format!("s{i}"),
            Some(Family::new(format!("F{f}"), &format!("PF0000{f}"))),
            &v,
        );
    }
    set
}

/// Trained kNN, kNN-ensemble and MLP directories, once per process.
fn classifier_templates() -> &'static [(ClassifierKind, PathBuf)] {
    static T: OnceLock<(tempfile::TempDir, Vec<(ClassifierKind, PathBuf)>)> = OnceLock::new();
    &T.get_or_init(|| {
        let root = scratch();
        let mut out = Vec::new();
        for kind in [ClassifierKind::Knn, ClassifierKind::KnnEnsemble, ClassifierKind::Mlp] {
            let mut params = ClassifierParams::defaults(kind);
            match &mut params {
                ClassifierParams::Mlp(p) => {
                    p.max_epochs = 2;
                    p.hidden = vec![4];
                }
                ClassifierParams::KnnEnsemble(p) => p.members = 2,
                _ => {}
            }
            let c = SavedClassifier::train(&params, &spec(), &vectors(), None, "fuzz").expect("template trains");
            let dir = root.path().join(kind.name());
            c.save(&dir).expect("template saves");
            out.push((kind, dir));
        }
        (root, out)
    })
    .1
}

/// One seed input of a fuzz target: (target, seed name, bytes).
pub type Seed = (&'static str, String, Vec<u8>);

/// The seeds that need the library to make them, prefixed with the selector byte
/// their target reads first: every classifier-directory file of the kNN, ensemble and
/// MLP templates, and a real cache's `spec.json`, `index.json` and shard. The
/// `fuzz_seeds` example writes them into the cargo-fuzz corpus; the smoke-fuzz test
/// mutates them.
pub fn library_seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let prefixed = |prefix: u8, bytes: &[u8]| {
        let mut data = vec![prefix];
        data.extend_from_slice(bytes);
        data
    };
    for which in 0..12u8 {
        let file = classifier_template_file(which);
        seeds.push(("classifier_dir", format!("template-{which:02}"), prefixed(which, &file)));
    }
    let root = scratch();
    let cache = Cache::new(root.path());
    let shard = {
        let mut model = cache.open_model(&spec()).expect("fresh cache");
        model
            .insert(sequence_hash("MKVL"), &[0.5, -1.0, 2.0, 0.0])
            .expect("insert");
        model.flush().expect("flush").expect("one vector pending")
    };
    let dir = cache.model_dir(&spec());
    let read = |p: &Path| std::fs::read(p).expect("a file the cache just wrote");
    seeds.push(("cache_dir", "spec".into(), prefixed(0, &read(&dir.join("spec.json")))));
    seeds.push(("cache_dir", "index".into(), prefixed(1, &read(&dir.join("index.json")))));
    let shard_bytes = read(&shard);
    seeds.push(("cache_dir", "shard".into(), prefixed(2, &shard_bytes)));
    seeds.push(("cache_shard", "shard.safetensors".into(), shard_bytes));
    seeds
}

/// The template classifier file that `classifier_dir(&[which, ..])` replaces
/// (for seed corpora: the unchanged file is the best seed).
pub fn classifier_template_file(which: u8) -> Vec<u8> {
    let (_, dir) = &classifier_templates()[(which as usize / 4) % 3];
    std::fs::read(dir.join(CLASSIFIER_FILES[which as usize % 4])).unwrap_or_default()
}

/// Classifier-directory loader: a trained directory (byte 0 / 4 picks kNN,
/// ensemble or MLP) with one file (byte 0 % 4) replaced by the rest of the
/// input; loading, verifying and predicting must not panic.
pub fn classifier_dir(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (_, template) = &classifier_templates()[(which as usize / 4) % 3];
    let dir = scratch();
    for f in CLASSIFIER_FILES {
        let src = template.join(f);
        if src.exists() {
            std::fs::copy(&src, dir.path().join(f)).expect("scratch copy");
        }
    }
    std::fs::write(dir.path().join(CLASSIFIER_FILES[which as usize % 4]), rest).expect("scratch write");
    let _ = SavedClassifier::load_meta(dir.path());
    let _ = SavedClassifier::verify(dir.path());
    if let Ok(c) = SavedClassifier::load(dir.path(), &candle_core::Device::Cpu) {
        let _ = c.predict(&spec(), &vectors());
    }
}

/// NumPy `.npz` weight loader (NEAR, UniRep).
pub fn npz(data: &[u8]) {
    let dir = scratch();
    let path = dir.path().join("weights.npz");
    std::fs::write(&path, data).expect("scratch write");
    if let Ok(w) = crate::models::npz::NpzWeights::open(&path) {
        for name in ["w", "b", "layer0", "embedding"] {
            let _ = w.get_any(name);
            let _ = w.get(name, &[2, 2]);
        }
    }
}

/// Hugging Face `model.safetensors` checkpoint loader.
pub fn safetensors_checkpoint(data: &[u8]) {
    let dir = scratch();
    std::fs::write(dir.path().join("config.json"), "{}").expect("scratch write");
    std::fs::write(dir.path().join("model.safetensors"), data).expect("scratch write");
    let Ok(ckpt) = crate::models::weights::Checkpoint::open(dir.path()) else {
        return;
    };
    let names: Vec<String> = ckpt.names().iter().map(|s| s.to_string()).collect();
    let vb = ckpt.var_builder(candle_core::DType::F32, &candle_core::Device::Cpu);
    for name in names.iter().take(8) {
        if let Some(entry) = ckpt.entry(name) {
            let shape = entry.shape.clone();
            let _ = vb.get(shape, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_takes_empty_and_junk_input() {
        for name in TARGETS {
            for data in [&b""[..], b"\x00", b"\x02junk", b">a\nMK\n", &[0xff; 64]] {
                run(name, data);
            }
        }
    }
}
