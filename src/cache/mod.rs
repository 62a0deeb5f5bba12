//! The content-addressed on-disk embedding cache.
//!
//! Vectors are addressed by *what produced them* and *what they embed*: one
//! directory per embedder identity ([`EmbedderSpec::key`], a digest over model
//! name, architecture, weights digest, layer, pooling, dtype, ...) and, inside
//! it, one row per distinct sequence keyed by the SHA-256 of its residues
//! ([`sequence_hash`]). A retrained or otherwise changed model has another key,
//! so it can never be served stale vectors; record ids play no part, so the
//! same domain under two names is embedded once.
//!
//! # Layout
//!
//! ```text
//! <cache>/                                  (--cache, default data/cache)
//!   <name>-<12 hex>/                        one directory per EmbedderSpec::key()
//!     spec.json                             the EmbedderSpec, written once
//!     index.json                            manifest of the shards (derived, rewritten atomically)
//!     shards/shard-<ms>-<host>-<pid>-<random>.safetensors
//!     corrupt/                              damaged shards moved aside, never read
//!     claims/<digest>.lock                  flock claims of concurrent writers (see below)
//!     claims/index.lock                     flock held while index.json is listed and renamed
//! ```
//!
//! Each shard is a standard safetensors file with two tensors:
//! `embeddings` (F32, N x D: the pooled vectors) and `sequence_sha256`
//! (U8, N x 32: the SHA-256 of the upper-case residue string of row i).
//! Its `__metadata__` holds `format` = `protfam-embedding-cache/1`,
//! `spec_key`, `spec` (JSON), `rows`, `dim`, and `sha256.embeddings` /
//! `sha256.sequence_sha256`, the checksums of the two tensors' bytes.
//! `index.json` lists every shard with its row count, size and checksums,
//! and counts `rows` (over all shards) and `vectors` (distinct sequences);
//! it is derived from the shards (any run rewrites it), so the shards are the
//! truth. The same sequence may occur in several shards (after a merge of
//! overlapping caches, or two concurrent writers); rows are then equal and
//! the first shard in name order wins. Reading from Python:
//!
//! ```python
//! import hashlib, json, pathlib
//! import numpy as np
//! from safetensors.numpy import load_file
//!
//! model_dir = pathlib.Path("data/cache/unirep1900-0123456789ab")
//! index = json.loads((model_dir / "index.json").read_text())
//! vectors = {}
//! for shard in index["shards"]:
//!     t = load_file(model_dir / shard["file"])
//!     for h, v in zip(t["sequence_sha256"], t["embeddings"]):
//!         vectors.setdefault(bytes(h), v)
//! v = vectors[hashlib.sha256(b"MKVLAAGIV").digest()]
//! ```
//!
//! # Crash safety and integrity
//!
//! New vectors are buffered ([`ModelCache::insert`]) and written as a new shard
//! by [`ModelCache::flush`] through [`atomic::write_atomic`] (temporary file,
//! fsync, rename, directory fsync). A process killed at any moment leaves
//! either a complete shard or a temporary file that readers ignore and the
//! next run deletes, so a restarted run re-embeds exactly the vectors not yet
//! flushed. Shards are never modified in place. On open every shard's header
//! is validated (a truncated or over-long file is rejected); before the first
//! row of a shard is served, its checksums are recomputed. A damaged shard is
//! reported with its path (tracing `warn` and [`ModelCache::problems`]), moved
//! to `corrupt/`, and its sequences count as missing, so they are embedded
//! again. Any number of processes may read a cache while others write to it.
//!
//! A shard that is intact but not this directory's (another format, or an
//! embedder key that disagrees with `spec.json`) is reported and left where it
//! is: a metadata file that disagrees with the shards never moves good data.
//! `cache merge` opens its sources read-only ([`ModelCache::open_read_only`]).
//!
//! # Concurrent writers
//! Two runs embedding the same input into one cache (Slurm array tasks on a
//! shared directory) split the work instead of both doing all of it: before
//! embedding a chunk's missing sequences the pipeline takes
//! [`ModelCache::claim`] (an exclusive `flock` on `claims/<chunk digest>.lock`),
//! skipping chunks another process holds and coming back to them at the end,
//! when that process has written them ([`ModelCache::refresh`] picks up its
//! shards). A killed holder's lock is released by the kernel, so its chunk is
//! then embedded by whoever waits for it. Different inputs never wait on each
//! other; overlapping ones may embed a shared sequence twice, which costs time
//! only: rows are equal and each sequence counts once.
//!
//! The shard writer ([`shard::write_shard`]) is public and every file goes
//! through [`crate::atomic`], so other stores (per-residue embeddings,
//! classifiers, reports) follow the same design.

/// The crate's one atomic writer, re-exported where the cache's users first found it.
pub use crate::atomic;
pub mod shard;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::Dtype;

use crate::embedder::EmbedderSpec;
use shard::{ShardError, ShardFile, ShardInfo, TensorData};

/// SHA-256 of a sequence's upper-case residues: the content address of a vector.
pub type SeqHash = [u8; 32];

