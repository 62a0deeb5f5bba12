//! `protfam data ...` end to end: the bundled split, a small fixture split
//! with a bad record (strict and lenient), and input checking from files and stdin.

mod common;

use common::data_root;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/io").join(name)
}

fn protfam() -> Command {
    Command::cargo_bin("protfam").unwrap()
}

/// The row of `part` in the stats table, split into cells.
fn table_row(stdout: &str, part: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(part))
        .expect("a table row");
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn stats_on_the_bundled_clustered_split() {
    let out = protfam()
        .args(["data", "stats", "--data"])
        .arg(data_root())
        .args(["--split", "clustered_split"])
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    // part, records, families, min, median, max, skipped
    assert_eq!(table_row(&stdout, "train")[1..3], ["16,114", "1,273"], "{stdout}");
    assert_eq!(table_row(&stdout, "dev")[1..3], ["366", "160"], "{stdout}");
    assert_eq!(table_row(&stdout, "test")[1..3], ["1,248", "422"], "{stdout}");
    assert!(stdout.contains("train: 10 largest families"), "{stdout}");
    assert!(
        stdout.contains("Families with fewer than 5 training examples"),
        "{stdout}"
    );
    assert!(stdout.contains("test:"), "{stdout}");
}

#[test]
fn stats_json_on_the_random_split_is_consistent() {
    let out = protfam()
        .args(["data", "stats", "--json", "--split", "random_split", "--data"])
        .arg(data_root())
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let parts = json["parts"].as_array().unwrap();
    let records: Vec<u64> = parts.iter().map(|p| p["records"].as_u64().unwrap()).collect();
    assert_eq!(records, [15_114, 1_353, 1_261]);
    for part in parts {
        let largest = part["largest"].as_array().unwrap();
        assert_eq!(largest.len(), 10);
        let sizes: Vec<u64> = largest.iter().map(|f| f["records"].as_u64().unwrap()).collect();
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        assert!(part["length_min"].as_u64() <= part["length_max"].as_u64());
    }
    // random_split puts every family in train, so nothing is absent from it.
    for few in json["few_shot"].as_array().unwrap() {
        assert_eq!(few["absent_from_train"], 0);
    }
}

#[test]
fn stats_on_a_fixture_split_strict_then_lenient() {
    let root = fixture("mini");
    protfam()
        .args(["data", "stats", "--data"])
        .arg(&root)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "data-00001-of-00002:3 (record b2/1-4): invalid residue digit '1' at position 3",
        ));
    let out = protfam()
        .args(["data", "stats", "--lenient", "--few-shot", "3", "--data"])
        .arg(&root)
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    // train keeps a1 a2 b1 a3 c1 (b2 skipped): lengths 4 5 3 6 4
    assert_eq!(
        table_row(&stdout, "train"),
        ["train", "5", "3", "3", "4", "6", "1"],
        "{stdout}"
    );
    assert_eq!(
        table_row(&stdout, "dev"),
        ["dev", "1", "1", "4", "4", "4", "0"],
        "{stdout}"
    );
    // test: A has 3 training examples, B 1 (b2 was skipped), D none.
    assert!(
        stdout.contains("test: 2 of 3 families (1 absent from training), 2 of its records"),
        "{stdout}"
    );
}

#[test]
fn stats_rejects_a_missing_root_or_split() {
    protfam()
        .args(["data", "stats", "--data", "/nonexistent/protfam-data"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a directory"));
    // The old positional spelling still works for one release, with a warning.
    protfam()
        .args(["data", "stats", "/nonexistent/protfam-data"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("old spelling of `--data").and(predicate::str::contains("not a directory")));
    protfam()
        .args(["data", "stats", "--split", "no_such_split", "--data"])
        .arg(data_root())
        .assert()
        .failure()
        .stderr(predicate::str::contains("no such split directory"));
}

#[test]
fn stats_help_documents_every_flag() {
    protfam().args(["data", "stats", "--help"]).assert().success().stdout(
        predicate::str::contains("--split")
            .and(predicate::str::contains("--lenient"))
            .and(predicate::str::contains("--few-shot")),
    );
}

#[test]
fn check_reads_stdin_gzip_and_reports_duplicates() {
    let text = std::fs::read(fixture("quirks.fa")).unwrap();
    protfam()
        .args(["data", "check", "-"])
        .write_stdin(text)
        .assert()
        .success()
        .stdout(predicate::str::contains("<stdin>: 4 records (FASTA), 315 residues"))
        .stdout(predicate::str::contains("1 duplicate id(s): sp|P69905|HBA_HUMAN"));
    let gz = std::fs::read(fixture("quirks.fa.gz")).unwrap();
    protfam()
        .args(["data", "check", "-"])
        .write_stdin(gz)
        .assert()
        .success()
        .stdout(predicate::str::contains("4 records (FASTA)"));
    protfam()
        .args(["data", "check", "--reject-duplicates"])
        .arg(fixture("quirks.fa"))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "quirks.fa:9 (record sp|P69905|HBA_HUMAN): duplicate id (first seen on line 3)",
        ));
}

#[test]
fn check_detects_formats_and_fails_on_bad_input() {
    protfam()
        .args(["data", "check"])
        .arg(fixture("mini/clustered_split/test/data-00000-of-00001"))
        .arg("/usr/share/doc/hmmer/examples/tutorial/fn3.sto")
        .assert()
        .success()
        .stdout(
            predicate::str::contains("3 records (Pfam split CSV)")
                .and(predicate::str::contains("98 records (Stockholm)")),
        );
    protfam()
        .args(["data", "check"])
        .arg(fixture("digits.fa"))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "digits.fa:6 (record sp|P2|B_HUMAN): invalid residue digit '3' at position 8",
        ));
    protfam()
        .args(["data", "check", "--lenient"])
        .arg(fixture("digits.fa"))
        .assert()
        .success()
        .stdout(predicate::str::contains("1 records (FASTA)").and(predicate::str::contains("1 record(s) skipped")));
    protfam()
        .args(["data", "check"])
        .arg(fixture("mismatched_block.sto"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("mismatched_block.sto:9: unknown name"));
}
