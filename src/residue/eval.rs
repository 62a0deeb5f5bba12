//! Evaluation and tuning of `residue-knn` on a labelled split: error rate,
//! weighted precision / recall / F1 and error by training-family size (the
//! shared [`crate::metrics`] definitions), plus search throughput, peak
//! memory and store size; and a grid search of the scoring parameters on the
//! dev part (the search runs once; only scoring is repeated per setting).

use crate::file_error::FileError;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::align::AlignParams;
use super::classifier::{QueryHits, ResidueKnn, ResiduePrediction};
use super::score::{Aggregate, ScoreParams};
use super::ResidueError;
use crate::embedder::Embedder;
use crate::io::{Family, Record};
use crate::metrics::{error_by_family_size, score, Metrics, ReportRow, SizeBinError};
use crate::pipeline::WorkShard;

/// Peak resident memory of this process in bytes (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Everything a residue-knn evaluation reports beyond the shared report row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResidueEvalReport {
    pub row: ReportRow,
    pub params: super::ResidueKnnParams,
    pub abstained: usize,
    pub store_rows: usize,
    pub store_bytes: u64,
    pub index: String,
    pub index_bytes: u64,
    pub query_sequences: usize,
    pub query_residues: usize,
    pub embed_seconds: f64,
    pub search_seconds: f64,
    /// Query residues searched per second (search only).
    pub residues_per_second: f64,
    /// Query sequences classified per second (embedding + search + scoring).
    pub sequences_per_second: f64,
    pub peak_rss_bytes: u64,
    /// One row per query, in query order (written as the predictions CSV, not into the JSON report).
    #[serde(skip)]
    pub predictions: Vec<crate::report::PredictionRow>,
}

