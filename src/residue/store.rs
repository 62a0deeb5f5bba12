//! The per-residue embedding store: every kept residue of every sequence of a
//! dataset, as f16 rows on disk, memory-mapped at query time.
//!
//! # Layout
//! `<root>/<key>/` where `key = <EmbedderSpec::key()>-s<stride>-<data digest[..12]>`
//! and the data digest is SHA-256 over the ordered `(id, family, sequence)` of
//! the input, so a changed model, stride or dataset never serves stale rows.
//! The directory holds
//! - `plan.json`: spec, stride, digest, sequence count and sequences per shard
//!   (written first; a restart reuses it);
//! - `shard-NNNNN.safetensors`, one per run of `shard_sequences` consecutive
//!   input sequences, with tensors `residues` (F16, rows x dim), `positions`
//!   (U32, the 0-based residue position of each row), `inv_norms` (F32, one
//!   over each row's L2 norm, 0 for a zero row), `rows_per_sequence` and
//!   `lengths` (U32, per sequence), and metadata `ids` / `families` (JSON);
//!   readable with Python's `safetensors.numpy.load_file`;
//! - `manifest.json`: the plan plus every shard's row count and SHA-256,
//!   written last: its presence means the store is complete.
//!
//! Every tensor's SHA-256 is in its shard's metadata (`sha256.<tensor>`, as in
//! the embedding cache) and is recomputed whenever a store is opened, so a
//! damaged shard is an error naming the file and tensor, never silently wrong
//! hits. (Stores written before these checksums are checked against the
//! manifest's whole-file SHA-256 instead.)
//!
//! Each file is written to a temporary name and renamed into place, so a
//! writer killed at any moment (kill -9) leaves only whole shards; a restart
//! embeds only the sequences of missing shards. A shard that fails to parse
//! or holds other sequences than planned is reported and rebuilt.
//!
//! # Which residues are kept
//! Positions `0, s, 2s, ...` (stride `s`) whose residue is a standard amino
//! acid letter: `X` and the other ambiguous letters carry no family signal of
//! their own and would otherwise match each other across families.

use crate::file_error::FileError;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use half::f16;
use safetensors::Dtype;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ResidueError;
use crate::cache::shard::{write_shard, ShardFile, TensorData};
use crate::embedder::{Embedder, EmbedderSpec, ResidueMatrix};
use crate::io::{Family, Record};
use crate::pipeline::WorkShard;

const FORMAT: &str = "protfam-residue-store/1";

/// Whether a residue letter is informative enough to be stored or queried.
pub fn is_informative(residue: u8) -> bool {
    b"ACDEFGHIKLMNPQRSTVWY".contains(&residue.to_ascii_uppercase())
}

/// The positions of `sequence` that a stride keeps (see the module docs).
pub fn kept_positions(sequence: &str, stride: usize) -> Vec<u32> {
    sequence
        .bytes()
        .enumerate()
        .filter(|(i, b)| i % stride.max(1) == 0 && is_informative(*b))
        .map(|(i, _)| i as u32)
        .collect()
}

/// SHA-256 over the ordered ids, families and sequences of a dataset.
pub fn data_digest(records: &[Record]) -> String {
    let mut hasher = Sha256::new();
    for r in records {
        hasher.update(r.id.as_bytes());
        hasher.update([0]);
        if let Some(f) = &r.family {
            hasher.update(f.accession.as_bytes());
            hasher.update([1]);
            hasher.update(f.family_id.as_bytes());
        }
        hasher.update([0]);
        hasher.update(r.sequence.as_bytes());
        hasher.update([b'\n']);
    }
    hex::encode(hasher.finalize())
}

/// How a store is built.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Keep every `stride`-th residue (1 keeps all).
    pub stride: usize,
    /// Input sequences per shard: the unit of atomic writing and of resumption.
    pub shard_sequences: usize,
    /// Residues per embedder call; `None` uses the embedder's default.
    pub batch_tokens: Option<usize>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            stride: 2,
            shard_sequences: 512,
            batch_tokens: None,
        }
    }
}

/// What `plan.json` records; a restart must find the same plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorePlan {
    pub format: String,
    pub spec: EmbedderSpec,
    pub stride: usize,
    pub data_digest: String,
    pub n_sequences: usize,
    pub shard_sequences: usize,
}

impl StorePlan {
    pub fn n_shards(&self) -> usize {
        self.n_sequences.div_ceil(self.shard_sequences.max(1))
    }

    /// Directory name of the store under its root.
    pub fn key(&self) -> String {
        format!("{}-s{}-{}", self.spec.key(), self.stride, &self.data_digest[..12])
    }
}

/// One finished shard as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub n_sequences: usize,
    pub n_rows: usize,
    pub sha256: String,
}

/// `manifest.json`: present only for a complete store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(flatten)]
    pub plan: StorePlan,
    pub n_rows: usize,
    pub shards: Vec<ShardInfo>,
}

/// One stored sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSequence {
    pub id: String,
    pub family: Option<Family>,
    /// Full length in residues (before the stride).
    pub len: usize,
    /// Global index of its first row and number of rows.
    pub first_row: usize,
    pub n_rows: usize,
}

struct ShardMap {
    file: ShardFile,
    first_row: usize,
    n_rows: usize,
}

/// Summary of a build: what was reused and what was embedded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildStats {
    pub shards_reused: usize,
    pub shards_written: usize,
    pub sequences_embedded: usize,
    pub residues_embedded: usize,
    pub seconds: f64,
}

/// A complete store, memory-mapped.
pub struct ResidueStore {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub sequences: Vec<StoredSequence>,
    /// Per row: index into `sequences`.
    pub row_sequence: Vec<u32>,
    /// Per row: residue position within its sequence.
    pub row_position: Vec<u32>,
    /// Per row: 1 / L2 norm (0 for a zero row).
    pub inv_norms: Vec<f32>,
    shards: Vec<ShardMap>,
}

