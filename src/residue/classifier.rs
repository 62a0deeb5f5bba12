//! The `residue-knn` classifier: fit builds (or reopens) the per-residue
//! store of the training sequences; predict embeds the query residues,
//! searches their nearest training residues and scores families.
//!
//! Unlike the pooled-vector classifiers it works on sequences, because it
//! needs residue matrices: `fit` takes training [`Record`]s and an
//! [`Embedder`], `predict` takes query records and the same embedder (checked
//! against the store's [`EmbedderSpec`]). Its saved form (`residue-knn.json`
//! plus `labels.json`) references the store by path and key instead of
//! copying it.
//!
//! A query with no searchable residue (empty, or only `X` and other ambiguous
//! letters) or without any hit above `min_similarity` gets no family
//! ([`ResiduePrediction::class`] is `None`, with the reason); so does one
//! whose best family score is under `min_score` (abstention).

use crate::file_error::FileError;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::align::{align_candidates, candidate_sequences};
use super::index::{IndexParams, ResidueIndex};
use super::ivf::{IvfIndex, IvfParams};
use super::score::{score_query, FamilyScores, ScoreParams, Targets};
use super::search::{exact_top_k, normalise_rows, ApproxIndex, ApproxOptions, HitTable, SearchOptions};
use super::shortlist::{shortlisted_top_k, SequenceMeans, ShortlistParams};
use super::store::{kept_positions, ResidueStore, StoreConfig};
use super::ResidueError;
use crate::classify::Prediction;
use crate::embedder::{Embedder, EmbedderSpec};
use crate::io::vocab::LabelVocab;
use crate::io::Record;

/// Classifier name used by `train`, `evaluate`, `annotate` and `compare`.
pub const NAME: &str = "residue-knn";

/// File of the saved form in a classifier directory.
pub const SAVED_FILE: &str = "residue-knn.json";

/// How query residues find their nearest stored residues: exact blocked
/// search over the whole store (`exact`, the reference); exact search of each
/// residue's nearest k-means lists, then of each query window's most-hit
/// training sequences (`ivf`, saved beside the store, [`super::ivf`]); exact
/// search over a shortlist of training sequences by mean vector
/// (`shortlist`, [`super::shortlist`]); or an approximate graph: `usearch`
/// (saved beside the store and memory-mapped, [`super::index`]) or `hnsw`
/// (`instant-distance`, built in memory at load; kept for comparison).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    #[default]
    Exact,
    Ivf,
    Shortlist,
    Hnsw,
    Usearch,
}

impl std::str::FromStr for IndexKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(IndexKind::Exact),
            "shortlist" => Ok(IndexKind::Shortlist),
            "ivf" => Ok(IndexKind::Ivf),
            "hnsw" => Ok(IndexKind::Hnsw),
            "usearch" => Ok(IndexKind::Usearch),
            other => Err(format!(
                "unknown index {other:?} (ivf, exact, usearch, shortlist or hnsw)"
            )),
        }
    }
}

impl std::fmt::Display for IndexKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IndexKind::Exact => "exact",
            IndexKind::Shortlist => "shortlist",
            IndexKind::Ivf => "ivf",
            IndexKind::Hnsw => "hnsw",
            IndexKind::Usearch => "usearch",
        })
    }
}

/// Hyper-parameters of `residue-knn`. Defaults were tuned on the dev part of
/// the bundled clustered split with NEAR (docs/residue-knn.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResidueKnnParams {
    /// Keep every `stride`-th training residue.
    pub stride: usize,
    /// Search every `query_stride`-th query residue.
    pub query_stride: usize,
    /// Hits searched per query residue (at least `score.top_k`).
    pub search_k: usize,
    pub score: ScoreParams,
    /// Below this family score (share of the query explained) predict nothing.
    pub min_score: f32,
    pub index: IndexKind,
    #[serde(default)]
    pub hnsw_ef: usize,
    /// Graph and search parameters of the `usearch` index.
    #[serde(default)]
    pub usearch: IndexParams,
    /// Shortlist size and window of the `shortlist` search.
    #[serde(default)]
    pub shortlist: ShortlistParams,
    /// Lists and probes of the `ivf` index.
    #[serde(default)]
    pub ivf: IvfParams,
    /// Store rows per search block and query rows per tile (bounded memory).
    pub target_block: usize,
    pub query_block: usize,
    /// Query rows searched per pass over the store (bounds query memory).
    pub query_chunk_rows: usize,
    /// Training sequences per store shard.
    pub shard_sequences: usize,
}

impl Default for ResidueKnnParams {
    fn default() -> Self {
        ResidueKnnParams {
            stride: 2,
            // Every query residue is searched (twice the search time of stride 2) and
            // the alignment uses those on the store's stride.
            query_stride: 1,
            // Best of the 924 settings `protfam residue tune --residue-query-stride 1`
            // tried on the dev part of the bundled clustered split with NEAR: 40 of 366
            // errors, against 51 for the best vote without alignment (57 and 62 at query
            // stride 2 for the best vote and the simple vote); see docs/residue-knn.md.
            search_k: 10,
            score: ScoreParams {
                top_k: 10,
                min_similarity: 0.0,
                diagonal_weight: 1.0,
                diagonal_band: 4,
                diagonal_cap: 8,
                aggregate: super::Aggregate::Family,
                align: super::AlignParams {
                    candidates: 40,
                    shift: 0.05,
                    gap_open: 0.25,
                    gap_extend: 0.05,
                    weight: 1.0,
                },
            },
            min_score: 0.0,
            // The IVF index holds exact search's error on the bundled clustered test part within
            // 0.5 points (251 against 246 errors of 1,248) at 22-27x its speed (docs/residue-knn.md);
            // `--residue-index exact` is the reference.
            index: IndexKind::Ivf,
            hnsw_ef: 100,
            usearch: IndexParams::default(),
            shortlist: ShortlistParams::default(),
            ivf: IvfParams::default(),
            target_block: 8192,
            query_block: 512,
            query_chunk_rows: 262_144,
            shard_sequences: 512,
        }
    }
}

