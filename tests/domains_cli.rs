//! `protfam domains` end to end with the real NEAR weights and HMMER on a
//! small subset of the bundled data: the families of a few whole proteins of
//! `full_length/`, their training domains, `train` a `residue-knn`,
//! `domains calibrate` on the dev proteins, `domains evaluate` beside
//! `hmmscan`, and `domains scan` on hard inputs: the test proteins, a protein
//! made of ten training domains, a 35,000-residue protein, a protein of only
//! `X` and an empty record.
//!
//! Needs `models/near/weights.npz` (`make models`), HMMER (`make test-deps`)
//! and the bundled data.

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

/// Whole proteins of a full_length FASTA by id (first word of the header), in file order.
fn read_fasta(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix('>') {
            out.push((header.split_whitespace().next().unwrap().to_string(), String::new()));
        } else if let Some(last) = out.last_mut() {
            last.1.push_str(line.trim());
        }
    }
    out
}

/// Truth rows: (sequence_id, start, end, family_id, accession, part).
type TruthRow = (String, usize, usize, String, String, String);

fn read_truth(path: &Path) -> Vec<TruthRow> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].to_string(),
                f[4].split('.').next().unwrap().to_string(),
                f[5].to_string(),
            )
        })
        .collect()
}

/// The first `n` proteins of `full_length/<set>` and their truth rows.
fn proteins(set: &str, n: usize) -> (Vec<(String, String)>, Vec<TruthRow>) {
    let root = common::data_root().join("full_length");
    let fasta: Vec<(String, String)> = read_fasta(&root.join(format!("{set}.fasta")))
        .into_iter()
        .filter(|(_, s)| s.len() <= 1500)
        .take(n)
        .collect();
    let ids: BTreeSet<&str> = fasta.iter().map(|(id, _)| id.as_str()).collect();
    let truth = read_truth(&root.join(format!("{set}_domains.tsv")))
        .into_iter()
        .filter(|t| ids.contains(t.0.as_str()))
        .collect();
    (fasta, truth)
}

fn write_full_length(dir: &Path, set: &str, fasta: &[(String, String)], truth: &[TruthRow]) {
    std::fs::create_dir_all(dir).unwrap();
    let text: String = fasta
        .iter()
        .map(|(id, s)| format!(">{id} whole protein\n{s}\n"))
        .collect();
    std::fs::write(dir.join(format!("{set}.fasta")), text).unwrap();
    let mut tsv = String::from("sequence_id\tstart\tend\tfamily_id\tfamily_accession\tpart\n");
    for t in truth {
        tsv.push_str(&format!("{}\t{}\t{}\t{}\t{}\t{}\n", t.0, t.1, t.2, t.3, t.4, t.5));
    }
    std::fs::write(dir.join(format!("{set}_domains.tsv")), tsv).unwrap();
}

