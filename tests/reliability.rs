//! Issue 15: no panic, no silent corruption, no destructive repair. Each test
//! builds the bad file a user or a crash can produce, runs the real binary on
//! it and checks the exact behaviour: exit status, a message naming the file
//! and record or tensor, nothing lost, inputs untouched.
//!
//! The embedder is `onehot64` (no weights) on the tiny split in
//! `tests/data/baseline/tiny`, so every test runs in seconds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

const MODEL: &str = "onehot64";
const SPLIT: &str = "clustered_split";

fn protfam() -> Command {
    Command::cargo_bin("protfam").unwrap()
}

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/baseline/tiny")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit status 1 or 2 (an error, not a crash: a panic exits 101).
fn assert_error(out: &Output) -> String {
    let err = format!("{}{}", stdout(out), stderr(out));
    assert!(!out.status.success(), "unexpected success: {err}");
    assert_ne!(out.status.code(), Some(101), "panic: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    err
}

fn assert_ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}{}", stdout(out), stderr(out));
    stdout(out)
}

/// Every file under `dir` with its bytes: a directory's state, to show it unchanged.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

fn train(data: &Path, cache: &Path, out: &Path, extra: &[&str]) -> Output {
    protfam()
        .args(["train", "--split", SPLIT, "--model", MODEL, "--no-calibrate"])
        .arg("--data")
        .arg(data)
        .arg("--cache")
        .arg(cache)
        .arg("--output")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn annotate(classifier: &Path, cache: &Path, input: &Path) -> Output {
    protfam()
        .args(["annotate", "--classifier"])
        .arg(classifier)
        .arg("--cache")
        .arg(cache)
        .arg(input)
        .output()
        .unwrap()
}

/// A FASTA file of the tiny split's test sequences.
fn queries(dir: &Path) -> (PathBuf, usize) {
    let mut text = String::new();
    let mut n = 0;
    let shard = tiny().join(SPLIT).join("test/data-00000-of-00001");
    for rec in csv::Reader::from_path(shard).unwrap().into_records() {
        let rec = rec.unwrap();
        text.push_str(&format!(">{}\n{}\n", &rec[1], &rec[4]));
        n += 1;
    }
    let path = dir.join("queries.fa");
    std::fs::write(&path, text).unwrap();
    (path, n)
}

/// Byte range of a tensor's data in a safetensors file.
fn tensor_range(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let offsets = &header[name]["data_offsets"];
    let (a, b) = (
        offsets[0].as_u64().unwrap() as usize,
        offsets[1].as_u64().unwrap() as usize,
    );
    8 + n + a..8 + n + b
}

struct Trained {
    dir: tempfile::TempDir,
    classifier: PathBuf,
    cache: PathBuf,
}

fn trained_knn() -> Trained {
    let dir = tempfile::tempdir().unwrap();
    let classifier = dir.path().join("knn");
    let cache = dir.path().join("cache");
    assert_ok(&train(&tiny(), &cache, &classifier, &[]));
    Trained { dir, classifier, cache }
}

/// Item 1: a huge finite training value (a user's own vectors, checksums valid)
/// made every query panic in the kNN search; now the search is exact.
#[test]
fn huge_finite_training_values_are_searched_without_panic() {
    let t = trained_knn();
    let weights = t.classifier.join("weights.safetensors");
    let file = protfam::cache::shard::ShardFile::open(&weights).unwrap();
    let meta: BTreeMap<String, String> = file
        .metadata()
        .iter()
        .filter(|(k, _)| !k.starts_with("sha256."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let shape = file.shape("train.vectors").unwrap().to_vec();
    let mut vectors: Vec<f32> = file
        .bytes("train.vectors", safetensors::Dtype::F32)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    vectors[0] = 3e38;
    vectors[shape[1] + 1] = -3e38;
    let labels: Vec<u32> = file
        .bytes("train.labels", safetensors::Dtype::U32)
        .unwrap()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    drop(file);
    use protfam::cache::shard::{write_shard, TensorData};
    write_shard(
        &weights,
        &[
            TensorData::u32("train.labels", vec![labels.len()], &labels),
            TensorData::f32("train.vectors", shape.clone(), &vectors),
        ],
        &meta,
    )
    .unwrap();
    let (input, n) = queries(t.dir.path());
    let out = annotate(&t.classifier, &t.cache, &input);
    let text = assert_ok(&out);
    // A header line, then one row per query.
    assert_eq!(text.lines().count(), n + 1, "{text}");
}

/// Item 2: zeroed labels or 4 KB of XOR-ed vectors gave every query a wrong
/// family with exit 0; now the checksum names the file and tensor.
#[test]
fn damaged_classifier_weights_are_an_error_naming_the_tensor() {
    let t = trained_knn();
    let weights = t.classifier.join("weights.safetensors");
    let good = std::fs::read(&weights).unwrap();
    let (input, _) = queries(t.dir.path());

    let mut zeroed = good.clone();
    let r = tensor_range(&zeroed, "train.labels");
    zeroed[r].fill(0);
    std::fs::write(&weights, &zeroed).unwrap();
    let err = assert_error(&annotate(&t.classifier, &t.cache, &input));
    assert!(
        err.contains("weights.safetensors") && err.contains("train.labels"),
        "{err}"
    );
    assert!(err.contains("checksum mismatch"), "{err}");
    let err = assert_error(&protfam().arg("info").arg(&t.classifier).output().unwrap());
    assert!(err.contains("train.labels"), "{err}");

    let mut xored = good.clone();
    let r = tensor_range(&xored, "train.vectors");
    for b in &mut xored[r.start..(r.start + 4096).min(r.end)] {
        *b ^= 0x5a;
    }
    std::fs::write(&weights, &xored).unwrap();
    let err = assert_error(&annotate(&t.classifier, &t.cache, &input));
    assert!(
        err.contains("train.vectors") && err.contains("checksum mismatch"),
        "{err}"
    );

    // Item 6: `info` exits non-zero on truncated or missing weights.
    std::fs::write(&weights, &good[..good.len() - 100]).unwrap();
    let err = assert_error(&protfam().arg("info").arg(&t.classifier).output().unwrap());
    assert!(err.contains("weights.safetensors"), "{err}");
    std::fs::remove_file(&weights).unwrap();
    let err = assert_error(&protfam().arg("info").arg(&t.classifier).output().unwrap());
    assert!(err.contains("weights.safetensors") && err.contains("missing"), "{err}");

    // An edited labels.json (the weights' own checksum of it) is caught too.
    std::fs::write(&weights, &good).unwrap();
    assert!(assert_ok(&protfam().arg("info").arg(&t.classifier).output().unwrap()).contains("integrity"));
    let labels = t.classifier.join("labels.json");
    let text = std::fs::read_to_string(&labels).unwrap();
    std::fs::write(&labels, text.replacen("PF", "PX", 1)).unwrap();
    let err = assert_error(&annotate(&t.classifier, &t.cache, &input));
    assert!(
        err.contains("labels.json") && err.contains("checksum mismatch"),
        "{err}"
    );
}

/// Item 3: a shard cut inside the last row's `sequence` was accepted everywhere.
#[test]
fn csv_row_cut_inside_its_sequence_is_an_error_naming_shard_line_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(&tiny(), &data);
    let shard = data.join(SPLIT).join("train/data-00000-of-00001");
    let text = std::fs::read_to_string(&shard).unwrap();
    let cut = &text[..text.trim_end().len() - 7];
    std::fs::write(&shard, cut).unwrap();
    let lines = cut.lines().count();
    let last_name = cut.lines().last().unwrap().split(',').nth(1).unwrap().to_string();
    let before = tree(&data);

    let err = assert_error(&protfam().args(["data", "check"]).arg(&shard).output().unwrap());
    assert!(err.contains(&format!("{}:{lines}", shard.display())), "{err}");
    assert!(
        err.contains(&last_name) && err.contains("de-gapped aligned_sequence"),
        "{err}"
    );
    let err = assert_error(
        &protfam()
            .args(["data", "stats", "--split", SPLIT, "--data"])
            .arg(&data)
            .output()
            .unwrap(),
    );
    assert!(err.contains(&last_name), "{err}");
    let err = assert_error(
        &protfam()
            .args([
                "embed", "--model", MODEL, "--split", SPLIT, "--parts", "train", "--data",
            ])
            .arg(&data)
            .arg("--cache")
            .arg(dir.path().join("cache"))
            .output()
            .unwrap(),
    );
    assert!(err.contains(&last_name), "{err}");
    assert_eq!(tree(&data), before, "inputs untouched");
}

fn embed_split(data: &Path, cache: &Path) -> Output {
    protfam()
        .args([
            "embed", "--model", MODEL, "--split", SPLIT, "--parts", "dev,test", "--data",
        ])
        .arg(data)
        .arg("--cache")
        .arg(cache)
        .output()
        .unwrap()
}

fn model_dir(cache: &Path) -> PathBuf {
    std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("spec.json").is_file())
        .unwrap()
}

/// Item 4: an edited `spec.json` made `cache verify` move every good shard to
/// `corrupt/`, and `embed` refused with a Rust struct dump.
#[test]
fn edited_spec_json_is_reported_and_no_shard_is_moved() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    assert_ok(&embed_split(&tiny(), &cache));
    let model = model_dir(&cache);
    let spec_path = model.join("spec.json");
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&spec).unwrap();
    value["weights_digest"] = serde_json::Value::String("0".repeat(64));
    std::fs::write(&spec_path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    let before = tree(&cache);

    let out = protfam()
        .args(["cache", "verify", "--cache"])
        .arg(&cache)
        .output()
        .unwrap();
    let err = assert_error(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("spec.json") && err.contains("Nothing was changed"),
        "{err}"
    );
    assert_eq!(tree(&cache), before, "nothing moved or rewritten");
    assert!(!model.join("corrupt").exists());

    let err = assert_error(&embed_split(&tiny(), &cache));
    assert!(err.contains("spec.json"), "{err}");
    assert!(!err.contains("EmbedderSpec {"), "no Debug dump: {err}");
    assert_eq!(tree(&cache), before);

    // Restored, everything is there and nothing is embedded again.
    std::fs::write(&spec_path, spec).unwrap();
    assert_ok(
        &protfam()
            .args(["cache", "verify", "--cache"])
            .arg(&cache)
            .output()
            .unwrap(),
    );
    let shards = std::fs::read_dir(model.join("shards")).unwrap().count();
    assert_ok(&embed_split(&tiny(), &cache));
    assert_eq!(std::fs::read_dir(model.join("shards")).unwrap().count(), shards);
}

