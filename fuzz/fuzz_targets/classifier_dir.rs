//! Classifier-directory loader: a trained kNN / MLP directory with one of its
//! files replaced by the fuzz input; loading and predicting must not panic.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use protfam::classify::saved::{ClassifierKind, ClassifierParams, SavedClassifier};
use protfam::embedder::{EmbedderSpec, Pooling};
use protfam::io::Family;
use protfam::vectors::VectorSet;

const FILES: [&str; 4] = ["classifier.json", "labels.json", "weights.safetensors", "train_ids.txt"];

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

fn vectors() -> VectorSet {
    let mut set = VectorSet::default();
    for i in 0..12 {
        let f = i % 3;
        let v = [f as f32, (i % 2) as f32, 0.5 * i as f32, 1.0];
        set.push(format!("s{i}"), Some(Family::new(format!("F{f}"), &format!("PF0000{f}"))), &v);
    }
    set
}

/// Templates: (kind, directory), trained once per process.
fn templates() -> &'static Vec<(ClassifierKind, PathBuf)> {
    static T: OnceLock<(tempfile::TempDir, Vec<(ClassifierKind, PathBuf)>)> = OnceLock::new();
    &T.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        for kind in [ClassifierKind::Knn, ClassifierKind::KnnEnsemble, ClassifierKind::Mlp] {
            let mut params = ClassifierParams::defaults(kind);
            if let ClassifierParams::Mlp(p) = &mut params {
                p.max_epochs = 2;
                p.hidden = vec![4];
            }
            let c = SavedClassifier::train(&params, &spec(), &vectors(), None, "fuzz").unwrap();
            let dir = root.path().join(kind.name());
            c.save(&dir).unwrap();
            out.push((kind, dir));
        }
        (root, out)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (_, template) = &templates()[(which as usize / 4) % 3];
    let dir = tempfile::tempdir().unwrap();
    for f in FILES {
        let src = template.join(f);
        if src.exists() {
            std::fs::copy(&src, dir.path().join(f)).unwrap();
        }
    }
    std::fs::write(dir.path().join(FILES[which as usize % 4]), rest).unwrap();
    let _ = SavedClassifier::load_meta(dir.path());
    if let Ok(c) = SavedClassifier::load(dir.path(), &candle_core::Device::Cpu) {
        let _ = c.predict(&spec(), &vectors());
    }
});
