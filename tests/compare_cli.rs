//! `protfam compare` end to end on the bundled clustered split: two one-hot
//! embeddings x two classifiers, then a rerun that reuses every cached evaluation.

mod common;

use common::data_root;
use std::path::Path;

use assert_cmd::Command;

fn compare(tmp: &Path) -> std::process::Output {
    Command::cargo_bin("protfam")
        .unwrap()
        .arg("compare")
        .arg("--data")
        .arg(data_root())
        .args([
            "--split",
            "clustered_split",
            "--models",
            "onehot32,onehot64",
            "--classifiers",
            "knn,knn-ensemble",
        ])
        .arg("--output")
        .arg(tmp.join("reports"))
        .arg("--cache")
        .arg(tmp.join("cache"))
        .output()
        .unwrap()
}

#[test]
fn compare_writes_tables_plots_and_html_and_reuses_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = compare(tmp.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for pair in [
        "| onehot32 | knn |",
        "| onehot64 | knn |",
        "| onehot32 | knn-ensemble |",
        "| onehot64 | knn-ensemble |",
    ] {
        assert!(stdout.contains(pair), "table row {pair} missing:\n{stdout}");
    }
    assert!(
        stdout.contains("| 10-49 |") && stdout.contains("| 50+ |"),
        "size breakdown:\n{stdout}"
    );
    assert!(stderr.contains("4 evaluation(s) run, 0 reused"), "{stderr}");
    // The headline pairs the best two on their kept predictions (whose errors match the rows).
    let headline = stdout.lines().next().unwrap_or_default();
    assert!(
        headline.starts_with("Lowest error: **onehot")
            && headline.contains("McNemar's exact test on the 1248 test items both"),
        "{stdout}"
    );
    assert!(headline.contains("clear winner"), "{headline}");

    let dir = tmp.path().join("reports/clustered_split/compare");
    for name in ["error_rate", "error_by_family_size"] {
        let png = std::fs::read(dir.join(format!("{name}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{name}.png"
        );
        let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
        assert!(
            svg.contains("onehot64") && svg.contains("knn-ensemble"),
            "{name}.svg names the runs"
        );
    }
    let html = std::fs::read_to_string(dir.join("comparison.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains("McNemar's exact test on the 1248") && html.contains("<th>95% CI</th>"));
    assert!(html.contains("onehot32") && html.contains("Error rate by training-family size"));
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("comparison.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r["n"], 1248, "every test domain of the clustered split");
        let e = r["error_rate"].as_f64().unwrap();
        assert!(e > 0.0 && e < 1.0);
    }
    assert!(std::fs::read_to_string(dir.join("comparison.md"))
        .unwrap()
        .contains("by training-family size"));

    // `protfam report` renders the kept report again without running anything.
    let summary = Command::cargo_bin("protfam")
        .unwrap()
        .arg("report")
        .arg(tmp.path().join("reports/clustered_split"))
        .arg("--summary")
        .output()
        .unwrap();
    assert!(summary.status.success(), "{}", String::from_utf8_lossy(&summary.stderr));
    let summary = String::from_utf8_lossy(&summary.stdout);
    assert_eq!(summary.lines().next(), Some(headline), "{summary}");
    assert_eq!(summary.matches(" of 1248 | ").count(), 4, "{summary}");

    // The second run recomputes nothing and gives the same table.
    let again = compare(tmp.path());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("0 evaluation(s) run, 4 reused"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&again.stdout), stdout);
}
