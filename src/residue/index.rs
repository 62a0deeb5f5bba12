//! The approximate residue index: a `usearch` HNSW graph over a store's unit
//! rows, built once per store, saved beside it and memory-mapped at query time.
//!
//! Exact search costs one dot product per store row per query residue, so it
//! grows linearly with the store; an HNSW graph visits a few thousand rows per
//! query whatever the store's size. `usearch` was chosen over the alternatives
//! by measurement (`protfam residue recall`, figures in docs/residue-knn.md):
//! it brings its own C++ sources (Debian's FAISS is a static archive without
//! its C API), dispatches its dot products at run time to the CPU's best
//! kernels (AVX-512 VNNI for i8, AVX512-BF16, AVX2, NEON, scalar), stores
//! vectors quantised (f16, bf16, i8), and serves a saved graph straight from a
//! memory map (`Index::view`), so a process opens a multi-GiB index in
//! milliseconds and processes share its pages. `instant-distance` (the
//! in-memory `hnsw` index kind) has none of the last three.
//!
//! The graph only proposes candidates: the `candidates` best of each query
//! row are rescored exactly (f32 cosine on the store's f16 rows) and the top
//! `k` kept, so every similarity that reaches scoring is the exact one, and
//! the quantisation only decides which rows are looked at.
//!
//! Files, in the store's directory: `index-<name>.usearch` (the graph) and
//! `index-<name>.json` (its parameters, the store digest it was built from,
//! its size and SHA-256), where `<name>` holds the quantisation, graph
//! parameters and the store digest, so another store or other parameters
//! never reuse a graph. Both are written to temporary names and renamed (the
//! JSON last), under an exclusive lock, so concurrent processes build a graph
//! once and a killed build leaves no index. An index whose file disagrees
//! with its JSON, or whose JSON disagrees with the store, is rebuilt, never
//! searched.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::search::{Hit, HitTable};
use super::store::{sha256_file, ResidueStore};
use super::ResidueError;
use crate::file_error::FileError;

const FORMAT: &str = "protfam-usearch-index-1";

/// How the graph stores its vectors (and computes its candidate distances).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    F32,
    F16,
    Bf16,
    #[default]
    I8,
}

impl Quantization {
    fn scalar_kind(self) -> usearch::ScalarKind {
        match self {
            Quantization::F32 => usearch::ScalarKind::F32,
            Quantization::F16 => usearch::ScalarKind::F16,
            Quantization::Bf16 => usearch::ScalarKind::BF16,
            Quantization::I8 => usearch::ScalarKind::I8,
        }
    }
}

impl std::str::FromStr for Quantization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Quantization::F32),
            "f16" => Ok(Quantization::F16),
            "bf16" => Ok(Quantization::Bf16),
            "i8" => Ok(Quantization::I8),
            _ => Err(format!(
                "unknown index quantisation {s:?} (expected f32, f16, bf16 or i8)"
            )),
        }
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quantization::F32 => "f32",
            Quantization::F16 => "f16",
            Quantization::Bf16 => "bf16",
            Quantization::I8 => "i8",
        })
    }
}

/// Graph and search parameters of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexParams {
    pub quantization: Quantization,
    /// Links per node (HNSW `M`).
    pub connectivity: usize,
    /// Candidate list length while inserting (`ef_construction`).
    pub expansion_add: usize,
    /// Candidate list length while searching (`ef`).
    pub expansion_search: usize,
    /// Graph hits per query row rescored exactly before the top `k` are kept.
    pub candidates: usize,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams {
            quantization: Quantization::I8,
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 64,
            candidates: 32,
        }
    }
}

impl IndexParams {
    pub fn validate(&self) -> Result<(), ResidueError> {
        if self.connectivity < 2 || self.expansion_add == 0 || self.expansion_search == 0 || self.candidates == 0 {
            return Err(ResidueError::InvalidParams(format!(
                "the residue index needs connectivity >= 2 and expansion and candidate counts >= 1 (got {self:?})"
            )));
        }
        Ok(())
    }

    fn options(&self, dim: usize) -> usearch::IndexOptions {
        usearch::IndexOptions {
            dimensions: dim,
            // Rows and queries are unit length: the inner product is the cosine.
            metric: usearch::MetricKind::IP,
            quantization: self.quantization.scalar_kind(),
            connectivity: self.connectivity,
            expansion_add: self.expansion_add,
            expansion_search: self.expansion_search,
            multi: false,
        }
    }
}

/// `index-<name>.json`: what the graph file is and what it was built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct IndexMeta {
    format: String,
    store_digest: String,
    n_rows: usize,
    dim: usize,
    quantization: Quantization,
    connectivity: usize,
    expansion_add: usize,
    file: String,
    bytes: u64,
    sha256: String,
    build_seconds: f64,
}