impl ResidueKnnParams {
    /// The simple vote: stride 2 on both sides, top-1, no diagonal term.
    pub fn simple_vote() -> Self {
        ResidueKnnParams {
            stride: 2,
            query_stride: 2,
            search_k: 1,
            score: ScoreParams::simple_vote(),
            ..Default::default()
        }
    }

    /// Name in reports: `residue-knn` for the tuned defaults, `residue-knn-simple`
    /// for the simple vote, otherwise the name plus the settings that differ
    /// from the defaults (`residue-knn-s4-k3-d0.5`), so that runs with
    /// different settings never share a report row or a cached run.
    pub fn label(&self) -> String {
        let defaults = ResidueKnnParams::default();
        if self.same_model(&defaults) {
            return NAME.to_string();
        }
        if self.same_model(&ResidueKnnParams::simple_vote()) {
            return format!("{NAME}-simple");
        }
        let mut label = NAME.to_string();
        let (s, d) = (&self.score, &defaults.score);
        if self.stride != defaults.stride {
            label.push_str(&format!("-s{}", self.stride));
        }
        // The query stride `--residue-stride` implies: the default's at the default stride, else the stride.
        let implied_query_stride = if self.stride == defaults.stride {
            defaults.query_stride
        } else {
            self.stride
        };
        if self.query_stride != implied_query_stride {
            label.push_str(&format!("-qs{}", self.query_stride));
        }
        if s.top_k != d.top_k {
            label.push_str(&format!("-k{}", s.top_k));
        }
        if s.min_similarity != d.min_similarity {
            label.push_str(&format!("-m{}", s.min_similarity));
        }
        if s.diagonal_weight != d.diagonal_weight {
            label.push_str(&format!("-d{}", s.diagonal_weight));
        }
        if s.diagonal_weight > 0.0 && (s.diagonal_band != d.diagonal_band || s.diagonal_cap != d.diagonal_cap) {
            label.push_str(&format!("-b{}c{}", s.diagonal_band, s.diagonal_cap));
        }
        if s.aggregate != d.aggregate {
            label.push_str(&format!("-{}", s.aggregate));
        }
        if s.align != d.align {
            let a = &s.align;
            if a.is_on() {
                label.push_str(&format!(
                    "-a{}s{}o{}e{}w{}",
                    a.candidates, a.shift, a.gap_open, a.gap_extend, a.weight
                ));
            } else {
                label.push_str("-noalign");
            }
        }
        if self.min_score != defaults.min_score {
            label.push_str(&format!("-ms{}", self.min_score));
        }
        if self.index != defaults.index {
            label.push_str(&format!("-{}", self.index));
        }
        if self.index == IndexKind::Shortlist && self.shortlist != defaults.shortlist {
            label.push_str(&format!("-sl{}w{}", self.shortlist.sequences, self.shortlist.window));
        }
        if self.index == IndexKind::Ivf && self.ivf != defaults.ivf {
            let p = &self.ivf;
            label.push_str(&format!("-c{}p{}r{}w{}", p.lists, p.probes, p.sequences, p.window));
            if p.products != defaults.ivf.products {
                label.push_str(&format!("-{}", p.products));
            }
        }
        label
    }

    /// Key of this setting's runs in `compare`'s run cache: the embedder's key plus a digest
    /// of every parameter that changes answers, so that a run made under other settings
    /// (for example the defaults of an older version, which share the label) is never reused.
    pub fn run_key(&self, embedder_key: &str) -> String {
        use sha2::{Digest, Sha256};
        let answers = serde_json::json!({
            "stride": self.stride,
            "query_stride": self.query_stride,
            "score": self.score,
            "min_score": self.min_score,
            "index": self.index,
            "hnsw_ef": if self.index == IndexKind::Hnsw { self.hnsw_ef } else { 0 },
            "usearch": if self.index == IndexKind::Usearch { Some(self.usearch) } else { None },
            "shortlist": if self.index == IndexKind::Shortlist { Some(self.shortlist) } else { None },
            "ivf": if self.index == IndexKind::Ivf { Some(self.ivf) } else { None },
        });
        let digest = hex::encode(Sha256::digest(answers.to_string().as_bytes()));
        format!("{embedder_key}-{}", &digest[..12])
    }

    /// Same predictions as `other` (block sizes and sharding change speed and memory, not answers).
    fn same_model(&self, other: &ResidueKnnParams) -> bool {
        self.stride == other.stride
            && self.query_stride == other.query_stride
            && self.score == other.score
            && self.min_score == other.min_score
            && self.index == other.index
            && (self.index != IndexKind::Hnsw || self.hnsw_ef == other.hnsw_ef)
            && (self.index != IndexKind::Usearch || self.usearch == other.usearch)
            && (self.index != IndexKind::Shortlist || self.shortlist == other.shortlist)
            && (self.index != IndexKind::Ivf || self.ivf == other.ivf)
    }

