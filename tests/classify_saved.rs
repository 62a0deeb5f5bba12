//! Trained classifiers saved to a directory load back with identical predictions,
//! refuse vectors from another embedder, and report corrupt files clearly.

mod common;

use candle_core::Device;
use protfam::classify::mlp::BatchSize;
use protfam::classify::saved::{ClassifierKind, ClassifierParams, SavedClassifier};
use protfam::classify::{ClassifyError, MlpEnsembleParams, MlpParams};
use protfam::vectors::VectorSet;

use common::{composition_spec, part_vectors};

/// The first `n` families' rows of a part, to keep the MLP tests quick.
fn few_families(set: &VectorSet, n: usize) -> VectorSet {
    let mut fams: Vec<_> = set.families.iter().flatten().map(|f| f.accession.clone()).collect();
    fams.sort();
    fams.dedup();
    fams.truncate(n);
    let rows: Vec<usize> = (0..set.len())
        .filter(|&i| set.families[i].as_ref().is_some_and(|f| fams.contains(&f.accession)))
        .collect();
    set.select(&rows)
}

fn small_mlp() -> MlpParams {
    MlpParams {
        hidden: vec![32, 16],
        max_epochs: 4,
        batch: BatchSize::Fraction(0.05),
        ..Default::default()
    }
}

fn round_trip(params: ClassifierParams, train: &VectorSet, dev: &VectorSet, test: &VectorSet) {
    let spec = composition_spec();
    let trained = SavedClassifier::train(&params, &spec, train, Some(dev), "test").unwrap();
    let dir = tempfile::tempdir().unwrap();
    trained.save(dir.path()).unwrap();
    let loaded = SavedClassifier::load(dir.path(), &Device::Cpu).unwrap();
    // Metadata survives (compared through the same JSON parse: serde_json's default
    // float parsing may move the last digit of timings).
    let as_json = |m| serde_json::from_str::<serde_json::Value>(&serde_json::to_string(m).unwrap()).unwrap();
    assert_eq!(as_json(&loaded.meta), as_json(&trained.meta));
    assert_eq!(loaded.meta.params, trained.meta.params);
    assert_eq!(loaded.vocab, trained.vocab);
    let before = trained.predict(&spec, test).unwrap();
    let after = loaded.predict(&spec, test).unwrap();
    assert_eq!(before, after, "{} predictions changed after save/load", params.kind());
    let mut other = spec.clone();
    other.name = "esm2_t6_8M".into();
    assert!(matches!(
        loaded.predict(&other, test),
        Err(ClassifyError::EmbedderMismatch { .. })
    ));
}

#[test]
fn knn_kinds_round_trip_bit_exactly() {
    let train = part_vectors("clustered_split", "train");
    let dev = part_vectors("clustered_split", "dev");
    let test = part_vectors("clustered_split", "test");
    for kind in [ClassifierKind::Knn, ClassifierKind::KnnEnsemble] {
        round_trip(ClassifierParams::defaults(kind), &train, &dev, &test);
    }
}

#[test]
fn mlp_kinds_round_trip_bit_exactly_with_epoch_log() {
    let train = few_families(&part_vectors("random_split", "train"), 40);
    let dev = few_families(&part_vectors("random_split", "dev"), 40);
    let test = few_families(&part_vectors("random_split", "test"), 40);
    let spec = composition_spec();
    let mlp = ClassifierParams::Mlp(MlpParams {
        standardize: true,
        ..small_mlp()
    });
    round_trip(mlp.clone(), &train, &dev, &test);
    let ens = ClassifierParams::MlpEnsemble(MlpEnsembleParams {
        members: 3,
        mlp: small_mlp(),
        ..MlpEnsembleParams::disjoint()
    });
    round_trip(ens, &train, &dev, &test);
    let full = ClassifierParams::MlpEnsemble(MlpEnsembleParams {
        members: 2,
        mlp: small_mlp(),
        ..MlpEnsembleParams::full()
    });
    assert_eq!(full.kind(), ClassifierKind::MlpEnsembleFull);
    round_trip(full, &train, &dev, &test);

    // The per-epoch dev error is stored in classifier.json.
    let trained = SavedClassifier::train(&mlp, &spec, &train, Some(&dev), "test").unwrap();
    let dir = tempfile::tempdir().unwrap();
    trained.save(dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("classifier.json")).unwrap()).unwrap();
    let epochs = json["training_log"][0]["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 4);
    assert!(epochs
        .iter()
        .all(|e| e["dev_error"].as_f64().is_some_and(|d| (0.0..=1.0).contains(&d))));
    assert_eq!(json["classifier"], "mlp");
    assert_eq!(json["embedder"]["name"], "composition");
}

#[test]
fn corrupt_or_mismatched_files_are_clear_errors() {
    let train = part_vectors("clustered_split", "dev");
    let spec = composition_spec();
    let trained = SavedClassifier::train(
        &ClassifierParams::defaults(ClassifierKind::Knn),
        &spec,
        &train,
        None,
        "t",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    trained.save(dir.path()).unwrap();
    std::fs::write(dir.path().join("weights.safetensors"), b"not safetensors").unwrap();
    let err = SavedClassifier::load(dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("weights.safetensors"), "{err}");
    std::fs::remove_file(dir.path().join("classifier.json")).unwrap();
    let err = SavedClassifier::load(dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("classifier.json"), "{err}");
    // Training vectors of the wrong width for the embedder are refused.
    let mut wide = spec.clone();
    wide.dim = 1900;
    assert!(SavedClassifier::train(
        &ClassifierParams::defaults(ClassifierKind::Knn),
        &wide,
        &train,
        None,
        "t"
    )
    .is_err());
}