/// Value of the `format` metadata key of every cache shard and of `index.json`.
pub const FORMAT: &str = "protfam-embedding-cache/1";
/// Name of the vectors tensor.
pub const EMBEDDINGS: &str = "embeddings";
/// Name of the sequence hash tensor.
pub const HASHES: &str = "sequence_sha256";
/// Default cache root.
pub const DEFAULT_DIR: &str = "data/cache";

/// The content address of a sequence: SHA-256 of its upper-case residue string.
pub fn sequence_hash(sequence: &str) -> SeqHash {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    if sequence.bytes().any(|b| b.is_ascii_lowercase()) {
        hasher.update(sequence.to_ascii_uppercase().as_bytes());
    } else {
        hasher.update(sequence.as_bytes());
    }
    hasher.finalize().into()
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("cache {}: vector of length {got} for a model of dimension {expected}", dir.display())]
    Dimension { dir: PathBuf, expected: usize, got: usize },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A cache root holding one [`ModelCache`] per embedder identity.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of one embedder's vectors.
    pub fn model_dir(&self, spec: &EmbedderSpec) -> PathBuf {
        self.root.join(spec.key())
    }

    /// Opens (creating if needed) the vectors of one embedder.
    pub fn open_model(&self, spec: &EmbedderSpec) -> Result<ModelCache, CacheError> {
        ModelCache::open(&self.model_dir(spec), spec)
    }

    /// Directories under the root that hold a `spec.json`, sorted.
    pub fn model_dirs(&self) -> Result<Vec<PathBuf>, CacheError> {
        let mut dirs = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(dirs),
            Err(e) => {
                return Err(CacheError::Io {
                    path: self.root.clone(),
                    source: e,
                })
            }
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&self.root))?;
            let path = entry.path();
            if path.join("spec.json").is_file() {
                dirs.push(path);
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    /// Recomputes every shard's checksums under the root (`protfam cache verify`):
    /// damaged shards go to `corrupt/`; a directory whose `spec.json` disagrees
    /// with its name or shards is reported and left untouched.
    pub fn verify(&self) -> Result<Vec<VerifyReport>, CacheError> {
        let mut reports = Vec::new();
        for dir in self.model_dirs()? {
            let report = match ModelCache::open_existing(&dir) {
                Ok(mut model) => {
                    let mut problems = model.problems().to_vec();
                    let (checked, found) = model.verify_all();
                    problems.extend(found);
                    VerifyReport {
                        key: model.key().to_string(),
                        checked,
                        vectors: model.stats().vectors,
                        problems,
                    }
                }
                Err(e) => VerifyReport {
                    key: dir.file_name().unwrap_or_default().to_string_lossy().into_owned(),
                    checked: 0,
                    vectors: 0,
                    problems: vec![e.to_string()],
                },
            };
            reports.push(report);
        }
        Ok(reports)
    }

    /// Opens every embedder's vectors found under the root.
    pub fn models(&self) -> Result<Vec<ModelCache>, CacheError> {
        self.model_dirs()?
            .iter()
            .map(|d| ModelCache::open_existing(d))
            .collect()
    }
}

/// Creates a cache directory, naming it (not its parent) when a file is in the way.
fn ensure_dir(dir: &Path) -> Result<(), CacheError> {
    if dir.exists() && !dir.is_dir() {
        return Err(CacheError::Invalid {
            path: dir.to_path_buf(),
            message: "is a file, not the cache's directory: move it away".into(),
        });
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))
}

/// Why a shard file is not used.
enum ShardProblem {
    /// Unreadable or inconsistent: moved to `corrupt/`.
    Damaged(ShardError),
    /// Intact but not this directory's (another format or embedder key): left alone.
    Foreign(String),
}

/// Whether a directory name has the shape of an [`EmbedderSpec::key`] (`<name>-<12 hex>`).
fn is_key_like(name: &str) -> bool {
    name.rsplit_once('-')
        .is_some_and(|(_, h)| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What [`Cache::verify`] found in one embedder's directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub key: String,
    /// Shards whose checksums were recomputed.
    pub checked: usize,
    pub vectors: usize,
    /// One line per damaged or foreign shard or unusable directory, each naming its file.
    pub problems: Vec<String>,
}

struct LoadedShard {
    file: ShardFile,
    rows: usize,
    verified: bool,
    info: ShardInfo,
    /// `false` once moved aside as corrupt.
    live: bool,
}

/// Counts and sizes of one embedder's cached vectors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelStats {
    pub key: String,
    pub name: String,
    pub architecture: String,
    pub dim: usize,
    /// Distinct sequences with a vector.
    pub vectors: usize,
    /// Rows over all shards (more than `vectors` where shards overlap).
    pub rows: usize,
    pub shards: usize,
    pub bytes: u64,
    /// Files in `corrupt/`.
    pub quarantined: usize,
}