/// A saved graph over one store, memory-mapped.
pub struct ResidueIndex {
    index: usearch::Index,
    params: IndexParams,
    meta: IndexMeta,
    path: PathBuf,
}

/// An index file set beside a store: opened by `open` when it is complete and
/// current, else built once under an exclusive lock on `lock_path` (concurrent
/// callers wait, then open what the first one built) and opened. `exists`
/// says whether a (damaged or stale) earlier file is there, which the rebuild
/// reports.
pub(crate) fn open_or_build_locked<T>(
    lock_path: &Path,
    exists: impl Fn() -> bool,
    open: impl Fn() -> Result<T, ResidueError>,
    build: impl FnOnce() -> Result<(), ResidueError>,
) -> Result<T, ResidueError> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(FileError::io(lock_path))?;
    crate::atomic::lock_exclusive(&lock, true).map_err(FileError::io(lock_path))?;
    // Another process may have finished it while this one waited.
    match open() {
        Ok(index) => return Ok(index),
        Err(e) if exists() => tracing::warn!("rebuilding the residue index: {e}"),
        Err(_) => {}
    }
    build()?;
    open()
}

/// SHA-256 over what defines a store's rows: its shards' checksums, row count, dimension and stride.
pub(crate) fn store_digest(store: &ResidueStore) -> String {
    let mut h = Sha256::new();
    h.update(format!("{} {} {}\n", store.n_rows(), store.dim(), store.stride()));
    for shard in &store.manifest.shards {
        h.update(format!("{} {} {}\n", shard.file, shard.n_rows, shard.sha256));
    }
    hex::encode(h.finalize())
}

fn usearch_error<'p, E: std::fmt::Display>(path: &'p Path, what: &str) -> impl FnOnce(E) -> ResidueError + 'p {
    let what = what.to_string();
    move |e| FileError::invalid(path, format!("{what}: {e}")).into()
}

impl ResidueIndex {
    /// The file name stem of the index of `store` with `params` (`index-<name>`).
    pub fn stem(store: &ResidueStore, params: &IndexParams) -> String {
        format!(
            "index-usearch-{}-m{}-a{}-{}",
            params.quantization,
            params.connectivity,
            params.expansion_add,
            &store_digest(store)[..12]
        )
    }

    /// Opens the saved index of `store`, or builds and saves it first (also
    /// when the saved one is damaged or stale, with a warning saying why).
    /// Concurrent callers on one store wait for the one that builds.
    pub fn open_or_build(store: &ResidueStore, params: &IndexParams) -> Result<ResidueIndex, ResidueError> {
        params.validate()?;
        let stem = Self::stem(store, params);
        let graph = store.dir.join(format!("{stem}.usearch"));
        let meta_path = store.dir.join(format!("{stem}.json"));
        if let Ok(index) = Self::open(store, params, &graph, &meta_path) {
            return Ok(index);
        }
        open_or_build_locked(
            &store.dir.join(format!("{stem}.lock")),
            || meta_path.exists() || graph.exists(),
            || Self::open(store, params, &graph, &meta_path),
            || Self::build(store, params, &graph, &meta_path),
        )
    }

    fn open(
        store: &ResidueStore,
        params: &IndexParams,
        graph: &Path,
        meta_path: &Path,
    ) -> Result<ResidueIndex, ResidueError> {
        let text = std::fs::read_to_string(meta_path).map_err(FileError::io(meta_path))?;
        let meta: IndexMeta =
            serde_json::from_str(&text).map_err(FileError::unreadable(meta_path, "invalid index description"))?;
        let expected = (
            FORMAT,
            store_digest(store),
            store.n_rows(),
            store.dim(),
            params.quantization,
            params.connectivity,
            params.expansion_add,
        );
        let found = (
            meta.format.as_str(),
            meta.store_digest.clone(),
            meta.n_rows,
            meta.dim,
            meta.quantization,
            meta.connectivity,
            meta.expansion_add,
        );
        if expected != found {
            return Err(FileError::invalid(
                meta_path,
                "the index was built from another store or with other parameters",
            )
            .into());
        }
        let bytes = std::fs::metadata(graph).map_err(FileError::io(graph))?.len();
        if bytes != meta.bytes || sha256_file(graph)? != meta.sha256 {
            return Err(
                FileError::invalid(graph, "checksum mismatch: the index file was modified or corrupted").into(),
            );
        }
        let index = usearch::Index::new(&params.options(store.dim()))
            .map_err(usearch_error(graph, "cannot create the index"))?;
        let path_str = graph
            .to_str()
            .ok_or_else(|| FileError::invalid(graph, "the index path is not UTF-8"))?;
        index
            .view(path_str)
            .map_err(usearch_error(graph, "cannot map the index"))?;
        // Search contexts for every worker thread (a view keeps the graph read-only).
        index
            .reserve_capacity_and_threads(index.size(), rayon::current_num_threads().max(1))
            .map_err(usearch_error(graph, "cannot reserve search threads"))?;
        index.change_expansion_search(params.expansion_search);
        if index.size() != store.n_rows() || index.dimensions() != store.dim() {
            return Err(FileError::invalid(
                graph,
                format!(
                    "the index holds {} rows of dimension {}, the store {} of dimension {}",
                    index.size(),
                    index.dimensions(),
                    store.n_rows(),
                    store.dim()
                ),
            )
            .into());
        }
        Ok(ResidueIndex {
            index,
            params: *params,
            meta,
            path: graph.to_path_buf(),
        })
    }