/// Item 4: `cache merge` moved a damaged *source* shard aside; inputs must not change.
#[test]
fn cache_merge_leaves_a_damaged_source_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, into) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("into"));
    for c in [&a, &b] {
        assert_ok(&embed_split(&tiny(), c));
    }
    // Damage b's only shard: flip a byte of its vectors.
    let shard = std::fs::read_dir(model_dir(&b).join("shards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let mut bytes = std::fs::read(&shard).unwrap();
    let r = tensor_range(&bytes, "embeddings");
    bytes[r.start + 3] ^= 0xff;
    std::fs::write(&shard, &bytes).unwrap();
    let (before_a, before_b) = (tree(&a), tree(&b));
    let out = protfam()
        .args(["cache", "merge"])
        .arg(&a)
        .arg(&b)
        .arg("--into")
        .arg(&into)
        .output()
        .unwrap();
    let err = assert_error(&out);
    assert!(
        err.contains(&shard.display().to_string()) && err.contains("left in place"),
        "{err}"
    );
    assert_eq!(tree(&a), before_a);
    assert_eq!(tree(&b), before_b, "the damaged source is not modified");
    // a's vectors all arrived.
    let stats = |c: &Path| {
        let text = assert_ok(
            &protfam()
                .args(["cache", "stats", "--json", "--cache"])
                .arg(c)
                .output()
                .unwrap(),
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v[0]["vectors"].as_u64().unwrap()
    };
    assert_eq!(stats(&into), stats(&a));
}

/// Item 5: one rule for empty input: an error naming the file, nothing written.
#[test]
fn an_input_without_records_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.fa");
    std::fs::write(&empty, "").unwrap();
    let empty_gz = dir.path().join("empty.fa.gz");
    std::fs::write(&empty_gz, "").unwrap();
    let blank = dir.path().join("blank.fa");
    std::fs::write(&blank, "\n\n").unwrap();
    let out_file = dir.path().join("x.safetensors");
    for input in [&empty, &empty_gz, &blank] {
        let err = assert_error(
            &protfam()
                .args(["embed", "--model", MODEL, "--input"])
                .arg(input)
                .arg("-o")
                .arg(&out_file)
                .arg("--cache")
                .arg(dir.path().join("cache"))
                .output()
                .unwrap(),
        );
        assert!(
            err.contains(&input.display().to_string()) && err.contains("no FASTA record"),
            "{err}"
        );
        assert!(!out_file.exists());
        let err = assert_error(&protfam().args(["data", "check"]).arg(input).output().unwrap());
        assert!(
            err.contains(&input.display().to_string()) && err.contains("no record"),
            "{err}"
        );
        assert!(!err.contains("unknown format"), "{err}");
    }
    let t = trained_knn();
    let err = assert_error(&annotate(&t.classifier, &t.cache, &empty));
    assert!(err.contains("empty.fa") && err.contains("no record"), "{err}");
}

/// Item 6: a stray shard with another count names that shard, not the good ones.
#[test]
fn mixed_shard_counts_name_the_odd_shard() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(&tiny(), &data);
    let part = data.join(SPLIT).join("train");
    let text = std::fs::read_to_string(part.join("data-00000-of-00001")).unwrap();
    std::fs::write(part.join("data-00003-of-00007"), &text).unwrap();
    let err = assert_error(
        &protfam()
            .args(["data", "stats", "--split", SPLIT, "--data"])
            .arg(&data)
            .output()
            .unwrap(),
    );
    assert!(err.contains("data-00003-of-00007"), "{err}");
    assert!(!err.contains("data-00000-of-00001 say"), "{err}");
}

