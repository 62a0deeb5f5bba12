//! Exact k-nearest-neighbour classification in Euclidean distance.
//!
//! Distances are computed as blocked matrix products (`||q||^2 - 2 q.t + ||t||^2`)
//! with Candle on the CPU or a CUDA device: queries are cut into blocks of
//! [`KnnParams::query_block`] rows and the training set into blocks of
//! [`KnnParams::train_block`] rows, so memory stays bounded by one query block
//! times one training block however large the training set is, and every query
//! keeps a running list of its best candidates.
//!
//! The f32 expansion suffers from cancellation when vectors are far from the
//! origin, so two things keep the answer exact:
//! 1. both sides are centred on the training mean before the product (distances
//!    do not change, norms and therefore rounding errors shrink);
//! 2. a rigorous bound `e` on the f32 error of every pair turns each approximate
//!    distance `a` into an interval `[a - e, a + e]` holding the exact one; a
//!    query keeps every training vector whose lower end is at most the k-th
//!    smallest upper end (so the true k nearest, and every vector tied with the
//!    k-th, are always kept), and recomputes their distances in f64 directly as
//!    `sum (q_i - t_i)^2`. Exact ties (one-hot vectors have integer distances)
//!    cost a longer list, never an exhaustive search; only a list beyond
//!    [`MAX_WINDOW`] gives up and searches that query exhaustively in f64.
//!
//! Any finite input is searched correctly: where the f32 products overflow (values
//! near `f32::MAX`, whose squared norms or products exceed the f32 range) the
//! proof cannot be made, and the query falls back to the exhaustive f64 search,
//! whose squares and sums stay within f64 for every finite f32 vector.
//!
//! The result is the same neighbour list an exact f64 brute-force search gives
//! (scikit-learn's `KNeighborsClassifier(algorithm="brute")` upcasts to f64 too).
//!
//! **Pruned search** (the CPU default when the vectors are wide, `dim > 2 *`
//! [`KnnParams::proj_dim`]): at fit time the centred training vectors are
//! projected onto about `proj_dim` principal directions ([`super::prune`]); a
//! query then gets a *proven* lower bound on its distance to every training
//! vector from one small GEMM over the projected dimensions, and exact f64
//! distances are computed only in increasing order of that bound until the next
//! bound exceeds the k-th exact distance. The answer is the same as the blocked
//! search's (and brute force's), including ties; only the work differs. The
//! projection is rebuilt deterministically (seeded) whenever a model is built,
//! so saved models need not store it. The pruned search first runs on a few
//! queries: where the projection prunes little (sparse one-hot vectors), the
//! remaining queries go to the blocked search, whose f32 products are far cheaper
//! than the f64 distances pruning would compute.
//!
//! **Tie-breaking** (deterministic, documented for reproducibility):
//! - neighbours at equal distance: the lower training index comes first;
//! - classes with equal votes: the class whose best-ranked neighbour is nearer
//!   wins (so `k = 2` with two different classes picks the nearest one).

use candle_core::Tensor;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::prune::{self, Projection};
use super::{check_finite, check_queries, class_indices, ClassifyError, ComputeDevice, Fit, Predict, Prediction};
use crate::io::vocab::LabelVocab;
use crate::vectors::VectorSet;

/// Most candidates one query of the blocked search keeps for exact rescoring;
/// beyond it the f32 bounds prove too little and the query is searched
/// exhaustively in f64 (memory stays bounded whatever the data).
const MAX_WINDOW: usize = 16_384;

/// Training sets at least this large have the pruned search probed first: below
/// it even a useless projection costs little. Not higher: the one-hot kNN
/// ensemble's members hold ~1,600 vectors each, and there a projection that
/// prunes nothing cost 6 s per member where the blocked search takes 0.6 s.
const PROBE_MIN_TRAIN: usize = 256;

/// Queries the pruned search tries before it decides whether pruning pays.
const PROBE_QUERIES: usize = 8;

/// The pruned search is kept while it computes fewer than `n / PRUNE_PAYS_BELOW`
/// exact f64 distances per query: a rough estimate of what one exact distance costs
/// in rows of the blocked search's f32 matrix product, not tuned. Both measured
/// cases lie far from it: on one-hot vectors the pruned search computed 94% of all
/// distances, on UniRep 1900 vectors 0.3% (43 of 16,114).
const PRUNE_PAYS_BELOW: usize = 16;

/// Candidates with the smallest bounds whose exact distances seed the pruned search's k-th distance.
const SEED_CANDIDATES: usize = 4;

/// Seed of the pruning projection's RNG (the projection never changes answers, only speed).
const PROJECTION_SEED: u64 = 0x6b6e6e;

/// Largest magnitude of a vector component the pruned search takes: beyond it the
/// f32 bounds could overflow, so such training sets keep the blocked search and
/// such queries are searched exhaustively in f64.
const PRUNE_MAX_ABS: f32 = 1e12;

/// Largest accepted [`KnnParams::proj_dim`]; wider projections cost more than they prune.
pub const MAX_PROJ_DIM: usize = 2048;

fn default_proj_dim() -> usize {
    256
}

/// How neighbours vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    /// One vote per neighbour (majority vote).
    #[default]
    Uniform,
    /// Votes weighted by the inverse distance (scikit-learn's `weights="distance"`:
    /// neighbours at distance zero, if any, take all the weight).
    Distance,
}

/// Hyper-parameters of [`Knn`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnnParams {
    /// Number of neighbours (1 = the paper's 1-NN).
    pub k: usize,
    pub weighting: Weighting,
    /// Queries per matrix-product block.
    pub query_block: usize,
    /// Training vectors per matrix-product block.
    pub train_block: usize,
    /// Dimensions of the projection whose distance bounds prune the exact search
    /// (see the module docs); 0 turns pruning off. Pruning is used on the CPU when
    /// `dim > 2 * proj_dim`; it never changes the answer, only the time. Models
    /// saved before this setting existed load with the default.
    #[serde(default = "default_proj_dim")]
    pub proj_dim: usize,
    /// Device for the matrix products (not saved; the loader chooses).
    #[serde(skip)]
    pub device: ComputeDevice,
}

