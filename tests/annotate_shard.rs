//! `protfam annotate --shard K/N` + `protfam annotate merge` end to end: a 1-NN
//! classifier (`onehot64`, no weights needed) trained on a sample of the
//! bundled clustered split, then an input of real test domains with an invalid
//! record and a repeated id. The merged output must equal a single-process run
//! byte for byte, and the merge must refuse missing, damaged and foreign parts,
//! naming the file.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;

mod common;

const MODEL: &str = "onehot64";
const SPLIT: &str = "clustered_split";

fn protfam() -> Command {
    Command::cargo_bin("protfam").unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    classifier: PathBuf,
    cache: PathBuf,
    /// 41 records: real test domains, one invalid record, one repeated id.
    input: PathBuf,
    /// Another input of the same size (for the foreign-part check).
    other_input: PathBuf,
}

fn fasta(records: &[csv::StringRecord]) -> String {
    records.iter().map(|r| format!(">{}\n{}\n", &r[1], &r[4])).collect()
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        // Every 4th training domain keeps training quick; the test part is the real one.
        let train: Vec<_> = common::split_records(SPLIT, "train").into_iter().step_by(4).collect();
        common::write_split_part(&data, SPLIT, "train", &train);
        common::write_split_part(&data, SPLIT, "dev", &common::split_records(SPLIT, "dev"));
        let test = common::split_records(SPLIT, "test");
        common::write_split_part(&data, SPLIT, "test", &test);
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
            .args(["--min-precision", "0.5"])
            .output()
            .unwrap();
        assert!(out.status.success(), "train: {}", String::from_utf8_lossy(&out.stderr));

        let picked: Vec<_> = test.iter().step_by(29).take(39).cloned().collect();
        let text = format!(
            "{}>broken\nMKV*LL12\n{}>{}\n{}\n",
            fasta(&picked[..17]),
            fasta(&picked[17..]),
            &picked[3][1],
            &picked[3][4]
        );
        let input = root.join("input.fa");
        std::fs::write(&input, text).unwrap();
        let others: Vec<_> = test.iter().skip(5).step_by(29).take(41).cloned().collect();
        let other_input = root.join("other.fa");
        std::fs::write(&other_input, fasta(&others)).unwrap();
        Fixture {
            _dir: dir,
            root,
            classifier,
            cache,
            input,
            other_input,
        }
    })
}

fn annotate(input: &Path, extra: &[&str]) -> std::process::Output {
    let f = fixture();
    protfam()
        .arg("annotate")
        .arg("--classifier")
        .arg(&f.classifier)
        .arg("--cache")
        .arg(&f.cache)
        .arg("--lenient")
        .args(extra)
        .arg(input)
        .output()
        .unwrap()
}

