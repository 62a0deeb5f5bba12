//! Nearest training residues by cosine similarity.
//!
//! [`exact_top_k`] is the reference: all query rows against all store rows as
//! blocked matrix products on a Candle device (CPU or CUDA). Store rows are
//! decoded from f16 and normalised one block at a time, so memory stays at
//! `target_block x dim` f32 plus a `query_block x target_block` similarity
//! tile, whatever the store's size. [`ApproxIndex`] is an HNSW graph
//! (`instant-distance`) for training sets too large to scan; [`recall_at_k`]
//! measures it against the exact answer.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::store::ResidueStore;
use super::ResidueError;

/// One neighbour: a store row and its cosine similarity to the query row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub row: u32,
    pub similarity: f32,
}

impl Hit {
    pub const EMPTY: Hit = Hit {
        row: u32::MAX,
        similarity: f32::NEG_INFINITY,
    };

    pub fn is_empty(&self) -> bool {
        self.row == u32::MAX
    }
}

/// The `k` best hits of every query row, best first (`k` slots per row, empty
/// slots last when the store has fewer than `k` rows).
#[derive(Debug, Clone, PartialEq)]
pub struct HitTable {
    pub k: usize,
    pub hits: Vec<Hit>,
}

impl HitTable {
    pub fn new(n_queries: usize, k: usize) -> Self {
        HitTable {
            k,
            hits: vec![Hit::EMPTY; n_queries * k],
        }
    }

    pub fn n_queries(&self) -> usize {
        self.hits.len() / self.k.max(1)
    }

    /// Hits of query row `i`, best first, without empty slots.
    pub fn row(&self, i: usize) -> &[Hit] {
        let slots = &self.hits[i * self.k..(i + 1) * self.k];
        let n = slots.iter().position(Hit::is_empty).unwrap_or(self.k);
        &slots[..n]
    }

    /// Merges the hits of `other`, a table of the same queries and `k` searched
    /// against other store rows (another part), keeping the best `k` of each
    /// query row. Ties keep the lower row, as one search over all rows does.
    pub fn merge(&mut self, other: &HitTable) -> Result<(), ResidueError> {
        if other.k != self.k || other.hits.len() != self.hits.len() {
            return Err(ResidueError::InvalidParams(format!(
                "cannot merge hit tables of {} x {} and {} x {} hits",
                self.n_queries(),
                self.k,
                other.n_queries(),
                other.k
            )));
        }
        let k = self.k.max(1);
        for (slots, theirs) in self.hits.chunks_mut(k).zip(other.hits.chunks(k)) {
            let mut all: Vec<Hit> = slots.iter().chain(theirs).copied().filter(|h| !h.is_empty()).collect();
            all.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.row.cmp(&b.row)));
            all.dedup_by_key(|h| h.row);
            for (i, slot) in slots.iter_mut().enumerate() {
                *slot = all.get(i).copied().unwrap_or(Hit::EMPTY);
            }
        }
        Ok(())
    }

    /// Keeps only the best `k` of each row (for scoring with a smaller k than searched).
    pub fn truncate(&self, k: usize) -> HitTable {
        let k = k.min(self.k);
        let hits = self
            .hits
            .chunks(self.k.max(1))
            .flat_map(|c| c[..k].iter().copied())
            .collect();
        HitTable { k, hits }
    }
}

/// Inserts a candidate into a best-first list of fixed length; ties keep the earlier (lower) row.
#[inline]
pub(crate) fn insert(slots: &mut [Hit], candidate: Hit) {
    let k = slots.len();
    if candidate.similarity <= slots[k - 1].similarity {
        return;
    }
    let mut i = k - 1;
    while i > 0 && slots[i - 1].similarity < candidate.similarity {
        slots[i] = slots[i - 1];
        i -= 1;
    }
    slots[i] = candidate;
}

/// Store-row similarities scanned per test of "does any beat the k-th?".
const SCAN_LANES: usize = 16;

crate::simd::multiversion! {
    /// Inserts into `slots` (best first) each of one query row's similarities
    /// `sims` to store rows `rows` that beats the current k-th, in order, skipping
    /// a row the slots already hold when `dedup` is set: what testing every value
    /// against the k-th does, but each run of 16 values is first tested as a whole
    /// (one vector compare), since after the first few hits almost none beats it.
    pub(crate) fn insert_row_hits(slots: &mut [Hit], sims: &[f32], rows: &[u32], dedup: bool) {
        debug_assert_eq!(sims.len(), rows.len());
        let k = slots.len();
        for (run, run_rows) in sims.chunks(SCAN_LANES).zip(rows.chunks(SCAN_LANES)) {
            // The k-th only rises while the run is inserted, so a run with no value above it
            // now holds no hit.
            let floor = slots[k - 1].similarity;
            let mut any_above = false;
            for &s in run {
                any_above |= s > floor;
            }
            if !any_above {
                continue;
            }
            for (&s, &row) in run.iter().zip(run_rows) {
                if s > slots[k - 1].similarity && !(dedup && slots.iter().any(|h| h.row == row)) {
                    insert(slots, Hit { row, similarity: s });
                }
            }
        }
    }
}