/// The search's size, speed and memory in one sentence.
pub fn search_summary(r: &ResidueEvalReport) -> String {
    format!(
        "search: {} query residues of {} sequences vs {} store rows ({:.1} MiB f16 on disk, index {:.1} MiB) in {:.1}s = {:.0} residues/s; embedding {:.1}s; {:.1} sequences/s overall; peak RSS {:.0} MiB",
        r.query_residues,
        r.query_sequences,
        r.store_rows,
        mib(r.store_bytes),
        mib(r.index_bytes),
        r.search_seconds,
        r.residues_per_second,
        r.embed_seconds,
        r.sequences_per_second,
        mib(r.peak_rss_bytes)
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The shared per-query rows of `evaluate`'s predictions CSV. The nearest
/// training example is the winning family's best-matching training sequence,
/// its distance the cosine distance (1 - similarity) of its best residue hit.
pub fn prediction_rows(
    knn: &ResidueKnn,
    records: &[Record],
    predictions: &[ResiduePrediction],
) -> Vec<crate::report::PredictionRow> {
    records
        .iter()
        .zip(predictions)
        .map(|(r, p)| {
            let (predicted, predicted_accession) = match p.class {
                Some(c) => {
                    let f = knn.vocab.family(c);
                    (f.family_id.clone(), f.accession.clone())
                }
                None => (String::new(), String::new()),
            };
            let (nearest_id, nearest_distance) = match p.nearest {
                Some((seq, sim)) => (
                    knn.store.sequences.get(seq).map(|s| s.id.clone()).unwrap_or_default(),
                    Some(1.0 - sim),
                ),
                None => (String::new(), None),
            };
            crate::report::PredictionRow {
                id: r.id.clone(),
                true_family: r.family.as_ref().map(|f| f.family_id.clone()).unwrap_or_default(),
                true_accession: r.family.as_ref().map(|f| f.accession.clone()).unwrap_or_default(),
                predicted,
                predicted_accession,
                score: p.score,
                nearest_id,
                nearest_distance,
            }
        })
        .collect()
}

/// Metrics of predictions against the records' true families.
pub fn metrics_of(knn: &ResidueKnn, records: &[Record], predictions: &[ResiduePrediction]) -> Metrics {
    let (truth, predicted) = accessions(knn, records, predictions);
    score(&truth, &predicted)
}

/// True and predicted family accessions (an unlabelled record's truth is empty; an
/// abstention predicts nothing), as the metrics take them.
fn accessions(
    knn: &ResidueKnn,
    records: &[Record],
    predictions: &[ResiduePrediction],
) -> (Vec<String>, Vec<Option<String>>) {
    let truth = records
        .iter()
        .map(|r| r.family.as_ref().map_or(String::new(), |f| f.accession.clone()))
        .collect();
    let predicted = predictions
        .iter()
        .map(|p| p.class.map(|c| knn.vocab.family(c).accession.clone()))
        .collect();
    (truth, predicted)
}

/// Error rate by training-family size of predictions.
pub fn size_bins(
    knn: &ResidueKnn,
    train: &[Record],
    records: &[Record],
    predictions: &[ResiduePrediction],
) -> Vec<SizeBinError> {
    let mut sizes: HashMap<String, usize> = HashMap::new();
    for r in train {
        if let Some(f) = &r.family {
            *sizes.entry(f.accession.clone()).or_default() += 1;
        }
    }
    let (truth, predicted) = accessions(knn, records, predictions);
    error_by_family_size(&truth, &predicted, |acc| sizes.get(acc).copied().unwrap_or(0))
}

/// Predicts `test` and measures it; `train_seconds` is the store build / open time.
pub fn evaluate(
    knn: &ResidueKnn,
    embedder: &dyn Embedder,
    train: &[Record],
    test: &[Record],
    train_seconds: f64,
) -> Result<ResidueEvalReport, ResidueError> {
    let searched = search_part_cached(knn, embedder, test)?;
    Ok(report(knn, &knn.params, &searched, train, test, train_seconds))
}

/// A part's query residues searched once, to be scored under one or more settings.
pub struct Searched {
    pub hits: QueryHits,
    pub query_residues: usize,
    pub embed_seconds: f64,
    pub search_seconds: f64,
}

/// Embeds and searches `records` with `knn`'s store, query stride and `search_k`.
pub fn search_part(knn: &ResidueKnn, embedder: &dyn Embedder, records: &[Record]) -> Result<Searched, ResidueError> {
    let started = Instant::now();
    let residues = embed_queries(knn, embedder, records)?;
    let embed_seconds = started.elapsed().as_secs_f64();
    let search_started = Instant::now();
    let table = knn.search(&residues)?;
    let query_residues = residues.n_rows();
    Ok(Searched {
        query_residues,
        hits: QueryHits::new(residues, table),
        embed_seconds,
        search_seconds: search_started.elapsed().as_secs_f64(),
    })
}

/// The query residues of `records` as `knn` searches them (its embedder, checked, and query stride).
fn embed_queries(
    knn: &ResidueKnn,
    embedder: &dyn Embedder,
    records: &[Record],
) -> Result<super::classifier::QueryResidues, ResidueError> {
    knn.check_embedder(embedder.spec())?;
    super::classifier::QueryResidues::embed(
        embedder,
        records,
        knn.params.query_stride,
        embedder.default_batch_tokens(),
    )
}

/// [`search_part`], reusing the hits saved by an earlier call with the same
/// store, query records, query stride, `search_k` and index. They live in
/// `queries/` beside the store (safetensors plus a JSON of the original timings),
/// so that `evaluate`, the hybrid's tuning run and re-scoring under other
/// settings search each part once. A stale or unreadable cache file is
/// replaced, never trusted.
pub fn search_part_cached(
    knn: &ResidueKnn,
    embedder: &dyn Embedder,
    records: &[Record],
) -> Result<Searched, ResidueError> {
    use sha2::{Digest, Sha256};
    let key = format!(
        "{}|{}|qs{}|k{}|{:?}|ef{}{}{}",
        knn.store.manifest.plan.key(),
        super::store::data_digest(records),
        knn.params.query_stride,
        knn.params.search_k,
        knn.params.index,
        knn.params.hnsw_ef,
        match knn.usearch_index() {
            // The graph file's name holds its build parameters and the store digest.
            Some(graph) => format!("|{:?}|{:?}", graph.path().file_name(), knn.params.usearch),
            None => String::new(),
        },
        match knn.params.index {
            super::IndexKind::Shortlist => format!("|{:?}", knn.params.shortlist),
            super::IndexKind::Ivf => format!("|{:?}", knn.params.ivf),
            _ => String::new(),
        }
    );
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    let dir = knn.store.dir.parent().unwrap_or(Path::new(".")).join("queries");
    let path = dir.join(format!("{}.safetensors", &digest[..16]));
    let timings_path = path.with_extension("json");
    match QueryHits::load(&path, &key, records.len(), knn.store.n_rows()) {
        Ok(Some(hits)) => {
            let timings: SearchTimings = std::fs::read(&timings_path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            tracing::info!(
                "reusing the searched hits of {} queries in {}",
                records.len(),
                path.display()
            );
            return Ok(Searched {
                query_residues: hits.positions.len(),
                hits,
                embed_seconds: timings.embed_seconds,
                search_seconds: timings.search_seconds,
            });
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("searching again: {e}"),
    }
    let searched = search_part(knn, embedder, records)?;
    let saved = std::fs::create_dir_all(&dir)
        .map_err(|e| ResidueError::from(FileError::io(&dir)(e)))
        .and_then(|_| searched.hits.save(&path, &key))
        .and_then(|_| {
            let timings = SearchTimings {
                embed_seconds: searched.embed_seconds,
                search_seconds: searched.search_seconds,
            };
            crate::atomic::write_bytes_atomic(&timings_path, &serde_json::to_vec(&timings).expect("timings serialise"))
                .map_err(|e| FileError::io(&timings_path)(e).into())
        });
    // The search itself succeeded: a cache that cannot be written costs only a re-search.
    if let Err(e) = saved {
        tracing::warn!("cannot keep the searched hits: {e}");
    }
    Ok(searched)
}

/// The key a part's hits are saved under: the store, the query records, the query
/// stride, `search_k`, the index (exact, or ivf with its parameters) and the part,
/// so that parts of another run are never merged.
fn part_key(knn: &ResidueKnn, records: &[Record], part: WorkShard) -> String {
    let index = match knn.params.index {
        super::IndexKind::Ivf => format!("|ivf|{:?}", knn.params.ivf),
        _ => String::new(),
    };
    format!(
        "store-part|{}|{}|qs{}|k{}|{}/{}{index}",
        knn.store.manifest.plan.key(),
        super::store::data_digest(records),
        knn.params.query_stride,
        knn.params.search_k,
        part.index,
        part.count
    )
}

/// The file of part `part`'s hits in `dir`.
pub fn part_hits_path(dir: &Path, part: WorkShard) -> std::path::PathBuf {
    dir.join(format!("hits-{:05}-of-{:05}.safetensors", part.index, part.count))
}

/// One task of a search split over the store: embeds `records` and searches
/// them against the store shards of `part` only, saving the hits to
/// [`part_hits_path`] in `dir` (atomically; a rerun of a task replaces its file).
/// Exact search, or the IVF index of the part's own rows (both stages stay
/// inside the part, so the merged parts are the union of per-part searches).
pub fn search_store_part(
    knn: &ResidueKnn,
    embedder: &dyn Embedder,
    records: &[Record],
    part: WorkShard,
    dir: &Path,
) -> Result<std::path::PathBuf, ResidueError> {
    let residues = embed_queries(knn, embedder, records)?;
    let opts = super::search::SearchOptions {
        device: knn.device.clone(),
        target_block: knn.params.target_block,
        query_block: knn.params.query_block,
    };
    let rows: usize = knn
        .store
        .blocks_of_part(opts.target_block, part)
        .iter()
        .map(|(a, b)| b - a)
        .sum();
    let started = Instant::now();
    let table = match knn.params.index {
        super::IndexKind::Exact => {
            let progress = crate::progress::bar(rows as u64, "store rows");
            let table = super::search::exact_top_k_of_part(
                &residues.data,
                residues.dim,
                &knn.store,
                part,
                knn.params.search_k,
                &opts,
                &progress,
            )?;
            progress.finish_and_clear();
            table
        }
        // Each part has its own IVF index over its own rows (built once, beside the store).
        super::IndexKind::Ivf => {
            let index = super::ivf::IvfIndex::open_or_build_part(&knn.store, &knn.params.ivf, part)?;
            super::classifier::ivf_search(&index, &knn.store, &residues, knn.params.search_k, &knn.params.ivf)?
        }
        other => {
            return Err(ResidueError::InvalidParams(format!(
                "a search split over store parts is exact or ivf (--residue-index exact|ivf), not {other}"
            )))
        }
    };
    tracing::info!(
        "searched {} query residues against the {rows} rows of store part {}/{} ({}) in {:.1}s",
        residues.n_rows(),
        part.index,
        part.count,
        knn.params.index,
        started.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(dir).map_err(FileError::io(dir))?;
    let path = part_hits_path(dir, part);
    QueryHits::new(residues, table).save(&path, &part_key(knn, records, part))?;
    Ok(path)
}

/// Merges the hits of all `parts` tasks of [`search_store_part`] from `dir`
/// into the hits one search over the whole store gives. Refuses (naming the
/// file) while a part is missing, damaged or from another run.
pub fn merge_store_parts(
    knn: &ResidueKnn,
    records: &[Record],
    parts: usize,
    dir: &Path,
) -> Result<Searched, ResidueError> {
    let started = Instant::now();
    let mut merged: Option<QueryHits> = None;
    for index in 0..parts {
        let part = WorkShard::new(index, parts).map_err(ResidueError::InvalidParams)?;
        let path = part_hits_path(dir, part);
        let hits = QueryHits::load(&path, &part_key(knn, records, part), records.len(), knn.store.n_rows())?
            .ok_or_else(|| {
                FileError::invalid(
                    &path,
                    format!(
                        "part {index}/{parts} is missing or from another run (store, queries, query stride or \
                         search k differ): rerun that task"
                    ),
                )
            })?;
        match &mut merged {
            None => merged = Some(hits),
            Some(all) => {
                if all.ranges != hits.ranges || all.positions != hits.positions {
                    return Err(FileError::invalid(&path, "its queries differ from part 0's").into());
                }
                all.table.merge(&hits.table)?;
            }
        }
    }
    let hits = merged.ok_or_else(|| ResidueError::InvalidParams("at least one store part is needed".into()))?;
    Ok(Searched {
        query_residues: hits.positions.len(),
        hits,
        embed_seconds: 0.0,
        search_seconds: started.elapsed().as_secs_f64(),
    })
}

/// How long the search of a cached [`Searched`] took when it ran.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct SearchTimings {
    embed_seconds: f64,
    search_seconds: f64,
}

/// Scores searched hits under `params` (its `score` and `min_score`) and measures the result.
pub fn report(
    knn: &ResidueKnn,
    params: &super::ResidueKnnParams,
    searched: &Searched,
    train: &[Record],
    test: &[Record],
    train_seconds: f64,
) -> ResidueEvalReport {
    let started = Instant::now();
    let predictions = knn.predict_hits(&searched.hits, &params.score, params.min_score);
    let predict_seconds = searched.embed_seconds + searched.search_seconds + started.elapsed().as_secs_f64();
    let metrics = metrics_of(knn, test, &predictions);
    let mut row = ReportRow::new(
        &knn.store.spec().name,
        &params.label(),
        metrics,
        train_seconds,
        predict_seconds,
    );
    row.by_family_size = size_bins(knn, train, test, &predictions);
    let index_bytes = knn.index_bytes();
    ResidueEvalReport {
        row,
        params: params.clone(),
        abstained: predictions.iter().filter(|p| p.class.is_none()).count(),
        store_rows: knn.store.n_rows(),
        store_bytes: knn.store.disk_bytes(),
        index: format!("{:?}", params.index).to_lowercase(),
        index_bytes,
        query_sequences: test.len(),
        query_residues: searched.query_residues,
        embed_seconds: searched.embed_seconds,
        search_seconds: searched.search_seconds,
        residues_per_second: searched.query_residues as f64 / searched.search_seconds.max(1e-9),
        sequences_per_second: test.len() as f64 / predict_seconds.max(1e-9),
        peak_rss_bytes: peak_rss_bytes(),
        predictions: prediction_rows(knn, test, &predictions),
    }
}

/// The grid of scoring settings tried by [`tune`].
#[derive(Debug, Clone)]
pub struct TuneGrid {
    pub top_k: Vec<usize>,
    pub min_similarity: Vec<f32>,
    pub diagonal_weight: Vec<f32>,
    pub diagonal_band: Vec<u32>,
    pub diagonal_cap: Vec<u32>,
    pub aggregate: Vec<Aggregate>,
    /// Alignment settings, tried on top of the best vote setting.
    pub align_candidates: Vec<usize>,
    pub align_shift: Vec<f32>,
    pub align_gap_open: Vec<f32>,
    pub align_gap_extend: Vec<f32>,
    pub align_weight: Vec<f32>,
}

impl Default for TuneGrid {
    fn default() -> Self {
        TuneGrid {
            top_k: vec![1, 3, 5, 10],
            min_similarity: vec![0.0, 0.5, 0.7],
            diagonal_weight: vec![0.0, 0.5, 1.0, 2.0, 4.0],
            diagonal_band: vec![2, 4, 8],
            diagonal_cap: vec![4, 8, 16],
            aggregate: vec![Aggregate::Family, Aggregate::Sequence],
            align_candidates: vec![20, 40],
            align_shift: vec![0.05, 0.1, 0.2],
            align_gap_open: vec![0.25, 0.5, 1.0],
            align_gap_extend: vec![0.05, 0.1],
            align_weight: vec![1.0, 2.0, 3.0],
        }
    }
}

impl TuneGrid {
    /// All settings of the grid (the diagonal band and cap only vary when the weight is positive).
    pub fn settings(&self) -> Vec<ScoreParams> {
        let mut out = Vec::new();
        for &top_k in &self.top_k {
            for &min_similarity in &self.min_similarity {
                for &aggregate in &self.aggregate {
                    for &diagonal_weight in &self.diagonal_weight {
                        let (bands, caps) = if diagonal_weight == 0.0 {
                            (vec![0], vec![0])
                        } else {
                            (self.diagonal_band.clone(), self.diagonal_cap.clone())
                        };
                        for &diagonal_band in &bands {
                            for &diagonal_cap in &caps {
                                out.push(ScoreParams {
                                    top_k,
                                    min_similarity,
                                    diagonal_weight,
                                    diagonal_band,
                                    diagonal_cap,
                                    aggregate,
                                    align: AlignParams::OFF,
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// `base` with every alignment setting of the grid (a candidate count of 0: `base`
    /// without alignment, once).
    pub fn align_settings(&self, base: &ScoreParams) -> Vec<ScoreParams> {
        let mut out = Vec::new();
        if self.align_candidates.contains(&0) {
            out.push(ScoreParams {
                align: AlignParams::OFF,
                ..*base
            });
        }
        for &candidates in self.align_candidates.iter().filter(|&&c| c > 0) {
            for &shift in &self.align_shift {
                for &gap_open in &self.align_gap_open {
                    for &gap_extend in self.align_gap_extend.iter().filter(|&&e| e <= gap_open) {
                        for &weight in &self.align_weight {
                            out.push(ScoreParams {
                                align: AlignParams {
                                    candidates,
                                    shift,
                                    gap_open,
                                    gap_extend,
                                    weight,
                                },
                                ..*base
                            });
                        }
                    }
                }
            }
        }
        out
    }
}

/// One tried setting and its dev metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TuneResult {
    pub params: ScoreParams,
    pub errors: usize,
    pub error_rate: f64,
    pub f1: f64,
}

/// Scores every vote setting of the grid on searched dev hits (searched with
/// `search_k >= max top_k`), then every alignment setting on top of the best vote
/// setting; results best first (fewest errors, then the simpler setting: no alignment,
/// fewer aligned candidates, smaller k, weaker diagonal term).
pub fn tune(knn: &ResidueKnn, dev: &[Record], hits: &QueryHits, grid: &TuneGrid) -> Vec<TuneResult> {
    let mut results = tune_settings(knn, dev, hits, grid.settings());
    if let Some(best_vote) = results.first().map(|r| r.params) {
        results.extend(tune_settings(knn, dev, hits, grid.align_settings(&best_vote)));
        results.sort_by(by_errors_then_simplicity);
    }
    results
}

/// Scores the given settings on searched dev hits; results ordered as [`tune`] orders them.
pub fn tune_settings(
    knn: &ResidueKnn,
    dev: &[Record],
    hits: &QueryHits,
    settings: Vec<ScoreParams>,
) -> Vec<TuneResult> {
    let mut results: Vec<TuneResult> = settings
        .into_iter()
        .filter(|p| p.top_k <= hits.table.k)
        .map(|params| {
            let predictions = knn.predict_hits(hits, &params, 0.0);
            let m = metrics_of(knn, dev, &predictions);
            TuneResult {
                params,
                errors: m.errors,
                error_rate: m.error_rate,
                f1: m.f1,
            }
        })
        .collect();
    results.sort_by(by_errors_then_simplicity);
    results
}

fn by_errors_then_simplicity(a: &TuneResult, b: &TuneResult) -> std::cmp::Ordering {
    a.errors
        .cmp(&b.errors)
        .then(a.params.align.candidates.cmp(&b.params.align.candidates))
        .then(a.params.top_k.cmp(&b.params.top_k))
        .then(a.params.diagonal_weight.total_cmp(&b.params.diagonal_weight))
}

/// Families of records, for callers that need the training-family sizes.
pub fn family_sizes(train: &[Record]) -> HashMap<Family, usize> {
    let mut sizes = HashMap::new();
    for r in train {
        if let Some(f) = &r.family {
            *sizes.entry(f.clone()).or_default() += 1;
        }
    }
    sizes
}

/// The whole `residue-knn` evaluation of one split, for `protfam evaluate
/// --classifiers residue-knn,...`: fit on `train` (building or reopening the
/// store under `store_root`), predict `test` under every setting of
/// `params`. Settings that share the store stride, query stride and index
/// share one store and one search (with the largest `search_k`); only the
/// scoring is repeated, so the simple vote beside the tuned default costs
/// almost nothing. Reports come back in the order of `params`.
pub fn evaluate_split(
    embedder: &dyn Embedder,
    train: &[Record],
    test: &[Record],
    params: &[super::ResidueKnnParams],
    store_root: &Path,
) -> Result<Vec<ResidueEvalReport>, ResidueError> {
    let vocab = crate::io::vocab::LabelVocab::from_families(train.iter().filter_map(|r| r.family.as_ref()));
    let mut reports: Vec<Option<ResidueEvalReport>> = vec![None; params.len()];
    for i in 0..params.len() {
        if reports[i].is_some() {
            continue;
        }
        let shares = |p: &super::ResidueKnnParams| {
            p.stride == params[i].stride
                && p.query_stride == params[i].query_stride
                && p.index == params[i].index
                && p.hnsw_ef == params[i].hnsw_ef
                && p.usearch == params[i].usearch
        };
        let group: Vec<usize> = (i..params.len())
            .filter(|&j| reports[j].is_none() && shares(&params[j]))
            .collect();
        let mut search_params = params[i].clone();
        search_params.search_k = group.iter().map(|&j| params[j].search_k).max().unwrap_or(1);
        let started = Instant::now();
        let knn = search_params.fit(embedder, train, &vocab, store_root)?;
        let train_seconds = started.elapsed().as_secs_f64();
        let searched = search_part_cached(&knn, embedder, test)?;
        for j in group {
            reports[j] = Some(report(&knn, &params[j], &searched, train, test, train_seconds));
        }
    }
    Ok(reports.into_iter().map(|r| r.expect("every setting scored")).collect())
}