    pub fn validate(&self) -> Result<(), ResidueError> {
        self.score.validate()?;
        let bad = |m: &str| Err(ResidueError::InvalidParams(m.to_string()));
        if self.stride == 0 || self.query_stride == 0 {
            return bad("strides must be at least 1");
        }
        if self.search_k < self.score.top_k {
            return bad("search_k must be at least top_k");
        }
        if self.target_block == 0 || self.query_block == 0 || self.query_chunk_rows == 0 || self.shard_sequences == 0 {
            return bad("block sizes must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.min_score) {
            return bad("min_score must lie in [0, 1]");
        }
        if self.index == IndexKind::Hnsw && self.hnsw_ef == 0 {
            return bad("hnsw_ef must be at least 1");
        }
        if self.index == IndexKind::Usearch {
            self.usearch.validate()?;
        }
        if self.index == IndexKind::Shortlist {
            self.shortlist.validate()?;
        }
        if self.index == IndexKind::Ivf {
            self.ivf.validate()?;
        }
        Ok(())
    }

    /// Builds or reopens the training store under `store_root` and returns the fitted classifier.
    pub fn fit(
        &self,
        embedder: &dyn Embedder,
        train: &[Record],
        vocab: &LabelVocab,
        store_root: &Path,
    ) -> Result<ResidueKnn, ResidueError> {
        self.validate()?;
        if train.is_empty() {
            return Err(ResidueError::Data("no training sequences".into()));
        }
        if let Some(r) = train.iter().find(|r| r.family.is_none()) {
            return Err(ResidueError::Data(format!(
                "training sequence {} has no family label",
                r.id
            )));
        }
        let config = StoreConfig {
            stride: self.stride,
            shard_sequences: self.shard_sequences,
            batch_tokens: None,
        };
        let (store, stats) = ResidueStore::build_or_open(store_root, embedder, train, &config)?;
        tracing::info!(
            "residue store {}: {} rows ({} shards reused, {} written, {} residues embedded in {:.1}s)",
            store.dir.display(),
            store.n_rows(),
            stats.shards_reused,
            stats.shards_written,
            stats.residues_embedded,
            stats.seconds
        );
        ResidueKnn::from_store(self.clone(), store, vocab.clone())
    }

    /// [`Self::fit`] for a search split over store parts (a task of `residue
    /// search --store-part K/N`, or the merge of their hits): the store is
    /// built or opened, but no whole-store index, which a store larger than
    /// one machine would not fit; each part opens the IVF index of its own
    /// rows ([`super::eval::search_store_part`]). Exact and ivf only.
    pub fn fit_for_store_parts(
        &self,
        embedder: &dyn Embedder,
        train: &[Record],
        vocab: &LabelVocab,
        store_root: &Path,
    ) -> Result<ResidueKnn, ResidueError> {
        if !matches!(self.index, IndexKind::Exact | IndexKind::Ivf) {
            return Err(ResidueError::InvalidParams(format!(
                "a search split over store parts is exact or ivf (--residue-index exact|ivf), not {}",
                self.index
            )));
        }
        let unindexed = ResidueKnnParams {
            index: IndexKind::Exact,
            ..self.clone()
        };
        let mut knn = unindexed.fit(embedder, train, vocab, store_root)?;
        // Still `ivf` for the parts and their hits' key; `search` refuses it as a whole.
        knn.params.index = self.index;
        Ok(knn)
    }
}

/// One family's evidence for a query beyond its combined score: what the
/// learned combinations (`residue-knn-tuned`, `hybrid`) weigh.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyEvidence {
    pub class: usize,
    /// Share of the query's residues whose best hit of this family voted for it.
    pub vote: f32,
    /// Best alignment score of one of its sequences (0 when none was aligned).
    pub alignment: f32,
    /// Second-best aligned sequence of the family (0 when fewer than two).
    pub second_alignment: f32,
    /// How many of its sequences were among the aligned candidates.
    pub aligned_members: usize,
    /// Best alignment of its sequences on the signal-enhanced matrix, per
    /// [`super::align::ENHANCED_VARIANTS`] (0 when none was aligned or when
    /// [`ResidueKnn::family_evidence`] was not asked for them).
    pub enhanced_alignment: [f32; 2],
    /// `(vote + weight x alignment) / (1 + weight)`: the fixed-weight score.
    pub combined: f32,
    /// Its best aligned training sequence.
    pub best_aligned: Option<u32>,
}

/// A query's answer, with the reason when there is no family.
#[derive(Debug, Clone, PartialEq)]
pub struct ResiduePrediction {
    /// Predicted class, `None` when abstaining.
    pub class: Option<usize>,
    /// Best family score (share of query residues explained, 0..1).
    pub score: f32,
    /// Families with scores, best first.
    pub top: Vec<(usize, f32)>,
    pub n_query_residues: usize,
    /// Nearest training sequence of the winning family and its best residue similarity.
    pub nearest: Option<(usize, f32)>,
    /// Why no family was given.
    pub abstained: Option<String>,
}