/// Item 6: a file where the cache's `shards/` should be is named, and the
/// cause is printed once.
#[test]
fn a_file_in_place_of_shards_dir_is_named_and_causes_are_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    assert_ok(&embed_split(&tiny(), &cache));
    let shards = model_dir(&cache).join("shards");
    std::fs::rename(&shards, dir.path().join("moved")).unwrap();
    std::fs::write(&shards, "not a directory").unwrap();
    let err = assert_error(&embed_split(&tiny(), &cache));
    assert!(err.contains(&format!("{}: is a file", shards.display())), "{err}");

    // A cause that is also in the message appears once (was "Not a directory
    // (os error 20): Not a directory (os error 20)").
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = assert_error(
        &protfam()
            .args(["cache", "stats", "--cache"])
            .arg(&file)
            .output()
            .unwrap(),
    );
    assert_eq!(err.matches("(os error 20)").count(), 1, "{err}");
}

/// Item 6: a classifier trained with a relative `--data` records an absolute source.
#[test]
fn a_relative_data_path_is_recorded_absolute() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&tiny(), &dir.path().join("small"));
    let out = protfam()
        .current_dir(dir.path())
        .args([
            "train",
            "--split",
            SPLIT,
            "--model",
            MODEL,
            "--no-calibrate",
            "--data",
            "small",
        ])
        .args(["--cache", "cache", "--output", "knn"])
        .output()
        .unwrap();
    assert_ok(&out);
    let info = assert_ok(&protfam().arg("info").arg(dir.path().join("knn")).output().unwrap());
    let root = std::fs::canonicalize(dir.path().join("small")).unwrap();
    assert!(info.contains(&format!("{}/{SPLIT}/train", root.display())), "{info}");
    // The message for a relative root that does not exist says where it was looked for.
    let err = assert_error(
        &protfam()
            .current_dir(dir.path())
            .args(["data", "stats", "--split", SPLIT, "--data", "nowhere"])
            .output()
            .unwrap(),
    );
    let looked = std::fs::canonicalize(dir.path()).unwrap().join("nowhere");
    assert!(err.contains(&looked.display().to_string()), "{err}");
}