/// The cached vectors of one embedder: lookups by sequence hash, buffered
/// inserts, atomic flushes. See the [module docs](self) for the format.
pub struct ModelCache {
    dir: PathBuf,
    spec: EmbedderSpec,
    key: String,
    shards: Vec<LoadedShard>,
    /// Sequence hash -> (shard index, row).
    map: HashMap<SeqHash, (u32, u32)>,
    pending_hashes: Vec<SeqHash>,
    pending_values: Vec<f32>,
    pending_index: HashMap<SeqHash, usize>,
    problems: Vec<String>,
    /// Opened by [`ModelCache::open_read_only`]: nothing on disk is changed.
    read_only: bool,
}

impl std::fmt::Debug for ModelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelCache")
            .field("dir", &self.dir)
            .field("key", &self.key)
            .field("vectors", &self.map.len())
            .field("pending", &self.pending_hashes.len())
            .finish()
    }
}

impl ModelCache {
    /// Opens the directory `dir` for `spec`, creating it (and `spec.json`) if needed.
    pub fn open(dir: &Path, spec: &EmbedderSpec) -> Result<Self, CacheError> {
        let shards_dir = dir.join("shards");
        ensure_dir(&shards_dir)?;
        let spec_path = dir.join("spec.json");
        match std::fs::read(&spec_path) {
            Ok(bytes) => {
                let stored: EmbedderSpec = serde_json::from_slice(&bytes).map_err(|e| CacheError::Invalid {
                    path: spec_path.clone(),
                    message: format!("unreadable embedder spec: {e}"),
                })?;
                if &stored != spec {
                    return Err(CacheError::Invalid {
                        path: spec_path,
                        message: format!(
                            "describes embedder {} (key {}), but this run's embedder {} has key {}, the \
                             directory's name: spec.json was edited or copied from another cache. Nothing \
                             was changed; restore spec.json (every shard keeps the spec it was written \
                             for in its `spec` metadata) or move the directory away",
                            stored.name,
                            stored.key(),
                            spec.name,
                            spec.key()
                        ),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let json = serde_json::to_vec_pretty(spec).expect("spec serialises");
                atomic::write_bytes_atomic(&spec_path, &json).map_err(io_err(&spec_path))?;
            }
            Err(e) => {
                return Err(CacheError::Io {
                    path: spec_path,
                    source: e,
                })
            }
        }
        Self::load(dir, spec.clone(), false)
    }

    /// Opens an existing directory, reading the spec from its `spec.json`.
    pub fn open_existing(dir: &Path) -> Result<Self, CacheError> {
        let spec = Self::read_spec(dir)?;
        let shards_dir = dir.join("shards");
        ensure_dir(&shards_dir)?;
        Self::load(dir, spec, false)
    }

    /// Opens an existing directory to read it only (a `merge` source): no
    /// file is created, moved, deleted or rewritten, and damaged shards are
    /// only reported ([`ModelCache::problems`]) and skipped.
    pub fn open_read_only(dir: &Path) -> Result<Self, CacheError> {
        let spec = Self::read_spec(dir)?;
        Self::load(dir, spec, true)
    }

    /// `spec.json`, checked against the directory's name (which is its key):
    /// an edited spec is reported, never used to judge the shards.
    fn read_spec(dir: &Path) -> Result<EmbedderSpec, CacheError> {
        let spec_path = dir.join("spec.json");
        let bytes = std::fs::read(&spec_path).map_err(io_err(&spec_path))?;
        let spec: EmbedderSpec = serde_json::from_slice(&bytes).map_err(|e| CacheError::Invalid {
            path: spec_path.clone(),
            message: format!("unreadable embedder spec: {e}"),
        })?;
        let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = dir_name.filter(|n| is_key_like(n) && *n != spec.key()) {
            return Err(CacheError::Invalid {
                path: spec_path,
                message: format!(
                    "describes embedder {} with key {}, but the directory is {name}: spec.json was edited \
                     or the directory renamed. Nothing was changed; restore spec.json (every shard keeps \
                     the spec it was written for in its `spec` metadata)",
                    spec.name,
                    spec.key()
                ),
            });
        }
        Ok(spec)
    }

    fn load(dir: &Path, spec: EmbedderSpec, read_only: bool) -> Result<Self, CacheError> {
        let shards_dir = dir.join("shards");
        if !read_only {
            for removed in atomic::remove_stale_temp_files(&shards_dir).map_err(io_err(&shards_dir))? {
                tracing::info!(
                    "removed unfinished shard {} left by an interrupted run",
                    removed.display()
                );
            }
            let _ = atomic::remove_stale_temp_files(dir);
        }
        let mut cache = ModelCache {
            dir: dir.to_path_buf(),
            key: spec.key(),
            spec,
            shards: Vec::new(),
            map: HashMap::new(),
            pending_hashes: Vec::new(),
            pending_values: Vec::new(),
            pending_index: HashMap::new(),
            problems: Vec::new(),
            read_only,
        };
        if read_only && !shards_dir.is_dir() {
            return Ok(cache);
        }
        for path in cache.shard_paths()? {
            cache.add_shard_file(&path, false);
        }
        if !read_only {
            cache.write_index_if_changed()?;
        }
        Ok(cache)
    }

    /// Complete shard files on disk, sorted by name.
    fn shard_paths(&self) -> Result<Vec<PathBuf>, CacheError> {
        let shards_dir = self.dir.join("shards");
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(&shards_dir).map_err(io_err(&shards_dir))? {
            let entry = entry.map_err(io_err(&shards_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(atomic::TEMP_PREFIX) && name.ends_with(".safetensors") {
                paths.push(entry.path());
            }
        }
        paths.sort();
        Ok(paths)
    }

    /// Validates a shard's header and structure and adds its rows to the map;
    /// a bad shard is moved aside and reported. Returns whether it was added.
    fn add_shard_file(&mut self, path: &Path, verified: bool) -> bool {
        match self.check_structure(path) {
            Ok((file, rows)) => {
                let info = ShardInfo {
                    file: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    bytes: file.len_bytes(),
                    sha256: [EMBEDDINGS, HASHES]
                        .iter()
                        .map(|t| {
                            let sum = file.metadata().get(&format!("{}{t}", shard::CHECKSUM_PREFIX)).cloned();
                            (t.to_string(), sum.unwrap_or_default())
                        })
                        .collect(),
                };
                let index = self.shards.len() as u32;
                if let Ok(hashes) = file.bytes(HASHES, Dtype::U8) {
                    for (row, h) in hashes.chunks_exact(32).enumerate() {
                        let h: SeqHash = h.try_into().expect("32-byte chunk");
                        self.map.entry(h).or_insert((index, row as u32));
                    }
                }
                self.shards.push(LoadedShard {
                    file,
                    rows,
                    verified,
                    info,
                    live: true,
                });
                true
            }
            Err(ShardProblem::Foreign(message)) => {
                // Not damaged, only not ours (or our spec.json disagrees): never moved.
                let line = format!("cache shard {}: {message}; left in place, not used", path.display());
                tracing::warn!("{line}");
                self.problems.push(line);
                false
            }
            Err(ShardProblem::Damaged(e)) => {
                self.quarantine(path, &e.message);
                false
            }
        }
    }

    fn check_structure(&self, path: &Path) -> Result<(ShardFile, usize), ShardProblem> {
        let file = ShardFile::open(path).map_err(ShardProblem::Damaged)?;
        let meta = file.metadata();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(ShardProblem::Foreign(format!(
                "not a protfam cache shard (metadata format {})",
                meta.get("format").map(String::as_str).unwrap_or("missing")
            )));
        }
        if meta.get("spec_key") != Some(&self.key) {
            return Err(ShardProblem::Foreign(format!(
                "written for embedder key {}, not for this directory's {} (from spec.json)",
                meta.get("spec_key").map(String::as_str).unwrap_or("(none)"),
                self.key
            )));
        }
        self.check_tensors(path, file).map_err(ShardProblem::Damaged)
    }

    fn check_tensors(&self, path: &Path, file: ShardFile) -> Result<(ShardFile, usize), ShardError> {
        let shape = file.shape(EMBEDDINGS)?.to_vec();
        let hash_shape = file.shape(HASHES)?.to_vec();
        if shape.len() != 2 || shape[1] != self.spec.dim || hash_shape != [shape[0], 32] {
            return Err(ShardError::new(
                path,
                format!(
                    "tensor shapes {shape:?} / {hash_shape:?} do not fit dimension {}",
                    self.spec.dim
                ),
            ));
        }
        file.bytes(EMBEDDINGS, Dtype::F32)?;
        file.bytes(HASHES, Dtype::U8)?;
        Ok((file, shape[0]))
    }

    /// Moves a damaged shard to `corrupt/` (best effort) and records the problem;
    /// read-only caches only record it.
    fn quarantine(&mut self, path: &Path, message: &str) {
        if self.read_only {
            let line = format!(
                "corrupt cache shard {}: {message}; skipped (left in place)",
                path.display()
            );
            tracing::warn!("{line}");
            self.problems.push(line);
            return;
        }
        let corrupt = self.dir.join("corrupt");
        let moved = std::fs::create_dir_all(&corrupt).and_then(|_| {
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let target = corrupt.join(format!("{}-{name}", atomic::unique_tag()));
            atomic::rename_durable(path, &target).map(|_| target)
        });
        let line = match moved {
            Ok(target) => format!(
                "corrupt cache shard {}: {message}; moved to {}, its sequences will be embedded again",
                path.display(),
                target.display()
            ),
            Err(e) => format!(
                "corrupt cache shard {}: {message}; not used (could not move it aside: {e})",
                path.display()
            ),
        };
        tracing::warn!("{line}");
        self.problems.push(line);
    }

    /// Rebuilds the hash map from the live shards (after one was dropped).
    fn rebuild_map(&mut self) {
        self.map.clear();
        for (index, shard) in self.shards.iter().enumerate() {
            if !shard.live {
                continue;
            }
            if let Ok(hashes) = shard.file.bytes(HASHES, Dtype::U8) {
                for (row, h) in hashes.chunks_exact(32).enumerate() {
                    let h: SeqHash = h.try_into().expect("32-byte chunk");
                    self.map.entry(h).or_insert((index as u32, row as u32));
                }
            }
        }
    }

    /// Verifies the checksums of shard `index` if not done yet; a failing
    /// shard is moved aside and its rows leave the map. Returns whether it is usable.
    fn ensure_verified(&mut self, index: usize) -> bool {
        let shard = &self.shards[index];
        if !shard.live {
            return false;
        }
        if shard.verified {
            return true;
        }
        match shard.file.verify() {
            Ok(()) => {
                self.shards[index].verified = true;
                true
            }
            Err(e) => {
                let path = shard.file.path().to_path_buf();
                self.shards[index].live = false;
                self.quarantine(&path, &e.message);
                self.rebuild_map();
                if !self.read_only {
                    let _ = self.write_index();
                }
                false
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn spec(&self) -> &EmbedderSpec {
        &self.spec
    }

    /// [`EmbedderSpec::key`] of the cached embedder (the directory name).
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn dim(&self) -> usize {
        self.spec.dim
    }

    /// Distinct sequences with a vector (flushed or pending).
    pub fn len(&self) -> usize {
        self.map.len() + self.pending_index.keys().filter(|h| !self.map.contains_key(*h)).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a vector for this sequence is known (not yet checksum-verified).
    pub fn contains(&self, hash: &SeqHash) -> bool {
        self.map.contains_key(hash) || self.pending_index.contains_key(hash)
    }

    /// Reports of damaged shards found so far (each names the file).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The vector of one sequence, if cached and its shard is intact.
    pub fn get(&mut self, hash: &SeqHash) -> Result<Option<Vec<f32>>, CacheError> {
        Ok(self.get_many(std::slice::from_ref(hash))?.pop().flatten())
    }

    /// Vectors for many sequences (`None` where missing). Every shard touched is
    /// checksum-verified first; rows of a damaged shard come back as `None`.
    pub fn get_many(&mut self, hashes: &[SeqHash]) -> Result<Vec<Option<Vec<f32>>>, CacheError> {
        // Verify first: a failing shard changes the map (another shard may hold
        // the same sequence), so repeat until every needed shard is verified.
        loop {
            let mut needed: Vec<usize> = hashes
                .iter()
                .filter_map(|h| self.map.get(h))
                .map(|&(s, _)| s as usize)
                .filter(|&s| !self.shards[s].verified)
                .collect();
            needed.sort_unstable();
            needed.dedup();
            if needed.is_empty() {
                break;
            }
            for s in needed {
                self.ensure_verified(s);
            }
        }
        let mut out = Vec::with_capacity(hashes.len());
        for h in hashes {
            if let Some(&i) = self.pending_index.get(h) {
                let d = self.spec.dim;
                out.push(Some(self.pending_values[i * d..(i + 1) * d].to_vec()));
            } else if let Some(&(s, row)) = self.map.get(h) {
                out.push(Some(self.shards[s as usize].file.f32_row(EMBEDDINGS, row as usize)?));
            } else {
                out.push(None);
            }
        }
        Ok(out)
    }

    /// Adds the shards other processes wrote since this cache was opened (or last
    /// refreshed). Returns how many were added.
    pub fn refresh(&mut self) -> Result<usize, CacheError> {
        let known: std::collections::HashSet<String> = self.shards.iter().map(|s| s.info.file.clone()).collect();
        let mut added = 0;
        for path in self.shard_paths()? {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !known.contains(&name) && self.add_shard_file(&path, false) {
                added += 1;
            }
        }
        Ok(added)
    }

    /// Claims the work of embedding `hashes` (one pipeline chunk) against other
    /// processes on this cache: an exclusive `flock` on `claims/<digest>.lock`,
    /// released when the returned guard drops (or the process dies, however).
    /// With `wait` false, `Ok(None)` means another process holds the claim now.
    pub fn claim(&self, hashes: &[SeqHash], wait: bool) -> Result<Option<Claim>, CacheError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for hash in hashes {
            h.update(hash);
        }
        let name = format!("{}.lock", &hex::encode(h.finalize())[..24]);
        Ok(self.lock(&name, wait)?.map(|file| Claim { _file: file }))
    }

    /// An exclusive `flock` on `claims/<name>`, held while the returned file
    /// is open; `None` when `wait` is false and another process holds it.
    fn lock(&self, name: &str, wait: bool) -> Result<Option<std::fs::File>, CacheError> {
        let dir = self.dir.join("claims");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        match atomic::lock_exclusive(&file, wait) {
            Ok(true) => Ok(Some(file)),
            Ok(false) => Ok(None),
            Err(source) => Err(CacheError::Io { path, source }),
        }
    }

    /// Buffers a vector; it reaches disk at the next [`flush`](Self::flush).
    /// A sequence already cached is ignored.
    pub fn insert(&mut self, hash: SeqHash, vector: &[f32]) -> Result<(), CacheError> {
        if vector.len() != self.spec.dim {
            return Err(CacheError::Dimension {
                dir: self.dir.clone(),
                expected: self.spec.dim,
                got: vector.len(),
            });
        }
        if self.contains(&hash) {
            return Ok(());
        }
        self.pending_index.insert(hash, self.pending_hashes.len());
        self.pending_hashes.push(hash);
        self.pending_values.extend_from_slice(vector);
        Ok(())
    }

    /// Vectors buffered and not yet on disk.
    pub fn pending(&self) -> usize {
        self.pending_hashes.len()
    }

    /// Writes the buffered vectors as one new shard (atomically) and updates
    /// `index.json`. Returns the shard's path, or `None` if nothing was pending.
    pub fn flush(&mut self) -> Result<Option<PathBuf>, CacheError> {
        if self.pending_hashes.is_empty() {
            return Ok(None);
        }
        if self.read_only {
            return Err(CacheError::Invalid {
                path: self.dir.clone(),
                message: "opened read-only; not written".into(),
            });
        }
        let rows = self.pending_hashes.len();
        let name = format!(
            "shard-{:013}-{}.safetensors",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
            atomic::unique_tag()
        );
        let path = self.dir.join("shards").join(name);
        let flat_hashes: Vec<u8> = self.pending_hashes.iter().flatten().copied().collect();
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("spec_key".to_string(), self.key.clone());
        meta.insert(
            "spec".to_string(),
            serde_json::to_string(&self.spec).expect("spec serialises"),
        );
        meta.insert("rows".to_string(), rows.to_string());
        meta.insert("dim".to_string(), self.spec.dim.to_string());
        shard::write_shard(
            &path,
            &[
                TensorData::f32(EMBEDDINGS, vec![rows, self.spec.dim], &self.pending_values),
                TensorData::u8(HASHES, vec![rows, 32], &flat_hashes),
            ],
            &meta,
        )?;
        self.pending_hashes.clear();
        self.pending_values.clear();
        self.pending_index.clear();
        // Written from memory just now: its checksums describe exactly these bytes.
        if !self.add_shard_file(&path, true) {
            return Err(CacheError::Invalid {
                path,
                message: "shard unreadable right after writing".into(),
            });
        }
        self.write_index()?;
        tracing::debug!("wrote {rows} vectors to {}", path.display());
        Ok(Some(path))
    }

    /// Verifies every shard's checksums, moving damaged ones aside. Returns
    /// the number of shards checked and the problems found (paths included).
    pub fn verify_all(&mut self) -> (usize, Vec<String>) {
        let before = self.problems.len();
        let mut checked = 0;
        for i in 0..self.shards.len() {
            if self.shards[i].live {
                self.shards[i].verified = false;
                checked += 1;
                self.ensure_verified(i);
            }
        }
        (checked, self.problems[before..].to_vec())
    }

    /// Every cached (hash, vector) pair of the live shards, verified, in shard
    /// order, each distinct sequence once.
    pub fn for_each_vector(&mut self, mut f: impl FnMut(&SeqHash, Vec<f32>)) -> Result<(), CacheError> {
        for i in 0..self.shards.len() {
            if !self.ensure_verified(i) {
                continue;
            }
            let shard = &self.shards[i];
            let hashes = shard.file.bytes(HASHES, Dtype::U8)?;
            for (row, h) in hashes.chunks_exact(32).enumerate() {
                let h: SeqHash = h.try_into().expect("32-byte chunk");
                if self.map.get(&h) == Some(&(i as u32, row as u32)) {
                    f(&h, shard.file.f32_row(EMBEDDINGS, row)?);
                }
            }
        }
        Ok(())
    }

    /// Counts and sizes.
    pub fn stats(&self) -> ModelStats {
        let live: Vec<&LoadedShard> = self.shards.iter().filter(|s| s.live).collect();
        let quarantined = std::fs::read_dir(self.dir.join("corrupt"))
            .map(|d| d.count())
            .unwrap_or(0);
        ModelStats {
            key: self.key.clone(),
            name: self.spec.name.clone(),
            architecture: self.spec.architecture.clone(),
            dim: self.spec.dim,
            vectors: self.map.len(),
            rows: live.iter().map(|s| s.rows).sum(),
            shards: live.len(),
            bytes: live.iter().map(|s| s.info.bytes).sum(),
            quarantined,
        }
    }

    fn index_json(&self) -> Result<Vec<u8>, CacheError> {
        // Shards written meanwhile by other processes are listed too (from
        // their headers), so a concurrent writer's index never hides ours.
        let known: HashMap<&str, &LoadedShard> = self
            .shards
            .iter()
            .filter(|s| s.live)
            .map(|s| (s.info.file.as_str(), s))
            .collect();
        let mut entries = Vec::new();
        let mut total = 0usize;
        // Distinct sequences: ours from the map, others' from their hash tensors.
        let mut extra: std::collections::HashSet<SeqHash> = std::collections::HashSet::new();
        for path in self.shard_paths()? {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (rows, info) = match known.get(name.as_str()) {
                Some(s) => (s.rows, s.info.clone()),
                None => match self.check_structure(&path) {
                    Ok((file, rows)) => {
                        if let Ok(hashes) = file.bytes(HASHES, Dtype::U8) {
                            for h in hashes.chunks_exact(32) {
                                let h: SeqHash = h.try_into().expect("32-byte chunk");
                                if !self.map.contains_key(&h) {
                                    extra.insert(h);
                                }
                            }
                        }
                        let sha256 = [EMBEDDINGS, HASHES]
                            .iter()
                            .map(|t| {
                                let key = format!("{}{t}", shard::CHECKSUM_PREFIX);
                                (t.to_string(), file.metadata().get(&key).cloned().unwrap_or_default())
                            })
                            .collect();
                        (
                            rows,
                            ShardInfo {
                                file: name.clone(),
                                bytes: file.len_bytes(),
                                sha256,
                            },
                        )
                    }
                    Err(_) => continue,
                },
            };
            total += rows;
            entries.push(serde_json::json!({
                "file": format!("shards/{}", info.file),
                "rows": rows,
                "bytes": info.bytes,
                "sha256": info.sha256,
            }));
        }
        let index = serde_json::json!({
            "format": FORMAT,
            "spec_key": self.key,
            "spec": self.spec,
            "dim": self.spec.dim,
            "rows": total,
            "vectors": self.map.len() + extra.len(),
            "shards": entries,
        });
        Ok(serde_json::to_vec_pretty(&index).expect("index serialises"))
    }

    /// Rewrites `index.json` atomically from the shards on disk.
    pub fn write_index(&self) -> Result<(), CacheError> {
        self.rewrite_index(false)
    }

    fn write_index_if_changed(&self) -> Result<(), CacheError> {
        self.rewrite_index(true)
    }

    /// Lists the shards and renames the new `index.json` into place under an
    /// exclusive `flock` on `claims/index.lock`. Without it, a writer that
    /// listed the shards before another's newest shard appeared could rename
    /// its stale index over the other's complete one. With it, whoever writes
    /// last listed the shards after every shard written before it took the
    /// lock, and every shard's writer rewrites the index after its rename.
    fn rewrite_index(&self, only_if_changed: bool) -> Result<(), CacheError> {
        let _lock = self.lock("index.lock", true)?;
        let path = self.dir.join("index.json");
        let json = self.index_json()?;
        if only_if_changed && std::fs::read(&path).ok().as_deref() == Some(&json[..]) {
            return Ok(());
        }
        atomic::write_bytes_atomic(&path, &json).map_err(io_err(&path))
    }
}

impl Drop for ModelCache {
    /// Flushes what is still buffered, so an early return (an error elsewhere)
    /// does not throw finished vectors away.
    fn drop(&mut self) {
        if !self.pending_hashes.is_empty() {
            if let Err(e) = self.flush() {
                tracing::error!(
                    "could not write {} buffered vectors to the cache: {e}",
                    self.pending_hashes.len()
                );
            }
        }
    }
}

/// A held claim on a chunk of work ([`ModelCache::claim`]); dropping it releases the lock.
#[derive(Debug)]
pub struct Claim {
    _file: std::fs::File,
}

/// What [`merge`] did for one embedder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MergeReport {
    pub key: String,
    pub name: String,
    /// Vectors copied into the destination.
    pub added: usize,
    /// Vectors the destination already had.
    pub present: usize,
    /// Damaged source shards (skipped, each line names the file).
    pub problems: Vec<String>,
}

/// Copies every vector of the caches under `sources` that `into` lacks (each
/// embedder into its own directory, checksums verified on the way), writing
/// new shards atomically. Used to combine the caches of `--shard K/N` workers.
pub fn merge(sources: &[&Path], into: &Cache, flush_rows: usize) -> Result<Vec<MergeReport>, CacheError> {
    let mut reports: Vec<MergeReport> = Vec::new();
    let dest_root = std::fs::canonicalize(into.root()).ok();
    for source in sources {
        if !source.is_dir() {
            return Err(CacheError::Invalid {
                path: source.to_path_buf(),
                message: "no such cache directory".into(),
            });
        }
        if dest_root.is_some() && std::fs::canonicalize(source).ok() == dest_root {
            tracing::warn!("{}: is the destination itself, skipped", source.display());
            continue;
        }
        for dir in Cache::new(*source).model_dirs()? {
            // Sources are inputs: read only, whatever state they are in.
            let mut src = ModelCache::open_read_only(&dir)?;
            let mut dst = into.open_model(src.spec())?;
            let (mut added, mut present) = (0usize, 0usize);
            let mut failure: Option<CacheError> = None;
            src.for_each_vector(|hash, vector| {
                if failure.is_some() {
                    return;
                }
                if dst.contains(hash) {
                    present += 1;
                    return;
                }
                let result = dst.insert(*hash, &vector).and_then(|_| {
                    if dst.pending() >= flush_rows.max(1) {
                        dst.flush()?;
                    }
                    Ok(())
                });
                match result {
                    Ok(()) => added += 1,
                    Err(e) => failure = Some(e),
                }
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            dst.flush()?;
            let mut problems = src.problems().to_vec();
            problems.extend(dst.problems().iter().cloned());
            match reports.iter_mut().find(|r| r.key == src.key()) {
                Some(r) => {
                    r.added += added;
                    r.present += present;
                    r.problems.extend(problems);
                }
                None => reports.push(MergeReport {
                    key: src.key().to_string(),
                    name: src.spec().name.clone(),
                    added,
                    present,
                    problems,
                }),
            }
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedder::Pooling;

    fn spec(dim: usize) -> EmbedderSpec {
        EmbedderSpec {
            name: "test".into(),
            architecture: "onehot".into(),
            weights_digest: "00".into(),
            dim,
            layer: None,
            pooling: Pooling::Mean,
            max_residues: None,
            dtype: "f32".into(),
        }
    }

    fn shard_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("shards"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn insert_flush_reopen_and_lookup() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path());
        let s = spec(3);
        let (a, b) = (sequence_hash("ACD"), sequence_hash("mkv"));
        assert_eq!(b, sequence_hash("MKV"));
        {
            let mut m = cache.open_model(&s).unwrap();
            m.insert(a, &[1.0, 2.0, 3.0]).unwrap();
            assert_eq!(m.get(&a).unwrap(), Some(vec![1.0, 2.0, 3.0]));
            assert!(m.flush().unwrap().is_some());
            m.insert(b, &[4.0, 5.0, 6.0]).unwrap();
            assert!(matches!(m.insert(a, &[1.0]), Err(CacheError::Dimension { .. })));
            // dropped with one pending vector: Drop flushes it
        }
        let mut m = cache.open_model(&s).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            m.get_many(&[b, a, sequence_hash("W")]).unwrap(),
            vec![Some(vec![4.0, 5.0, 6.0]), Some(vec![1.0, 2.0, 3.0]), None]
        );
        let stats = m.stats();
        assert_eq!((stats.vectors, stats.shards, stats.dim), (2, 2, 3));
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(m.dir().join("index.json")).unwrap()).unwrap();
        assert_eq!(index["rows"], 2);
        assert_eq!(index["shards"].as_array().unwrap().len(), 2);
        // Another spec never sees these vectors.
        let mut other = cache.open_model(&spec(4)).unwrap();
        assert!(other.get(&a).unwrap().is_none());
        assert_eq!(cache.model_dirs().unwrap().len(), 2);
    }

    #[test]
    fn damaged_shards_are_moved_aside_and_reported() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path());
        let s = spec(2);
        let hashes: Vec<SeqHash> = ["AAA", "CCC", "DDD"].iter().map(|q| sequence_hash(q)).collect();
        {
            let mut m = cache.open_model(&s).unwrap();
            m.insert(hashes[0], &[1.0, 1.0]).unwrap();
            m.flush().unwrap();
            m.insert(hashes[1], &[2.0, 2.0]).unwrap();
            m.flush().unwrap();
            m.insert(hashes[2], &[3.0, 3.0]).unwrap();
            m.flush().unwrap();
        }
        let dir = cache.model_dir(&s);
        let files = shard_files(&dir);
        // Bit flip in the first shard's vectors, truncation of the second.
        let mut bytes = std::fs::read(&files[0]).unwrap();
        let n = bytes.len();
        bytes[n - 32 - 3] ^= 0x40;
        std::fs::write(&files[0], &bytes).unwrap();
        let bytes = std::fs::read(&files[1]).unwrap();
        std::fs::write(&files[1], &bytes[..bytes.len() - 7]).unwrap();

        let mut m = cache.open_model(&s).unwrap();
        // The truncated shard is caught when opening, the flipped one on first use.
        assert_eq!(m.problems().len(), 1);
        assert!(m.problems()[0].contains(&files[1].display().to_string()));
        assert_eq!(m.get_many(&hashes).unwrap(), vec![None, None, Some(vec![3.0, 3.0])]);
        assert_eq!(m.problems().len(), 2);
        assert!(m.problems()[1].contains("checksum mismatch"));
        assert_eq!(shard_files(&dir), vec![files[2].clone()]);
        assert_eq!(std::fs::read_dir(dir.join("corrupt")).unwrap().count(), 2);
        assert_eq!(m.stats().quarantined, 2);
    }

    #[test]
    fn stale_temporary_shards_are_ignored() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path());
        let s = spec(2);
        let dir = cache.model_dir(&s);
        std::fs::create_dir_all(dir.join("shards")).unwrap();
        let stale = dir.join("shards").join(format!(
            "{}{}-99999999-ab-shard-1.safetensors",
            atomic::TEMP_PREFIX,
            atomic::host_name()
        ));
        std::fs::write(&stale, b"half a shard").unwrap();
        let m = cache.open_model(&s).unwrap();
        assert!(m.is_empty() && m.problems().is_empty());
        assert!(!stale.exists());
    }
}