/// TSV rows of `domains scan` as maps from column to value.
fn rows(tsv: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split('\t'))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn domains_calibrate_evaluate_and_scan_whole_proteins() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (dev, dev_truth) = proteins("dev", 6);
    let (test, test_truth) = proteins("test", 8);
    let families: BTreeSet<String> = dev_truth.iter().chain(&test_truth).map(|t| t.4.clone()).collect();
    // Training domains of those families: the first eight of each, plus every training domain
    // cut from one of the chosen proteins (the `train`-part domains of the truth tables).
    let entry = |id: &str| id.rsplit('|').next().unwrap().to_string();
    let chosen: BTreeSet<String> = dev.iter().chain(&test).map(|(id, _)| entry(id)).collect();
    let mut per_family: BTreeMap<String, usize> = BTreeMap::new();
    let train: Vec<csv::StringRecord> = common::split_records(SPLIT, "train")
        .into_iter()
        .filter(|r| {
            let accession = r[2].split('.').next().unwrap().to_string();
            if !families.contains(&accession) {
                return false;
            }
            let own = chosen.contains(r[1].split('/').next().unwrap());
            let count = per_family.entry(accession).or_insert(0);
            *count += 1;
            own || *count <= 8
        })
        .collect();
    assert!(families.len() >= 8, "{families:?}");
    common::write_split_part(&data, SPLIT, "train", &train);
    let dev_rows: Vec<csv::StringRecord> = common::split_records(SPLIT, "dev").into_iter().take(3).collect();
    common::write_split_part(&data, SPLIT, "dev", &dev_rows);
    common::write_split_part(&data, SPLIT, "test", &dev_rows);
    write_full_length(&data.join("full_length"), "dev", &dev, &dev_truth);
    write_full_length(&data.join("full_length"), "test", &test, &test_truth);

    let classifier = dir.path().join("classifier");
    let mut cmd = protfam();
    cmd.args([
        "train",
        "--model",
        "near",
        "--classifier",
        "residue-knn",
        "--no-calibrate",
    ])
    .arg("--data")
    .arg(&data)
    .args(["--split", SPLIT])
    .arg("--residue-store")
    .arg(dir.path().join("residue"))
    .arg("-o")
    .arg(&classifier);
    common::run_ok(&mut cmd, "train");

    // A vector classifier is refused with a clear message.
    let out = protfam()
        .args(["domains", "scan", "--classifier"])
        .arg(dir.path())
        .arg(data.join("full_length/test.fasta"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a residue-knn classifier"));

    // evaluate calibrates on dev first, then reports both methods on test.
    let reports = dir.path().join("reports");
    let mut cmd = protfam();
    cmd.args(["domains", "evaluate", "--classifier"])
        .arg(&classifier)
        .arg("--data")
        .arg(&data)
        .args(["--split", SPLIT, "--min-precision", "0.8"])
        .arg("--work-dir")
        .arg(dir.path().join("baselines"))
        .arg("-o")
        .arg(&reports);
    let (stdout, stderr) = common::run_ok(&mut cmd, "domains evaluate");
    assert!(stderr.contains("calibrating on the dev proteins first"), "{stderr}");
    assert!(classifier.join("domain-calibration.json").is_file());
    for needle in [
        "| protfam residue-knn (near) | dev |",
        "| protfam residue-knn (near) | test |",
        "| hmmscan (training-part HMMs) | test |",
    ] {
        assert!(stdout.contains(needle), "{needle} in\n{stdout}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("domains.json")).unwrap()).unwrap();
    assert_eq!(report["rows"].as_array().unwrap().len(), 4);

    // scan: the seen (train-part) domains of the test proteins are in the store, so (nearly) all
    // of them must be called with their family, the envelope within 10 residues. (On the whole
    // dev set 95% of seen domains get such a call; embeddings of a domain cut out of its
    // protein and of the same residues in context differ, most for short domains.)
    let input = data.join("full_length/test.fasta");
    let scan = |extra: &[&str], input: &Path| {
        let mut cmd = protfam();
        cmd.args(["domains", "scan", "--classifier"])
            .arg(&classifier)
            .arg(input)
            .args(extra);
        cmd.output().unwrap()
    };
    let out = scan(&["--all-calls"], &input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let calls = rows(&String::from_utf8_lossy(&out.stdout));
    let seen: Vec<&TruthRow> = test_truth.iter().filter(|t| t.5 == "train").collect();
    assert!(seen.len() >= 4, "{seen:?}");
    let called = seen
        .iter()
        .filter(|t| {
            calls.iter().any(|c| {
                c["sequence_id"] == t.0
                    && c["family_accession"] == t.4
                    && c["start"].parse::<usize>().is_ok_and(|s| s.abs_diff(t.1) <= 10)
                    && c["end"].parse::<usize>().is_ok_and(|e| e.abs_diff(t.2) <= 10)
            })
        })
        .count();
    assert!(
        5 * called >= 4 * seen.len(),
        "{called} of {} seen domains called:\n{calls:?}",
        seen.len()
    );
    let order: Vec<&str> = calls.iter().map(|c| c["sequence_id"].as_str()).collect::<Vec<_>>();
    let mut firsts: Vec<&str> = order.clone();
    firsts.dedup();
    let expected: Vec<&str> = test.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(firsts, expected, "input order, every protein present");

    // The same scan as 3 job-array tasks (`--shard K/3 --part-dir`) and `domains merge`: the
    // very bytes of one scan, in each format; the merge refuses while a part is missing.
    for format in ["json", "gff3"] {
        let single = dir.path().join(format!("single.{format}"));
        let out = scan(
            &["--all-calls", "--format", format, "-o", single.to_str().unwrap()],
            &input,
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let parts = dir.path().join(format!("parts-{format}"));
        let task = |k: usize| {
            let shard = format!("{k}/3");
            let out = scan(
                &[
                    "--all-calls",
                    "--format",
                    format,
                    "--shard",
                    &shard,
                    "--part-dir",
                    parts.to_str().unwrap(),
                ],
                &input,
            );
            assert!(
                out.status.success(),
                "task {k}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let merge = |output: &Path| {
            protfam()
                .args(["domains", "merge"])
                .arg(&parts)
                .arg("-o")
                .arg(output)
                .output()
                .unwrap()
        };
        task(0);
        task(1);
        let merged = dir.path().join(format!("merged.{format}"));
        let refused = merge(&merged);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && stderr.contains("part-00002-of-00003.jsonl"),
            "the merge names the missing part:\n{stderr}"
        );
        assert!(!merged.exists());
        task(2);
        let out = merge(&merged);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            std::fs::read_to_string(&merged).unwrap(),
            std::fs::read_to_string(&single).unwrap(),
            "{format}: merged parts and one scan"
        );
    }

    // Hard inputs: ten training domains end to end, 35,000 residues, only X, then an empty record.
    let mut ten = String::new();
    let mut bounds = Vec::new();
    let mut used = BTreeSet::new();
    for r in &train {
        let accession = r[2].split('.').next().unwrap().to_string();
        if r[4].len() >= 60 && r[4].len() <= 300 && used.insert(accession.clone()) {
            bounds.push((ten.len() + 1, ten.len() + r[4].len(), accession));
            ten.push_str(&r[4]);
        }
        if used.len() == 10 {
            break;
        }
    }
    assert_eq!(used.len(), 10);
    let unit = &train[0][4];
    let titin: String = unit.chars().cycle().take(35_000).collect();
    let hard = dir.path().join("hard.fasta");
    std::fs::write(
        &hard,
        format!(
            ">ten_domains\n{ten}\n>titin_sized\n{titin}\n>only_x\n{}\n",
            "X".repeat(50)
        ),
    )
    .unwrap();
    let out = scan(&["--all-calls"], &hard);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let calls = rows(&String::from_utf8_lossy(&out.stdout));
    let found = bounds
        .iter()
        .filter(|(s, e, acc)| {
            calls.iter().any(|c| {
                c["sequence_id"] == "ten_domains"
                    && &c["family_accession"] == acc
                    && c["start"].parse::<usize>().is_ok_and(|v| v.abs_diff(*s) <= 10)
                    && c["end"].parse::<usize>().is_ok_and(|v| v.abs_diff(*e) <= 10)
            })
        })
        .count();
    assert!(found >= 8, "{found} of 10 domains found:\n{calls:?}");
    let titin_calls = calls
        .iter()
        .filter(|c| c["sequence_id"] == "titin_sized" && c["start"] != "-")
        .count();
    assert!(titin_calls >= 35_000 / unit.len() / 4, "{titin_calls} repeats called");
    let x = calls.iter().find(|c| c["sequence_id"] == "only_x").unwrap();
    assert!(x["note"].contains("no searchable residue"), "{x:?}");

    std::fs::write(&hard, format!(">ok\n{}\n>empty\n>after\n{}\n", &test[0].1, &test[1].1)).unwrap();
    let out = scan(&[], &hard);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("empty"), "{stderr}");
    let gff = dir.path().join("calls.gff3");
    let out = scan(&["--lenient", "--format", "gff3", "-o", gff.to_str().unwrap()], &hard);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&gff).unwrap();
    assert!(text.starts_with("##gff-version 3\n"));
    assert!(text.contains("##sequence-region ok 1 ") && text.contains("##sequence-region after 1 "));
    for feature in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = feature.split('\t').collect();
        assert_eq!(f.len(), 9, "{feature}");
        assert_eq!(f[2], "protein_domain");
        assert!(f[8].contains("Dbxref=Pfam:PF"), "{feature}");
    }
    let out = scan(&["--format", "json", "--all-calls"], &input);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), test.len());
}
