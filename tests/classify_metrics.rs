//! `metrics::score` against scikit-learn's `precision_recall_fscore_support(average="weighted",
//! zero_division=0)` on the fixtures written by `scripts/metrics_fixtures.py`.

use std::path::PathBuf;

use protfam::metrics::score;

#[derive(serde::Deserialize)]
struct Expected {
    n: usize,
    errors: usize,
    error_rate: f64,
    precision: f64,
    recall: f64,
    f1: f64,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    truth: Vec<String>,
    predicted: Vec<Option<String>>,
    expected: Expected,
}

#[test]
fn weighted_scores_match_scikit_learn_fixtures() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/metrics");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/data/metrics exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 5,
        "expected the scikit-learn fixtures in {}",
        dir.display()
    );
    for path in paths {
        let case: Case = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let m = score(&case.truth, &case.predicted);
        let e = &case.expected;
        assert_eq!(m.n, e.n, "{}", case.name);
        assert_eq!(m.errors, e.errors, "{}", case.name);
        for (what, got, want) in [
            ("error_rate", m.error_rate, e.error_rate),
            ("precision", m.precision, e.precision),
            ("recall", m.recall, e.recall),
            ("f1", m.f1, e.f1),
        ] {
            assert!(
                (got - want).abs() < 1e-12,
                "{}: {what} {got} != scikit-learn {want}",
                case.name
            );
        }
    }
}