/// What one call of the store builder covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BuildScope {
    /// Every shard, then the manifest.
    Whole,
    /// Shards `K mod N` only, no manifest (one task of an array).
    Part(WorkShard),
    /// No embedding: every shard must be there; then the manifest.
    Merge,
}

fn shard_name(i: usize) -> String {
    format!("shard-{i:05}.safetensors")
}

/// Parsed contents of one shard (everything except the residue rows, which
/// stay in the memory map).
struct ShardContents {
    ids: Vec<String>,
    families: Vec<Option<Family>>,
    lengths: Vec<u32>,
    rows_per_sequence: Vec<u32>,
    positions: Vec<u32>,
    inv_norms: Vec<f32>,
    n_rows: usize,
    dim: usize,
}

/// Opens a shard and checks its tensor checksums. A shard without them (a store
/// written before they existed) is accepted only when `whole_file_sha256`, the
/// manifest's checksum of the whole file, is given and matches.
fn open_shard(path: &Path, whole_file_sha256: Option<&str>) -> Result<ShardFile, ResidueError> {
    let file = ShardFile::open(path)?;
    if file.has_checksums() {
        file.verify()?;
    } else {
        match whole_file_sha256 {
            None => return Err(FileError::invalid(path, "shard without checksums (from an older protfam)").into()),
            Some(expected) if sha256_file(path)? != expected => {
                return Err(FileError::invalid(
                    path,
                    "checksum mismatch with manifest.json: the shard was modified or corrupted \
                     (delete the store directory to rebuild it)",
                )
                .into())
            }
            Some(_) => {}
        }
    }
    Ok(file)
}

fn parse_shard(file: &ShardFile) -> Result<ShardContents, ResidueError> {
    let path = file.path();
    let (n_rows, dim) = match file.shape("residues")? {
        [rows, dim] => (*rows, *dim),
        _ => return Err(FileError::invalid(path, "tensor residues must be F16 rows x dim").into()),
    };
    // Checks the dtype once; `rows_f32` relies on it.
    file.bytes("residues", Dtype::F16)?;
    let positions = file.u32_values("positions")?;
    let inv_norms = file.f32_values("inv_norms")?;
    let rows_per_sequence = file.u32_values("rows_per_sequence")?;
    let lengths = file.u32_values("lengths")?;
    let info = file.metadata();
    let ids: Vec<String> = serde_json::from_str(info.get("ids").map(String::as_str).unwrap_or("null"))
        .map_err(FileError::unreadable(path, "metadata ids"))?;
    let families: Vec<Option<Family>> =
        serde_json::from_str(info.get("families").map(String::as_str).unwrap_or("null"))
            .map_err(FileError::unreadable(path, "metadata families"))?;
    let total: usize = rows_per_sequence.iter().map(|&r| r as usize).sum();
    if positions.len() != n_rows
        || inv_norms.len() != n_rows
        || total != n_rows
        || ids.len() != rows_per_sequence.len()
        || families.len() != ids.len()
        || lengths.len() != ids.len()
    {
        return Err(FileError::invalid(path, "inconsistent tensor sizes (truncated or corrupt shard)").into());
    }
    Ok(ShardContents {
        ids,
        families,
        lengths,
        rows_per_sequence,
        positions,
        inv_norms,
        n_rows,
        dim,
    })
}

/// Embeds `records` and writes them as one checksummed shard at `path`
/// ([`write_shard`]: atomic, and the same bytes for the same input whichever
/// process writes it, so shards built by array tasks equal a whole build's).
/// Returns the shard's row count.
fn write_embedded_shard(
    path: &Path,
    embedder: &dyn Embedder,
    records: &[Record],
    stride: usize,
    batch_tokens: usize,
    progress: &indicatif::ProgressBar,
) -> Result<usize, ResidueError> {
    let dim = embedder.spec().dim;
    let mut matrices: Vec<Option<ResidueMatrix>> = vec![None; records.len()];
    // Length-sorted batches up to the token budget; results go back to input order.
    let lengths: Vec<usize> = records.iter().map(|r| r.sequence.len()).collect();
    for members in crate::embedder::length_sorted_batches(&lengths, batch_tokens) {
        let batch: Vec<&str> = members.iter().map(|&i| records[i].sequence.as_str()).collect();
        let out = embedder.embed_residues(&batch).map_err(ResidueError::Embed)?;
        if out.len() != batch.len() {
            return Err(ResidueError::Embed(crate::embedder::EmbedError::Model {
                model: embedder.spec().name.clone(),
                message: format!("returned {} matrices for {} sequences", out.len(), batch.len()),
            }));
        }
        for (&i, m) in members.iter().zip(out) {
            matrices[i] = Some(m);
        }
        progress.inc(members.len() as u64);
    }
    let mut residues: Vec<f16> = Vec::new();
    let mut positions = Vec::new();
    let mut inv_norms: Vec<f32> = Vec::new();
    let mut rows_per_sequence = Vec::new();
    let mut lengths = Vec::new();
    for (record, matrix) in records.iter().zip(matrices) {
        let matrix = matrix.expect("every sequence embedded");
        if matrix.len != record.sequence.len() || matrix.dim != dim {
            return Err(ResidueError::Embed(crate::embedder::EmbedError::Record {
                id: record.id.clone(),
                message: format!(
                    "embedder returned {}x{} for a sequence of {} residues (dim {dim})",
                    matrix.len,
                    matrix.dim,
                    record.sequence.len()
                ),
            }));
        }
        let kept = kept_positions(&record.sequence, stride);
        for &p in &kept {
            let row = matrix.row(p as usize);
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            inv_norms.push(if norm > 0.0 { 1.0 / norm } else { 0.0 });
            residues.extend(row.iter().map(|&v| f16::from_f32(v)));
        }
        rows_per_sequence.push(kept.len() as u32);
        lengths.push(record.sequence.len() as u32);
        positions.extend(kept);
    }
    let (n_rows, n_seq) = (positions.len(), records.len());
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let families: Vec<Option<&Family>> = records.iter().map(|r| r.family.as_ref()).collect();
    let metadata: BTreeMap<String, String> = [
        ("ids".to_string(), serde_json::to_string(&ids).expect("ids serialise")),
        (
            "families".to_string(),
            serde_json::to_string(&families).expect("families serialise"),
        ),
        ("stride".to_string(), stride.to_string()),
    ]
    .into_iter()
    .collect();
    // The 4-byte tensors first, so that every tensor stays aligned in the map.
    let tensors = [
        TensorData::u32("positions", vec![n_rows], &positions),
        TensorData::f32("inv_norms", vec![n_rows], &inv_norms),
        TensorData::u32("rows_per_sequence", vec![n_seq], &rows_per_sequence),
        TensorData::u32("lengths", vec![n_seq], &lengths),
        TensorData::f16("residues", vec![n_rows, dim], &residues),
    ];
    write_shard(path, &tensors, &metadata)?;
    Ok(n_rows)
}