impl Default for KnnParams {
    fn default() -> Self {
        KnnParams {
            k: 1,
            weighting: Weighting::Uniform,
            query_block: 1024,
            train_block: 4096,
            proj_dim: default_proj_dim(),
            device: ComputeDevice::default(),
        }
    }
}

impl KnnParams {
    pub fn check(&self) -> Result<(), ClassifyError> {
        if self.k == 0 {
            return Err(ClassifyError::InvalidParams("k must be at least 1".into()));
        }
        if self.query_block == 0 || self.train_block == 0 {
            return Err(ClassifyError::InvalidParams(
                "kNN block sizes must be at least 1".into(),
            ));
        }
        if self.proj_dim > MAX_PROJ_DIM {
            return Err(ClassifyError::InvalidParams(format!(
                "kNN proj_dim must be at most {MAX_PROJ_DIM} (0 turns pruning off), not {}",
                self.proj_dim
            )));
        }
        Ok(())
    }
}

/// One neighbour of a query: training index and exact squared Euclidean distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    pub index: usize,
    pub sq_distance: f64,
}

impl Neighbour {
    pub fn distance(&self) -> f32 {
        self.sq_distance.sqrt() as f32
    }
}

/// A fitted kNN classifier: the training vectors and their class indices.
#[derive(Debug, Clone)]
pub struct Knn {
    pub params: KnnParams,
    pub n_classes: usize,
    dim: usize,
    train: Vec<f32>,
    labels: Vec<u32>,
    /// Training mean subtracted before the f32 products.
    centre: Vec<f32>,
    /// Squared norms of the centred training vectors (the blocked search's products).
    sq_norms: Vec<f32>,
    /// Pruning projection of the centred training vectors, when pruning is used.
    projection: Option<Projection>,
}

/// What a search did (for benchmarks and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SearchStats {
    /// Whether the projection-bound search ran (else the blocked full search).
    pub pruned: bool,
    /// Exact f64 distances computed by the pruned search (0 for the blocked one).
    pub exact_distances: usize,
    /// Queries the pruned search handed to the blocked one because the
    /// projection pruned too little on its first queries.
    pub blocked_queries: usize,
}

impl Fit for KnnParams {
    type Model = Knn;

    fn fit(&self, train: &VectorSet, _dev: Option<&VectorSet>, vocab: &LabelVocab) -> Result<Knn, ClassifyError> {
        self.check()?;
        let labels = class_indices(train, vocab)?;
        Knn::from_parts(self.clone(), vocab.len(), train.dim, train.data.clone(), labels)
    }
}

