//! Shared helpers of the classifier integration tests: the bundled Pfam split and
//! a simple real embedding of it (amino-acid and dipeptide composition).

#![allow(dead_code)]

use std::path::PathBuf;

use protfam::embedder::{EmbedderSpec, Pooling};
use protfam::experiment::{ExperimentError, VectorSource};
use protfam::io::pfam_csv::read_part;
use protfam::vectors::VectorSet;

/// The bundled dataset: `$PROTFAM_DATA`, else `data/pfam35-uniprot20k` or
/// `../shared/data/pfam35-uniprot20k` of the checkout (the library's own rule).
pub fn data_root() -> PathBuf {
    if let Ok(p) = std::env::var("PROTFAM_DATA") {
        return PathBuf::from(p);
    }
    let checkout = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    ["data/pfam35-uniprot20k", "../shared/data/pfam35-uniprot20k"]
        .iter()
        .map(|p| checkout.join(p))
        .find(|p| p.is_dir())
        .expect("the bundled dataset: run `make data` or set PROTFAM_DATA")
}

/// Every CSV record of the bundled `<split>/<part>`, in shard order.
pub fn split_records(split: &str, part: &str) -> Vec<csv::StringRecord> {
    split_records_in(&data_root(), split, part)
}

/// Every CSV record of `<root>/<split>/<part>`, in shard order.
pub fn split_records_in(root: &std::path::Path, split: &str, part: &str) -> Vec<csv::StringRecord> {
    let dir = root.join(split).join(part);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("data-"))
        .collect();
    paths.sort();
    paths
        .iter()
        .flat_map(|p| csv::Reader::from_path(p).unwrap().into_records().map(|r| r.unwrap()))
        .collect()
}

/// Writes `rows` (Pfam split CSV records) as the one shard of `<data>/<split>/<part>/`.
pub fn write_split_part<'a>(
    data: &std::path::Path,
    split: &str,
    part: &str,
    rows: impl IntoIterator<Item = &'a csv::StringRecord>,
) {
    let dir = data.join(split).join(part);
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = csv::Writer::from_path(dir.join("data-00000-of-00001")).unwrap();
    w.write_record([
        "family_id",
        "sequence_name",
        "family_accession",
        "aligned_sequence",
        "sequence",
    ])
    .unwrap();
    for r in rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
}

/// `id -> predicted_accession` of a predictions CSV that `evaluate` writes.
pub fn predicted_accessions(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .deserialize::<std::collections::BTreeMap<String, String>>()
        .map(|r| {
            let r = r.unwrap();
            (r["id"].clone(), r["predicted_accession"].clone())
        })
        .collect()
}

/// Runs a CLI command that must succeed; its stdout and stderr (stderr shown when it fails).
pub fn run_ok(cmd: &mut assert_cmd::Command, what: &str) -> (String, String) {
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    (stdout, stderr)
}

const AMINO: &[u8] = b"ACDEFGHIKLMNPQRSTVWY";

/// Amino-acid (20) and dipeptide (400) composition of a sequence: a real, if
/// weak, fixed-length protein embedding.
pub fn composition(seq: &str) -> Vec<f32> {
    let idx = |c: u8| AMINO.iter().position(|&a| a == c);
    let mut v = vec![0f32; 420];
    let s = seq.as_bytes();
    for &c in s {
        if let Some(i) = idx(c) {
            v[i] += 1.0 / s.len() as f32;
        }
    }
    let pairs = s.len().saturating_sub(1).max(1) as f32;
    for w in s.windows(2) {
        if let (Some(a), Some(b)) = (idx(w[0]), idx(w[1])) {
            v[20 + a * 20 + b] += 1.0 / pairs;
        }
    }
    v
}

pub fn composition_spec() -> EmbedderSpec {
    EmbedderSpec {
        name: "composition".into(),
        architecture: "composition".into(),
        weights_digest: "none".into(),
        dim: 420,
        layer: None,
        pooling: Pooling::Mean,
        max_residues: None,
        dtype: "f32".into(),
    }
}

pub fn part_vectors(split: &str, part: &str) -> VectorSet {
    let mut set = VectorSet {
        dim: 420,
        ..Default::default()
    };
    for r in read_part(&data_root(), split, part).expect("bundled split") {
        let r = r.expect("valid record");
        set.push(r.id.clone(), r.family.clone(), &composition(&r.sequence));
    }
    set
}

/// Composition vectors of the bundled split's parts.
pub struct CompositionSource {
    pub split: String,
}

impl VectorSource for CompositionSource {
    fn vectors(&mut self, model: &str, part: &str) -> Result<(EmbedderSpec, VectorSet), ExperimentError> {
        assert_eq!(model, "composition");
        Ok((composition_spec(), part_vectors(&self.split, part)))
    }
}
