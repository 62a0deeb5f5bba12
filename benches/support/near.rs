//! What the residue benchmarks share: NEAR, the bundled clustered split, an
//! evenly spread sample of its test part, and `PROTFAM_BENCH_*` settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use protfam::embedder::Embedder;
use protfam::io::vocab::LabelVocab;
use protfam::io::Record;

/// A `PROTFAM_BENCH_*`-style setting, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The median of `xs` (not empty).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The model, the data and the query sample a residue benchmark runs on.
// Each benchmark, a crate of its own, reads only the fields it needs.
#[allow(dead_code)]
pub struct Setup {
    pub root: PathBuf,
    pub split: protfam::dataset::Split,
    pub embedder: Box<dyn Embedder>,
    pub train: Arc<Vec<Record>>,
    pub test: Arc<Vec<Record>>,
    /// `queries` test domains spread evenly over the part (all of it for 0).
    pub sample: Vec<Record>,
    pub vocab: LabelVocab,
    /// Where the residue stores and their indexes live (`data/residue`).
    pub store_root: PathBuf,
}

/// The setup, or `None` (with a line saying why, under `bench`'s name) when NEAR is not installed.
pub fn near_setup(bench: &str, queries: usize) -> Option<Setup> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = super::common::data_root();
    let split = protfam::dataset::Split::open(&root, "clustered_split").expect("bundled dataset");
    let options = protfam::models::LoadOptions {
        models_dir: here.join("models"),
        ..Default::default()
    };
    let embedder = match protfam::models::load("near", &options) {
        Ok(e) => e,
        Err(e) => {
            println!("{bench}: skipped, NEAR is not installed ({e}); run `make models`");
            return None;
        }
    };
    let train = split.records("train").expect("training part");
    let test = split.records("test").expect("test part");
    let n = if queries == 0 {
        test.len()
    } else {
        queries.min(test.len())
    };
    let step = (test.len() / n.max(1)).max(1);
    let sample = test.iter().step_by(step).take(n).cloned().collect();
    let vocab = LabelVocab::from_families(train.iter().filter_map(|r| r.family.as_ref()));
    Some(Setup {
        root,
        split,
        embedder,
        train,
        test,
        sample,
        vocab,
        store_root: here.join("data/residue"),
    })
}