impl ResiduePrediction {
    /// The form `annotate` and its calibration use: the top family even when
    /// abstaining (the caller marks it not confident), and the nearest training
    /// sequence at cosine distance `1 - similarity`. `None` when there is no
    /// family at all (no searchable residue or no hit).
    pub fn to_ranked(&self) -> Option<Prediction> {
        let &(class, score) = self.top.first()?;
        Some(Prediction {
            class: self.class.unwrap_or(class),
            score: if self.class.is_some() { self.score } else { score },
            top: self.top.clone(),
            nearest: self.nearest.map(|(seq, sim)| (seq, 1.0 - sim)),
        })
    }

    /// The shared [`Prediction`] form; `None` for an abstention.
    pub fn to_prediction(&self) -> Option<Prediction> {
        Some(Prediction {
            class: self.class?,
            score: self.score,
            top: self.top.clone(),
            nearest: self.nearest,
        })
    }
}

/// Embedded, strided, normalised query residues of many sequences.
#[derive(Debug, Clone, Default)]
pub struct QueryResidues {
    pub dim: usize,
    /// Row range of each query sequence.
    pub ranges: Vec<(usize, usize)>,
    pub positions: Vec<u32>,
    pub data: Vec<f32>,
}

impl QueryResidues {
    /// Embeds `queries` (length-sorted batches of at most `batch_tokens` residues) and keeps every
    /// `stride`-th informative residue.
    pub fn embed(
        embedder: &dyn Embedder,
        queries: &[Record],
        stride: usize,
        batch_tokens: usize,
    ) -> Result<Self, ResidueError> {
        let dim = embedder.spec().dim;
        let mut out = QueryResidues {
            dim,
            ..Default::default()
        };
        let mut order: Vec<usize> = (0..queries.len()).collect();
        order.sort_by_key(|&i| queries[i].sequence.len());
        let mut per_query: Vec<(Vec<u32>, Vec<f32>)> = vec![Default::default(); queries.len()];
        // Embedding a few thousand queries takes minutes: the bar (or a log line every 30 s) says so.
        let progress = crate::progress::bar(queries.len() as u64, "query sequences");
        progress.set_message("embedding queries");
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < order.len() && (end == start || tokens + queries[order[end]].sequence.len() <= batch_tokens) {
                tokens += queries[order[end]].sequence.len();
                end += 1;
            }
            // Sequences with nothing to search are not embedded at all.
            let todo: Vec<usize> = order[start..end]
                .iter()
                .copied()
                .filter(|&i| !kept_positions(&queries[i].sequence, stride).is_empty())
                .collect();
            let batch: Vec<&str> = todo.iter().map(|&i| queries[i].sequence.as_str()).collect();
            let mats = if batch.is_empty() {
                Vec::new()
            } else {
                embedder.embed_residues(&batch)?
            };
            for (&i, m) in todo.iter().zip(mats) {
                if m.len != queries[i].sequence.len() || m.dim != dim {
                    return Err(ResidueError::Data(format!(
                        "query {}: embedder returned {}x{} for {} residues",
                        queries[i].id,
                        m.len,
                        m.dim,
                        queries[i].sequence.len()
                    )));
                }
                let kept = kept_positions(&queries[i].sequence, stride);
                let mut rows = Vec::with_capacity(kept.len() * dim);
                for &p in &kept {
                    rows.extend_from_slice(m.row(p as usize));
                }
                normalise_rows(&mut rows, dim);
                per_query[i] = (kept, rows);
            }
            progress.inc((end - start) as u64);
            start = end;
        }
        progress.finish_and_clear();
        for (positions, rows) in per_query {
            let first = out.positions.len();
            out.positions.extend(positions);
            out.data.extend(rows);
            out.ranges.push((first, out.positions.len()));
        }
        Ok(out)
    }

    pub fn n_rows(&self) -> usize {
        self.positions.len()
    }
}

/// Query residues with their searched hits: what scoring needs, reusable across score settings.
#[derive(Debug, Clone)]
pub struct QueryHits {
    pub ranges: Vec<(usize, usize)>,
    pub positions: Vec<u32>,
    /// The unit query rows (`dim` wide), for the alignment stage.
    pub dim: usize,
    pub data: Vec<f32>,
    pub table: HitTable,
}

impl QueryHits {
    pub fn new(residues: QueryResidues, table: HitTable) -> QueryHits {
        QueryHits {
            ranges: residues.ranges,
            positions: residues.positions,
            dim: residues.dim,
            data: residues.data,
            table,
        }
    }

    /// Writes the searched hits to `path` under `key`, which names everything they
    /// depend on (store, query records, strides, `k`), so that tuning can score new
    /// settings without searching again. A checksummed shard
    /// ([`crate::cache::shard::write_shard`]: atomic, SHA-256 per tensor).
    pub fn save(&self, path: &Path, key: &str) -> Result<(), ResidueError> {
        use crate::cache::shard::{write_shard, TensorData};
        let ranges: Vec<u32> = self.ranges.iter().flat_map(|&(a, b)| [a as u32, b as u32]).collect();
        let hit_rows: Vec<u32> = self.table.hits.iter().map(|h| h.row).collect();
        let hit_sims: Vec<f32> = self.table.hits.iter().map(|h| h.similarity).collect();
        let (n_rows, k) = (self.positions.len(), self.table.k);
        let tensors = [
            TensorData::u32("ranges", vec![self.ranges.len(), 2], &ranges),
            TensorData::u32("positions", vec![n_rows], &self.positions),
            TensorData::f32("data", vec![n_rows, self.dim], &self.data),
            TensorData::u32("hit_rows", vec![n_rows, k], &hit_rows),
            TensorData::f32("hit_similarities", vec![n_rows, k], &hit_sims),
        ];
        let metadata = [("key".to_string(), key.to_string())].into_iter().collect();
        write_shard(path, &tensors, &metadata)?;
        Ok(())
    }

