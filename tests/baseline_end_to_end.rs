//! `protfam baseline` end to end with the real HMMER and BLAST+ programs on a
//! tiny split of nine real Pfam families (tests/data/baseline/tiny), checked
//! against the raw tools' output and scripts/baseline_check.sh's scoring.
//! Needs `hmmer` and `ncbi-blast+` installed (`make test` installs them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use protfam::baseline::hmm::read_tblout;
use protfam::baseline::{
    run_baseline, run_baseline_detailed, write_reports, BaselineError, BaselineKind, BaselineOptions,
};
use protfam::dataset::Split;
use protfam::metrics::ReportRow;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/baseline")
}

fn options(work: &Path) -> BaselineOptions {
    let mut opts = BaselineOptions::new(work);
    opts.threads = 2;
    opts.progress = false;
    opts
}

fn checked_errors(kind: &str) -> usize {
    let text = std::fs::read_to_string(fixtures().join("check.txt")).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{kind} "))).unwrap();
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("errors="))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn hmm_baseline_matches_raw_hmmscan_and_reuses_its_database() {
    let work = tempfile::tempdir().unwrap();
    let opts = options(work.path());
    let root = fixtures().join("tiny");
    let first = run_baseline_detailed(
        BaselineKind::Hmm,
        &Split::open(&root, "clustered_split").unwrap(),
        &opts,
    )
    .unwrap();
    assert!(!first.reused_database);
    assert_eq!(first.row.n, 12);
    assert_eq!(first.row.errors, checked_errors("hmm"));
    assert_eq!(
        (first.row.classifier.as_str(), first.row.embedding.as_str()),
        ("hmm", "none")
    );

    // The top family of every test sequence equals the best model of an independent hmmscan run.
    let scan = read_tblout(&fixtures().join("hmmscan.tbl")).unwrap();
    let mut best: BTreeMap<usize, (f64, String)> = BTreeMap::new();
    for hit in &scan {
        let i: usize = hit.query_name[1..].parse().unwrap();
        if best.get(&i).is_none_or(|(s, _)| hit.score > *s) {
            best.insert(i, (hit.score, hit.target_name.clone()));
        }
    }
    for (i, p) in first.predictions.iter().enumerate() {
        let expected = best.get(&i).map(|(_, acc)| acc.as_str());
        assert_eq!(
            p.predicted.as_ref().map(|f| f.accession.as_str()),
            expected,
            "test sequence {}",
            p.name
        );
        if let (Some(score), Some((s, _))) = (p.score, best.get(&i)) {
            assert!((score - s).abs() < 0.051, "{}: {score} vs {s}", p.name);
        }
    }
    // Predicted families carry their names, and the pressed database is in the cache.
    assert!(first
        .predictions
        .iter()
        .filter_map(|p| p.predicted.as_ref())
        .all(|f| !f.family_id.is_empty()));
    for ext in ["", ".h3m", ".h3i", ".h3f", ".h3p"] {
        assert!(
            first.database_dir.join(format!("pfam.hmm{ext}")).is_file(),
            "pfam.hmm{ext}"
        );
    }

    let second = run_baseline_detailed(
        BaselineKind::Hmm,
        &Split::open(&root, "clustered_split").unwrap(),
        &opts,
    )
    .unwrap();
    assert!(second.reused_database);
    assert_eq!(second.database_dir, first.database_dir);
    assert_eq!(second.predictions, first.predictions);
    assert_eq!(second.row.train_seconds, first.row.train_seconds);
}

#[test]
fn blast_baseline_matches_the_independent_scoring_and_writes_reports() {
    let work = tempfile::tempdir().unwrap();
    let root = fixtures().join("tiny");
    let (row, predictions) =
        run_baseline(BaselineKind::Blast, &root, "clustered_split", &options(work.path())).unwrap();
    assert_eq!(row.errors, checked_errors("blast"));
    assert_eq!(predictions.len(), 12);
    assert_eq!(predictions.iter().filter(|p| !p.is_correct()).count(), row.errors);
    let sizes: usize = row.by_family_size.iter().map(|b| b.n).sum();
    assert_eq!(sizes, 12);

    let reports = work.path().join("reports");
    let written = write_reports(&reports, BaselineKind::Blast, "clustered_split", &row, &predictions).unwrap();
    assert_eq!(written[0], reports.join("baseline-blast-clustered_split.json"));
    let rows: Vec<ReportRow> = serde_json::from_str(&std::fs::read_to_string(&written[0]).unwrap()).unwrap();
    assert_eq!(rows, vec![row.clone()]);
    let tsv = std::fs::read_to_string(&written[2]).unwrap();
    assert_eq!(tsv.lines().count(), 13);
    assert_eq!(tsv.lines().filter(|l| l.ends_with("\tfalse")).count(), row.errors);
}

