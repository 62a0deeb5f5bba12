//! `protfam evaluate --classifiers residue-knn-tuned,hybrid` end to end with
//! the real NEAR weights and HMMER on a subset of the bundled data: both
//! learned classifiers are fit on a subset of `tune_split` (its own training
//! part, its held-out clusters as queries) and measured on the clustered dev
//! and test parts of the same families, beside the HMM and `residue-knn`.
//!
//! Needs `models/near/weights.npz` (`make models`), HMMER (`make test-deps`)
//! and the bundled data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use assert_cmd::Command;

mod common;

fn protfam() -> Command {
    let mut cmd = Command::cargo_bin("protfam").unwrap();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

fn rows_by_family(split: &str, part: &str) -> BTreeMap<String, Vec<csv::StringRecord>> {
    let mut out: BTreeMap<String, Vec<csv::StringRecord>> = BTreeMap::new();
    for rec in common::split_records(split, part) {
        out.entry(rec[2].to_string()).or_default().push(rec);
    }
    out
}

/// Families with held-out tune domains and clustered test domains: up to 8
/// training domains, 3 tune queries, 2 dev and 3 test queries each (domains
/// of at most 250 residues), so that the fit sees a few dozen queries.
fn write_subset(data: &Path) -> usize {
    let short = |rows: Option<&Vec<csv::StringRecord>>, n: usize| -> Vec<csv::StringRecord> {
        rows.map(|rows| rows.iter().filter(|r| r[4].len() <= 250).take(n).cloned().collect())
            .unwrap_or_default()
    };
    let (tune_train, tune_test) = (
        rows_by_family("tune_split", "train"),
        rows_by_family("tune_split", "test"),
    );
    let (train, dev, test) = (
        rows_by_family("clustered_split", "train"),
        rows_by_family("clustered_split", "dev"),
        rows_by_family("clustered_split", "test"),
    );
    let families: Vec<&String> = tune_test
        .keys()
        .filter(|f| {
            short(tune_test.get(*f), 3).len() >= 2
                && short(tune_train.get(*f), 8).len() >= 3
                && !short(test.get(*f), 3).is_empty()
        })
        .take(40)
        .collect();
    assert!(families.len() >= 30, "the bundled split has such families");
    let pick = |part: &BTreeMap<String, Vec<csv::StringRecord>>, n: usize| -> Vec<csv::StringRecord> {
        families.iter().flat_map(|f| short(part.get(*f), n)).collect()
    };
    let tune_queries = pick(&tune_test, 3);
    common::write_split_part(data, "tune_split", "train", &pick(&tune_train, 8));
    common::write_split_part(data, "tune_split", "test", &tune_queries);
    common::write_split_part(data, "tune_split", "dev", &pick(&dev, 2));
    common::write_split_part(data, "clustered_split", "train", &pick(&train, 8));
    common::write_split_part(data, "clustered_split", "dev", &pick(&dev, 2));
    common::write_split_part(data, "clustered_split", "test", &pick(&test, 3));
    tune_queries.len()
}

#[test]
fn learned_classifiers_fit_on_tune_and_report_beside_hmm_and_residue_knn() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tune_queries = write_subset(&data);
    let reports = dir.path().join("reports");
    let with_paths = |cmd: &mut Command| {
        cmd.arg("--data")
            .arg(&data)
            .arg("--residue-store")
            .arg(dir.path().join("residue"))
            .arg("--work-dir")
            .arg(dir.path().join("baselines"))
            .arg("--cache")
            .arg(dir.path().join("cache"))
            // Not the default: evaluate and train must both pass it to the residue-knn they combine.
            .args(["--align-candidates", "30"]);
    };
    let evaluate = |classifiers: &str| {
        let mut cmd = protfam();
        cmd.args([
            "evaluate",
            "--models",
            "near",
            "--residue-models",
            "near",
            "--classifiers",
            classifiers,
            "--split",
            "clustered_split",
        ])
        .arg("--output")
        .arg(&reports);
        with_paths(&mut cmd);
        cmd
    };
    let (stdout, _) = common::run_ok(&mut evaluate("residue-knn-tuned,hybrid"), "evaluate");
    for label in ["| near | residue-knn-tuned |", "| near+hmm | hybrid |"] {
        assert!(stdout.contains(label), "{label} row in the table:\n{stdout}");
    }

    let out = reports.join("clustered_split");
    let learned: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("learned.json")).unwrap()).unwrap();
    let results = learned["results"].as_array().unwrap();
    let errors = |method: &str, part: &str| -> (u64, u64) {
        let r = results
            .iter()
            .find(|r| r["method"] == method && r["part"] == part)
            .unwrap_or_else(|| panic!("{method} on {part} in learned.json"));
        (r["errors"].as_u64().unwrap(), r["n"].as_u64().unwrap())
    };
    let methods: BTreeSet<&str> = results.iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods,
        BTreeSet::from(["hmm", "residue-knn", "residue-knn-tuned", "hybrid"])
    );
    for method in &methods {
        assert_eq!(errors(method, "tune").1 as usize, tune_queries);
    }
    // Fit on tune and scored out of fold there, the hybrid must use both sources:
    // no worse than the better of the two it combines, with a query of slack for
    // the folds' noise on this small sample.
    let (hybrid, _) = errors("hybrid", "tune");
    let better = errors("hmm", "tune").0.min(errors("residue-knn", "tune").0);
    assert!(hybrid <= better + 1, "hybrid {hybrid} vs the better source {better}");

    // The Markdown report has the three parts, the size table and the calibration table.
    let md = std::fs::read_to_string(out.join("learned.md")).unwrap();
    for needle in [
        "| method | tune | dev | test |",
        "Errors by training-family size",
        "Calibration",
        "| hybrid | 0.90 |",
    ] {
        assert!(md.contains(needle), "{needle:?} in learned.md:\n{md}");
    }
    // The per-query evidence is kept beside it, one JSON object per query.
    let evidence = std::fs::read_to_string(out.join("learned-evidence").join("tune.jsonl")).unwrap();
    assert_eq!(evidence.lines().count(), tune_queries);
    let first: serde_json::Value = serde_json::from_str(evidence.lines().next().unwrap()).unwrap();
    assert!(first["candidates"].as_array().is_some_and(|c| !c.is_empty()));

    // train + info + annotate: the saved hybrid answers the test queries as evaluate did.
    let classifier = dir.path().join("hybrid");
    let mut cmd = protfam();
    cmd.args([
        "train",
        "--model",
        "near",
        "--classifier",
        "hybrid",
        "--split",
        "clustered_split",
    ])
    .arg("--output")
    .arg(&classifier);
    with_paths(&mut cmd);
    // What was made goes to stdout (progress and logs to stderr), as for `embed`.
    let (stdout, _) = common::run_ok(&mut cmd, "train");
    assert!(stdout.contains("abstention calibration:"), "{stdout}");
    let residue_knn: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(classifier.join("residue").join("residue-knn.json")).unwrap())
            .unwrap();
    assert_eq!(
        residue_knn["params"]["score"]["align"]["candidates"], 30,
        "{residue_knn}"
    );
    let (info, _) = common::run_ok(protfam().arg("info").arg(&classifier), "info");
    for needle in [
        "classifier: hybrid",
        "HMM database:",
        "weight hmm_bits:",
        "abstention calibration:",
    ] {
        assert!(info.contains(needle), "{needle:?} in info:\n{info}");
    }
    let evaluated = common::predicted_accessions(
        &out.join("predictions")
            .join(format!("{}.csv", protfam::report::pair_stem("near+hmm", "hybrid"))),
    );
    let test_rows = common::split_records_in(&data, "clustered_split", "test");
    assert_eq!(evaluated.len(), test_rows.len());
    // Annotates `fasta` with the saved hybrid; the output TSV as rows of fields, header first.
    let annotate = |fasta: &str, what: &str| -> Vec<Vec<String>> {
        let (input, tsv_path) = (dir.path().join("queries.fasta"), dir.path().join("queries.tsv"));
        std::fs::write(&input, fasta).unwrap();
        let mut cmd = protfam();
        cmd.arg("annotate")
            .arg("--classifier")
            .arg(&classifier)
            .arg(&input)
            .arg("-o")
            .arg(&tsv_path)
            .arg("--cache")
            .arg(dir.path().join("cache"));
        common::run_ok(&mut cmd, what);
        std::fs::read_to_string(&tsv_path)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    };
    let fasta: String = test_rows.iter().map(|r| format!(">{}\n{}\n", &r[1], &r[4])).collect();
    let lines = annotate(&fasta, "annotate");
    let col = |name: &str| lines[0].iter().position(|h| h == name).unwrap();
    let (id, acc) = (col("id"), col("family_accession"));
    assert_eq!(lines.len(), test_rows.len() + 1);
    for (line, row) in lines[1..].iter().zip(&test_rows) {
        assert_eq!(&line[id], &row[1], "input order");
        assert_eq!(
            line[acc], evaluated[&row[1]],
            "{}: annotate and evaluate agree",
            &row[1]
        );
    }

    // A query with no searchable residue and no HMM hit gets a clear abstention row.
    let only_x = annotate(">only_x\nXXXXXXXXXXXXXXXX\n", "annotate of an X-only query");
    assert_eq!(only_x[1][col("annotation")], "no confident family", "{only_x:?}");

    // A damaged model (a weight dropped) is refused, naming the file, never used.
    let saved = classifier.join("learned.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    json["model"]["weights"].as_array_mut().unwrap().pop();
    std::fs::write(&saved, serde_json::to_vec(&json).unwrap()).unwrap();
    let out = protfam().arg("info").arg(&classifier).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("learned.json") && stderr.contains("damaged"),
        "{stderr}"
    );

    // Without a tuning split the learned classifiers refuse with a clear message.
    std::fs::remove_dir_all(data.join("tune_split")).unwrap();
    let out = evaluate("hybrid").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("tune_split"), "{stderr}");
}