    /// Reads hits saved by [`QueryHits::save`] for `n_queries` queries searched
    /// against a store of `store_rows` rows: `None` when the file is missing or was
    /// saved under another key (stale); an error when it is unreadable, fails its
    /// checksums or does not fit those counts, so that a damaged file can neither
    /// panic scoring nor answer wrongly.
    pub fn load(
        path: &Path,
        key: &str,
        n_queries: usize,
        store_rows: usize,
    ) -> Result<Option<QueryHits>, ResidueError> {
        use crate::cache::shard::ShardFile;
        if !path.exists() {
            return Ok(None);
        }
        let file = ShardFile::open(path)?;
        if file.metadata().get("key").map(String::as_str) != Some(key) {
            return Ok(None);
        }
        file.verify()?;
        let u32s = |name: &str| file.u32_values(name);
        let f32s = |name: &str| file.f32_values(name);
        let bad = |what: &str| Err(FileError::invalid(path, format!("{what} (damaged hits file)")).into());
        let ranges_t = u32s("ranges")?;
        let positions = u32s("positions")?;
        let (n_rows, dim, k) = match (file.shape("data")?, file.shape("hit_rows")?) {
            ([n, d], [n2, k]) if *n == positions.len() && n2 == n => (*n, *d, *k),
            _ => return bad("tensor shapes disagree"),
        };
        let data = f32s("data")?;
        let rows = u32s("hit_rows")?;
        let sims = f32s("hit_similarities")?;
        let ranges: Vec<(usize, usize)> = ranges_t
            .chunks_exact(2)
            .map(|c| (c[0] as usize, c[1] as usize))
            .collect();
        if ranges.len() != n_queries || ranges_t.len() != 2 * n_queries {
            return bad(&format!("{} query ranges for {n_queries} queries", ranges.len()));
        }
        if ranges.iter().any(|&(a, b)| a > b || b > n_rows) || data.len() != n_rows * dim || sims.len() != rows.len() {
            return bad("query ranges or tensor sizes out of bounds");
        }
        let hits: Vec<super::search::Hit> = rows
            .into_iter()
            .zip(sims)
            .map(|(row, similarity)| super::search::Hit { row, similarity })
            .collect();
        if hits
            .iter()
            .any(|h| !h.is_empty() && (h.row as usize >= store_rows || !h.similarity.is_finite()))
        {
            return bad(&format!("a hit outside the store's {store_rows} rows"));
        }
        Ok(Some(QueryHits {
            ranges,
            positions,
            dim,
            data,
            table: HitTable { k, hits },
        }))
    }
}

/// The saved form (`residue-knn.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedResidueKnn {
    pub classifier: String,
    pub params: ResidueKnnParams,
    pub embedder: EmbedderSpec,
    /// Absolute path of the store directory and its key (the directory name).
    pub store_dir: PathBuf,
    pub store_key: String,
    pub store_data_digest: String,
    /// Where the training sequences came from (`<root>/<split>/train`), so
    /// `annotate` can recalibrate on the same split's dev part.
    #[serde(default)]
    pub source: String,
}

impl SavedResidueKnn {
    /// Reads `residue-knn.json` from a classifier directory.
    pub fn read(dir: &Path) -> Result<SavedResidueKnn, ResidueError> {
        let path = dir.join(SAVED_FILE);
        let text = std::fs::read_to_string(&path).map_err(FileError::io(&path))?;
        Ok(serde_json::from_str(&text).map_err(FileError::unreadable(&path, "invalid JSON"))?)
    }
}

/// Both IVF stages for every query row of `queries`, with a progress bar
/// over the query residues: a whole-store classifier's search, and one store
/// part's ([`super::eval::search_store_part`]).
pub(crate) fn ivf_search(
    ivf: &IvfIndex,
    store: &ResidueStore,
    queries: &QueryResidues,
    k: usize,
    params: &IvfParams,
) -> Result<HitTable, ResidueError> {
    let progress = crate::progress::bar(queries.n_rows() as u64, "query residues");
    let table = ivf.top_k_refined(
        store,
        &queries.data,
        &queries.ranges,
        k,
        params.sequences,
        params.window,
        &progress,
    )?;
    progress.finish_and_clear();
    Ok(table)
}

/// A fitted `residue-knn`.
pub struct ResidueKnn {
    pub params: ResidueKnnParams,
    pub store: ResidueStore,
    pub vocab: LabelVocab,
    sequence_class: Vec<Option<u32>>,
    approx: Option<ApproxIndex>,
    graph: Option<Box<ResidueIndex>>,
    // Boxed: the indexes are large and at most one is there.
    means: Option<Box<SequenceMeans>>,
    ivf: Option<Box<IvfIndex>>,
    pub device: Device,
    /// Where the training sequences came from (`<root>/<split>/train`; empty when unknown).
    pub source: String,
}