#[test]
fn max_mode_gives_every_sequence_a_family() {
    let work = tempfile::tempdir().unwrap();
    let mut opts = options(work.path());
    let root = fixtures().join("tiny");
    let filtered = run_baseline_detailed(
        BaselineKind::Hmm,
        &Split::open(&root, "clustered_split").unwrap(),
        &opts,
    )
    .unwrap();
    opts.hmm_max = true;
    let unfiltered = run_baseline_detailed(
        BaselineKind::Hmm,
        &Split::open(&root, "clustered_split").unwrap(),
        &opts,
    )
    .unwrap();
    // Same profiles (the cache key does not depend on search options), every sequence scored against every profile.
    assert!(unfiltered.reused_database);
    assert!(unfiltered.predictions.iter().all(|p| p.predicted.is_some()));
    // Without the filters a sequence's best hit can only score the same or higher.
    for (f, u) in filtered.predictions.iter().zip(&unfiltered.predictions) {
        if let (Some(fs), Some(us)) = (f.score, u.score) {
            assert!(us >= fs - 0.05, "{}: {us} < {fs}", f.name);
        }
    }
}

#[test]
fn unequal_alignment_rows_name_the_family() {
    let data = tempfile::tempdir().unwrap();
    for part in ["train", "dev", "test"] {
        let dir = data.path().join("clustered_split").join(part);
        std::fs::create_dir_all(&dir).unwrap();
        let src = fixtures()
            .join("tiny/clustered_split")
            .join(part)
            .join("data-00000-of-00001");
        let mut text = std::fs::read_to_string(src).unwrap();
        if part == "train" {
            // Drop the last alignment column of one Bet_v_1 row only.
            let line = text.lines().find(|l| l.starts_with("Bet_v_1,")).unwrap().to_string();
            let fields: Vec<&str> = line.split(',').collect();
            let shortened = format!(
                "{},{},{},{},{}",
                fields[0],
                fields[1],
                fields[2],
                &fields[3][..fields[3].len() - 1],
                fields[4]
            );
            text = text.replacen(&line, &shortened, 1);
        }
        std::fs::write(dir.join("data-00000-of-00001"), text).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let err = run_baseline(BaselineKind::Hmm, data.path(), "clustered_split", &options(work.path())).unwrap_err();
    assert!(matches!(err, BaselineError::Alignment { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("Bet_v_1") && message.contains("PF00407"), "{message}");
    assert!(message.contains("unequal lengths"), "{message}");
}

#[test]
fn cli_prints_the_table_and_writes_reports() {
    let work = tempfile::tempdir().unwrap();
    let output = Command::cargo_bin("protfam")
        .unwrap()
        .args([
            "baseline",
            "all",
            "--threads",
            "2",
            "--split",
            "clustered_split",
            "--data",
        ])
        .arg(fixtures().join("tiny"))
        .arg("--work-dir")
        .arg(work.path().join("baselines"))
        .arg("--output")
        .arg(work.path().join("reports"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("| none | hmm | 12 | {} |", checked_errors("hmm"))),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("| none | blast | 12 | {} |", checked_errors("blast"))),
        "{stdout}"
    );
    for kind in ["hmm", "blast"] {
        for suffix in [".json", ".csv", "-predictions.tsv"] {
            let path = work
                .path()
                .join("reports")
                .join(format!("baseline-{kind}-clustered_split{suffix}"));
            assert!(path.is_file(), "{}", path.display());
        }
    }
}

#[test]
fn missing_tools_say_how_to_install_them() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::cargo_bin("protfam")
        .unwrap()
        .args(["baseline", "hmm", "--data"])
        .arg(fixtures().join("tiny"))
        .arg("--tool-dir")
        .arg(empty.path())
        .arg("--work-dir")
        .arg(empty.path().join("w"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("hmmbuild") && stderr.contains("apt-get install -y hmmer"),
        "{stderr}"
    );
}

#[test]
fn a_damaged_cache_is_rebuilt() {
    let work = tempfile::tempdir().unwrap();
    let opts = options(work.path());
    let root = fixtures().join("tiny");
    let (row, predictions) = run_baseline(BaselineKind::Blast, &root, "clustered_split", &opts).unwrap();
    let dir = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    std::fs::remove_file(dir.join("train.psq")).unwrap();
    let again = run_baseline_detailed(
        BaselineKind::Blast,
        &Split::open(&root, "clustered_split").unwrap(),
        &opts,
    )
    .unwrap();
    assert!(!again.reused_database);
    assert_eq!(again.predictions, predictions);
    assert_eq!(again.row.errors, row.errors);
}
