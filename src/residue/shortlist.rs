//! The pre-filter of the residue search: exact search over a shortlist of
//! training sequences.
//!
//! Exact search compares every query residue with every stored residue,
//! although the nearest residues of a domain come from a few hundred of the
//! store's training sequences. Here each query is cut into windows of at most
//! `window` rows; each window's mean residue vector is compared with every
//! training sequence's mean residue vector ([`SequenceMeans`], one pass over
//! the store at load), and the window's rows are searched exactly, but only
//! against the rows of its `sequences` most similar training sequences. The
//! cost per query residue is `sequences x` the mean stored rows per sequence
//! instead of the whole store, and the shortlist step itself costs one dot
//! product per training sequence (not per stored residue) per window.
//!
//! Similarities that reach scoring are the exact cosines; the shortlist only
//! decides which training sequences are looked at, and with `sequences` at
//! least the store's sequence count the answer is the exact search's.
//! Windows keep a whole protein's shortlist local: a multi-domain protein's
//! mean is a blend, each window's is mostly one domain. How much of the final
//! family the shortlist keeps is measured against exact search by
//! `protfam residue recall`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::search::{insert_row_hits, normalise_rows, HitTable};
use super::store::{scratch, ResidueStore};
use super::ResidueError;
use crate::lowp::PackedRhs;

/// Shortlist size and window length of the pre-filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortlistParams {
    /// Training sequences whose rows each query window is searched against.
    pub sequences: usize,
    /// Query rows per window: a longer query is cut into equal windows, each with its own shortlist.
    pub window: usize,
}

impl Default for ShortlistParams {
    fn default() -> Self {
        ShortlistParams {
            sequences: 256,
            window: 128,
        }
    }
}

impl ShortlistParams {
    pub fn validate(&self) -> Result<(), ResidueError> {
        if self.sequences == 0 || self.window == 0 {
            return Err(ResidueError::InvalidParams(format!(
                "the residue shortlist needs at least 1 sequence and a window of at least 1 row (got {self:?})"
            )));
        }
        Ok(())
    }
}

/// Each stored sequence's mean unit row, minus the mean of all stored unit
/// rows, scaled to unit length (zero for a sequence without rows), `n_sequences
/// x dim`. Centring matters: raw means of language-model residues share a
/// large common component, so their cosines hardly tell sequences apart.
pub struct SequenceMeans {
    dim: usize,
    center: Vec<f32>,
    means: Vec<f32>,
}

impl SequenceMeans {
    /// One pass over the store, in parallel over sequences.
    pub fn from_store(store: &ResidueStore) -> SequenceMeans {
        let dim = store.dim();
        let mut means = vec![0.0f32; store.sequences.len() * dim];
        means
            .par_chunks_mut(dim.max(1))
            .zip(store.sequences.par_iter())
            .for_each_init(Vec::new, |rows, (mean, seq)| {
                rows.clear();
                store.extend_rows_f32(seq.first_row, seq.first_row + seq.n_rows, true, rows);
                for row in rows.chunks_exact(dim) {
                    mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
                }
            });
        // Sums first: the centre is the mean over all rows, each sequence weighted by its rows.
        let mut center = vec![0.0f32; dim];
        for sum in means.chunks_exact(dim.max(1)) {
            center.iter_mut().zip(sum).for_each(|(c, v)| *c += v);
        }
        let n_rows = store.n_rows().max(1) as f32;
        center.iter_mut().for_each(|c| *c /= n_rows);
        for (sum, seq) in means.chunks_exact_mut(dim.max(1)).zip(&store.sequences) {
            if seq.n_rows > 0 {
                let n = seq.n_rows as f32;
                sum.iter_mut().zip(&center).for_each(|(m, c)| *m = *m / n - c);
            }
        }
        normalise_rows(&mut means, dim);
        SequenceMeans { dim, center, means }
    }

    /// The centred, unit-length mean of unit rows (`n x dim`), comparable with the sequences' means.
    fn mean_of(&self, rows: &[f32], out: &mut [f32]) {
        let n = rows.len() / self.dim.max(1);
        out.iter_mut().for_each(|v| *v = 0.0);
        for row in rows.chunks_exact(self.dim) {
            out.iter_mut().zip(row).for_each(|(m, v)| *m += v);
        }
        if n > 0 {
            out.iter_mut()
                .zip(&self.center)
                .for_each(|(m, c)| *m = *m / n as f32 - c);
        }
        normalise_rows(out, self.dim);
    }

    pub fn n_sequences(&self) -> usize {
        self.means.len() / self.dim.max(1)
    }

    /// Bytes held in memory.
    pub fn bytes(&self) -> usize {
        (self.means.len() + self.center.len()) * 4
    }
}

/// Row ranges `[start, end)` of the windows of every query range: a range of
/// `n` rows becomes `ceil(n / window)` windows of nearly equal length. Empty
/// ranges give no window; the windows cover the ranges in order.
pub fn windows(ranges: &[(usize, usize)], window: usize) -> Vec<(usize, usize)> {
    let window = window.max(1);
    let mut out = Vec::new();
    for &(start, end) in ranges {
        let n = end.saturating_sub(start);
        let parts = n.div_ceil(window);
        for p in 0..parts {
            out.push((start + p * n / parts, start + (p + 1) * n / parts));
        }
    }
    out
}