impl ResidueKnn {
    /// A classifier over an already built store.
    pub fn from_store(
        params: ResidueKnnParams,
        store: ResidueStore,
        vocab: LabelVocab,
    ) -> Result<ResidueKnn, ResidueError> {
        params.validate()?;
        let sequence_class = store
            .sequences
            .iter()
            .map(|s| s.family.as_ref().and_then(|f| vocab.index_of(f)).map(|c| c as u32))
            .collect();
        let approx = match params.index {
            IndexKind::Hnsw => Some(ApproxIndex::build(
                &store,
                &ApproxOptions {
                    ef_construction: params.hnsw_ef,
                    ef_search: params.hnsw_ef,
                    seed: 42,
                },
            )),
            _ => None,
        };
        let graph = match params.index {
            IndexKind::Usearch => Some(Box::new(ResidueIndex::open_or_build(&store, &params.usearch)?)),
            _ => None,
        };
        let means = (params.index == IndexKind::Shortlist).then(|| Box::new(SequenceMeans::from_store(&store)));
        let ivf = match params.index {
            IndexKind::Ivf => Some(Box::new(IvfIndex::open_or_build(&store, &params.ivf)?)),
            _ => None,
        };
        Ok(ResidueKnn {
            params,
            store,
            vocab,
            sequence_class,
            approx,
            graph,
            means,
            ivf,
            device: super::search::default_device(),
            source: String::new(),
        })
    }

    /// Bytes of the index: in memory for `hnsw` and `shortlist`, the saved file for `usearch` and `ivf`
    /// (0 for exact search).
    pub fn index_bytes(&self) -> u64 {
        if let Some(hnsw) = &self.approx {
            hnsw.memory_bytes() as u64
        } else if let Some(graph) = &self.graph {
            graph.disk_bytes()
        } else if let Some(ivf) = &self.ivf {
            ivf.disk_bytes()
        } else if let Some(means) = &self.means {
            means.bytes() as u64
        } else {
            0
        }
    }

    /// The saved IVF index, when that is the search.
    pub fn ivf_index(&self) -> Option<&IvfIndex> {
        self.ivf.as_deref()
    }

    /// The saved `usearch` index, when that is the search.
    pub fn usearch_index(&self) -> Option<&ResidueIndex> {
        self.graph.as_deref()
    }

    /// Checks that queries will be embedded by the embedder the store was built with.
    pub fn check_embedder(&self, spec: &EmbedderSpec) -> Result<(), ResidueError> {
        if spec != self.store.spec() {
            return Err(ResidueError::Data(format!(
                "residue-knn store {} was built with embedder {}, but the queries come from {}",
                self.store.dir.display(),
                self.store.spec().key(),
                spec.key()
            )));
        }
        Ok(())
    }

    /// Searches the `search_k` nearest store rows of every query residue.
    pub fn search(&self, queries: &QueryResidues) -> Result<HitTable, ResidueError> {
        let dim = self.store.dim();
        let k = self.params.search_k;
        if self.params.index == IndexKind::Ivf {
            // Only a classifier opened for a split search (fit_for_store_parts) lacks its index.
            let ivf = self.ivf.as_deref().ok_or_else(|| {
                ResidueError::InvalidParams(
                    "this residue-knn was opened for a search split over store parts, without its whole-store \
                     ivf index: search each part (`residue search --store-part K/N`)"
                        .into(),
                )
            })?;
            return ivf_search(ivf, &self.store, queries, k, &self.params.ivf);
        }
        if let Some(means) = &self.means {
            // Memory is bounded per window, not per pass: all queries go in one call.
            let progress = crate::progress::bar(queries.n_rows() as u64, "query residues");
            let table = shortlisted_top_k(
                &queries.data,
                &queries.ranges,
                &self.store,
                means,
                &self.params.shortlist,
                k,
                &progress,
            )?;
            progress.finish_and_clear();
            return Ok(table);
        }
        let mut table = HitTable {
            k,
            hits: Vec::with_capacity(queries.n_rows() * k),
        };
        let chunk = self.params.query_chunk_rows * dim;
        let opts = SearchOptions {
            device: self.device.clone(),
            target_block: self.params.target_block,
            query_block: self.params.query_block,
        };
        let passes = queries.data.len().div_ceil(chunk.max(1)).max(1);
        let progress = crate::progress::bar((self.store.n_rows() * passes) as u64, "store rows");
        for part in queries.data.chunks(chunk.max(dim)) {
            let hits = match (&self.approx, &self.graph) {
                (Some(index), _) => index.top_k(part, k),
                (_, Some(graph)) => {
                    let hits = graph.top_k(&self.store, part, k)?;
                    progress.inc(self.store.n_rows() as u64);
                    hits
                }
                _ => exact_top_k(part, dim, &self.store, k, &opts, &progress)?,
            };
            table.hits.extend(hits.hits);
        }
        progress.finish_and_clear();
        Ok(table)
    }

    /// Embeds and searches `queries`.
    pub fn search_records(&self, embedder: &dyn Embedder, queries: &[Record]) -> Result<QueryHits, ResidueError> {
        self.check_embedder(embedder.spec())?;
        let residues = QueryResidues::embed(
            embedder,
            queries,
            self.params.query_stride,
            embedder.default_batch_tokens(),
        )?;
        let table = self.search(&residues)?;
        Ok(QueryHits::new(residues, table))
    }