impl Knn {
    /// Builds a fitted model from training vectors (row-major, `dim` wide) and class indices.
    pub fn from_parts(
        params: KnnParams,
        n_classes: usize,
        dim: usize,
        train: Vec<f32>,
        labels: Vec<u32>,
    ) -> Result<Knn, ClassifyError> {
        params.check()?;
        if labels.is_empty() {
            return Err(ClassifyError::Data("kNN needs at least one training vector".into()));
        }
        if dim == 0 || train.len() != labels.len() * dim {
            return Err(ClassifyError::Data(format!(
                "{} training values do not make {} vectors of dimension {dim}",
                train.len(),
                labels.len()
            )));
        }
        if params.k > labels.len() {
            return Err(ClassifyError::InvalidParams(format!(
                "k = {} neighbours, but there are only {} training vectors",
                params.k,
                labels.len()
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= n_classes) {
            return Err(ClassifyError::Data(format!(
                "class index {bad} outside the {n_classes} classes"
            )));
        }
        check_finite(&train, dim, "training")?;
        let n = labels.len();
        // Partial sums over fixed row chunks, added in order: parallel yet the same
        // centre (and so the same model) on every machine and thread count.
        let partial: Vec<Vec<f64>> = train
            .par_chunks(dim * 1024)
            .map(|rows| {
                let mut sum = vec![0f64; dim];
                for row in rows.chunks_exact(dim) {
                    for (m, &v) in sum.iter_mut().zip(row) {
                        *m += v as f64;
                    }
                }
                sum
            })
            .collect();
        let mut mean = vec![0f64; dim];
        for sum in &partial {
            for (m, s) in mean.iter_mut().zip(sum) {
                *m += s;
            }
        }
        let centre: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
        let projection = if params.proj_dim > 0
            && dim > 2 * params.proj_dim
            && params.device.0.is_cpu()
            && train.iter().all(|v| v.abs() <= PRUNE_MAX_ABS)
        {
            let started = std::time::Instant::now();
            let p = Projection::fit(&train, &centre, params.proj_dim, PROJECTION_SEED);
            tracing::debug!(
                dims = p.as_ref().map(|p| p.dims),
                seconds = started.elapsed().as_secs_f64(),
                "kNN pruning projection"
            );
            p
        } else {
            None
        };
        // The blocked search needs them, and the pruned one hands it the queries it cannot prune.
        let sq_norms: Vec<f32> = train
            .par_chunks_exact(dim)
            .map(|row| {
                row.iter()
                    .zip(&centre)
                    .map(|(&v, &c)| ((v - c) as f64).powi(2))
                    .sum::<f64>() as f32
            })
            .collect();
        Ok(Knn {
            params,
            n_classes,
            dim,
            train,
            labels,
            centre,
            sq_norms,
            projection,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Training vectors, row-major.
    pub fn train_vectors(&self) -> &[f32] {
        &self.train
    }

    /// Class index of every training vector.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// The `k` exact nearest training vectors of every query, nearest first.
    pub fn kneighbors(&self, queries: &VectorSet, k: usize) -> Result<Vec<Vec<Neighbour>>, ClassifyError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.kneighbors_with_stats(queries, k)?.0)
    }

    /// [`Knn::kneighbors`] plus what the search did.
    pub fn kneighbors_with_stats(
        &self,
        queries: &VectorSet,
        k: usize,
    ) -> Result<(Vec<Vec<Neighbour>>, SearchStats), ClassifyError> {
        if queries.is_empty() {
            return Ok((Vec::new(), SearchStats::default()));
        }
        check_queries(queries, self.dim)?;
        let k = k.max(1);
        match &self.projection {
            Some(p) => self.search_pruned(p, &queries.data, queries.len(), k),
            None => Ok((self.search(&queries.data, queries.len(), k)?, SearchStats::default())),
        }
    }

    /// Exact search guided by projection bounds (module docs). Queries go in tiles
    /// so that the bound matrix stays within `query_block * train_block` values,
    /// the memory the blocked search uses. On a large training set the first
    /// [`PROBE_QUERIES`] queries decide whether pruning pays; if not, the rest go
    /// to the blocked search (same answers, less time).
    fn search_pruned(
        &self,
        proj: &Projection,
        queries: &[f32],
        nq: usize,
        k: usize,
    ) -> Result<(Vec<Vec<Neighbour>>, SearchStats), ClassifyError> {
        let (d, n) = (self.dim, self.len());
        let k = k.min(n);
        let tile = (self.params.query_block.saturating_mul(self.params.train_block) / n).clamp(1, nq);
        let probe = if n >= PROBE_MIN_TRAIN && nq > PROBE_QUERIES {
            PROBE_QUERIES
        } else {
            0
        };
        let mut bounds = vec![0f32; tile.max(probe) * n];
        let mut out = Vec::with_capacity(nq);
        let mut stats = SearchStats {
            pruned: true,
            ..SearchStats::default()
        };
        if probe > 0 {
            stats.exact_distances += self.pruned_tile(proj, &queries[..probe * d], k, &mut bounds, &mut out);
            if stats.exact_distances * PRUNE_PAYS_BELOW > probe * n {
                tracing::debug!(
                    mean_exact = stats.exact_distances as f64 / probe as f64,
                    train = n,
                    "kNN projection prunes too little; blocked search for the remaining queries"
                );
                out.extend(self.search(&queries[probe * d..], nq - probe, k)?);
                stats.blocked_queries = nq - probe;
                return Ok((out, stats));
            }
        }
        for start in (probe..nq).step_by(tile) {
            let len = tile.min(nq - start);
            stats.exact_distances +=
                self.pruned_tile(proj, &queries[start * d..(start + len) * d], k, &mut bounds, &mut out);
        }
        tracing::debug!(
            queries = nq,
            mean_exact = stats.exact_distances as f64 / nq.max(1) as f64,
            "kNN pruned search"
        );
        Ok((out, stats))
    }

    /// Pruned search of a tile of queries (appended to `out`); returns the number
    /// of exact distances it computed.
    fn pruned_tile(
        &self,
        proj: &Projection,
        queries: &[f32],
        k: usize,
        bounds: &mut [f32],
        out: &mut Vec<Vec<Neighbour>>,
    ) -> usize {
        let (d, n) = (self.dim, self.len());
        let len = queries.len() / d;
        proj.lower_bounds(queries, &self.centre, &mut bounds[..len * n]);
        let found: Vec<(Vec<Neighbour>, usize)> = bounds[..len * n]
            .par_chunks_exact(n)
            .zip(queries.par_chunks_exact(d))
            .map(|(row, q)| self.nearest_by_bounds(q, row, k))
            .collect();
        let mut exact_distances = 0;
        for (nb, visited) in found {
            exact_distances += visited;
            out.push(nb);
        }
        exact_distances
    }

    /// The `k` nearest training vectors of one query given a lower bound on its
    /// computed distance to every training vector; also returns how many exact
    /// distances it took. Training vectors are visited in increasing bound
    /// (ties: lower index first) and the visit stops at the first bound above the
    /// k-th exact distance; `<=` keeps equal bounds, so an equal distance at a
    /// lower index still wins its tie.
    fn nearest_by_bounds(&self, q: &[f32], bounds: &[f32], k: usize) -> (Vec<Neighbour>, usize) {
        // Huge components, or bounds the f32 arithmetic could not keep finite, prove nothing.
        if q.iter().any(|v| v.abs() > PRUNE_MAX_ABS) || bounds.iter().any(|b| !b.is_finite()) {
            return (self.exhaustive(q, k), self.len());
        }
        let exact = |j: u32| Neighbour {
            index: j as usize,
            sq_distance: self.exact_sq_distance(q, j as usize),
        };
        let mut seeds = Candidates::new((k + SEED_CANDIDATES).min(bounds.len()));
        for (j, &b) in bounds.iter().enumerate() {
            if b < seeds.worst() {
                seeds.insert(b, j as u32);
            }
        }
        let mut top: Vec<Neighbour> = seeds.items.iter().map(|&(_, j)| exact(j)).collect();
        sort_neighbours(&mut top);
        top.truncate(k);
        if top.len() < k {
            return (self.exhaustive(q, k), self.len());
        }
        let mut kth = top[k - 1].sq_distance;
        let mut rest: Vec<(f32, u32)> = bounds
            .iter()
            .enumerate()
            .filter(|&(j, &b)| b as f64 <= kth && !seeds.items.iter().any(|s| s.1 == j as u32))
            .map(|(j, &b)| (b, j as u32))
            .collect();
        rest.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut visited = seeds.items.len();
        for &(b, j) in &rest {
            if b as f64 > kth {
                break;
            }
            visited += 1;
            let cand = exact(j);
            if cmp_neighbours(&cand, &top[k - 1]).is_lt() {
                let pos = top.partition_point(|t| cmp_neighbours(t, &cand).is_lt());
                top.insert(pos, cand);
                top.truncate(k);
                kth = top[k - 1].sq_distance;
            }
        }
        (top, visited)
    }

    fn search(&self, queries: &[f32], nq: usize, k: usize) -> Result<Vec<Vec<Neighbour>>, ClassifyError> {
        let d = self.dim;
        let n = self.len();
        let k = k.min(n);
        let device = &self.params.device.0;

        let mut centred = vec![0f32; nq * d];
        centred
            .par_chunks_exact_mut(d)
            .zip(queries.par_chunks_exact(d))
            .for_each(|(out, q)| {
                for ((o, &v), &c) in out.iter_mut().zip(q).zip(&self.centre) {
                    *o = v - c;
                }
            });
        let q_sq_norms: Vec<f32> = centred
            .par_chunks_exact(d)
            .map(|row| row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() as f32)
            .collect();
        let qb = self.params.query_block;
        let mut q_blocks = Vec::new();
        for start in (0..nq).step_by(qb) {
            let len = qb.min(nq - start);
            let t = Tensor::from_slice(&centred[start * d..(start + len) * d], (len, d), device)?;
            q_blocks.push((start, len, t));
        }
        drop(centred);

        // Bound on |f32 approximate - exact| squared distance of one pair with centred
        // norms |q| and |t|: the dot product of d terms (gamma_d), centring, norm
        // rounding and the final additions, (d + 8) u (|q| + |t|)^2; the norms
        // themselves are f32-rounded, hence the relative 1e-5 on top.
        let err_factor = (d as f64 + 8.0) * f32::EPSILON as f64;
        let q_norms: Vec<f64> = q_sq_norms.iter().map(|&s| (s as f64).sqrt() * (1.0 + 1e-5)).collect();
        let t_norms_all: Vec<f64> = self
            .sq_norms
            .iter()
            .map(|&s| (s as f64).sqrt() * (1.0 + 1e-5))
            .collect();
        let mut windows: Vec<Window> = (0..nq).map(|_| Window::new(k)).collect();
        let tb = self.params.train_block;
        let mut block = vec![0f32; tb.min(n) * d];
        for t_start in (0..n).step_by(tb) {
            let t_len = tb.min(n - t_start);
            let src = &self.train[t_start * d..(t_start + t_len) * d];
            block[..t_len * d]
                .par_chunks_exact_mut(d)
                .zip(src.par_chunks_exact(d))
                .for_each(|(out, t)| {
                    for ((o, &v), &c) in out.iter_mut().zip(t).zip(&self.centre) {
                        *o = v - c;
                    }
                });
            let train_t = Tensor::from_slice(&block[..t_len * d], (t_len, d), device)?;
            let train_tt = train_t.t()?;
            let t_sq = &self.sq_norms[t_start..t_start + t_len];
            let t_norms = &t_norms_all[t_start..t_start + t_len];
            for (q_start, q_len, q) in &q_blocks {
                let dots: Vec<f32> = q.matmul(&train_tt)?.flatten_all()?.to_vec1()?;
                windows[*q_start..q_start + q_len]
                    .par_iter_mut()
                    .enumerate()
                    .for_each(|(i, window)| {
                        if window.given_up() {
                            return;
                        }
                        let row = &dots[i * t_len..(i + 1) * t_len];
                        let qn = q_sq_norms[q_start + i];
                        let qr = q_norms[q_start + i];
                        for (j, ((&dot, &tn), &tr)) in row.iter().zip(t_sq).zip(t_norms).enumerate() {
                            let approx = qn + tn - 2.0 * dot;
                            if !approx.is_finite() {
                                // Overflow (inf or NaN): this query's f32 ranking proves nothing.
                                window.overflowed = true;
                                return;
                            }
                            let err = err_factor * (qr + tr) * (qr + tr);
                            window.offer(approx as f64, err, (t_start + j) as u32);
                        }
                    });
            }
        }

        let out: Vec<Vec<Neighbour>> = windows
            .into_par_iter()
            .enumerate()
            .map(|(qi, window)| {
                let q = &queries[qi * d..(qi + 1) * d];
                if window.given_up() || !q_sq_norms[qi].is_finite() {
                    tracing::trace!(
                        query = qi,
                        "kNN f32 distances overflow or prove too little; exhaustive f64 search"
                    );
                    return self.exhaustive(q, k);
                }
                let mut exact: Vec<Neighbour> = window
                    .candidates()
                    .map(|idx| Neighbour {
                        index: idx as usize,
                        sq_distance: self.exact_sq_distance(q, idx as usize),
                    })
                    .collect();
                sort_neighbours(&mut exact);
                exact.truncate(k);
                exact
            })
            .collect();
        Ok(out)
    }

    fn exact_sq_distance(&self, q: &[f32], index: usize) -> f64 {
        exact_sq_distance(q, &self.train[index * self.dim..(index + 1) * self.dim])
    }

    fn exhaustive(&self, q: &[f32], k: usize) -> Vec<Neighbour> {
        let mut all: Vec<Neighbour> = (0..self.len())
            .map(|i| Neighbour {
                index: i,
                sq_distance: self.exact_sq_distance(q, i),
            })
            .collect();
        let k = k.min(all.len());
        if k < all.len() {
            all.select_nth_unstable_by(k - 1, cmp_neighbours);
            all.truncate(k);
        }
        sort_neighbours(&mut all);
        all
    }

    /// Turns a sorted neighbour list into a prediction (votes as documented in the module).
    fn vote(&self, neighbours: &[Neighbour]) -> Prediction {
        let weights: Vec<f64> = match self.params.weighting {
            Weighting::Uniform => vec![1.0; neighbours.len()],
            Weighting::Distance => {
                if neighbours.iter().any(|n| n.sq_distance == 0.0) {
                    neighbours
                        .iter()
                        .map(|n| if n.sq_distance == 0.0 { 1.0 } else { 0.0 })
                        .collect()
                } else {
                    neighbours.iter().map(|n| 1.0 / n.sq_distance.sqrt()).collect()
                }
            }
        };
        // (class, total weight, best rank)
        let mut tally: Vec<(usize, f64, usize)> = Vec::new();
        for (rank, (nb, w)) in neighbours.iter().zip(&weights).enumerate() {
            let class = self.labels[nb.index] as usize;
            match tally.iter_mut().find(|t| t.0 == class) {
                Some(t) => t.1 += w,
                None => tally.push((class, *w, rank)),
            }
        }
        tally.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
        let total: f64 = weights.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        let top: Vec<(usize, f32)> = tally.iter().map(|&(c, w, _)| (c, (w / total) as f32)).collect();
        let nearest = neighbours.first().map(|n| (n.index, n.distance()));
        Prediction {
            class: top[0].0,
            score: top[0].1,
            top,
            nearest,
        }
    }
}

impl Predict for Knn {
    fn predict(&self, queries: &VectorSet) -> Result<Vec<Prediction>, ClassifyError> {
        let neighbours = self.kneighbors(queries, self.params.k)?;
        Ok(neighbours.iter().map(|nb| self.vote(nb)).collect())
    }
}

/// Squared Euclidean distance in f64: differences and squares of f32 values are
/// (nearly always) exact in f64, so only the sum rounds, in the fixed order of
/// [`prune::lane_pair_sum`], so every search path gets the same value for the same pair.
fn exact_sq_distance(a: &[f32], b: &[f32]) -> f64 {
    prune::lane_pair_sum(a, b, |x, y| {
        let diff = x as f64 - y as f64;
        diff * diff
    })
}

fn cmp_neighbours(a: &Neighbour, b: &Neighbour) -> std::cmp::Ordering {
    a.sq_distance.total_cmp(&b.sq_distance).then(a.index.cmp(&b.index))
}

fn sort_neighbours(v: &mut [Neighbour]) {
    v.sort_by(cmp_neighbours);
}

/// The best `cap` (approximate distance, index) pairs seen so far, sorted; among
/// equal distances the earlier (lower) index stays ahead.
struct Candidates {
    cap: usize,
    items: Vec<(f32, u32)>,
}

impl Candidates {
    fn new(cap: usize) -> Self {
        Candidates {
            cap,
            items: Vec::with_capacity(cap + 1),
        }
    }

    #[inline]
    fn worst(&self) -> f32 {
        if self.items.len() < self.cap {
            f32::INFINITY
        } else {
            self.items[self.cap - 1].0
        }
    }

    fn insert(&mut self, d: f32, idx: u32) {
        let pos = self.items.partition_point(|x| x.0 <= d);
        self.items.insert(pos, (d, idx));
        self.items.truncate(self.cap);
    }
}

/// False only when `lower` is provably beyond `limit`: a NaN keeps the vector.
#[inline]
fn may_be_within(lower: f64, limit: f64) -> bool {
    lower.partial_cmp(&limit) != Some(std::cmp::Ordering::Greater)
}

/// The blocked search's per-query list (module docs, point 2): every training
/// vector whose exact distance may be among the k smallest.
struct Window {
    k: usize,
    /// The k smallest upper ends `a + e` seen so far, ascending.
    uppers: Vec<f64>,
    /// (lower end `a - e`, index) of every vector whose lower end was at most the
    /// k-th upper end when it was offered.
    items: Vec<(f64, u32)>,
    /// Length at which `items` is next filtered against the (shrinking) k-th upper end.
    filter_at: usize,
    /// Some approximate distance was not finite: the list cannot be trusted.
    overflowed: bool,
    /// More than [`MAX_WINDOW`] candidates survived: the bounds prove too little.
    too_wide: bool,
}

impl Window {
    fn new(k: usize) -> Self {
        Window {
            k,
            uppers: Vec::with_capacity(k + 1),
            items: Vec::new(),
            filter_at: 2 * k + 64,
            overflowed: false,
            too_wide: false,
        }
    }

    /// The k-th smallest upper end so far: no vector with a larger lower end can
    /// be among the k nearest.
    #[inline]
    fn limit(&self) -> f64 {
        if self.uppers.len() < self.k {
            f64::INFINITY
        } else {
            self.uppers[self.k - 1]
        }
    }

    #[inline]
    fn offer(&mut self, approx: f64, err: f64, index: u32) {
        if self.too_wide {
            return;
        }
        let limit = self.limit();
        let (lower, upper) = (approx - err, approx + err);
        if upper < limit {
            let pos = self.uppers.partition_point(|&u| u <= upper);
            self.uppers.insert(pos, upper);
            self.uppers.truncate(self.k);
        }
        // A NaN error (never for finite approx and norms) would fail this test, so
        // keep the vector unless its lower end is provably beyond the limit.
        if may_be_within(lower, self.limit()) {
            self.items.push((lower, index));
            if self.items.len() >= self.filter_at {
                let limit = self.limit();
                self.items.retain(|&(l, _)| may_be_within(l, limit));
                let cap = MAX_WINDOW.max(2 * self.k);
                if self.items.len() > cap {
                    self.too_wide = true;
                    self.items = Vec::new();
                }
                // Never more than twice the cap in memory between filters.
                self.filter_at = (2 * self.items.len()).max(2 * self.k + 64).min(2 * cap);
            }
        }
    }

    fn given_up(&self) -> bool {
        self.overflowed || self.too_wide
    }

    /// Indices whose exact distances decide the k nearest.
    fn candidates(&self) -> impl Iterator<Item = u32> + '_ {
        let limit = self.limit();
        self.items
            .iter()
            .filter(move |&&(l, _)| may_be_within(l, limit))
            .map(|&(_, j)| j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Family;
    use rand::{Rng, SeedableRng};

    fn labelled(rows: &[Vec<f32>], classes: &[usize]) -> (VectorSet, LabelVocab) {
        let fams: Vec<Family> = (0..10)
            .map(|i| Family::new(format!("F{i}"), &format!("PF{i:05}")))
            .collect();
        let mut set = VectorSet::default();
        for (i, (r, &c)) in rows.iter().zip(classes).enumerate() {
            set.push(format!("s{i}"), Some(fams[c].clone()), r);
        }
        (set, LabelVocab::from_families(fams.iter()))
    }

    fn brute(train: &VectorSet, q: &[f32], k: usize) -> Vec<usize> {
        let mut d: Vec<(f64, usize)> = (0..train.len())
            .map(|i| {
                // The library's own f64 distance, so that exact ties compare equal.
                (exact_sq_distance(train.row(i), q), i)
            })
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d.iter().take(k).map(|x| x.1).collect()
    }

    #[test]
    fn matches_f64_brute_force_with_large_offsets_and_small_blocks() {
        // Vectors far from the origin: the naive f32 expansion would lose the ordering.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let rows: Vec<Vec<f32>> = (0..300)
            .map(|_| (0..37).map(|_| 1000.0 + rng.gen_range(-1.0f32..1.0)).collect())
            .collect();
        let classes: Vec<usize> = (0..300).map(|i| i % 10).collect();
        let (train, vocab) = labelled(&rows, &classes);
        let params = KnnParams {
            k: 5,
            query_block: 7,
            train_block: 13,
            ..Default::default()
        };
        let knn = params.fit(&train, None, &vocab).unwrap();
        let queries: Vec<Vec<f32>> = (0..50)
            .map(|_| (0..37).map(|_| 1000.0 + rng.gen_range(-1.0f32..1.0)).collect())
            .collect();
        let (qset, _) = labelled(&queries, &vec![0; 50]);
        let got = knn.kneighbors(&qset, 5).unwrap();
        for (i, q) in queries.iter().enumerate() {
            let want = brute(&train, q, 5);
            assert_eq!(got[i].iter().map(|n| n.index).collect::<Vec<_>>(), want, "query {i}");
        }
    }

    #[test]
    fn ties_go_to_lower_index_and_nearest_class() {
        // Two identical training vectors with different classes: index 0 wins at k=1.
        let rows = vec![vec![1.0, 0.0], vec![1.0, 0.0], vec![5.0, 5.0]];
        let (train, vocab) = labelled(&rows, &[3, 2, 1]);
        let knn = KnnParams::default().fit(&train, None, &vocab).unwrap();
        let (q, _) = labelled(&[vec![1.0, 0.1]], &[0]);
        let p = &knn.predict(&q).unwrap()[0];
        assert_eq!(p.class, 3);
        assert_eq!(p.nearest.unwrap().0, 0);
        assert!((p.nearest.unwrap().1 - 0.1).abs() < 1e-6);
        // k = 2: one vote each; the class of the nearer neighbour (index 0, class 3) wins.
        let knn2 = KnnParams {
            k: 2,
            ..Default::default()
        }
        .fit(&train, None, &vocab)
        .unwrap();
        let p2 = &knn2.predict(&q).unwrap()[0];
        assert_eq!(p2.class, 3);
        assert_eq!(p2.top.len(), 2);
        assert!((p2.score - 0.5).abs() < 1e-6);
    }

    #[test]
    fn majority_and_distance_weighted_votes_differ() {
        // Query at 0; class 1 has one very close neighbour, class 2 two farther ones.
        let rows = vec![vec![0.1], vec![1.0], vec![1.1], vec![50.0]];
        let (train, vocab) = labelled(&rows, &[1, 2, 2, 1]);
        let (q, _) = labelled(&[vec![0.0]], &[0]);
        let majority = KnnParams {
            k: 3,
            ..Default::default()
        }
        .fit(&train, None, &vocab)
        .unwrap();
        assert_eq!(majority.predict(&q).unwrap()[0].class, 2);
        let weighted = KnnParams {
            k: 3,
            weighting: Weighting::Distance,
            ..Default::default()
        }
        .fit(&train, None, &vocab)
        .unwrap();
        let p = &weighted.predict(&q).unwrap()[0];
        assert_eq!(p.class, 1);
        let expected = 10.0 / (10.0 + 1.0 + 1.0 / 1.1);
        assert!((p.score as f64 - expected).abs() < 1e-6);
    }

    #[test]
    fn many_exact_ties_keep_the_lowest_indices() {
        // 40 identical training vectors, all tied with the k-th: every one stays in
        // the window and the lowest indices win.
        let rows: Vec<Vec<f32>> = (0..40).map(|_| vec![0.5, 0.25, 3.0]).collect();
        let classes: Vec<usize> = (0..40).map(|i| (i * 7) % 10).collect();
        let (train, vocab) = labelled(&rows, &classes);
        let knn = KnnParams {
            k: 3,
            train_block: 5,
            ..Default::default()
        }
        .fit(&train, None, &vocab)
        .unwrap();
        let (q, _) = labelled(&[vec![0.0, 0.0, 0.0]], &[0]);
        let nb = knn.kneighbors(&q, 3).unwrap();
        assert_eq!(nb[0].iter().map(|n| n.index).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    /// Sparse 0/1 vectors (pooled one-hot embeddings look like this): integer
    /// distances, so exact ties everywhere.
    fn sparse_binary(rng: &mut rand_chacha::ChaCha8Rng, n: usize, dim: usize, ones: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| {
                let mut v = vec![0f32; dim];
                for _ in 0..ones {
                    v[rng.gen_range(0..dim)] = 1.0;
                }
                v
            })
            .collect()
    }

    #[test]
    fn integer_distances_with_ties_match_brute_force() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
        let rows = sparse_binary(&mut rng, 400, 60, 6);
        let classes: Vec<usize> = (0..400).map(|i| (i * 7) % 10).collect();
        let (train, vocab) = labelled(&rows, &classes);
        let queries = sparse_binary(&mut rng, 40, 60, 6);
        let (qset, _) = labelled(&queries, &[0; 40]);
        for k in [1, 5, 30] {
            let knn = KnnParams {
                k,
                proj_dim: 0,
                query_block: 9,
                train_block: 37,
                ..Default::default()
            }
            .fit(&train, None, &vocab)
            .unwrap();
            let got = knn.kneighbors(&qset, k).unwrap();
            for (i, q) in queries.iter().enumerate() {
                assert_eq!(
                    got[i].iter().map(|n| n.index).collect::<Vec<_>>(),
                    brute(&train, q, k),
                    "k={k} query {i}"
                );
            }
        }
    }

    #[test]
    fn a_window_wider_than_the_cap_is_searched_exhaustively() {
        // More tied vectors than the window holds between filters: it gives up, the exhaustive
        // f64 search answers, and the answer is still brute force's.
        let n = 2 * MAX_WINDOW + 10;
        let rows: Vec<Vec<f32>> = (0..n).map(|i| vec![1.0, if i == n - 1 { 0.5 } else { 2.0 }]).collect();
        let classes: Vec<usize> = (0..n).map(|i| i % 10).collect();
        let (train, vocab) = labelled(&rows, &classes);
        let knn = KnnParams {
            k: 3,
            proj_dim: 0,
            ..Default::default()
        }
        .fit(&train, None, &vocab)
        .unwrap();
        let (q, _) = labelled(&[vec![1.0, 0.0]], &[0]);
        let nb = knn.kneighbors(&q, 3).unwrap();
        assert_eq!(nb[0].iter().map(|n| n.index).collect::<Vec<_>>(), vec![n - 1, 0, 1]);
        // That query's window did give up, and held no more than twice the cap on the way.
        let mut window = Window::new(3);
        for j in 0..n as u32 {
            window.offer(4.0, 1e-3, j);
            assert!(window.items.len() <= 2 * MAX_WINDOW);
        }
        assert!(window.given_up());
    }

    #[test]
    fn a_projection_that_prunes_little_hands_the_queries_to_the_blocked_search() {
        // Sparse binary vectors have no low-rank structure: the probe finds the
        // projection prunes little and the remaining queries take the blocked path,
        // with the same answers as brute force and as the search without pruning.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(22);
        let (n, dim) = (PROBE_MIN_TRAIN + 100, 400);
        let rows = sparse_binary(&mut rng, n, dim, 12);
        let classes: Vec<usize> = (0..n).map(|i| (i * 3) % 10).collect();
        let (train, vocab) = labelled(&rows, &classes);
        let nq = PROBE_QUERIES + 12;
        let queries = sparse_binary(&mut rng, nq, dim, 12);
        let (qset, _) = labelled(&queries, &vec![0; nq]);
        let k = 3;
        let knn = pruned(k, 16).fit(&train, None, &vocab).unwrap();
        let (got, stats) = knn.kneighbors_with_stats(&qset, k).unwrap();
        assert!(stats.pruned);
        assert_eq!(stats.blocked_queries, nq - PROBE_QUERIES, "{stats:?}");
        for (i, q) in queries.iter().enumerate() {
            assert_eq!(
                got[i].iter().map(|n| n.index).collect::<Vec<_>>(),
                brute(&train, q, k),
                "query {i}"
            );
        }
        let full = KnnParams {
            proj_dim: 0,
            ..pruned(k, 16)
        }
        .fit(&train, None, &vocab)
        .unwrap();
        assert_eq!(got, full.kneighbors(&qset, k).unwrap());
    }

    #[test]
    fn exact_where_f32_products_cannot_resolve_the_order() {
        // One far outlier shifts the centre; the other points differ by ~1e-3,
        // below the f32 resolution of their products, so only the f64 fallback
        // finds the true order.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut rows: Vec<Vec<f32>> = vec![vec![1.0e4, 0.0, 0.0]];
        rows.extend((0..60).map(|_| (0..3).map(|_| rng.gen_range(-1e-3f32..1e-3)).collect::<Vec<f32>>()));
        let classes: Vec<usize> = (0..rows.len()).map(|i| i % 10).collect();
        let (train, vocab) = labelled(&rows, &classes);
        let knn = KnnParams {
            k: 2,
            ..Default::default()
        }
        .fit(&train, None, &vocab)
        .unwrap();
        let queries: Vec<Vec<f32>> = (0..20)
            .map(|_| (0..3).map(|_| rng.gen_range(-1e-3f32..1e-3)).collect())
            .collect();
        let (qset, _) = labelled(&queries, &[0; 20]);
        let got = knn.kneighbors(&qset, 2).unwrap();
        for (i, q) in queries.iter().enumerate() {
            assert_eq!(
                got[i].iter().map(|n| n.index).collect::<Vec<_>>(),
                brute(&train, q, 2),
                "query {i}"
            );
        }
    }

    fn pruned(k: usize, proj_dim: usize) -> KnnParams {
        KnnParams {
            k,
            proj_dim,
            query_block: 16,
            train_block: 64,
            ..Default::default()
        }
    }

    /// Low-rank clustered data plus noise, far from the origin: what pruning is for.
    fn clustered(rng: &mut rand_chacha::ChaCha8Rng, n: usize, dim: usize, offset: f32) -> Vec<Vec<f32>> {
        let centres: Vec<Vec<f32>> = (0..12)
            .map(|_| (0..dim).map(|_| rng.gen_range(-3.0f32..3.0)).collect())
            .collect();
        (0..n)
            .map(|i| {
                centres[i % 12]
                    .iter()
                    .map(|&c| offset + c + 0.3 * rng.gen_range(-1.0f32..1.0))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn pruned_search_equals_f64_brute_force() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let rows = clustered(&mut rng, 600, 48, 500.0);
        let classes: Vec<usize> = (0..600).map(|i| (i * 3) % 10).collect();
        let (train, vocab) = labelled(&rows, &classes);
        let queries = clustered(&mut rng, 40, 48, 500.0);
        let (qset, _) = labelled(&queries, &[0; 40]);
        for k in [1, 3, 7] {
            let knn = pruned(k, 12).fit(&train, None, &vocab).unwrap();
            let (got, stats) = knn.kneighbors_with_stats(&qset, k).unwrap();
            assert!(stats.pruned);
            // The bound must actually prune on clustered data, or this path tests nothing.
            assert!(stats.exact_distances < 40 * 600 / 2, "k={k}: {stats:?}");
            for (i, q) in queries.iter().enumerate() {
                let want = brute(&train, q, k);
                assert_eq!(
                    got[i].iter().map(|n| n.index).collect::<Vec<_>>(),
                    want,
                    "k={k} query {i}"
                );
            }
            // Same answers, distances included, as the blocked full search.
            let full = KnnParams {
                proj_dim: 0,
                ..pruned(k, 12)
            }
            .fit(&train, None, &vocab)
            .unwrap();
            let (want, full_stats) = full.kneighbors_with_stats(&qset, k).unwrap();
            assert!(!full_stats.pruned);
            assert_eq!(got, want);
        }
    }

    #[test]
    fn pruned_search_keeps_lower_index_on_exact_ties() {
        // Duplicated training vectors (exact ties) among random ones; the duplicates are
        // the nearest to their own queries, and the lower indices must win.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let mut rows: Vec<Vec<f32>> = (0..200)
            .map(|_| (0..30).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
            .collect();
        for i in 0..20 {
            let dup = rows[i].clone();
            rows.push(dup.clone());
            rows.push(dup);
        }
        let classes: Vec<usize> = (0..rows.len()).map(|i| i % 10).collect();
        let (train, vocab) = labelled(&rows, &classes);
        let queries: Vec<Vec<f32>> = (0..20).map(|i| rows[i].iter().map(|v| v + 1e-3).collect()).collect();
        let (qset, _) = labelled(&queries, &[0; 20]);
        let knn = pruned(3, 4).fit(&train, None, &vocab).unwrap();
        let got = knn.kneighbors(&qset, 3).unwrap();
        for (i, q) in queries.iter().enumerate() {
            let ids: Vec<usize> = got[i].iter().map(|n| n.index).collect();
            assert_eq!(ids, brute(&train, q, 3), "query {i}");
            assert_eq!(ids, vec![i, 200 + 2 * i, 201 + 2 * i]);
        }
    }

    #[test]
    fn pruned_search_is_exact_when_the_bound_prunes_nothing() {
        // Orthonormal training vectors and the query at their mean: every training
        // vector is at the same distance, so no bound can exclude any and all are
        // visited; ties go to the lowest indices.
        let n = 40;
        let rows: Vec<Vec<f32>> = (0..n)
            .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
            .collect();
        let classes: Vec<usize> = (0..n).map(|i| i % 10).collect();
        let (train, vocab) = labelled(&rows, &classes);
        let (qset, _) = labelled(&[vec![1.0 / n as f32; n]], &[0]);
        let knn = pruned(2, 4).fit(&train, None, &vocab).unwrap();
        let (got, stats) = knn.kneighbors_with_stats(&qset, 2).unwrap();
        assert!(stats.pruned);
        assert_eq!(stats.exact_distances, n);
        assert_eq!(
            got[0].iter().map(|n| n.index).collect::<Vec<_>>(),
            brute(&train, &qset.data, 2)
        );
    }

    #[test]
    fn projection_is_rebuilt_identically() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
        let rows = clustered(&mut rng, 300, 40, 0.0);
        let classes: Vec<usize> = (0..300).map(|i| i % 10).collect();
        let (train, vocab) = labelled(&rows, &classes);
        let a = pruned(1, 5).fit(&train, None, &vocab).unwrap();
        let b = Knn::from_parts(pruned(1, 5), 10, 40, train.data.clone(), a.labels().to_vec()).unwrap();
        let (qset, _) = labelled(&clustered(&mut rng, 10, 40, 0.0), &[0; 10]);
        let (ra, sa) = a.kneighbors_with_stats(&qset, 1).unwrap();
        let (rb, sb) = b.kneighbors_with_stats(&qset, 1).unwrap();
        assert_eq!((ra, sa), (rb, sb));
    }

    #[test]
    fn proj_dim_is_validated_and_narrow_vectors_skip_pruning() {
        let (train, vocab) = labelled(&[vec![0.0; 10], vec![1.0; 10]], &[0, 1]);
        assert!(matches!(
            pruned(1, MAX_PROJ_DIM + 1).fit(&train, None, &vocab),
            Err(ClassifyError::InvalidParams(_))
        ));
        // dim 10 <= 2 * 5: the projection would not pay, so the blocked search runs.
        let knn = pruned(1, 5).fit(&train, None, &vocab).unwrap();
        let (q, _) = labelled(&[vec![0.9; 10]], &[0]);
        let (nb, stats) = knn.kneighbors_with_stats(&q, 1).unwrap();
        assert!(!stats.pruned);
        assert_eq!(nb[0][0].index, 1);
    }

    #[test]
    fn pruned_search_handles_queries_beyond_f32_range() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
        let rows = clustered(&mut rng, 200, 30, 0.0);
        let classes: Vec<usize> = (0..200).map(|i| i % 10).collect();
        let (train, vocab) = labelled(&rows, &classes);
        let knn = pruned(2, 4).fit(&train, None, &vocab).unwrap();
        let mut huge = rows[5].clone();
        huge[0] = 3e30;
        let (q, _) = labelled(&[huge.clone(), rows[7].clone()], &[0, 0]);
        let (got, stats) = knn.kneighbors_with_stats(&q, 2).unwrap();
        assert!(stats.pruned);
        assert_eq!(
            got[0].iter().map(|n| n.index).collect::<Vec<_>>(),
            brute(&train, &huge, 2)
        );
        assert_eq!(got[1][0].index, 7);
    }

    /// Issue 15 item 1: one training value near `f32::MAX` made `qn + tn - 2 dot`
    /// overflow, no candidate survived and the search indexed an empty list.
    #[test]
    fn finite_values_that_overflow_f32_products_are_searched_exactly() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
        for (dim, proj) in [(12usize, 0usize), (40, 4)] {
            let mut rows = clustered(&mut rng, 200, dim, 0.0);
            rows[3][0] = 3e38;
            rows[8][1] = -3e38;
            rows[11] = vec![f32::MAX; dim];
            let classes: Vec<usize> = (0..200).map(|i| i % 10).collect();
            let (train, vocab) = labelled(&rows, &classes);
            for k in [1usize, 3, 200] {
                let params = KnnParams {
                    query_block: 7,
                    train_block: 13,
                    ..pruned(k, proj)
                };
                let knn = params.fit(&train, None, &vocab).unwrap();
                let mut queries = vec![rows[5].clone(), rows[3].clone(), rows[11].clone()];
                queries.push(vec![-f32::MAX; dim]);
                let (qset, _) = labelled(&queries, &[0, 0, 0, 0]);
                let got = knn.kneighbors(&qset, k).unwrap();
                for (q, nb) in queries.iter().zip(&got) {
                    assert_eq!(nb.iter().map(|n| n.index).collect::<Vec<_>>(), brute(&train, q, k));
                    assert!(nb.iter().all(|n| n.sq_distance.is_finite()));
                }
                assert_eq!(knn.predict(&qset).unwrap().len(), 4);
            }
        }
    }

    #[test]
    fn params_saved_before_proj_dim_load_with_the_default() {
        let old = r#"{"k": 3, "weighting": "distance", "query_block": 1024, "train_block": 4096}"#;
        let p: KnnParams = serde_json::from_str(old).unwrap();
        assert_eq!(p.proj_dim, KnnParams::default().proj_dim);
        assert_eq!(p.k, 3);
        let round: KnnParams = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(round, p);
    }

    #[test]
    fn rejects_bad_input() {
        let (train, vocab) = labelled(&[vec![0.0, 1.0]], &[0]);
        assert!(KnnParams {
            k: 0,
            ..Default::default()
        }
        .fit(&train, None, &vocab)
        .is_err());
        let knn = KnnParams::default().fit(&train, None, &vocab).unwrap();
        let (q, _) = labelled(&[vec![0.0, 1.0, 2.0]], &[0]);
        assert!(knn.predict(&q).is_err());
        let (nan, _) = labelled(&[vec![f32::NAN, 1.0]], &[0]);
        assert!(knn.predict(&nan).is_err());
    }
}