/// The `n` most similar training sequences of each window mean (`w x dim`),
/// in increasing sequence order (so gathered rows come in store order and ties
/// break as in exact search, towards the lower row).
fn shortlists(window_means: &[f32], means: &SequenceMeans, n: usize) -> Vec<Vec<u32>> {
    let dim = means.dim;
    let n_seq = means.n_sequences();
    let w = window_means.len() / dim.max(1);
    let mut sims = vec![0.0f32; w * n_seq];
    crate::gemm::matmul_abt(w, n_seq, dim, window_means, &means.means, &mut sims);
    sims.par_chunks(n_seq.max(1))
        .map(|row| {
            let mut order: Vec<u32> = (0..n_seq as u32).collect();
            if n < n_seq {
                let by_similarity = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
                order.select_nth_unstable_by(n - 1, by_similarity);
                order.truncate(n);
                order.sort_unstable();
            }
            order
        })
        .collect()
}

/// Windows whose shortlist similarity products are computed together: bounds
/// the `windows x training sequences` tile at about 64 MiB of f32.
fn windows_per_batch(n_sequences: usize) -> usize {
    ((16usize << 20) / n_sequences.max(1)).clamp(1, 4096)
}

/// Top-`k` store rows by cosine for every unit query row (`queries`, `n x
/// dim`, grouped into sequences by `ranges`), each window searched exactly
/// against the rows of its shortlisted training sequences. Rows outside every
/// range get no hits.
pub fn shortlisted_top_k(
    queries: &[f32],
    ranges: &[(usize, usize)],
    store: &ResidueStore,
    means: &SequenceMeans,
    params: &ShortlistParams,
    k: usize,
    progress: &indicatif::ProgressBar,
) -> Result<HitTable, ResidueError> {
    params.validate()?;
    let dim = store.dim();
    let n = super::search::check_queries(queries, dim, store, k)?;
    if means.dim != dim {
        return Err(ResidueError::InvalidParams(format!(
            "sequence means of dimension {} for a store of dimension {dim}",
            means.dim
        )));
    }
    check_ranges(ranges, n)?;
    let mut table = HitTable::new(n, k);
    let all = windows(ranges, params.window);
    for batch in all.chunks(windows_per_batch(means.n_sequences())) {
        let mut window_means = vec![0.0f32; batch.len() * dim];
        for (mean, &(start, end)) in window_means.chunks_exact_mut(dim).zip(batch) {
            means.mean_of(&queries[start * dim..end * dim], mean);
        }
        let lists = shortlists(&window_means, means, params.sequences);
        // The shortlist search stays in f32: it is kept for comparison, as measured.
        search_listed_sequences(queries, batch, &lists, store, &mut table, Products::F32);
        progress.inc(batch.iter().map(|&(s, e)| (e - s) as u64).sum());
    }
    Ok(table)
}

/// Checks that `ranges` are ordered, disjoint and within `n` rows.
pub(crate) fn check_ranges(ranges: &[(usize, usize)], n: usize) -> Result<(), ResidueError> {
    let mut previous_end = 0;
    for &(start, end) in ranges {
        if start < previous_end || start > end || end > n {
            return Err(ResidueError::InvalidParams(format!(
                "query ranges must be ordered, disjoint and within the {n} query rows (got {start}..{end})"
            )));
        }
        previous_end = end;
    }
    Ok(())
}

/// Target rows per product of [`search_listed_sequences`] (packed: 512 KiB of bf16 at 256 dims).
const PRODUCT_TARGET_ROWS: usize = 1024;

/// Searches the rows of each window (ordered, disjoint row ranges of the
/// unit `queries`) exactly against the rows of the training sequences listed
/// for it (in increasing order), merging the hits into `table` (`k` slots per
/// query row; hits already there stay, duplicates of them are skipped).
pub(crate) fn search_listed_sequences(
    queries: &[f32],
    windows: &[(usize, usize)],
    lists: &[Vec<u32>],
    store: &ResidueStore,
    table: &mut HitTable,
    products: Products,
) {
    let dim = store.dim();
    let k = table.k;
    if windows.is_empty() {
        return;
    }
    // Each window owns its rows' slots: hand out disjoint slices in window order.
    let mut jobs = Vec::with_capacity(windows.len());
    let mut rest = &mut table.hits[windows[0].0 * k..];
    let mut at = windows[0].0;
    for (&(start, end), list) in windows.iter().zip(lists) {
        let (_, tail) = rest.split_at_mut((start - at) * k);
        let (slots, tail) = tail.split_at_mut((end - start) * k);
        rest = tail;
        at = end;
        jobs.push((start, end, list, slots));
    }
    jobs.into_par_iter().for_each_init(
        || (RowProducts::new(products), Vec::new(), Vec::new()),
        |(products, target_rows, query_rows), (start, end, list, slots)| {
            target_rows.clear();
            for &s in list.iter() {
                let seq = &store.sequences[s as usize];
                target_rows.extend(seq.first_row as u32..(seq.first_row + seq.n_rows) as u32);
            }
            query_rows.clear();
            query_rows.extend(queries[start * dim..end * dim].chunks_exact(dim));
            // A slice of the target rows at a time, so that their packing is still in L2 when
            // the product reads it; each query row still meets the target rows in order, so its
            // hits are those of one product over all of them.
            for part in target_rows.chunks(PRODUCT_TARGET_ROWS) {
                let sims = products.similarities(store, part, query_rows);
                for (best, row) in slots.chunks_mut(k).zip(sims.chunks(part.len())) {
                    insert_row_hits(best, row, part, true);
                }
            }
        },
    );
}