    /// Family scores of one query's hits: each family's vote, plus (when the
    /// alignment stage is on) `weight` x its best alignment score, over `1 + weight`.
    pub fn family_scores(&self, hits: &QueryHits, query: usize, params: &ScoreParams) -> FamilyScores {
        let (votes, evidence) = self.family_evidence(hits, query, params, false);
        if evidence.is_empty() {
            return votes;
        }
        let rows = self.hit_rows(hits, query);
        let ranked: Vec<(usize, f32)> = evidence.iter().map(|e| (e.class, e.combined)).collect();
        // The nearest training example is the winner's best aligned sequence, or (when none of
        // its sequences was aligned) its most similar hit.
        let best_hit = evidence.first().and_then(|e| match e.best_aligned {
            Some(seq) => self.best_hit_where(&rows, |row_seq| row_seq == seq),
            None => self.best_hit_where(&rows, |row_seq| {
                self.sequence_class[row_seq as usize] == Some(e.class as u32)
            }),
        });
        FamilyScores {
            n_query_residues: votes.n_query_residues,
            ranked,
            best_hit,
        }
    }

    fn hit_rows<'h>(&self, hits: &'h QueryHits, query: usize) -> Vec<&'h [super::search::Hit]> {
        let (a, b) = hits.ranges[query];
        (a..b).map(|i| hits.table.row(i)).collect()
    }

    /// Every voted family's evidence for one query, best combined score first
    /// (empty when the alignment stage is off or nothing was voted: then the
    /// returned votes are the whole answer). The votes come back too. With
    /// `enhanced`, the signal-enhanced alignments are computed as well.
    pub fn family_evidence(
        &self,
        hits: &QueryHits,
        query: usize,
        params: &ScoreParams,
        enhanced: bool,
    ) -> (FamilyScores, Vec<FamilyEvidence>) {
        let (a, b) = hits.ranges[query];
        let rows = self.hit_rows(hits, query);
        let targets = Targets {
            row_sequence: &self.store.row_sequence,
            row_position: &self.store.row_position,
            sequence_class: &self.sequence_class,
        };
        let votes = score_query(&hits.positions[a..b], &rows, &targets, params);
        if !params.align.is_on() || votes.ranked.is_empty() {
            return (votes, Vec::new());
        }
        let candidates = candidate_sequences(&rows, params.top_k, &self.store.row_sequence, params.align.candidates);
        // Stored rows are every `stride`-th residue, so a query searched more densely is
        // aligned on the positions of the same stride: one query row per stored column step.
        let stride = self.store.stride() as u32;
        let dim = hits.dim;
        let query: Vec<f32> = (a..b)
            .filter(|&i| hits.positions[i].is_multiple_of(stride))
            .flat_map(|i| hits.data[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        let aligned = align_candidates(
            &query,
            hits.dim,
            &candidates,
            |seq| self.sequence_rows(seq),
            &params.align,
            enhanced,
        );
        // Per family: its aligned sequences' scores, best first.
        let mut aligned_class: std::collections::HashMap<usize, Vec<(f32, u32)>> = std::collections::HashMap::new();
        let mut enhanced_class: std::collections::HashMap<usize, [f32; 2]> = std::collections::HashMap::new();
        for a in &aligned {
            if let Some(class) = self.sequence_class[a.sequence as usize] {
                aligned_class
                    .entry(class as usize)
                    .or_default()
                    .push((a.score, a.sequence));
                let e = enhanced_class.entry(class as usize).or_insert([0.0; 2]);
                for (best, v) in e.iter_mut().zip(a.enhanced.unwrap_or_default()) {
                    *best = best.max(v);
                }
            }
        }
        for scores in aligned_class.values_mut() {
            scores.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        }
        let weight = params.align.weight;
        let mut evidence: Vec<FamilyEvidence> = votes
            .ranked
            .iter()
            .map(|&(class, vote)| {
                let members = aligned_class.get(&class).map_or(&[][..], Vec::as_slice);
                let alignment = members.first().map_or(0.0, |m| m.0);
                FamilyEvidence {
                    class,
                    vote,
                    alignment,
                    second_alignment: members.get(1).map_or(0.0, |m| m.0),
                    aligned_members: members.len(),
                    enhanced_alignment: enhanced_class.get(&class).copied().unwrap_or([0.0; 2]),
                    combined: (vote + weight * alignment) / (1.0 + weight),
                    best_aligned: members.first().map(|m| m.1),
                }
            })
            .collect();
        evidence.sort_by(|x, y| y.combined.total_cmp(&x.combined).then(x.class.cmp(&y.class)));
        (votes, evidence)
    }

    /// The unit residue rows of stored sequence `seq`.
    fn sequence_rows(&self, seq: u32) -> Vec<f32> {
        let s = &self.store.sequences[seq as usize];
        self.store.rows_f32(s.first_row, s.first_row + s.n_rows, true)
    }

    /// The most similar hit `(store row, similarity)` on a training sequence that `keep` accepts.
    fn best_hit_where(&self, rows: &[&[super::search::Hit]], keep: impl Fn(u32) -> bool) -> Option<(u32, f32)> {
        rows.iter()
            .flat_map(|r| r.iter())
            .filter(|h| !h.is_empty() && keep(self.store.row_sequence[h.row as usize]))
            .map(|h| (h.row, h.similarity))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
    }

    /// Predictions from searched hits under given score settings (for tuning without searching again).
    pub fn predict_hits(&self, hits: &QueryHits, params: &ScoreParams, min_score: f32) -> Vec<ResiduePrediction> {
        use rayon::prelude::*;
        (0..hits.ranges.len())
            .into_par_iter()
            .map(|q| {
                let scores = self.family_scores(hits, q, params);
                let nearest = scores
                    .best_hit
                    .map(|(row, sim)| (self.store.row_sequence[row as usize] as usize, sim));
                let best = scores.ranked.first().copied();
                let abstained = if scores.n_query_residues == 0 {
                    Some(
                        "no searchable residue (empty, or only X / ambiguous letters at the kept positions)"
                            .to_string(),
                    )
                } else if best.is_none() {
                    Some(format!(
                        "no training residue within cosine {} of any query residue",
                        params.min_similarity
                    ))
                } else if best.is_some_and(|(_, s)| s < min_score) {
                    Some(format!(
                        "best family score {:.3} is below min_score {min_score}",
                        best.map_or(0.0, |b| b.1)
                    ))
                } else {
                    None
                };
                ResiduePrediction {
                    class: if abstained.is_none() { best.map(|b| b.0) } else { None },
                    score: best.map_or(0.0, |b| b.1),
                    top: scores.ranked.iter().take(5).copied().collect(),
                    n_query_residues: scores.n_query_residues,
                    nearest,
                    abstained,
                }
            })
            .collect()
    }

    /// Embeds, searches and scores `queries` with the fitted settings.
    pub fn predict(&self, embedder: &dyn Embedder, queries: &[Record]) -> Result<Vec<ResiduePrediction>, ResidueError> {
        let hits = self.search_records(embedder, queries)?;
        Ok(self.predict_hits(&hits, &self.params.score, self.params.min_score))
    }

    /// Saves the classifier's settings, label vocabulary and a reference to its store into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ResidueError> {
        std::fs::create_dir_all(dir).map_err(FileError::io(dir))?;
        let store_dir = std::fs::canonicalize(&self.store.dir).map_err(FileError::io(&self.store.dir))?;
        let saved = SavedResidueKnn {
            classifier: NAME.into(),
            params: self.params.clone(),
            embedder: self.store.spec().clone(),
            store_key: store_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            store_data_digest: self.store.manifest.plan.data_digest.clone(),
            store_dir,
            source: self.source.clone(),
        };
        let json = serde_json::to_vec_pretty(&saved).expect("saved form serialises");
        let path = dir.join(SAVED_FILE);
        crate::atomic::write_atomic(&path, |w| std::io::Write::write_all(w, &json)).map_err(FileError::io(&path))?;
        let labels = dir.join("labels.json");
        Ok(self.vocab.save(&labels)?)
    }

    /// Loads a saved classifier; its store must still exist (same key and data digest).
    pub fn load(dir: &Path) -> Result<ResidueKnn, ResidueError> {
        let path = dir.join(SAVED_FILE);
        let saved = SavedResidueKnn::read(dir)?;
        if saved.classifier != NAME {
            return Err(
                FileError::invalid(&path, format!("not a {NAME} classifier but {:?}", saved.classifier)).into(),
            );
        }
        let store = ResidueStore::open(&saved.store_dir)
            .map_err(FileError::unreadable(&path, "the referenced residue store is unusable"))?;
        if store.manifest.plan.key() != saved.store_key || store.manifest.plan.data_digest != saved.store_data_digest {
            return Err(FileError::invalid(
                &path,
                format!(
                    "store {} is not the one this classifier was trained on",
                    saved.store_dir.display()
                ),
            )
            .into());
        }
        if *store.spec() != saved.embedder {
            return Err(FileError::invalid(&path, "store embedder differs from the saved embedder").into());
        }
        let labels = dir.join("labels.json");
        let vocab = LabelVocab::load(&labels)?;
        let mut knn = ResidueKnn::from_store(saved.params, store, vocab)?;
        knn.source = saved.source;
        Ok(knn)
    }

    /// Whether `dir` holds a saved `residue-knn` (rather than a pooled-vector classifier).
    pub fn is_saved_in(dir: &Path) -> bool {
        dir.join(SAVED_FILE).is_file()
    }

    /// Ids of the stored training sequences, indexed like [`ResiduePrediction::nearest`].
    pub fn train_ids(&self) -> Vec<String> {
        self.store.sequences.iter().map(|s| s.id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_what_differs_from_the_defaults() {
        let d = ResidueKnnParams::default();
        assert_eq!(d.label(), "residue-knn");
        assert_eq!(ResidueKnnParams::simple_vote().label(), "residue-knn-simple");
        // ivf is the default search: exact search is named, and other ivf settings are.
        let exact = ResidueKnnParams {
            index: IndexKind::Exact,
            ..d.clone()
        };
        assert_eq!(exact.label(), "residue-knn-exact");
        let wider = ResidueKnnParams {
            ivf: IvfParams { probes: 64, ..d.ivf },
            ..d.clone()
        };
        assert_eq!(wider.label(), "residue-knn-c4096p64r512w128");
        assert_ne!(wider.run_key("near"), d.run_key("near"));
        let f32_products = ResidueKnnParams {
            ivf: IvfParams {
                products: crate::residue::ivf::Products::F32,
                ..d.ivf
            },
            ..d.clone()
        };
        assert_eq!(f32_products.label(), "residue-knn-c4096p32r512w128-f32");
        assert_ne!(f32_products.run_key("near"), d.run_key("near"));
        // --residue-stride 4 sets both strides; only a query stride that differs from that shows.
        let strided = ResidueKnnParams {
            stride: 4,
            query_stride: 4,
            ..d.clone()
        };
        assert_eq!(strided.label(), "residue-knn-s4");
        let query_strided = ResidueKnnParams { query_stride: 2, ..d };
        assert_eq!(query_strided.label(), "residue-knn-qs2");
    }
}
