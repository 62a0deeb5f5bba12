//! `protfam annotate` end to end on real data: a classifier trained (and
//! dev-calibrated) on the bundled clustered split with some families removed
//! from train and dev, then user FASTA files of held-out test domains.
//!
//! The embedder is `onehot64` (no weights needed, fast); the point is the
//! annotate machinery, not the embedding's accuracy.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;

mod common;

const MODEL: &str = "onehot64";
const SPLIT: &str = "clustered_split";
/// Target precision of the test calibration. onehot64 + 1-NN is right on few
/// clustered-split domains, so 0.95 would keep almost nothing to measure.
const MIN_PRECISION: f64 = 0.8;

fn protfam() -> Command {
    Command::cargo_bin("protfam").unwrap()
}

/// One CSV row of a shard, kept verbatim.
struct Row {
    accession: String,
    name: String,
    sequence: String,
    line: csv::StringRecord,
}

fn read_rows(part: &str) -> Vec<Row> {
    common::split_records(SPLIT, part)
        .into_iter()
        .map(|rec| Row {
            accession: rec[2].split('.').next().unwrap().to_string(),
            name: rec[1].to_string(),
            sequence: rec[4].to_string(),
            line: rec,
        })
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    classifier: PathBuf,
    cache: PathBuf,
    removed: BTreeSet<String>,
    test: Vec<Row>,
}

/// Families removed from train and dev: every 5th family (by accession) among those in test.
fn removed_families(test: &[Row]) -> BTreeSet<String> {
    let fams: BTreeSet<String> = test.iter().map(|r| r.accession.clone()).collect();
    fams.into_iter()
        .enumerate()
        .filter(|(i, _)| i % 5 == 0)
        .map(|(_, f)| f)
        .collect()
}

fn write_part(data: &Path, part: &str, rows: &[Row]) {
    common::write_split_part(data, SPLIT, part, rows.iter().map(|r| &r.line));
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        let test = read_rows("test");
        let removed = removed_families(&test);
        let keep = |rows: Vec<Row>| {
            rows.into_iter()
                .filter(|r| !removed.contains(&r.accession))
                .collect::<Vec<_>>()
        };
        write_part(&data, "train", &keep(read_rows("train")));
        write_part(&data, "dev", &keep(read_rows("dev")));
        write_part(&data, "test", &test);
        let classifier = root.join("knn");
        let cache = root.join("cache");
        let out = protfam()
            .args(["train", "--split", SPLIT, "--model", MODEL, "--classifier", "knn"])
            .arg("--data")
            .arg(&data)
            .arg("--cache")
            .arg(&cache)
            .arg("--output")
            .arg(&classifier)
            .args(["--min-precision", &MIN_PRECISION.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "train failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            classifier.join("calibration.json").is_file(),
            "train stores a calibration"
        );
        Fixture {
            _dir: dir,
            root,
            data,
            classifier,
            cache,
            removed,
            test,
        }
    })
}

fn fasta(rows: &[&Row]) -> String {
    rows.iter().map(|r| format!(">{}\n{}\n", r.name, r.sequence)).collect()
}