/// Item 6: a full disk under the output names the output file, leaves no
/// partial file, and a rerun with space succeeds. Needs root to mount a tmpfs.
#[test]
fn a_full_disk_names_the_output_and_leaves_no_partial_file() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("full");
    std::fs::create_dir(&mnt).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs failed");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let output = mnt.join("vectors.safetensors");
    let (input, _) = queries(dir.path());
    let out = protfam()
        .args(["embed", "--model", "onehot", "--input"])
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .arg("--cache")
        .arg(dir.path().join("cache"))
        .output()
        .unwrap();
    let err = assert_error(&out);
    assert!(err.contains(&output.display().to_string()), "{err}");
    assert!(err.contains("No space left"), "{err}");
    assert!(!err.contains("shard"), "the output is not a cache shard: {err}");
    assert_eq!(
        std::fs::read_dir(&mnt).unwrap().count(),
        0,
        "no partial or temporary file"
    );
    // The cache (elsewhere) kept the work: the rerun embeds nothing.
    let out = protfam()
        .args(["embed", "--model", "onehot", "--input"])
        .arg(&input)
        .arg("-o")
        .arg(dir.path().join("v.safetensors"))
        .arg("--cache")
        .arg(dir.path().join("cache"))
        .arg("--summary-json")
        .arg(dir.path().join("summary.json"))
        .output()
        .unwrap();
    assert_ok(&out);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary[0]["embedded"], 0, "{summary}");
}

