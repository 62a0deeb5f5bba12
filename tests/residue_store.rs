//! The residue store survives kill -9 while writing: a child process (this
//! test binary re-run in writer mode) is killed after some shards are on
//! disk; a restart reuses them, embeds only the missing sequences, and ends
//! with exactly the rows of an uninterrupted build.

use std::path::Path;
use std::time::{Duration, Instant};

use protfam::embedder::{EmbedError, Embedder, EmbedderSpec, Pooling, ResidueMatrix};
use protfam::io::{Family, Record};
use protfam::residue::{ResidueStore, StoreConfig};

/// A fixed position-and-letter encoder that takes its time, so the writer is
/// reliably killed mid-way.
struct SlowEncoder(EmbedderSpec);

impl SlowEncoder {
    fn new() -> Self {
        SlowEncoder(EmbedderSpec {
            name: "slow-letters".into(),
            architecture: "onehot".into(),
            weights_digest: "none".into(),
            dim: 16,
            layer: None,
            pooling: Pooling::Mean,
            max_residues: None,
            dtype: "f32".into(),
        })
    }
}

impl Embedder for SlowEncoder {
    fn spec(&self) -> &EmbedderSpec {
        &self.0
    }
    fn embed_residues(&self, batch: &[&str]) -> Result<Vec<ResidueMatrix>, EmbedError> {
        std::thread::sleep(Duration::from_millis(40));
        Ok(batch
            .iter()
            .map(|s| ResidueMatrix {
                len: s.len(),
                dim: 16,
                data: s
                    .bytes()
                    .enumerate()
                    .flat_map(|(i, b)| (0..16).map(move |d| (((b as usize) * 31 + i * 7 + d * 13) % 23) as f32 - 11.0))
                    .collect(),
            })
            .collect())
    }
    fn default_batch_tokens(&self) -> usize {
        64
    }
}

fn records() -> Vec<Record> {
    let letters = b"ACDEFGHIKLMNPQRSTVWYX";
    (0..60)
        .map(|i| {
            let len = 20 + (i * 7) % 30;
            let seq: String = (0..len)
                .map(|j| letters[(i * 5 + j * 3) % letters.len()] as char)
                .collect();
            let mut r = Record::new(format!("seq{i}"), seq);
            r.family = Some(Family::new(format!("fam{}", i % 4), &format!("PF0000{}", i % 4)));
            r
        })
        .collect()
}

const CONFIG: StoreConfig = StoreConfig {
    stride: 2,
    shard_sequences: 3,
    batch_tokens: Some(64),
};

fn count_shards(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("shard-"))
                .count()
        })
        .unwrap_or(0)
}

/// Writer mode: only runs when the parent test sets the variable.
#[test]
#[ignore = "helper: run by kill_during_write_then_resume"]
fn child_writer() {
    let Ok(root) = std::env::var("RESIDUE_STORE_CHILD_ROOT") else {
        return;
    };
    ResidueStore::build_or_open(Path::new(&root), &SlowEncoder::new(), &records(), &CONFIG).unwrap();
}

#[test]
fn kill_during_write_then_resume() {
    let root = tempfile::tempdir().unwrap();
    let recs = records();
    let encoder = SlowEncoder::new();
    let store_dir = ResidueStore::dir_for(root.path(), encoder.spec(), &recs, CONFIG.stride);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--ignored", "--nocapture"])
        .env("RESIDUE_STORE_CHILD_ROOT", root.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_shards(&store_dir) < 4 {
        assert!(Instant::now() < deadline, "writer produced no shards");
        assert!(
            child.try_wait().unwrap().is_none(),
            "writer finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let written_before = count_shards(&store_dir);
    let total_shards = recs.len().div_ceil(CONFIG.shard_sequences);
    assert!(written_before < total_shards, "killed before the end");
    assert!(
        !store_dir.join("manifest.json").exists(),
        "an interrupted store is not complete"
    );
    assert!(ResidueStore::open(&store_dir).is_err());

    let (resumed, stats) = ResidueStore::build_or_open(root.path(), &encoder, &recs, &CONFIG).unwrap();
    assert!(stats.shards_reused >= 4);
    assert_eq!(stats.shards_reused + stats.shards_written, total_shards);
    assert_eq!(
        stats.sequences_embedded,
        recs.len() - stats.shards_reused * CONFIG.shard_sequences
    );
    resumed.verify().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&store_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files of the killed writer are cleaned up"
    );

    // Same rows as an uninterrupted build.
    let fresh_root = tempfile::tempdir().unwrap();
    let (fresh, _) = ResidueStore::build_or_open(fresh_root.path(), &encoder, &recs, &CONFIG).unwrap();
    assert_eq!(fresh.n_rows(), resumed.n_rows());
    assert_eq!(fresh.row_sequence, resumed.row_sequence);
    assert_eq!(fresh.row_position, resumed.row_position);
    let ids = |s: &ResidueStore| s.sequences.iter().map(|q| q.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&fresh), ids(&resumed));
    for (a, b) in fresh.blocks(50).into_iter().zip(resumed.blocks(50)) {
        assert_eq!(a, b);
        assert_eq!(fresh.rows_f32(a.0, a.1, false), resumed.rows_f32(b.0, b.1, false));
    }
}
