//! `residue-knn` as a classifier name of the CLI, end to end with the real
//! NEAR weights on a small subset of the bundled clustered split (families
//! with training, dev and test domains): `evaluate` reports it beside a
//! pooled-vector classifier and fills `compare`'s run cache, `compare` reuses
//! those runs, `train` saves and calibrates it, `info` describes it, and
//! `annotate` gives the same families as `evaluate` and a clear answer for a
//! query with nothing to search.
//!
//! Needs `models/near/weights.npz` (`make models`) and the bundled data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use assert_cmd::Command;

mod common;

const SPLIT: &str = "clustered_split";

fn protfam() -> Command {
    let mut cmd = Command::cargo_bin("protfam").unwrap();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// CSV rows of one part, grouped by family accession.
fn rows_by_family(part: &str) -> BTreeMap<String, Vec<csv::StringRecord>> {
    let mut out: BTreeMap<String, Vec<csv::StringRecord>> = BTreeMap::new();
    for rec in common::split_records(SPLIT, part) {
        out.entry(rec[2].to_string()).or_default().push(rec);
    }
    out
}

fn write_part(data: &Path, part: &str, rows: &[csv::StringRecord]) {
    common::write_split_part(data, SPLIT, part, rows);
}

/// Ten families with training, dev and test domains: at most 6 training,
/// 2 dev and 2 test domains each, none longer than 300 residues.
fn write_subset(data: &Path) -> Vec<csv::StringRecord> {
    let (train, dev, test) = (rows_by_family("train"), rows_by_family("dev"), rows_by_family("test"));
    let short = |rows: &Vec<csv::StringRecord>, n: usize| -> Vec<csv::StringRecord> {
        rows.iter().filter(|r| r[4].len() <= 300).take(n).cloned().collect()
    };
    let families: Vec<&String> = train
        .keys()
        .filter(|f| {
            short(&train[*f], 6).len() >= 3
                && dev.get(*f).is_some_and(|d| !short(d, 2).is_empty())
                && test.get(*f).is_some_and(|t| !short(t, 2).is_empty())
        })
        .take(10)
        .collect();
    assert_eq!(families.len(), 10, "the bundled split has such families");
    let pick = |part: &BTreeMap<String, Vec<csv::StringRecord>>, n: usize| -> Vec<csv::StringRecord> {
        families.iter().flat_map(|f| short(&part[*f], n)).collect()
    };
    let test_rows = pick(&test, 2);
    write_part(data, "train", &pick(&train, 6));
    write_part(data, "dev", &pick(&dev, 2));
    write_part(data, "test", &test_rows);
    test_rows
}

#[test]
fn residue_knn_through_evaluate_compare_train_annotate_and_info() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let test_rows = write_subset(&data);
    let (reports, store, cache) = (
        dir.path().join("reports"),
        dir.path().join("residue"),
        dir.path().join("cache"),
    );
    let with_paths = |cmd: &mut Command| {
        cmd.arg("--data")
            .arg(&data)
            .args(["--split", SPLIT])
            .arg("--cache")
            .arg(&cache)
            .arg("--residue-store")
            .arg(&store);
    };

    // evaluate: both residue classifiers beside 1-NN on pooled vectors, in one report.
    let mut cmd = protfam();
    cmd.args([
        "evaluate",
        "--models",
        "near",
        "--classifiers",
        "knn,residue-knn-simple,residue-knn",
    ])
    .arg("--output")
    .arg(&reports);
    with_paths(&mut cmd);
    let (stdout, stderr) = common::run_ok(&mut cmd, "evaluate");
    // One table format for every report (crate::report): embedding, then classifier.
    for label in [
        "| near | knn |",
        "| near | residue-knn-simple |",
        "| near | residue-knn |",
    ] {
        assert!(stdout.contains(label), "{label} row in the table:\n{stdout}");
    }
    assert!(stderr.contains("residues/s"), "search throughput is printed:\n{stderr}");
    let report: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(reports.join(SPLIT).join("evaluate.json")).unwrap()).unwrap();
    let classifiers: BTreeSet<&str> = report.iter().map(|r| r["classifier"].as_str().unwrap()).collect();
    assert_eq!(
        classifiers,
        BTreeSet::from(["knn", "residue-knn", "residue-knn-simple"])
    );
    for r in &report {
        assert_eq!(r["n"].as_u64().unwrap() as usize, test_rows.len());
        assert!(!r["by_family_size"].as_array().unwrap().is_empty());
    }
    let evaluated =
        common::predicted_accessions(&reports.join(SPLIT).join("predictions").join("near__residue-knn.csv"));
    assert_eq!(evaluated.len(), test_rows.len());

    // compare reuses every run evaluate recorded.
    let mut cmd = protfam();
    cmd.args(["compare", "--models", "near", "--classifiers", "knn,residue-knn"])
        .arg("--output")
        .arg(&reports);
    with_paths(&mut cmd);
    let (_, stderr) = common::run_ok(&mut cmd, "compare");
    assert!(
        stderr.contains("0 evaluation(s) run, 2 reused"),
        "compare reuses evaluate's runs:\n{stderr}"
    );

    // train + info: the saved form references the store and carries a dev calibration.
    let classifier = dir.path().join("residue-classifier");
    let mut cmd = protfam();
    cmd.args([
        "train",
        "--model",
        "near",
        "--classifier",
        "residue-knn",
        "--min-precision",
        "0.8",
    ])
    .arg("--output")
    .arg(&classifier);
    with_paths(&mut cmd);
    common::run_ok(&mut cmd, "train");
    assert!(classifier.join("residue-knn.json").is_file());
    assert!(classifier.join("calibration.json").is_file());
    let (info, _) = common::run_ok(protfam().arg("info").arg(&classifier), "info");
    assert!(info.contains("classifier: residue-knn"), "{info}");
    assert!(
        info.contains("residue store:") && info.contains("residue rows"),
        "{info}"
    );
    assert!(info.contains("abstention calibration:"), "{info}");

    // annotate: input order, the same families as evaluate, and an X-only query abstains clearly.
    let mut fasta: String = test_rows.iter().map(|r| format!(">{}\n{}\n", &r[1], &r[4])).collect();
    fasta.push_str(">only_x\nXXXXXXXXXXXX\n>one_residue\nM\n");
    let input = dir.path().join("queries.fasta");
    std::fs::write(&input, fasta).unwrap();
    let out_path = dir.path().join("queries.tsv");
    let mut cmd = protfam();
    cmd.arg("annotate")
        .arg("--classifier")
        .arg(&classifier)
        .arg(&input)
        .arg("-o")
        .arg(&out_path)
        .arg("--cache")
        .arg(&cache);
    let (_, stderr) = common::run_ok(&mut cmd, "annotate");
    assert!(
        stderr.contains(&format!("{} sequences:", test_rows.len() + 2)),
        "{stderr}"
    );
    let tsv = std::fs::read_to_string(&out_path).unwrap();
    let lines: Vec<Vec<&str>> = tsv.lines().map(|l| l.split('\t').collect()).collect();
    let col = |name: &str| lines[0].iter().position(|h| *h == name).unwrap();
    let (id, acc, ann, note) = (col("id"), col("family_accession"), col("annotation"), col("note"));
    assert_eq!(lines.len(), test_rows.len() + 3);
    for (line, row) in lines[1..].iter().zip(&test_rows) {
        assert_eq!(line[id], &row[1], "input order");
        assert_eq!(
            line[acc], evaluated[&row[1]],
            "{}: annotate and evaluate agree",
            &row[1]
        );
    }
    let only_x = &lines[lines.len() - 2];
    assert_eq!(only_x[ann], "no confident family", "{only_x:?}");
    assert!(only_x[note].contains("no searchable residue"), "{only_x:?}");
    // Shorter than the stride: its one residue is still searched.
    let one = &lines[lines.len() - 1];
    assert_eq!(one[id], "one_residue");
    assert!(!one[acc].is_empty(), "{one:?}");
}

