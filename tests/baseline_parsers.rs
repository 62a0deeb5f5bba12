//! The `--tblout` and `-outfmt 6` parsers on real HMMER / BLAST+ output
//! (tests/data/baseline/, made by scripts/baseline_fixtures.sh), checked
//! against the independent Python scoring of scripts/baseline_check.sh.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use protfam::baseline::blast::{best_hits as blast_best, read_outfmt6};
use protfam::baseline::hmm::{best_hits as hmm_best, read_tblout};
use protfam::baseline::TrainingSet;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/baseline")
}

fn data_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count()
}

fn labels(name: &str) -> BTreeMap<String, String> {
    std::fs::read_to_string(fixtures().join(name))
        .unwrap()
        .lines()
        .map(|l| {
            let (id, acc) = l.split_once('\t').unwrap();
            (id.to_string(), acc.to_string())
        })
        .collect()
}

/// `kind n=.. errors=..` lines written by scripts/baseline_check.sh.
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
fn hmmscan_and_hmmsearch_tables_agree_on_every_score() {
    let scan = read_tblout(&fixtures().join("hmmscan.tbl")).unwrap();
    let search = read_tblout(&fixtures().join("hmmsearch.tbl")).unwrap();
    assert_eq!(scan.len(), data_lines(&fixtures().join("hmmscan.tbl")));
    assert_eq!(search.len(), data_lines(&fixtures().join("hmmsearch.tbl")));
    assert!(!scan.is_empty());
    // hmmscan: target = model, query = sequence; hmmsearch the other way round.
    let mut a: Vec<(String, String, String)> = scan
        .iter()
        .map(|h| (h.query_name.clone(), h.target_name.clone(), format!("{:.1}", h.score)))
        .collect();
    let mut b: Vec<(String, String, String)> = search
        .iter()
        .map(|h| (h.target_name.clone(), h.query_name.clone(), format!("{:.1}", h.score)))
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert!(scan
        .iter()
        .all(|h| h.score.is_finite() && h.evalue >= 0.0 && h.query_name.starts_with('q')));
}

#[test]
fn top_hmm_errors_match_the_independent_scoring() {
    let truth = labels("test_labels.tsv");
    let hits = read_tblout(&fixtures().join("hmmsearch.tbl")).unwrap();
    let best = hmm_best(hits.iter(), truth.len(), Path::new("hmmsearch.tbl")).unwrap();
    let errors = (0..truth.len())
        .filter(|i| best[*i].as_ref().map(|h| h.accession.as_str()) != Some(truth[&format!("q{i}")].as_str()))
        .count();
    assert_eq!(errors, checked_errors("hmm"));
}

#[test]
fn blast_top_hit_errors_match_the_independent_scoring() {
    let root = fixtures().join("tiny");
    let train = TrainingSet::read(&root, "clustered_split").unwrap();
    // Training sequences are numbered in file order by both protfam and the check script.
    let train_labels = labels("train_labels.tsv");
    for (i, (_, family)) in train.sequences.iter().enumerate() {
        assert_eq!(train.families[*family].family.accession, train_labels[&format!("t{i}")]);
    }
    let truth = labels("test_labels.tsv");
    let hits = read_outfmt6(&fixtures().join("blastp.outfmt6")).unwrap();
    assert_eq!(hits.len(), data_lines(&fixtures().join("blastp.outfmt6")));
    assert!(hits
        .iter()
        .all(|h| h.bitscore > 0.0 && h.query_start <= h.query_end && h.percent_identity <= 100.0));
    let best = blast_best(hits.iter(), &train, truth.len(), Path::new("blastp.outfmt6")).unwrap();
    let errors = (0..truth.len())
        .filter(|i| best[*i].as_ref().map(|h| h.accession.as_str()) != Some(truth[&format!("q{i}")].as_str()))
        .count();
    assert_eq!(errors, checked_errors("blast"));
}
