//! `evaluate::run` end to end on the bundled clustered split with composition
//! vectors: report files in the shared JSON format, the family-size breakdown,
//! per-query predictions, and 1-NN agreeing with an independent brute force.

mod common;

use protfam::classify::mlp::BatchSize;
use protfam::classify::saved::{ClassifierKind, ClassifierParams, SavedClassifier};
use protfam::classify::MlpParams;
use protfam::experiment::{run, Plan};
use protfam::report::{read_predictions, read_report, ReportPaths};

use common::{part_vectors, CompositionSource};

#[test]
#[allow(clippy::needless_range_loop)] // q indexes queries, predictions and the brute-force scan alike
fn evaluate_writes_reports_breakdown_and_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let mlp = MlpParams {
        hidden: vec![64],
        max_epochs: 3,
        batch: BatchSize::Fraction(0.02),
        ..Default::default()
    };
    let mut config = Plan::new("clustered_split", dir.path());
    config.models = vec!["composition".into()];
    config.classifiers = vec![
        ClassifierParams::defaults(ClassifierKind::Knn),
        ClassifierParams::defaults(ClassifierKind::KnnEnsemble),
        ClassifierParams::Mlp(mlp),
    ];
    config.save_classifiers = Some(dir.path().join("classifiers"));
    config.source = "bundled".into();
    let mut source = CompositionSource {
        split: "clustered_split".into(),
    };
    let rows = run(&config, &mut source).unwrap().rows;
    assert_eq!(rows.len(), 3);
    let paths = ReportPaths::new(dir.path(), "clustered_split");

    // JSON: a list of objects with exactly the agreed keys.
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(paths.json()).unwrap()).unwrap();
    let mut keys: Vec<&str> = json[0].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "by_family_size",
            "classifier",
            "embedding",
            "error_rate",
            "errors",
            "f1",
            "n",
            "precision",
            "predict_seconds",
            "recall",
            "train_seconds"
        ]
    );
    let back = read_report(&paths.json()).unwrap();
    assert_eq!(back.len(), rows.len());
    for (a, b) in back.iter().zip(&rows) {
        assert_eq!(
            (&a.embedding, &a.classifier, a.n, a.errors),
            (&b.embedding, &b.classifier, b.n, b.errors)
        );
        assert!((a.f1 - b.f1).abs() < 1e-12 && (a.error_rate - b.error_rate).abs() < 1e-12);
        assert_eq!(a.by_family_size.len(), b.by_family_size.len());
    }
    assert!(paths.csv().exists() && paths.markdown().exists());

    let test = part_vectors("clustered_split", "test");
    for row in &rows {
        assert_eq!(row.n, test.len());
        // The breakdown covers every test item, and its errors add up.
        let bins: Vec<&str> = row.by_family_size.iter().map(|b| b.bin.as_str()).collect();
        assert_eq!(bins, ["1", "2-4", "5-9", "10-49", "50+"]);
        assert_eq!(row.by_family_size.iter().map(|b| b.n).sum::<usize>(), row.n);
        assert_eq!(row.by_family_size.iter().map(|b| b.errors).sum::<usize>(), row.errors);
        // Per-query predictions agree with the row.
        let preds = read_predictions(&paths.predictions("composition", &row.classifier)).unwrap();
        assert_eq!(preds.len(), row.n);
        assert_eq!(
            preds
                .iter()
                .filter(|p| p.predicted_accession != p.true_accession)
                .count(),
            row.errors
        );
        assert!(preds.iter().zip(&test.ids).all(|(p, id)| &p.id == id));
    }
    // Composition 1-NN is weak on the clustered split but far better than chance.
    assert!(
        rows[0].error_rate > 0.3 && rows[0].error_rate < 0.99,
        "{}",
        rows[0].error_rate
    );

    // 1-NN agrees with an independent f64 brute force on the first queries.
    let train = part_vectors("clustered_split", "train");
    let preds = read_predictions(&paths.predictions("composition", "knn")).unwrap();
    for q in 0..60 {
        let (mut best, mut best_i) = (f64::INFINITY, 0);
        for t in 0..train.len() {
            let d: f64 = test
                .row(q)
                .iter()
                .zip(train.row(t))
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum();
            if d < best {
                best = d;
                best_i = t;
            }
        }
        assert_eq!(preds[q].nearest_id, train.ids[best_i], "query {q}");
        assert_eq!(
            preds[q].predicted_accession,
            train.families[best_i].as_ref().unwrap().accession
        );
        assert!((preds[q].nearest_distance.unwrap() as f64 - best.sqrt()).abs() < 1e-5);
    }

    // Saved classifiers reproduce the evaluation's predictions.
    let saved = SavedClassifier::load(
        &dir.path().join("classifiers/clustered_split/composition__knn"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let again = saved.predict(&common::composition_spec(), &test).unwrap();
    assert!(again
        .iter()
        .zip(&preds)
        .all(|(p, r)| saved.vocab.family(p.class).accession == r.predicted_accession));

    // A second run for another pair merges into the same report.
    let config2 = Plan {
        classifiers: vec![ClassifierParams::Knn(protfam::classify::KnnParams {
            k: 3,
            ..Default::default()
        })],
        save_classifiers: None,
        ..config
    };
    let second = run(&config2, &mut source).unwrap().rows;
    assert_eq!(second[0].classifier, "knn-k3");
    assert_eq!(read_report(&paths.json()).unwrap().len(), 4, "a new pair adds a row");
    protfam::report::write_report(&paths, &[rows[0].clone()]).unwrap();
    assert_eq!(
        read_report(&paths.json()).unwrap().len(),
        4,
        "a rerun pair replaces its row"
    );
}