/// `residue search --store-part K/N` (one task of a job array each) and
/// `residue evaluate --store-parts N` give, with exact search, the very
/// predictions CSV of one `residue evaluate`; the merge refuses, naming the
/// file, while a task's hits are missing.
#[test]
fn a_search_split_over_store_parts_through_the_cli_writes_the_one_process_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let test_rows = write_subset(&data);
    let (store, hits) = (dir.path().join("residue"), dir.path().join("hits"));
    let residue = |sub: &str| {
        let mut cmd = protfam();
        cmd.args(["residue", sub, "--data"])
            .arg(&data)
            .args(["--split", SPLIT, "--device", "cpu", "--residue-store"])
            .arg(&store);
        cmd
    };
    // Store shards of 8 sequences, so each of the 3 parts holds several.
    common::run_ok(
        residue("build").args(["--part", "train", "--sequences-per-shard", "8"]),
        "residue build",
    );
    let single = dir.path().join("single");
    common::run_ok(
        residue("evaluate")
            .args(["--residue-index", "exact", "--output"])
            .arg(&single),
        "residue evaluate",
    );
    let search = |k: usize| {
        let (stdout, _) = common::run_ok(
            residue("search")
                .args([
                    "--residue-index",
                    "exact",
                    "--store-part",
                    &format!("{k}/3"),
                    "--hits-dir",
                ])
                .arg(&hits),
            "residue search",
        );
        assert!(
            stdout.contains(&format!("hits-{k:05}-of-00003.safetensors")),
            "{stdout}"
        );
    };
    let merge = |out: &Path| {
        let mut cmd = residue("evaluate");
        cmd.args(["--residue-index", "exact", "--store-parts", "3", "--hits-dir"])
            .arg(&hits)
            .arg("--output")
            .arg(out);
        cmd
    };
    search(0);
    search(1);
    let merged = dir.path().join("merged");
    let refused = merge(&merged).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("hits-00002-of-00003.safetensors"),
        "the merge names the missing part:\n{stderr}"
    );
    assert!(!merged.exists(), "the refused merge wrote nothing");
    search(2);
    common::run_ok(&mut merge(&merged), "residue evaluate --store-parts");
    let predictions = "residue-knn-near-clustered_split-test.predictions.csv";
    let one = std::fs::read(single.join(predictions)).unwrap();
    assert_eq!(
        std::fs::read(merged.join(predictions)).unwrap(),
        one,
        "merged and one-process predictions"
    );
    assert_eq!(
        common::predicted_accessions(&single.join(predictions)).len(),
        test_rows.len()
    );
}