    fn build(store: &ResidueStore, params: &IndexParams, graph: &Path, meta_path: &Path) -> Result<(), ResidueError> {
        let started = Instant::now();
        let dim = store.dim();
        let index =
            usearch::Index::new(&params.options(dim)).map_err(usearch_error(graph, "cannot create the index"))?;
        let threads = rayon::current_num_threads().max(1);
        index
            .reserve_capacity_and_threads(store.n_rows(), threads)
            .map_err(usearch_error(graph, "cannot reserve the index"))?;
        let progress = crate::progress::bar(store.n_rows() as u64, "residues indexed");
        for (start, end) in store.blocks(65_536) {
            let rows = store.rows_f32(start, end, true);
            rows.par_chunks(dim).enumerate().try_for_each(|(i, row)| {
                index
                    .add((start + i) as u64, row)
                    .map_err(usearch_error(graph, "cannot add a row to the index"))
            })?;
            progress.inc((end - start) as u64);
        }
        progress.finish_and_clear();
        crate::atomic::write_atomic_via_path(graph, |temp| {
            let temp_str = temp
                .to_str()
                .ok_or_else(|| std::io::Error::other("the index path is not UTF-8"))?;
            index
                .save(temp_str)
                .map_err(|e| std::io::Error::other(format!("cannot save the index: {e}")))
        })
        .map_err(FileError::io(graph))?;
        let bytes = std::fs::metadata(graph).map_err(FileError::io(graph))?.len();
        let meta = IndexMeta {
            format: FORMAT.into(),
            store_digest: store_digest(store),
            n_rows: store.n_rows(),
            dim,
            quantization: params.quantization,
            connectivity: params.connectivity,
            expansion_add: params.expansion_add,
            file: graph
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            bytes,
            sha256: sha256_file(graph)?,
            build_seconds: started.elapsed().as_secs_f64(),
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| FileError::invalid(meta_path, e.to_string()))?;
        crate::atomic::write_bytes_atomic(meta_path, &json).map_err(FileError::io(meta_path))?;
        tracing::info!(
            "built the residue index {} ({} rows, {:.1} MiB) in {:.1}s",
            graph.display(),
            store.n_rows(),
            bytes as f64 / (1024.0 * 1024.0),
            meta.build_seconds
        );
        Ok(())
    }

    /// The graph file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the graph file (mapped, not read, at query time).
    pub fn disk_bytes(&self) -> u64 {
        self.meta.bytes
    }

    /// Seconds the saved graph took to build.
    pub fn build_seconds(&self) -> f64 {
        self.meta.build_seconds
    }

    /// The top `k` store rows by exact cosine among each unit query row's
    /// graph candidates, best first (ties keep the lower row).
    pub fn top_k(&self, store: &ResidueStore, queries: &[f32], k: usize) -> Result<HitTable, ResidueError> {
        let dim = store.dim();
        let n = super::search::check_queries(queries, dim, store, k)?;
        let mut table = HitTable::new(n, k);
        let wanted = self.params.candidates.max(k);
        table
            .hits
            .par_chunks_mut(k)
            .zip(queries.par_chunks(dim))
            .try_for_each_init(
                // One candidate row buffer per worker, reused for every candidate.
                || Vec::with_capacity(dim),
                |target, (slots, q)| -> Result<(), ResidueError> {
                    let found = self
                        .index
                        .search(q, wanted)
                        .map_err(usearch_error(&self.path, "index search failed"))?;
                    let mut rescored: Vec<Hit> = found
                        .keys
                        .iter()
                        .map(|&key| {
                            let row = key as usize;
                            target.clear();
                            store.extend_rows_f32(row, row + 1, true, target);
                            Hit {
                                row: row as u32,
                                similarity: q.iter().zip(target.iter()).map(|(a, b)| a * b).sum(),
                            }
                        })
                        .collect();
                    rescored.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.row.cmp(&b.row)));
                    for (slot, hit) in slots.iter_mut().zip(rescored) {
                        *slot = hit;
                    }
                    Ok(())
                },
            )?;
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_parameters_are_refused() {
        let params = IndexParams {
            connectivity: 1,
            ..Default::default()
        };
        assert!(params.validate().is_err());
        assert!("int4".parse::<Quantization>().is_err());
        assert_eq!("bf16".parse::<Quantization>().unwrap(), Quantization::Bf16);
    }
}