/// L2-normalises each `dim`-long row in place (zero rows stay zero).
pub fn normalise_rows(data: &mut [f32], dim: usize) {
    for row in data.chunks_exact_mut(dim) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|v| *v /= n);
        }
    }
}

/// The first CUDA device when built with the `cuda` feature and one is present, else the CPU.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(dev) = Device::new_cuda(0) {
        return dev;
    }
    Device::Cpu
}

/// Block sizes and device of the exact search.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub device: Device,
    /// Store rows decoded per block.
    pub target_block: usize,
    /// Query rows multiplied per tile.
    pub query_block: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            device: Device::Cpu,
            target_block: 8192,
            query_block: 512,
        }
    }
}

impl SearchOptions {
    /// Peak bytes of the search's working buffers (excluding the queries themselves).
    pub fn working_bytes(&self, dim: usize) -> usize {
        4 * (self.target_block * dim + 2 * self.query_block * self.target_block)
    }
}

/// The number of query rows in `queries` (`dim` wide), after checking that
/// `dim` is the store's and `k` at least 1: every search's first step.
pub(crate) fn check_queries(
    queries: &[f32],
    dim: usize,
    store: &ResidueStore,
    k: usize,
) -> Result<usize, ResidueError> {
    if k == 0 || dim == 0 || dim != store.dim() || !queries.len().is_multiple_of(dim) {
        return Err(ResidueError::InvalidParams(format!(
            "top-k search needs k >= 1 and query rows of the store's dimension {} (got k={k}, dim={dim}, {} values)",
            store.dim(),
            queries.len()
        )));
    }
    Ok(queries.len() / dim)
}

/// Exact top-`k` store rows by cosine for every row of `queries` (`n x dim`,
/// already unit length: see [`normalise_rows`]).
pub fn exact_top_k(
    queries: &[f32],
    dim: usize,
    store: &ResidueStore,
    k: usize,
    opts: &SearchOptions,
    progress: &indicatif::ProgressBar,
) -> Result<HitTable, ResidueError> {
    let all = crate::pipeline::WorkShard { index: 0, count: 1 };
    exact_top_k_of_part(queries, dim, store, all, k, opts, progress)
}

/// [`exact_top_k`] over the rows of one part of the store's shards
/// ([`ResidueStore::blocks_of_part`]): what one task of a job array searches.
/// Merging the tables of all parts ([`HitTable::merge`]) gives the one-part
/// search's table.
pub fn exact_top_k_of_part(
    queries: &[f32],
    dim: usize,
    store: &ResidueStore,
    part: crate::pipeline::WorkShard,
    k: usize,
    opts: &SearchOptions,
    progress: &indicatif::ProgressBar,
) -> Result<HitTable, ResidueError> {
    let n = check_queries(queries, dim, store, k)?;
    let mut table = HitTable::new(n, k);
    if n == 0 {
        return Ok(table);
    }
    let qb = opts.query_block.max(1);
    let query_tiles: Vec<Tensor> = queries
        .chunks(qb * dim)
        .map(|c| Tensor::from_slice(c, (c.len() / dim, dim), &opts.device))
        .collect::<Result<_, _>>()?;
    for (start, end) in store.blocks_of_part(opts.target_block, part) {
        let rows = store.rows_f32(start, end, true);
        let target = Tensor::from_vec(rows, (end - start, dim), &opts.device)?;
        let target_t = target.t()?;
        for (t, tile) in query_tiles.iter().enumerate() {
            let sims = tile.matmul(&target_t)?;
            let width = end - start;
            let slots = &mut table.hits[t * qb * k..((t * qb + tile.dim(0)?) * k)];
            with_host_f32(&sims, |sims| {
                slots
                    .par_chunks_mut(k)
                    .zip(sims.par_chunks(width))
                    .for_each(|(best, row)| {
                        for (j, &s) in row.iter().enumerate() {
                            if s > best[k - 1].similarity {
                                insert(
                                    best,
                                    Hit {
                                        row: (start + j) as u32,
                                        similarity: s,
                                    },
                                );
                            }
                        }
                    })
            })?;
        }
        progress.inc((end - start) as u64);
    }
    Ok(table)
}

/// Runs `f` on a contiguous f32 tensor's values: in place on CPU storage (no
/// copy of a similarity tile), copied to the host from any other device.
fn with_host_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R, ResidueError> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((a, b))) = (&*storage, layout.contiguous_offsets()) {
            return Ok(f(&cpu.as_slice::<f32>()?[a..b]));
        }
    }
    Ok(f(&t.flatten_all()?.to_vec1::<f32>()?))
}

#[derive(Clone)]
struct UnitPoint(Box<[f32]>);

impl instant_distance::Point for UnitPoint {
    fn distance(&self, other: &Self) -> f32 {
        1.0 - self.0.iter().zip(other.0.iter()).map(|(a, b)| a * b).sum::<f32>()
    }
}

/// HNSW parameters.
#[derive(Debug, Clone)]
pub struct ApproxOptions {
    pub ef_construction: usize,
    pub ef_search: usize,
    pub seed: u64,
}