fn annotate(args: &[&str], stdin: Option<Vec<u8>>) -> (std::process::Output, Vec<Vec<String>>) {
    let f = fixture();
    let mut cmd = protfam();
    cmd.arg("annotate")
        .arg("--classifier")
        .arg(&f.classifier)
        .arg("--cache")
        .arg(&f.cache)
        .args(args);
    if let Some(input) = stdin {
        cmd.write_stdin(input);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows = text
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    (out, rows)
}

fn column(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

/// 30 held-out test domains of families the classifier knows.
fn held_out(f: &Fixture) -> Vec<&Row> {
    f.test
        .iter()
        .filter(|r| !f.removed.contains(&r.accession))
        .step_by(7)
        .take(30)
        .collect()
}

#[test]
fn rows_follow_input_order_and_match_evaluate() {
    let f = fixture();
    let held = held_out(f);
    assert_eq!(held.len(), 30);
    let path = f.root.join("held_out.fasta");
    std::fs::write(&path, fasta(&held)).unwrap();
    let out_path = f.root.join("held_out.tsv");
    let (out, _) = annotate(&[path.to_str().unwrap(), "-o", out_path.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("30 sequences:"), "summary on stderr: {stderr}");
    let tsv = std::fs::read_to_string(&out_path).unwrap();
    let rows: Vec<Vec<String>> = tsv
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    let header = &rows[0];
    assert_eq!(rows.len(), 31);
    let (id, fam, acc, conf, ann) = (
        column(header, "id"),
        column(header, "family_id"),
        column(header, "family_accession"),
        column(header, "confident"),
        column(header, "annotation"),
    );
    let near = column(header, "nearest_id");
    for (r, h) in rows[1..].iter().zip(&held) {
        assert_eq!(r[id], h.name, "input order");
        assert!(!r[near].is_empty(), "kNN names the nearest training domain");
        match r[conf].as_str() {
            "yes" => assert_eq!(r[ann], r[fam]),
            "no" => assert_eq!(r[ann], "no confident family"),
            other => panic!("confident = {other}"),
        }
    }

    // `evaluate` with the same embedder and classifier on the same data.
    let reports = f.root.join("reports");
    let out = protfam()
        .args(["evaluate", "--split", SPLIT, "--models", MODEL, "--classifiers", "knn"])
        .arg("--data")
        .arg(&f.data)
        .arg("--cache")
        .arg(&f.cache)
        .arg("--output")
        .arg(&reports)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "evaluate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pred_dir = reports.join(SPLIT).join("predictions");
    let pred_file = std::fs::read_dir(&pred_dir).unwrap().next().unwrap().unwrap().path();
    let mut evaluated: BTreeMap<String, (String, String)> = BTreeMap::new();
    for rec in csv::Reader::from_path(&pred_file)
        .unwrap()
        .deserialize::<BTreeMap<String, String>>()
    {
        let rec = rec.unwrap();
        evaluated.insert(
            rec["id"].clone(),
            (rec["predicted"].clone(), rec["predicted_accession"].clone()),
        );
    }
    for r in &rows[1..] {
        let (family, accession) = &evaluated[&r[id]];
        assert_eq!(
            (&r[fam], &r[acc]),
            (family, accession),
            "{}: annotate and evaluate disagree",
            r[id]
        );
    }
}

#[test]
fn removed_families_abstain_and_dev_precision_holds_on_test() {
    let f = fixture();
    let all: Vec<&Row> = f.test.iter().collect();
    let path = f.root.join("test.fasta");
    std::fs::write(&path, fasta(&all)).unwrap();
    let (out, rows) = annotate(&[path.to_str().unwrap(), "--format", "tsv"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let header = &rows[0];
    let (acc, conf) = (column(header, "family_accession"), column(header, "confident"));
    assert_eq!(rows.len() - 1, all.len());
    let (mut removed_n, mut removed_abstained, mut accepted, mut accepted_right) = (0, 0, 0, 0);
    for (r, t) in rows[1..].iter().zip(&all) {
        let confident = r[conf] == "yes";
        if f.removed.contains(&t.accession) {
            removed_n += 1;
            removed_abstained += usize::from(!confident);
        }
        if confident {
            accepted += 1;
            accepted_right += usize::from(r[acc] == t.accession);
        }
    }
    let cal: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.classifier.join("calibration.json")).unwrap()).unwrap();
    let dev_precision = cal["dev_precision"].as_f64().unwrap();
    let test_precision = accepted_right as f64 / accepted.max(1) as f64;
    let abstention = removed_abstained as f64 / removed_n as f64;
    println!(
        "calibration ({} <= / >= {}, target {MIN_PRECISION}): dev precision {:.1}% coverage {:.1}%; test precision {:.1}% on {accepted} confident of {} ({:.1}% coverage); removed families: {removed_abstained}/{removed_n} = {:.1}% flagged `no confident family`",
        cal["statistic"], cal["threshold"], 100.0 * dev_precision, 100.0 * cal["dev_coverage"].as_f64().unwrap(),
        100.0 * test_precision, all.len(), 100.0 * accepted as f64 / all.len() as f64, 100.0 * abstention
    );
    assert!(removed_n > 50, "enough removed-family test domains: {removed_n}");
    assert!(
        abstention > 0.5,
        "most removed-family domains abstain: {:.1}%",
        100.0 * abstention
    );
    assert!(
        accepted >= 20,
        "enough confident answers to measure precision: {accepted}"
    );
    assert!(
        (test_precision - dev_precision).abs() <= 0.10,
        "dev {dev_precision:.3} vs test {test_precision:.3}"
    );
}

#[test]
fn stdin_gzip_invalid_and_duplicate_records() {
    let f = fixture();
    let held = held_out(f);
    let text = fasta(&held[..5]);
    // stdin, lower case.
    let (out, rows) = annotate(&["-"], Some(text.to_lowercase().into_bytes()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(rows.len(), 6);
    // gzip file gives the same rows as the plain text.
    let gz = f.root.join("five.fa.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    let plain = f.root.join("five.fa");
    std::fs::write(&plain, &text).unwrap();
    let (out_gz, rows_gz) = annotate(&[gz.to_str().unwrap()], None);
    let (_, rows_plain) = annotate(&[plain.to_str().unwrap()], None);
    assert!(out_gz.status.success());
    assert_eq!(rows_gz, rows_plain);
    // Invalid residue in the middle, and a repeated id: reported, the others annotated.
    let bad = format!(
        "{}>broken\nMKV*LL12\n{}>{}\n{}\n",
        fasta(&held[..2]),
        fasta(&held[2..4]),
        held[0].name,
        held[0].sequence
    );
    let bad_path = f.root.join("bad.fa");
    std::fs::write(&bad_path, &bad).unwrap();
    let (out, rows) = annotate(&[bad_path.to_str().unwrap()], None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "invalid records give exit status 2 without --lenient"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.fa") && stderr.contains("broken"),
        "names file and record: {stderr}"
    );
    assert!(stderr.contains("duplicate"), "{stderr}");
    assert_eq!(rows.len(), 1 + 6);
    let h = &rows[0];
    let (id, ann, note) = (column(h, "id"), column(h, "annotation"), column(h, "note"));
    assert_eq!(rows[3][id], "broken");
    assert_eq!(rows[3][ann], "invalid record");
    for i in [1, 2, 4, 5, 6] {
        assert_ne!(rows[i][ann], "invalid record");
        assert!(!rows[i][column(h, "family_id")].is_empty());
    }
    assert!(rows[6][note].contains("duplicate id"), "{:?}", rows[6]);
    assert_eq!(
        rows[6][column(h, "family_id")],
        rows[1][column(h, "family_id")],
        "same sequence, same answer"
    );
    let (out, _) = annotate(&[bad_path.to_str().unwrap(), "--lenient", "--format", "json"], None);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 6);
    assert_eq!(json[2]["annotation"], "invalid record");
}

#[test]
fn info_prints_the_calibration() {
    let f = fixture();
    let out = protfam().arg("info").arg(&f.classifier).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("abstention calibration") && text.contains("dev precision") && text.contains("coverage"),
        "{text}"
    );
}