/// The arithmetic of the approximate searches' similarity products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Products {
    /// f32 values and sums (the `gemm` crate): the exact search's arithmetic.
    F32,
    /// Both operands rounded to bf16, every product summed in f32 ([`crate::lowp`]:
    /// AVX512-BF16 or AMX where the CPU has them): about 2x the speed, similarities within
    /// about 1e-3 of f32's (docs/residue-knn.md measures what that changes).
    #[default]
    Bf16,
}

impl std::str::FromStr for Products {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Products::F32),
            "bf16" => Ok(Products::Bf16),
            _ => Err(format!("unknown product arithmetic {s:?} (expected f32 or bf16)")),
        }
    }
}

impl std::fmt::Display for Products {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Products::F32 => "f32",
            Products::Bf16 => "bf16",
        })
    }
}

/// One thread's buffers for the similarities of query rows to store rows in
/// either [`Products`] arithmetic.
pub(crate) struct RowProducts<'s> {
    products: Products,
    packed: PackedRhs,
    f16_rows: Vec<(&'s [u8], f32)>,
    target: Vec<f32>,
    dense_queries: Vec<f32>,
    sims: Vec<f32>,
}

impl<'s> RowProducts<'s> {
    pub(crate) fn new(products: Products) -> Self {
        RowProducts {
            products,
            packed: PackedRhs::empty(),
            f16_rows: Vec::new(),
            target: Vec::new(),
            dense_queries: Vec::new(),
            sims: Vec::new(),
        }
    }

    /// Cosine similarities (`queries` x `rows`, row-major) of unit query rows
    /// to the store rows `rows`, each scaled to unit length.
    pub(crate) fn similarities(&mut self, store: &'s ResidueStore, rows: &[u32], queries: &[&[f32]]) -> &[f32] {
        let (m, n, dim) = (queries.len(), rows.len(), store.dim());
        match self.products {
            Products::Bf16 => {
                self.f16_rows.clear();
                store.push_f16_rows(rows.iter().map(|&r| r as usize), &mut self.f16_rows);
                self.packed.pack_f16_rows_into(&self.f16_rows, dim);
                crate::lowp::matmul_abt_rows(queries, &self.packed, scratch(&mut self.sims, m * n));
            }
            Products::F32 => {
                let target = scratch(&mut self.target, n * dim);
                store.listed_rows_into(rows, target);
                let dense = scratch(&mut self.dense_queries, m * dim);
                for (d, q) in dense.chunks_exact_mut(dim).zip(queries) {
                    d.copy_from_slice(q);
                }
                crate::gemm::matmul_abt(m, n, dim, dense, target, scratch(&mut self.sims, m * n));
            }
        }
        &self.sims[..m * n]
    }
}

/// The `n` training sequences that collect the most similarity over the hits
/// of each window's rows (a sequence's score: the sum of its hits'
/// similarities), in increasing sequence order.
pub(crate) fn sequences_hit(
    table: &HitTable,
    windows: &[(usize, usize)],
    store: &ResidueStore,
    n: usize,
) -> Vec<Vec<u32>> {
    windows
        .par_iter()
        .map(|&(start, end)| {
            let mut score: std::collections::HashMap<u32, f32> = std::collections::HashMap::new();
            for i in start..end {
                for hit in table.row(i) {
                    *score.entry(store.row_sequence[hit.row as usize]).or_default() += hit.similarity.max(0.0);
                }
            }
            let mut ranked: Vec<(u32, f32)> = score.into_iter().collect();
            ranked.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut list: Vec<u32> = ranked.into_iter().take(n).map(|(s, _)| s).collect();
            list.sort_unstable();
            list
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_split_long_ranges_evenly_and_skip_empty_ones() {
        assert_eq!(
            windows(&[(0, 5), (5, 5), (5, 12)], 4),
            vec![(0, 2), (2, 5), (5, 8), (8, 12)]
        );
        assert_eq!(windows(&[(3, 7)], 100), vec![(3, 7)]);
        assert!(windows(&[], 8).is_empty());
    }

    #[test]
    fn zero_sizes_are_refused() {
        assert!(ShortlistParams {
            sequences: 0,
            window: 8
        }
        .validate()
        .is_err());
        assert!(ShortlistParams {
            sequences: 8,
            window: 0
        }
        .validate()
        .is_err());
        assert!(ShortlistParams::default().validate().is_ok());
    }
}