impl Default for ApproxOptions {
    fn default() -> Self {
        ApproxOptions {
            ef_construction: 100,
            ef_search: 100,
            seed: 42,
        }
    }
}

/// An in-memory HNSW graph over a store's unit-length rows.
pub struct ApproxIndex {
    map: instant_distance::HnswMap<UnitPoint, u32>,
    dim: usize,
    n_rows: usize,
}

impl ApproxIndex {
    /// Builds the graph over all store rows (seeded, so repeatable).
    pub fn build(store: &ResidueStore, opts: &ApproxOptions) -> ApproxIndex {
        let dim = store.dim();
        let mut points = Vec::with_capacity(store.n_rows());
        for (start, end) in store.blocks(65536) {
            let rows = store.rows_f32(start, end, true);
            points.extend(rows.chunks_exact(dim).map(|r| UnitPoint(r.into())));
        }
        let n_rows = points.len();
        let values: Vec<u32> = (0..n_rows as u32).collect();
        let map = instant_distance::Builder::default()
            .ef_construction(opts.ef_construction)
            .ef_search(opts.ef_search)
            .seed(opts.seed)
            .build(points, values);
        ApproxIndex { map, dim, n_rows }
    }

    /// Approximate bytes the index holds in memory (points plus graph links).
    pub fn memory_bytes(&self) -> usize {
        // Points: boxed f32 rows; graph: about 2 * M (= 32) u32 neighbours on layer 0 per point.
        self.n_rows * (self.dim * 4 + 16 + 32 * 4 * 2 + 4)
    }

    /// Approximate top-`k` by cosine for every unit-length query row.
    pub fn top_k(&self, queries: &[f32], k: usize) -> HitTable {
        let n = queries.len() / self.dim;
        let mut table = HitTable::new(n, k);
        table
            .hits
            .par_chunks_mut(k)
            .zip(queries.par_chunks(self.dim))
            .for_each_init(instant_distance::Search::default, |search, (slots, q)| {
                let point = UnitPoint(q.into());
                for (slot, item) in slots.iter_mut().zip(self.map.search(&point, search)) {
                    *slot = Hit {
                        row: *item.value,
                        similarity: 1.0 - item.distance,
                    };
                }
            });
        table
    }
}

/// Fraction of the exact top-`k` rows that the approximate table also returns (mean over queries).
pub fn recall_at_k(exact: &HitTable, approx: &HitTable, k: usize) -> f64 {
    let n = exact.n_queries();
    if n == 0 {
        return 1.0;
    }
    let mut found = 0usize;
    let mut total = 0usize;
    for i in 0..n {
        let truth: Vec<u32> = exact.row(i).iter().take(k).map(|h| h.row).collect();
        let got: Vec<u32> = approx.row(i).iter().take(k).map(|h| h.row).collect();
        total += truth.len();
        found += truth.iter().filter(|r| got.contains(r)).count();
    }
    found as f64 / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_hits_are_inserted_as_one_value_at_a_time_would() {
        let k = 5;
        for dedup in [false, true] {
            for n in [0usize, 1, 15, 16, 17, 40, 333] {
                let sims: Vec<f32> = (0..n).map(|i| ((i * 7919 % 101) as f32 * 0.013).sin()).collect();
                let rows: Vec<u32> = (0..n as u32).map(|r| r % 50).collect();
                let held = [Hit {
                    row: 3,
                    similarity: 0.5,
                }];
                let mut want = vec![Hit::EMPTY; k];
                let mut got = vec![Hit::EMPTY; k];
                for slots in [&mut want, &mut got] {
                    for &h in &held {
                        insert(slots, h);
                    }
                }
                for (&s, &row) in sims.iter().zip(&rows) {
                    if s > want[k - 1].similarity && !(dedup && want.iter().any(|h| h.row == row)) {
                        insert(&mut want, Hit { row, similarity: s });
                    }
                }
                insert_row_hits(&mut got, &sims, &rows, dedup);
                assert_eq!(got, want, "n {n}, dedup {dedup}");
            }
        }
    }

    #[test]
    fn insert_keeps_best_first_and_earlier_ties() {
        let mut slots = [Hit::EMPTY; 3];
        for (row, s) in [(0, 0.5), (1, 0.9), (2, 0.5), (3, 0.7), (4, 0.1)] {
            insert(&mut slots, Hit { row, similarity: s });
        }
        let rows: Vec<u32> = slots.iter().map(|h| h.row).collect();
        assert_eq!(rows, vec![1, 3, 0]);
    }

    #[test]
    fn truncate_and_row_skip_empty_slots() {
        let mut t = HitTable::new(2, 3);
        t.hits[0] = Hit {
            row: 5,
            similarity: 0.9,
        };
        t.hits[1] = Hit {
            row: 6,
            similarity: 0.8,
        };
        assert_eq!(t.row(0).len(), 2);
        assert_eq!(t.row(1).len(), 0);
        let one = t.truncate(1);
        assert_eq!(
            one.row(0),
            &[Hit {
                row: 5,
                similarity: 0.9
            }]
        );
    }
}