/// Item 7: the oddities a user would not want silently accepted.
#[test]
fn nucleotides_bad_ids_huge_k_duplicates_and_backup_files() {
    let dir = tempfile::tempdir().unwrap();
    // Nucleotide FASTA: a record error naming the record.
    let dna = dir.path().join("dna.fa");
    std::fs::write(&dna, ">gene1\nATGGCGTACGTTAGCATCGATCGGCTA\n").unwrap();
    let err = assert_error(&protfam().args(["data", "check"]).arg(&dna).output().unwrap());
    assert!(err.contains("gene1") && err.contains("nucleotide"), "{err}");
    // A non-UTF-8 id: an error naming the line, not a U+FFFD id.
    let latin1 = dir.path().join("latin1.fa");
    std::fs::write(&latin1, b">ok\nMKV\n>caf\xe9 desc\nMKVL\n").unwrap();
    let err = assert_error(&protfam().args(["data", "check"]).arg(&latin1).output().unwrap());
    assert!(err.contains("latin1.fa:3") && err.contains("not valid UTF-8"), "{err}");
    // k larger than the training set.
    let err = assert_error(&train(
        &tiny(),
        &dir.path().join("cache"),
        &dir.path().join("k"),
        &["--k", "100000"],
    ));
    assert!(err.contains("k = 100000") && err.contains("training vectors"), "{err}");
    assert!(!dir.path().join("k").join("weights.safetensors").exists());
    // --reject-duplicates on CSV input.
    let csv_path = dir.path().join("dup.csv");
    std::fs::write(
        &csv_path,
        "family_id,sequence_name,family_accession,aligned_sequence,sequence\n\
         F,n1/1-3,PF1,MKV,MKV\nF,n1/1-3,PF1,MKL,MKL\n",
    )
    .unwrap();
    assert_ok(&protfam().args(["data", "check"]).arg(&csv_path).output().unwrap());
    let err = assert_error(
        &protfam()
            .args(["data", "check", "--reject-duplicates"])
            .arg(&csv_path)
            .output()
            .unwrap(),
    );
    assert!(err.contains("n1/1-3") && err.contains("duplicate"), "{err}");
    // An editor backup next to the shards is ignored with a warning.
    let data = dir.path().join("data");
    copy_dir(&tiny(), &data);
    let part = data.join(SPLIT).join("train");
    std::fs::copy(part.join("data-00000-of-00001"), part.join("data-00000-of-00001~")).unwrap();
    let out = protfam()
        .args(["data", "stats", "--split", SPLIT, "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(stderr(&out).contains("data-00000-of-00001~"), "{}", stderr(&out));
}