pub(crate) fn sha256_file(path: &Path) -> Result<String, ResidueError> {
    let mut file = File::open(path).map_err(FileError::io(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(FileError::io(path))?;
    Ok(hex::encode(hasher.finalize()))
}

impl ResidueStore {
    /// The directory a store for these inputs lives in (whether or not it exists yet).
    pub fn dir_for(root: &Path, spec: &EmbedderSpec, records: &[Record], stride: usize) -> PathBuf {
        let plan = StorePlan {
            format: FORMAT.into(),
            spec: spec.clone(),
            stride,
            data_digest: data_digest(records),
            n_sequences: records.len(),
            shard_sequences: 1,
        };
        root.join(plan.key())
    }

    /// Opens the complete store for these inputs under `root`, building (or
    /// finishing) it first where needed. Finished shards of an interrupted
    /// build are reused; only the sequences of missing shards are embedded.
    pub fn build_or_open(
        root: &Path,
        embedder: &dyn Embedder,
        records: &[Record],
        config: &StoreConfig,
    ) -> Result<(ResidueStore, BuildStats), ResidueError> {
        let (store, stats) = Self::build(root, embedder, records, config, BuildScope::Whole)?;
        Ok((store.expect("a whole build opens the store"), stats))
    }

    /// One task of a job array: builds (or reuses) only the store shards whose
    /// index is `K` modulo `N` (shard `i` holds input sequences
    /// `i*shard_sequences..`), and writes no manifest. Tasks share the store
    /// directory; [`ResidueStore::merge_parts`] completes the store afterwards.
    pub fn build_part(
        root: &Path,
        embedder: &dyn Embedder,
        records: &[Record],
        config: &StoreConfig,
        part: WorkShard,
    ) -> Result<BuildStats, ResidueError> {
        Self::build(root, embedder, records, config, BuildScope::Part(part)).map(|(_, stats)| stats)
    }

    /// The merge step after [`ResidueStore::build_part`] tasks: checks that
    /// every store shard is present and holds the planned sequences, writes the
    /// manifest and opens the store. Embeds nothing: a missing or damaged shard
    /// is an error naming it (re-run the task with `K = shard index mod N`).
    /// The result is byte for byte the store one [`ResidueStore::build_or_open`] writes.
    pub fn merge_parts(
        root: &Path,
        embedder: &dyn Embedder,
        records: &[Record],
        config: &StoreConfig,
    ) -> Result<(ResidueStore, BuildStats), ResidueError> {
        let (store, stats) = Self::build(root, embedder, records, config, BuildScope::Merge)?;
        Ok((store.expect("a merge opens the store"), stats))
    }

    fn build(
        root: &Path,
        embedder: &dyn Embedder,
        records: &[Record],
        config: &StoreConfig,
        scope: BuildScope,
    ) -> Result<(Option<ResidueStore>, BuildStats), ResidueError> {
        if config.stride == 0 || config.shard_sequences == 0 {
            return Err(ResidueError::InvalidParams(
                "stride and shard_sequences must be at least 1".into(),
            ));
        }
        let started = std::time::Instant::now();
        let mut plan = StorePlan {
            format: FORMAT.into(),
            spec: embedder.spec().clone(),
            stride: config.stride,
            data_digest: data_digest(records),
            n_sequences: records.len(),
            shard_sequences: config.shard_sequences,
        };
        let dir = root.join(plan.key());
        let mut stats = BuildStats::default();
        if dir.join("manifest.json").exists() {
            let store = ResidueStore::open(&dir)?;
            stats.shards_reused = store.manifest.shards.len();
            return Ok((Some(store), stats));
        }
        std::fs::create_dir_all(&dir).map_err(FileError::io(&dir))?;
        crate::atomic::remove_stale_temp_files(&dir).map_err(FileError::io(&dir))?;
        let plan_path = dir.join("plan.json");
        if plan_path.exists() {
            let text = std::fs::read_to_string(&plan_path).map_err(FileError::io(&plan_path))?;
            match serde_json::from_str::<StorePlan>(&text) {
                // Keep the earlier shard size so finished shards stay valid.
                Ok(old)
                    if old.spec == plan.spec && old.data_digest == plan.data_digest && old.stride == plan.stride =>
                {
                    plan.shard_sequences = old.shard_sequences
                }
                _ if scope == BuildScope::Merge => {
                    return Err(FileError::invalid(&plan_path, "unreadable or foreign plan: nothing to merge").into())
                }
                _ => tracing::warn!("{}: unreadable or foreign plan, starting over", plan_path.display()),
            }
        } else if scope == BuildScope::Merge {
            return Err(FileError::invalid(&plan_path, "missing: no `--shard K/N` task has started this store").into());
        }
        if scope != BuildScope::Merge {
            // Tasks of an array write the same plan; each write is atomic.
            let plan_json = serde_json::to_vec_pretty(&plan).expect("plan serialises");
            crate::atomic::write_atomic(&plan_path, |w| w.write_all(&plan_json)).map_err(FileError::io(&plan_path))?;
        }

        let batch_tokens = config
            .batch_tokens
            .unwrap_or_else(|| embedder.default_batch_tokens())
            .max(1);
        let progress = crate::progress::bar(records.len() as u64, "sequences");
        let mut shards = Vec::new();
        let mut unusable = Vec::new();
        for (i, chunk) in records.chunks(plan.shard_sequences).enumerate() {
            if let BuildScope::Part(part) = scope {
                if i % part.count != part.index {
                    continue;
                }
            }
            let path = dir.join(shard_name(i));
            if path.exists() {
                match Self::check_shard(&path, chunk) {
                    Ok(n_rows) => {
                        stats.shards_reused += 1;
                        progress.inc(chunk.len() as u64);
                        shards.push(ShardInfo {
                            file: shard_name(i),
                            n_sequences: chunk.len(),
                            n_rows,
                            sha256: String::new(),
                        });
                        continue;
                    }
                    Err(e) if scope == BuildScope::Merge => {
                        unusable.push(format!("{e}"));
                        continue;
                    }
                    Err(e) => tracing::warn!("{e}; re-embedding this shard"),
                }
            } else if scope == BuildScope::Merge {
                unusable.push(format!("{}: missing", path.display()));
                continue;
            }
            let n_rows = write_embedded_shard(&path, embedder, chunk, plan.stride, batch_tokens, &progress)?;
            stats.shards_written += 1;
            stats.sequences_embedded += chunk.len();
            stats.residues_embedded += chunk.iter().map(|r| r.sequence.len()).sum::<usize>();
            shards.push(ShardInfo {
                file: shard_name(i),
                n_sequences: chunk.len(),
                n_rows,
                sha256: String::new(),
            });
        }
        progress.finish_and_clear();
        if !unusable.is_empty() {
            return Err(FileError::invalid(
                &dir,
                format!(
                    "{} of {} store shard(s) missing or damaged, nothing merged (re-run the `residue build --shard K/N` task with K = shard index mod N): {}",
                    unusable.len(),
                    plan.n_shards(),
                    unusable.join("; ")
                ),
            ).into());
        }
        stats.seconds = started.elapsed().as_secs_f64();
        if let BuildScope::Part(_) = scope {
            return Ok((None, stats));
        }
        for shard in &mut shards {
            shard.sha256 = sha256_file(&dir.join(&shard.file))?;
        }
        let n_rows = shards.iter().map(|s| s.n_rows).sum();
        let manifest = Manifest { plan, n_rows, shards };
        let manifest_path = dir.join("manifest.json");
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        crate::atomic::write_atomic(&manifest_path, |w| w.write_all(&json)).map_err(FileError::io(&manifest_path))?;
        stats.seconds = started.elapsed().as_secs_f64();
        Ok((Some(ResidueStore::open(&dir)?), stats))
    }

    /// Checks that an existing shard is intact and holds exactly `records`; returns its row count.
    fn check_shard(path: &Path, records: &[Record]) -> Result<usize, ResidueError> {
        let contents = parse_shard(&open_shard(path, None)?)?;
        let same = contents.ids.len() == records.len()
            && contents.ids.iter().zip(records).all(|(id, r)| *id == r.id)
            && contents
                .lengths
                .iter()
                .zip(records)
                .all(|(&l, r)| l as usize == r.sequence.len());
        if !same {
            return Err(FileError::invalid(path, "shard holds other sequences than planned").into());
        }
        Ok(contents.n_rows)
    }

    /// Opens a complete store directory (one with `manifest.json`).
    pub fn open(dir: &Path) -> Result<ResidueStore, ResidueError> {
        let manifest_path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(FileError::unreadable(&manifest_path, "not a complete residue store"))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(FileError::unreadable(&manifest_path, "invalid manifest"))?;
        if manifest.plan.format != FORMAT {
            return Err(FileError::invalid(
                &manifest_path,
                format!("unknown store format {:?}", manifest.plan.format),
            )
            .into());
        }
        let dim = manifest.plan.spec.dim;
        // Every shard's checksums first (in parallel: this reads the whole store).
        let files: Vec<ShardFile> = {
            use rayon::prelude::*;
            manifest
                .shards
                .par_iter()
                .map(|info| open_shard(&dir.join(&info.file), Some(&info.sha256)))
                .collect::<Result<_, _>>()?
        };
        let mut store = ResidueStore {
            dir: dir.to_path_buf(),
            manifest: manifest.clone(),
            sequences: Vec::with_capacity(manifest.plan.n_sequences),
            row_sequence: Vec::with_capacity(manifest.n_rows),
            row_position: Vec::with_capacity(manifest.n_rows),
            inv_norms: Vec::with_capacity(manifest.n_rows),
            shards: Vec::new(),
        };
        for (info, file) in manifest.shards.iter().zip(files) {
            let contents = parse_shard(&file)?;
            if contents.n_rows != info.n_rows || contents.ids.len() != info.n_sequences || contents.dim != dim {
                return Err(FileError::invalid(file.path(), "shard does not match the manifest").into());
            }
            let first_row = store.row_position.len();
            let mut row = first_row;
            for (((id, family), len), n) in contents
                .ids
                .into_iter()
                .zip(contents.families)
                .zip(contents.lengths)
                .zip(contents.rows_per_sequence)
            {
                let seq_index = store.sequences.len() as u32;
                store.sequences.push(StoredSequence {
                    id,
                    family,
                    len: len as usize,
                    first_row: row,
                    n_rows: n as usize,
                });
                store.row_sequence.extend(std::iter::repeat_n(seq_index, n as usize));
                row += n as usize;
            }
            store.row_position.extend(contents.positions);
            store.inv_norms.extend(contents.inv_norms);
            store.shards.push(ShardMap {
                file,
                first_row,
                n_rows: contents.n_rows,
            });
        }
        if store.sequences.len() != manifest.plan.n_sequences || store.row_position.len() != manifest.n_rows {
            return Err(FileError::invalid(&manifest_path, "shards do not add up to the manifest's counts").into());
        }
        Ok(store)
    }

    /// Recomputes every shard's SHA-256 and compares with the manifest.
    pub fn verify(&self) -> Result<(), ResidueError> {
        for info in &self.manifest.shards {
            let path = self.dir.join(&info.file);
            if sha256_file(&path)? != info.sha256 {
                return Err(FileError::invalid(&path, "checksum mismatch: the shard was modified or corrupted").into());
            }
        }
        Ok(())
    }

    pub fn dim(&self) -> usize {
        self.manifest.plan.spec.dim
    }

    pub fn n_rows(&self) -> usize {
        self.row_position.len()
    }

    pub fn stride(&self) -> usize {
        self.manifest.plan.stride
    }

    pub fn spec(&self) -> &EmbedderSpec {
        &self.manifest.plan.spec
    }

    /// Bytes of residue data on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.manifest
            .shards
            .iter()
            .filter_map(|s| std::fs::metadata(self.dir.join(&s.file)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Row ranges `[start, end)` of at most `block` rows that never cross a shard.
    pub fn blocks(&self, block: usize) -> Vec<(usize, usize)> {
        self.blocks_of_part(block, WorkShard { index: 0, count: 1 })
    }

    /// [`Self::blocks`] of the shards numbered `part.index` modulo `part.count`
    /// only (the shards `build_part` with the same part embeds): the rows one
    /// task of a searched-by-parts store covers, touching only its shards' pages.
    pub fn blocks_of_part(&self, block: usize, part: WorkShard) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mine = self
            .shards
            .iter()
            .enumerate()
            .filter(|(i, _)| i % part.count.max(1) == part.index)
            .map(|(_, s)| s);
        for s in mine {
            let mut start = s.first_row;
            while start < s.first_row + s.n_rows {
                let end = (start + block.max(1)).min(s.first_row + s.n_rows);
                out.push((start, end));
                start = end;
            }
        }
        out
    }

    /// Rows `[start, end)` (within one shard) as f32, optionally scaled to unit length.
    pub fn rows_f32(&self, start: usize, end: usize, normalise: bool) -> Vec<f32> {
        let mut out = Vec::with_capacity((end - start) * self.dim());
        self.extend_rows_f32(start, end, normalise, &mut out);
        out
    }

    /// Appends rows `[start, end)` (within one shard) to `out` as f32,
    /// optionally scaled to unit length. The hot paths (the shortlist's
    /// gather, the graph candidates' rescoring) call this once per sequence or
    /// row, so the shard is found by bisection and `out` is reused.
    pub fn extend_rows_f32(&self, start: usize, end: usize, normalise: bool, out: &mut Vec<f32>) {
        let first = out.len();
        out.resize(first + (end - start) * self.dim(), 0.0);
        self.rows_into(start, end, normalise, &mut out[first..]);
    }

    /// Writes rows `[start, end)` (within one shard) into `out` (exactly that
    /// many rows long) as f32, optionally scaled to unit length: for callers
    /// that keep one buffer, so that it is not zeroed before every gather.
    pub fn rows_into(&self, start: usize, end: usize, normalise: bool, out: &mut [f32]) {
        let dim = self.dim();
        assert_eq!(out.len(), (end - start) * dim, "output is not the rows' length");
        if start == end {
            return;
        }
        let (shard, residues) = self.shard_of(start);
        assert!(
            start >= shard.first_row && end <= shard.first_row + shard.n_rows,
            "row range within one shard (use blocks())"
        );
        let byte_start = (start - shard.first_row) * dim * 2;
        let bytes = &residues[byte_start..byte_start + (end - start) * dim * 2];
        if normalise {
            for ((row, half_row), &inv) in out
                .chunks_exact_mut(dim)
                .zip(bytes.chunks_exact(dim * 2))
                .zip(&self.inv_norms[start..end])
            {
                decode_f16_scaled(half_row, row, inv);
            }
        } else {
            decode_f16_le(bytes, out);
        }
    }

    /// Writes the listed store rows (any order; consecutive rows of one shard
    /// are the cheap case) into `out` (exactly that many rows long), each
    /// scaled to unit length, as f32: the gather of an IVF list's rows, which
    /// lie scattered over the store.
    pub fn listed_rows_into(&self, rows: &[u32], out: &mut [f32]) {
        assert_eq!(out.len(), rows.len() * self.dim(), "output is not the rows' length");
        let listed = self.f16_rows(rows.iter().map(|&r| r as usize));
        for ((bytes, inv), dst) in listed.zip(out.chunks_exact_mut(self.dim())) {
            decode_f16_scaled(bytes, dst, inv);
        }
    }

    /// Appends, for each listed row, its f16 bytes and its inverse norm (the
    /// factor that scales it to unit length): what
    /// [`crate::lowp::PackedRhs::pack_f16_rows_into`] packs for bf16
    /// products, with no f32 copy of the rows.
    pub fn push_f16_rows<'s>(&'s self, rows: impl IntoIterator<Item = usize>, out: &mut Vec<(&'s [u8], f32)>) {
        out.extend(self.f16_rows(rows));
    }

    /// The f16 bytes and inverse norm of each listed row. Consecutive rows of
    /// one shard are the cheap case: the shard lookup is skipped while the
    /// rows stay in the previous row's shard.
    fn f16_rows<'s>(&'s self, rows: impl IntoIterator<Item = usize>) -> impl Iterator<Item = (&'s [u8], f32)> {
        let row_bytes = self.dim() * 2;
        let mut current: Option<(usize, usize, &'s [u8])> = None;
        rows.into_iter().map(move |row| {
            let (shard_first, _, bytes) = match current {
                Some(c @ (shard_first, n_rows, _)) if row >= shard_first && row < shard_first + n_rows => c,
                _ => {
                    let (shard, bytes) = self.shard_of(row);
                    *current.insert((shard.first_row, shard.n_rows, bytes))
                }
            };
            let at = (row - shard_first) * row_bytes;
            (&bytes[at..at + row_bytes], self.inv_norms[row])
        })
    }

    /// The shard holding store row `row` (below [`Self::n_rows`]) and its
    /// residue bytes (f16, little-endian, row-major).
    fn shard_of(&self, row: usize) -> (&ShardMap, &[u8]) {
        let shard = &self.shards[self.shards.partition_point(|s| s.first_row + s.n_rows <= row)];
        let bytes = shard
            .file
            .bytes("residues", Dtype::F16)
            .expect("dtype checked when the store was opened");
        (shard, bytes)
    }
}

/// Grows `buffer` to at least `len` values (zeroing only what is new) and
/// returns its first `len`: the scratch of a gather or product that writes
/// every value it returns.
pub(crate) fn scratch(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// Little-endian f16 bytes to f32, each multiplied by `scale`: the same
/// values as [`decode_f16_le`] followed by the multiplication, in one pass
/// (16 lanes at a time with AVX-512, where the search's gathers spend their
/// time otherwise).
fn decode_f16_scaled(bytes: &[u8], out: &mut [f32], scale: f32) {
    assert_eq!(bytes.len(), out.len() * 2, "f16 bytes and f32 slots disagree");
    #[cfg(all(target_arch = "x86_64", target_endian = "little"))]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F; the lengths agree (asserted above).
        return unsafe { decode_f16_scaled_avx512(bytes, out, scale) };
    }
    decode_f16_le(bytes, out);
    out.iter_mut().for_each(|v| *v *= scale);
}

/// [`decode_f16_scaled`] on AVX-512F (`vcvtph2ps` converts exactly, as F16C and `half` do).
#[cfg(all(target_arch = "x86_64", target_endian = "little"))]
#[target_feature(enable = "avx512f")]
unsafe fn decode_f16_scaled_avx512(bytes: &[u8], out: &mut [f32], scale: f32) {
    use std::arch::x86_64::{
        __m256i, _mm256_loadu_si256, _mm512_cvtph_ps, _mm512_mul_ps, _mm512_set1_ps, _mm512_storeu_ps,
    };
    let n = out.len();
    let factor = _mm512_set1_ps(scale);
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: halves i..i + 16 are bytes 2i..2i + 32 of `bytes` (2n long) and slots i..i + 16
        // of `out`; both accesses are unaligned loads and stores.
        unsafe {
            let halves = _mm256_loadu_si256(bytes.as_ptr().add(2 * i).cast::<__m256i>());
            _mm512_storeu_ps(out.as_mut_ptr().add(i), _mm512_mul_ps(_mm512_cvtph_ps(halves), factor));
        }
        i += 16;
    }
    for (o, c) in out[i..].iter_mut().zip(bytes[2 * i..].chunks_exact(2)) {
        *o = f16::from_le_bytes([c[0], c[1]]).to_f32() * scale;
    }
}

/// Little-endian f16 bytes to f32: through `half`'s vectorised slice
/// conversion (F16C where the CPU has it) when the bytes are aligned for
/// `f16` on a little-endian host, element by element otherwise.
fn decode_f16_le(bytes: &[u8], out: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    debug_assert_eq!(bytes.len(), out.len() * 2);
    if cfg!(target_endian = "little") && (bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<f16>()) {
        // SAFETY: `f16` is a transparent u16, every bit pattern is a valid value, the pointer is
        // aligned (checked above) and the slice covers exactly `bytes`; the host is little-endian,
        // the byte order the store is written in.
        let halves = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f16>(), out.len()) };
        halves.convert_to_f32_slice(out);
    } else {
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedder::{EmbedError, Pooling};
    use safetensors::SafeTensors;

    /// A deterministic letter-dependent embedder (a fixed encoder, not a mock:
    /// it is a real, if poor, embedding) for store tests.
    pub(crate) struct LetterEmbedder(EmbedderSpec);

    impl LetterEmbedder {
        pub(crate) fn new() -> Self {
            LetterEmbedder(EmbedderSpec {
                name: "letters".into(),
                architecture: "onehot".into(),
                weights_digest: "none".into(),
                dim: 8,
                layer: None,
                pooling: Pooling::Mean,
                max_residues: None,
                dtype: "f32".into(),
            })
        }
    }

    impl Embedder for LetterEmbedder {
        fn spec(&self) -> &EmbedderSpec {
            &self.0
        }
        fn embed_residues(&self, batch: &[&str]) -> Result<Vec<ResidueMatrix>, EmbedError> {
            Ok(batch
                .iter()
                .map(|s| {
                    let data = s
                        .bytes()
                        .enumerate()
                        .flat_map(|(i, b)| {
                            (0..8).map(move |d| ((b as usize * (d + 3) + i * d) % 17) as f32 / 4.0 - 2.0)
                        })
                        .collect();
                    ResidueMatrix {
                        len: s.len(),
                        dim: 8,
                        data,
                    }
                })
                .collect())
        }
    }

    fn records() -> Vec<Record> {
        (0..7)
            .map(|i| {
                let mut r = Record::new(format!("s{i}"), "MKVLAXGHIKLMNPQRSTVWY"[..(5 + 2 * i)].to_string());
                r.family = Some(Family::new(format!("F{}", i % 3), &format!("PF0000{}", i % 3)));
                r
            })
            .collect()
    }

    #[test]
    fn builds_opens_and_reads_back_rows() {
        let dir = tempfile::tempdir().unwrap();
        let embedder = LetterEmbedder::new();
        let recs = records();
        let config = StoreConfig {
            stride: 2,
            shard_sequences: 3,
            batch_tokens: Some(16),
        };
        let (store, stats) = ResidueStore::build_or_open(dir.path(), &embedder, &recs, &config).unwrap();
        assert_eq!(stats.shards_written, 3);
        assert_eq!(store.sequences.len(), 7);
        store.verify().unwrap();
        let full = embedder.embed_residues(&[recs[4].sequence.as_str()]).unwrap().remove(0);
        let seq = &store.sequences[4];
        let kept = kept_positions(&recs[4].sequence, 2);
        assert_eq!(seq.n_rows, kept.len());
        let block = store
            .blocks(1000)
            .into_iter()
            .find(|(s, e)| *s <= seq.first_row && seq.first_row < *e)
            .unwrap();
        let rows = store.rows_f32(block.0, block.1, false);
        for (j, &p) in kept.iter().enumerate() {
            let r = seq.first_row + j - block.0;
            assert_eq!(store.row_position[seq.first_row + j], p);
            assert_eq!(store.row_sequence[seq.first_row + j], 4);
            for d in 0..8 {
                let want = f16::from_f32(full.row(p as usize)[d]).to_f32();
                assert_eq!(rows[r * 8 + d], want);
            }
        }
        // Normalised rows have unit length.
        let normed = store.rows_f32(block.0, block.1, true);
        let n: f32 = normed[..8].iter().map(|v| v * v).sum();
        assert!((n - 1.0).abs() < 1e-3);
        // A second call is served from disk.
        let (_, again) = ResidueStore::build_or_open(dir.path(), &embedder, &recs, &config).unwrap();
        assert_eq!((again.shards_reused, again.shards_written), (3, 0));
    }

    #[test]
    fn listed_rows_are_the_normalised_rows_in_list_order() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            stride: 1,
            shard_sequences: 2,
            batch_tokens: None,
        };
        let (store, _) = ResidueStore::build_or_open(dir.path(), &LetterEmbedder::new(), &records(), &config).unwrap();
        let dim = store.dim();
        let mut all = Vec::new();
        for (start, end) in store.blocks(1000) {
            all.extend(store.rows_f32(start, end, true));
        }
        // Rows across every shard, out of order and repeated.
        let n = store.n_rows() as u32;
        let listed: Vec<u32> = vec![n - 1, 0, 1, n / 2, 0, n - 2, 3];
        let mut out = vec![7.0; listed.len() * dim];
        store.listed_rows_into(&listed, &mut out);
        for (i, &row) in listed.iter().enumerate() {
            let row = row as usize;
            assert_eq!(&out[i * dim..(i + 1) * dim], &all[row * dim..(row + 1) * dim]);
        }
    }

    #[test]
    fn scaled_decoding_equals_decoding_then_scaling_at_every_length() {
        let values: Vec<f32> = (0..70).map(|i| ((i as f32) * 0.731).sin() * 40.0).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect();
        for n in 0..values.len() {
            let mut want = vec![0.0f32; n];
            decode_f16_le(&bytes[..2 * n], &mut want);
            want.iter_mut().for_each(|v| *v *= 0.37);
            let mut got = vec![f32::NAN; n];
            decode_f16_scaled(&bytes[..2 * n], &mut got, 0.37);
            assert_eq!(got, want, "length {n}");
        }
    }

    /// Issue 15: every tensor of a residue shard is checksummed and checked on open.
    #[test]
    fn a_damaged_tensor_is_an_error_naming_shard_and_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let embedder = LetterEmbedder::new();
        let recs = records();
        let config = StoreConfig {
            stride: 1,
            shard_sequences: 2,
            batch_tokens: None,
        };
        let (store, _) = ResidueStore::build_or_open(dir.path(), &embedder, &recs, &config).unwrap();
        let store_dir = store.dir.clone();
        drop(store);
        let path = store_dir.join(shard_name(1));
        let mut bytes = std::fs::read(&path).unwrap();
        let (n, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        assert!(meta.metadata().as_ref().unwrap().contains_key("sha256.residues"));
        let start = 8 + n + meta.info("residues").unwrap().data_offsets.0;
        bytes[start + 1] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let err = ResidueStore::open(&store_dir).err().unwrap().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("checksum mismatch in tensor \"residues\""), "{err}");
        // build_or_open reports it too, instead of serving wrong rows.
        assert!(ResidueStore::build_or_open(dir.path(), &embedder, &recs, &config).is_err());
    }

    /// Stores written before per-tensor checksums existed are guarded by the
    /// manifest's whole-file SHA-256 instead: they open while intact and are an
    /// error naming the shard once a byte changes.
    #[test]
    fn a_shard_without_checksums_is_checked_against_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let embedder = LetterEmbedder::new();
        let recs = records();
        let config = StoreConfig {
            stride: 1,
            shard_sequences: 4,
            batch_tokens: None,
        };
        let (store, _) = ResidueStore::build_or_open(dir.path(), &embedder, &recs, &config).unwrap();
        let (store_dir, rows) = (store.dir.clone(), store.rows_f32(0, store.shards[0].n_rows, false));
        drop(store);
        // Shard 0 as an older protfam wrote it: the same tensors, no sha256.* metadata.
        let path = store_dir.join(shard_name(0));
        let bytes = std::fs::read(&path).unwrap();
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let metadata: std::collections::HashMap<String, String> = meta
            .metadata()
            .clone()
            .unwrap()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("sha256."))
            .collect();
        let legacy = safetensors::serialize(tensors.tensors(), Some(metadata)).unwrap();
        std::fs::write(&path, &legacy).unwrap();
        let manifest_path = store_dir.join("manifest.json");
        let mut manifest: Manifest = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        manifest.shards[0].sha256 = sha256_file(&path).unwrap();
        std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
        let store = ResidueStore::open(&store_dir).unwrap();
        assert_eq!(store.rows_f32(0, store.shards[0].n_rows, false), rows);
        drop(store);
        let mut damaged = legacy;
        let n = damaged.len();
        damaged[n - 3] ^= 0x20;
        std::fs::write(&path, &damaged).unwrap();
        let err = ResidueStore::open(&store_dir).err().unwrap().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("checksum mismatch with manifest.json"), "{err}");
    }

    #[test]
    fn parts_built_by_tasks_merge_into_the_same_store_bytes() {
        let embedder = LetterEmbedder::new();
        let recs = records();
        let config = StoreConfig {
            stride: 2,
            shard_sequences: 2,
            batch_tokens: Some(16),
        };
        let whole = tempfile::tempdir().unwrap();
        let (reference, _) = ResidueStore::build_or_open(whole.path(), &embedder, &recs, &config).unwrap();
        let split = tempfile::tempdir().unwrap();
        let parts: Vec<WorkShard> = (0..3).map(|k| WorkShard::new(k, 3).unwrap()).collect();
        // Tasks 0 and 2 only: the merge must refuse and name store shard 1 (1 mod 3).
        for part in [parts[0], parts[2]] {
            let stats = ResidueStore::build_part(split.path(), &embedder, &recs, &config, part).unwrap();
            assert!(stats.shards_written >= 1);
        }
        let err = ResidueStore::merge_parts(split.path(), &embedder, &recs, &config)
            .err()
            .expect("a shard is missing")
            .to_string();
        assert!(err.contains("shard-00001.safetensors: missing"), "{err}");
        let stats = ResidueStore::build_part(split.path(), &embedder, &recs, &config, parts[1]).unwrap();
        assert_eq!(stats.shards_written, 1);
        let (merged, stats) = ResidueStore::merge_parts(split.path(), &embedder, &recs, &config).unwrap();
        assert_eq!((stats.shards_reused, stats.shards_written), (4, 0));
        let names = |dir: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&reference.dir), names(&merged.dir));
        for name in names(&reference.dir) {
            assert_eq!(
                std::fs::read(reference.dir.join(&name)).unwrap(),
                std::fs::read(merged.dir.join(&name)).unwrap(),
                "{name}"
            );
        }
        // A damaged shard is refused by name, not re-embedded.
        let split2 = tempfile::tempdir().unwrap();
        for part in &parts {
            ResidueStore::build_part(split2.path(), &embedder, &recs, &config, *part).unwrap();
        }
        let dir = ResidueStore::dir_for(split2.path(), embedder.spec(), &recs, 2);
        std::fs::write(dir.join(shard_name(2)), b"not a shard").unwrap();
        let err = ResidueStore::merge_parts(split2.path(), &embedder, &recs, &config)
            .err()
            .expect("a shard is damaged")
            .to_string();
        assert!(err.contains("shard-00002.safetensors"), "{err}");
        assert!(!dir.join("manifest.json").exists());
    }

    #[test]
    fn resumes_missing_and_rebuilds_corrupt_shards() {
        let dir = tempfile::tempdir().unwrap();
        let embedder = LetterEmbedder::new();
        let recs = records();
        let config = StoreConfig {
            stride: 1,
            shard_sequences: 2,
            batch_tokens: None,
        };
        let (store, _) = ResidueStore::build_or_open(dir.path(), &embedder, &recs, &config).unwrap();
        let first = store.rows_f32(0, store.shards[0].n_rows, false);
        let store_dir = store.dir.clone();
        drop(store);
        // Simulate an interrupted run: no manifest, one shard missing, one truncated.
        std::fs::remove_file(store_dir.join("manifest.json")).unwrap();
        std::fs::remove_file(store_dir.join(shard_name(1))).unwrap();
        let p2 = store_dir.join(shard_name(2));
        let bytes = std::fs::read(&p2).unwrap();
        std::fs::write(&p2, &bytes[..bytes.len() / 2]).unwrap();
        let (store, stats) = ResidueStore::build_or_open(dir.path(), &embedder, &recs, &config).unwrap();
        assert_eq!((stats.shards_reused, stats.shards_written), (2, 2));
        assert_eq!(stats.sequences_embedded, 4);
        assert_eq!(store.rows_f32(0, store.shards[0].n_rows, false), first);
        store.verify().unwrap();
    }

    #[test]
    fn stride_keeps_every_nth_informative_residue() {
        assert_eq!(kept_positions("MKXLAB", 1), vec![0, 1, 3, 4]);
        assert_eq!(kept_positions("MKXLAXG", 2), vec![0, 4, 6]);
        assert_eq!(kept_positions("MK", 3), vec![0]);
        assert!(kept_positions("XXXX", 1).is_empty());
        assert!(kept_positions("", 2).is_empty());
    }

    #[test]
    fn key_depends_on_stride_and_data() {
        let spec = LetterEmbedder::new().0;
        let recs = records();
        let root = Path::new("/x");
        let a = ResidueStore::dir_for(root, &spec, &recs, 1);
        assert_ne!(a, ResidueStore::dir_for(root, &spec, &recs, 2));
        assert_ne!(a, ResidueStore::dir_for(root, &spec, &recs[1..], 1));
    }
}