/// Runs tasks `0..n` of `--shard K/n` into `dir`.
fn run_shards(input: &Path, dir: &Path, n: usize, extra: &[&str]) {
    for k in 0..n {
        let shard = format!("{k}/{n}");
        let mut args = vec!["--shard", &shard, "--part-dir", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = annotate(input, &args);
        assert!(
            out.status.success(),
            "task {shard}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn merge(dir: &Path, extra: &[&str]) -> std::process::Output {
    protfam()
        .args(["annotate", "merge"])
        .arg(dir)
        .arg("--lenient")
        .args(extra)
        .output()
        .unwrap()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = fixture().root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn merged_parts_equal_a_single_process_run_byte_for_byte() {
    let f = fixture();
    for format in ["tsv", "json"] {
        let single = annotate(&f.input, &["--format", format]);
        assert!(single.status.success(), "{}", String::from_utf8_lossy(&single.stderr));
        // 3 parts of 41 records (14, 14, 13 rows), and more tasks than records in a part-size sense.
        for n in [1, 3, 8] {
            let dir = fresh_dir(&format!("parts-{format}-{n}"));
            run_shards(&f.input, &dir, n, &[]);
            let merged = merge(&dir, &["--format", format]);
            assert!(merged.status.success(), "{}", String::from_utf8_lossy(&merged.stderr));
            assert_eq!(
                String::from_utf8_lossy(&merged.stdout),
                String::from_utf8_lossy(&single.stdout),
                "{format}, {n} parts"
            );
        }
    }
    // The rows really are in input order, the invalid and repeated records included.
    let single = annotate(&f.input, &[]);
    let text = String::from_utf8(single.stdout).unwrap();
    let ids: Vec<&str> = text.lines().skip(1).map(|l| l.split('\t').next().unwrap()).collect();
    let input = std::fs::read_to_string(&f.input).unwrap();
    let expected: Vec<&str> = input.lines().filter_map(|l| l.strip_prefix('>')).collect();
    assert_eq!(ids, expected);
    assert_eq!(ids.len(), 41);
    assert!(text.lines().nth(18).unwrap().contains("invalid record"));
    assert!(text.lines().last().unwrap().contains("duplicate id"));

    // `-o` of the merge writes the same bytes as `-o` of a single run.
    let dir = fresh_dir("parts-o");
    run_shards(&f.input, &dir, 4, &[]);
    let merged_path = f.root.join("merged.tsv");
    let single_path = f.root.join("single.tsv");
    assert!(merge(&dir, &["-o", merged_path.to_str().unwrap()]).status.success());
    assert!(annotate(&f.input, &["-o", single_path.to_str().unwrap()])
        .status
        .success());
    assert_eq!(
        std::fs::read(&merged_path).unwrap(),
        std::fs::read(&single_path).unwrap()
    );
}

#[test]
fn invalid_records_keep_their_exit_status_through_the_merge() {
    let f = fixture();
    let dir = fresh_dir("parts-status");
    run_shards(&f.input, &dir, 2, &[]);
    let strict = protfam().args(["annotate", "merge"]).arg(&dir).output().unwrap();
    assert_eq!(
        strict.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&strict.stderr)
    );
}

#[test]
fn a_missing_part_is_refused_and_named() {
    let f = fixture();
    let dir = fresh_dir("parts-missing");
    run_shards(&f.input, &dir, 4, &[]);
    std::fs::remove_file(dir.join("part-00002-of-00004.jsonl")).unwrap();
    let out_path = f.root.join("never.tsv");
    let out = merge(&dir, &["-o", out_path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("part-00002-of-00004.jsonl"), "{stderr}");
    assert!(stderr.contains("--array=2"), "says which task to re-run: {stderr}");
    assert!(!out_path.exists(), "nothing is written while a part is missing");
    // Re-running that task alone completes the run.
    let out = annotate(&f.input, &["--shard", "2/4", "--part-dir", dir.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(merge(&dir, &[]).status.success());
    // No part at all.
    let empty = fresh_dir("parts-empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = merge(&empty, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no annotation parts"));
}

#[test]
fn a_damaged_part_is_refused_and_named() {
    let f = fixture();
    let dir = fresh_dir("parts-damaged");
    run_shards(&f.input, &dir, 3, &[]);
    let part = dir.join("part-00001-of-00003.jsonl");
    let pristine = std::fs::read(&part).unwrap();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        // One score changed in a row.
        ("modified", {
            let text = String::from_utf8(pristine.clone()).unwrap();
            let at = text.find("\"score\":").unwrap() + "\"score\":".len();
            let mut bytes = text.into_bytes();
            bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
            bytes
        }),
        ("truncated", pristine[..pristine.len() - 40].to_vec()),
        ("no header", pristine[..20].to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in cases {
        std::fs::write(&part, &bytes).unwrap();
        let out = merge(&dir, &[]);
        assert!(!out.status.success(), "{what} part accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("part-00001-of-00003.jsonl") && stderr.contains("damaged"),
            "{what}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{what}: nothing written");
    }
    std::fs::write(&part, &pristine).unwrap();
    assert!(merge(&dir, &[]).status.success());
}

#[test]
fn parts_of_another_run_are_refused_and_named() {
    let f = fixture();
    // Another input.
    let dir = fresh_dir("parts-foreign");
    run_shards(&f.input, &dir, 2, &[]);
    let other = fresh_dir("parts-other-input");
    run_shards(&f.other_input, &other, 2, &[]);
    std::fs::copy(
        other.join("part-00001-of-00002.jsonl"),
        dir.join("part-00001-of-00002.jsonl"),
    )
    .unwrap();
    let out = merge(&dir, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("part-00001-of-00002.jsonl") && stderr.contains("another input"),
        "{stderr}"
    );

    // Other settings (--top-k).
    let dir = fresh_dir("parts-settings");
    run_shards(&f.input, &dir, 2, &[]);
    let out = annotate(
        &f.input,
        &["--shard", "1/2", "--part-dir", dir.to_str().unwrap(), "--top-k", "5"],
    );
    assert!(out.status.success());
    let out = merge(&dir, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("part-00001-of-00002.jsonl") && stderr.contains("other settings"),
        "{stderr}"
    );

    // A stale part of a run with another N in the same directory.
    let dir = fresh_dir("parts-mixed");
    run_shards(&f.input, &dir, 2, &[]);
    run_shards(&f.input, &dir, 3, &[]);
    let out = merge(&dir, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("different number of parts"), "{stderr}");
}

#[test]
fn shard_flags_are_checked() {
    let f = fixture();
    let out = annotate(&f.input, &["--shard", "3/3", "--part-dir", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 <= K < N"));
    let out = annotate(&f.input, &["--shard", "0/3"]);
    assert!(!out.status.success(), "--shard needs --part-dir");
}
