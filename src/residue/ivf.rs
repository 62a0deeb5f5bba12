//! The inverted-file (IVF) residue index: the store's rows clustered by
//! spherical k-means into `lists` lists; a query row is compared with every
//! list's centroid and searched exactly, but only against the rows of its
//! `probes` nearest lists. A second stage ([`refine`]) then searches each
//! query window exactly against every row of the training sequences its
//! first-stage hits point to most.
//!
//! This is FAISS's `IndexIVFFlat` (NEAR's own search is FAISS IVF-PQ) on
//! the store's own f16 rows: the index holds only the centroids and each
//! row's list, about 7 bytes per stored row. On NEAR's 1.33M-row store it
//! builds in about 90 s, where a usearch graph took 736 s
//! (docs/residue-knn.md). Every row looked at gets its full cosine, in bf16
//! products with f32 sums by default ([`Products`], on [`crate::lowp`]'s
//! kernels: within 2^-8 of the exact cosine, about twice as fast as f32), or
//! in f32. The cost per query row is `lists + probes x rows / lists` dot
//! products instead of `rows` (plus the second stage's, which depends on
//! the sequences searched, not on the store): it grows with the square root
//! of the store when `lists` grows with it.
//!
//! Queries are searched list by list: each chunk of query rows is sorted
//! into the lists they probe, and each list's rows are packed once per
//! chunk and multiplied with all the query rows that probe it (one matrix
//! product per list), then the per-list top `k` are merged.
//!
//! The file, `index-ivf-c<lists>-<store digest>.safetensors` in the store's
//! directory (`-p<K>of<N>` before the digest for the index of one store part's
//! rows, [`IvfIndex::open_or_build_part`]), is a checksummed safetensors file
//! (centroids and row lists, with the store digest and parameters in its
//! metadata), written to a
//! temporary name and renamed, under an exclusive lock, so concurrent
//! processes build it once and a killed build leaves nothing. A file whose
//! checksums or metadata disagree with the store is rebuilt, never searched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::index::{open_or_build_locked, store_digest};
use super::search::{check_queries, insert, insert_row_hits, Hit, HitTable};
pub use super::shortlist::Products;
use super::shortlist::{check_ranges, search_listed_sequences, sequences_hit, windows, RowProducts};
use super::store::ResidueStore;
use super::ResidueError;
use crate::cache::shard::{write_shard, ShardFile, TensorData};
use crate::file_error::FileError;
use crate::lowp::PackedRhs;
use crate::pipeline::WorkShard;

const FORMAT: &str = "protfam-ivf-index-1";
/// k-means passes over the training sample (the assignment changes little after a few).
const ITERATIONS: usize = 10;
/// Training rows per list: FAISS warns below 39 and samples at most 256.
const SAMPLE_PER_LIST: usize = 64;
/// Fewest stored rows per list on average: a small store gets fewer lists.
const MIN_ROWS_PER_LIST: usize = 16;
const SEED: u64 = 42;
/// Query rows sorted into lists together (bounds the per-list hits held before the merge).
const CHUNK_ROWS: usize = 65_536;
/// Rows multiplied with all centroids at once (bounds that similarity tile).
const CENTROID_BLOCK: usize = 2048;

/// List count and search width of the IVF index, and its second stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IvfParams {
    /// k-means lists (at most one per 16 stored rows).
    pub lists: usize,
    /// Nearest lists searched per query row.
    pub probes: usize,
    /// Second stage: the training sequences that the first stage's hits of a
    /// query window point to most, whose every row the window is then searched
    /// against exactly (0: no second stage).
    pub sequences: usize,
    /// Query rows per window of the second stage.
    pub window: usize,
    /// Arithmetic of the similarity products of both stages (and of the
    /// choice of lists); absent in classifiers saved before it existed, which
    /// then search with the default.
    #[serde(default)]
    pub products: Products,
}

impl Default for IvfParams {
    fn default() -> Self {
        IvfParams {
            lists: 4096,
            // Chosen on the dev part of the bundled clustered split with NEAR (`protfam residue recall`,
            // docs/residue-knn.md): with bf16 products 98.9% of its queries get exact search's family
            // (256 sequences: 98.1%; 64 probes and 256 sequences, which costs about as much: 98.6%),
            // 38 errors against exact search's 40, at 1/37 of exact search's time.
            probes: 32,
            sequences: 512,
            window: 128,
            products: Products::Bf16,
        }
    }
}

impl IvfParams {
    pub fn validate(&self) -> Result<(), ResidueError> {
        if self.lists == 0 || self.probes == 0 || self.window == 0 {
            return Err(ResidueError::InvalidParams(format!(
                "the IVF index needs at least 1 list, 1 probe and a window of 1 row (got {self:?})"
            )));
        }
        Ok(())
    }

    /// The lists a store of `n_rows` rows gets.
    pub fn lists_for(&self, n_rows: usize) -> usize {
        self.lists.min((n_rows / MIN_ROWS_PER_LIST).max(1))
    }
}

/// A loaded IVF index over one store.
pub struct IvfIndex {
    path: PathBuf,
    dim: usize,
    lists: usize,
    probes: usize,
    /// `lists x dim`, unit length.
    centroids: Vec<f32>,
    /// The same, packed for bf16 products.
    packed_centroids: PackedRhs,
    products: Products,
    /// Store rows grouped by list (ascending within a list); list `l` is `order[offsets[l]..offsets[l + 1]]`.
    order: Vec<u32>,
    offsets: Vec<usize>,
    bytes: u64,
    build_seconds: f64,
}

/// The whole store as one part.
const WHOLE: WorkShard = WorkShard { index: 0, count: 1 };

/// The store rows of `part` (the rows of shards `K mod N`, as the store-part
/// search splits them), in store order.
fn part_rows(store: &ResidueStore, part: WorkShard) -> Vec<u32> {
    store
        .blocks_of_part(1 << 30, part)
        .into_iter()
        .flat_map(|(start, end)| start as u32..end as u32)
        .collect()
}

impl IvfIndex {
    /// The file name stem of the index of `store` with `params`.
    pub fn stem(store: &ResidueStore, params: &IvfParams) -> String {
        Self::stem_of_part(store, params, WHOLE, store.n_rows())
    }

    /// The stem of part `part`'s index (`n_rows` rows): `-p<K>of<N>` marks a part.
    fn stem_of_part(store: &ResidueStore, params: &IvfParams, part: WorkShard, n_rows: usize) -> String {
        let of_part = if part.count > 1 {
            format!("-p{}of{}", part.index, part.count)
        } else {
            String::new()
        };
        format!(
            "index-ivf-c{}{of_part}-{}",
            params.lists_for(n_rows),
            &store_digest(store)[..12]
        )
    }

    /// Opens the saved index of `store`, or builds and saves it first (also when the saved one is
    /// damaged or stale, with a warning saying why). Concurrent callers wait for the one that builds.
    pub fn open_or_build(store: &ResidueStore, params: &IvfParams) -> Result<IvfIndex, ResidueError> {
        Self::open_or_build_part(store, params, WHOLE)
    }

    /// [`Self::open_or_build`] for the rows of one store part only (the
    /// shards `K mod N` that `residue search --store-part K/N` searches): each
    /// task of a split search keeps its own index, over its own rows, beside
    /// the store.
    pub fn open_or_build_part(
        store: &ResidueStore,
        params: &IvfParams,
        part: WorkShard,
    ) -> Result<IvfIndex, ResidueError> {
        params.validate()?;
        let rows = part_rows(store, part);
        if rows.is_empty() {
            return Err(ResidueError::Data(format!(
                "residue store {} has no rows to index in part {}/{}",
                store.dir.display(),
                part.index,
                part.count
            )));
        }
        let stem = Self::stem_of_part(store, params, part, rows.len());
        let path = store.dir.join(format!("{stem}.safetensors"));
        if let Ok(index) = Self::open(store, params, part, &rows, &path) {
            return Ok(index);
        }
        open_or_build_locked(
            &store.dir.join(format!("{stem}.lock")),
            || path.exists(),
            || Self::open(store, params, part, &rows, &path),
            || Self::build(store, params, part, &rows, &path),
        )
    }

    /// The metadata a part's index file holds (the whole store's has no `part`,
    /// as before parts existed).
    fn identity(store: &ResidueStore, part: WorkShard, n_rows: usize, lists: usize) -> Vec<(&'static str, String)> {
        let mut identity = vec![
            ("format", FORMAT.to_string()),
            ("store_digest", store_digest(store)),
            ("n_rows", n_rows.to_string()),
            ("dim", store.dim().to_string()),
            ("lists", lists.to_string()),
        ];
        if part.count > 1 {
            identity.push(("part", format!("{}/{}", part.index, part.count)));
        }
        identity
    }

    fn open(
        store: &ResidueStore,
        params: &IvfParams,
        part: WorkShard,
        rows: &[u32],
        path: &Path,
    ) -> Result<IvfIndex, ResidueError> {
        let file = ShardFile::open(path)?;
        file.verify()?;
        let n_rows = rows.len();
        let lists = params.lists_for(n_rows);
        let dim = store.dim();
        let meta = file.metadata();
        let expected = Self::identity(store, part, n_rows, lists);
        for (key, value) in &expected {
            if meta.get(*key) != Some(value) {
                return Err(FileError::invalid(
                    path,
                    format!("the index was built from another store or with other parameters ({key})"),
                )
                .into());
            }
        }
        if file.shape("centroids")? != [lists, dim] || file.shape("assignment")? != [n_rows] {
            return Err(FileError::invalid(path, "centroid or assignment tensor of the wrong shape").into());
        }
        let centroids = file.f32_values("centroids")?;
        if centroids.iter().any(|v| !v.is_finite()) {
            return Err(FileError::invalid(path, "a centroid holds a non-finite value").into());
        }
        let assignment = file.u32_values("assignment")?;
        if let Some(&list) = assignment.iter().find(|&&l| l as usize >= lists) {
            return Err(FileError::invalid(path, format!("a row is assigned to list {list} of {lists}")).into());
        }
        // Positions in the part's rows, then the store rows they are.
        let (offsets, mut order) = group_by_list(&assignment, lists, 1);
        for row in &mut order {
            *row = rows[*row as usize];
        }
        Ok(IvfIndex {
            path: path.to_path_buf(),
            dim,
            lists,
            probes: params.probes.min(lists),
            packed_centroids: PackedRhs::pack(&centroids, lists, dim),
            centroids,
            products: params.products,
            order,
            offsets,
            bytes: file.len_bytes(),
            build_seconds: meta.get("build_seconds").and_then(|s| s.parse().ok()).unwrap_or(0.0),
        })
    }

    /// Spherical k-means on a seeded sample of the part's unit rows, then every row assigned to
    /// its nearest centroid.
    fn build(
        store: &ResidueStore,
        params: &IvfParams,
        part: WorkShard,
        rows: &[u32],
        path: &Path,
    ) -> Result<(), ResidueError> {
        let started = Instant::now();
        let dim = store.dim();
        let n_rows = rows.len();
        let lists = params.lists_for(n_rows);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
        let n_sample = (lists * SAMPLE_PER_LIST).min(n_rows);
        let mut picked = rand::seq::index::sample(&mut rng, n_rows, n_sample).into_vec();
        // The first `lists` picks (a uniform random subset) seed the centroids.
        let mut sample = Vec::with_capacity(n_sample * dim);
        for &at in &picked {
            let row = rows[at] as usize;
            store.extend_rows_f32(row, row + 1, true, &mut sample);
        }
        picked.clear();
        let mut centroids = sample[..lists * dim].to_vec();
        let progress = crate::progress::bar((ITERATIONS * n_sample + n_rows) as u64, "rows clustered");
        progress.set_message("training the IVF lists");
        for _ in 0..ITERATIONS {
            let nearest = nearest_centroid(&sample, &centroids, dim);
            let mut sums = vec![0.0f32; lists * dim];
            let mut counts = vec![0usize; lists];
            for (row, &list) in sample.chunks_exact(dim).zip(&nearest) {
                let l = list as usize;
                counts[l] += 1;
                sums[l * dim..(l + 1) * dim]
                    .iter_mut()
                    .zip(row)
                    .for_each(|(s, v)| *s += v);
            }
            for (l, sum) in sums.chunks_exact_mut(dim).enumerate() {
                // An empty list restarts from a random sample row rather than staying dead.
                if counts[l] == 0 || sum.iter().all(|v| *v == 0.0) {
                    let r = rng.gen_range(0..n_sample);
                    sum.copy_from_slice(&sample[r * dim..(r + 1) * dim]);
                }
            }
            super::search::normalise_rows(&mut sums, dim);
            centroids = sums;
            progress.inc(n_sample as u64);
        }
        drop(sample);
        let mut assignment = Vec::with_capacity(n_rows);
        for (start, end) in store.blocks_of_part(CENTROID_BLOCK * 4, part) {
            let block = store.rows_f32(start, end, true);
            assignment.extend(nearest_centroid(&block, &centroids, dim));
            progress.inc((end - start) as u64);
        }
        progress.finish_and_clear();
        let build_seconds = started.elapsed().as_secs_f64();
        let mut identity = Self::identity(store, part, n_rows, lists);
        identity.push(("build_seconds", format!("{build_seconds:.3}")));
        let metadata: BTreeMap<String, String> = identity.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let info = write_shard(
            path,
            &[
                TensorData::f32("centroids", vec![lists, dim], &centroids),
                TensorData::u32("assignment", vec![n_rows], &assignment),
            ],
            &metadata,
        )?;
        tracing::info!(
            "built the IVF residue index {} ({n_rows} rows in {lists} lists, {:.1} MiB) in {build_seconds:.1}s",
            path.display(),
            info.bytes as f64 / (1024.0 * 1024.0),
        );
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lists(&self) -> usize {
        self.lists
    }

    /// Bytes of the index file (the centroids and each row's list).
    pub fn disk_bytes(&self) -> u64 {
        self.bytes
    }

    pub fn build_seconds(&self) -> f64 {
        self.build_seconds
    }

    /// Mean stored rows a query row is compared with (its probed lists'
    /// rows, lists weighted by their size as a query lands in them, plus the
    /// centroids), for a `probes`-wide search: the cost beside exact search's
    /// one comparison per stored row.
    pub fn expected_rows_compared(&self) -> f64 {
        let n = self.order.len().max(1) as f64;
        let mean_list_as_landed: f64 = self
            .offsets
            .windows(2)
            .map(|w| {
                let size = (w[1] - w[0]) as f64;
                size * size / n
            })
            .sum();
        self.lists as f64 + self.probes as f64 * mean_list_as_landed
    }

    /// The same index searched `probes` lists wide.
    pub fn with_probes(mut self, probes: usize) -> IvfIndex {
        self.probes = probes.clamp(1, self.lists);
        self
    }

    /// Exact top-`k` store rows by cosine among the rows of each unit query
    /// row's `probes` nearest lists, best first.
    pub fn top_k(
        &self,
        store: &ResidueStore,
        queries: &[f32],
        k: usize,
        progress: &indicatif::ProgressBar,
    ) -> Result<HitTable, ResidueError> {
        let dim = self.dim;
        let n = check_queries(queries, dim, store, k)?;
        let mut table = HitTable::new(n, k);
        for chunk_start in (0..n).step_by(CHUNK_ROWS) {
            let chunk_end = (chunk_start + CHUNK_ROWS).min(n);
            let chunk = &queries[chunk_start * dim..chunk_end * dim];
            // Invert: the chunk's rows that probe each list, in row order.
            let (starts, members) = group_by_list(&self.probed_lists(chunk), self.lists, self.probes);
            // Each chunk row's best k-th similarity in any list searched so far: no row below it
            // can reach the row's final top k (that list alone holds k rows at or above it), so a
            // list's search starts from it instead of from nothing. That skips most insertions
            // into the per-list top k; the table is the same whatever order the lists run in.
            let floors: Vec<AtomicU32> = (chunk_start..chunk_end)
                .map(|_| AtomicU32::new(f32::NEG_INFINITY.to_bits()))
                .collect();
            let per_list: Vec<(usize, Vec<Hit>)> = (0..self.lists)
                .into_par_iter()
                .filter(|&l| starts[l + 1] > starts[l] && self.offsets[l + 1] > self.offsets[l])
                .map_init(
                    || (RowProducts::new(self.products), Vec::new()),
                    |(products, query_rows), l| {
                        let rows = &self.order[self.offsets[l]..self.offsets[l + 1]];
                        let who = &members[starts[l]..starts[l + 1]];
                        query_rows.clear();
                        query_rows.extend(who.iter().map(|&q| &chunk[q as usize * dim..(q as usize + 1) * dim]));
                        let sims = products.similarities(store, rows, query_rows);
                        let mut best = vec![Hit::EMPTY; who.len() * k];
                        for ((slots, sim_row), &q) in best.chunks_mut(k).zip(sims.chunks(rows.len())).zip(who) {
                            let floor = &floors[q as usize];
                            // Empty slots just below the floor: a row at the floor still enters.
                            let start = f32::from_bits(floor.load(Ordering::Relaxed)).next_down();
                            slots.fill(Hit {
                                similarity: start,
                                ..Hit::EMPTY
                            });
                            insert_row_hits(slots, sim_row, rows, false);
                            raise_floor(floor, slots[k - 1]);
                        }
                        (l, best)
                    },
                )
                .collect();
            for (l, best) in per_list {
                for (&q, hits) in members[starts[l]..starts[l + 1]].iter().zip(best.chunks(k)) {
                    let at = (chunk_start + q as usize) * k;
                    let slots = &mut table.hits[at..at + k];
                    for &hit in hits.iter().take_while(|h| !h.is_empty()) {
                        if hit.similarity > slots[k - 1].similarity {
                            insert(slots, hit);
                        }
                    }
                }
            }
            progress.inc((chunk_end - chunk_start) as u64);
        }
        Ok(table)
    }

    /// [`Self::top_k`], then the second stage: each window of each query
    /// range (`ranges`, ordered and disjoint) searched exactly against every
    /// row of the `sequences` training sequences its first-stage hits point to
    /// most, merged with the first stage's hits.
    #[allow(clippy::too_many_arguments)]
    pub fn top_k_refined(
        &self,
        store: &ResidueStore,
        queries: &[f32],
        ranges: &[(usize, usize)],
        k: usize,
        sequences: usize,
        window: usize,
        progress: &indicatif::ProgressBar,
    ) -> Result<HitTable, ResidueError> {
        check_ranges(ranges, queries.len() / self.dim.max(1))?;
        let first = self.top_k(store, queries, k, progress)?;
        Ok(refine(store, queries, ranges, first, sequences, window, self.products))
    }

    /// The `probes` nearest lists of every row of `chunk`, `probes` per row.
    fn probed_lists(&self, chunk: &[f32]) -> Vec<u32> {
        let dim = self.dim;
        let probes = self.probes;
        let mut out = Vec::with_capacity(chunk.len() / dim * probes);
        // One similarity tile for all blocks (a fresh 32 MiB per block is paid in page faults).
        let mut sims = Vec::new();
        let list_ids: Vec<u32> = (0..self.lists as u32).collect();
        for block in chunk.chunks(CENTROID_BLOCK * dim) {
            let m = block.len() / dim;
            sims.resize(m * self.lists, 0.0f32);
            match self.products {
                Products::Bf16 => crate::lowp::matmul_abt(block, m, &self.packed_centroids, &mut sims, false),
                Products::F32 => crate::gemm::matmul_abt(m, self.lists, dim, block, &self.centroids, &mut sims),
            }
            // The `probes` most similar lists, ties to the lower list, as a top-k of hits.
            let lists: Vec<Vec<u32>> = sims
                .par_chunks(self.lists)
                .map_init(
                    || vec![Hit::EMPTY; probes],
                    |slots, row| {
                        slots.fill(Hit::EMPTY);
                        insert_row_hits(slots, row, &list_ids, false);
                        slots.iter().filter(|h| !h.is_empty()).map(|h| h.row).collect()
                    },
                )
                .collect();
            out.extend(lists.into_iter().flatten());
        }
        out
    }
}

/// The second stage of [`IvfIndex::top_k_refined`] on first-stage hits `first`
/// (no-op when `sequences` is 0).
pub fn refine(
    store: &ResidueStore,
    queries: &[f32],
    ranges: &[(usize, usize)],
    first: HitTable,
    sequences: usize,
    window: usize,
    products: Products,
) -> HitTable {
    if sequences == 0 {
        return first;
    }
    let windows = windows(ranges, window);
    let lists = sequences_hit(&first, &windows, store, sequences);
    let mut table = first;
    search_listed_sequences(queries, &windows, &lists, store, &mut table, products);
    table
}

/// Raises a row's floor (f32 bits) to the similarity of `kth`, its k-th hit
/// in one list, unless that slot is empty or the floor is higher already.
fn raise_floor(floor: &AtomicU32, kth: Hit) {
    if kth.is_empty() {
        return;
    }
    let mut current = floor.load(Ordering::Relaxed);
    while kth.similarity > f32::from_bits(current) {
        match floor.compare_exchange_weak(current, kth.similarity.to_bits(), Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

/// Groups the items of `lists_of` by list (a counting sort, stable):
/// `lists_of[i]` is item `i`'s list, all below `lists`, and item `i` belongs to
/// owner `i / per_owner` (a row with `per_owner` probed lists, or one row per
/// item). Returns `offsets` (`lists + 1`) and the owners, so that list `l`'s
/// owners are `owners[offsets[l]..offsets[l + 1]]`, in increasing order.
fn group_by_list(lists_of: &[u32], lists: usize, per_owner: usize) -> (Vec<usize>, Vec<u32>) {
    let mut offsets = vec![0usize; lists + 1];
    for &l in lists_of {
        offsets[l as usize + 1] += 1;
    }
    for l in 0..lists {
        offsets[l + 1] += offsets[l];
    }
    let mut next = offsets.clone();
    let mut owners = vec![0u32; lists_of.len()];
    for (i, &l) in lists_of.iter().enumerate() {
        owners[next[l as usize]] = (i / per_owner.max(1)) as u32;
        next[l as usize] += 1;
    }
    (offsets, owners)
}

/// The nearest centroid (largest dot product) of every unit row.
fn nearest_centroid(rows: &[f32], centroids: &[f32], dim: usize) -> Vec<u32> {
    let lists = centroids.len() / dim;
    let mut out = Vec::with_capacity(rows.len() / dim);
    for block in rows.chunks(CENTROID_BLOCK * dim) {
        let m = block.len() / dim;
        let mut sims = vec![0.0f32; m * lists];
        crate::gemm::matmul_abt(m, lists, dim, block, centroids, &mut sims);
        out.par_extend(sims.par_chunks(lists).map(|row| {
            let mut best = 0usize;
            for (j, &s) in row.iter().enumerate() {
                if s > row[best] {
                    best = j;
                }
            }
            best as u32
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_and_small_stores_get_fewer_lists() {
        let p = IvfParams::default();
        assert!(IvfParams { lists: 0, ..p }.validate().is_err());
        assert!(IvfParams { probes: 0, ..p }.validate().is_err());
        assert!(IvfParams { window: 0, ..p }.validate().is_err());
        assert_eq!(p.lists_for(1_333_103), 4096);
        assert_eq!(p.lists_for(1000), 62);
        assert_eq!(p.lists_for(3), 1);
    }

    #[test]
    fn grouping_by_list_keeps_owners_in_order() {
        // Three rows probing two lists each.
        let (offsets, owners) = group_by_list(&[2, 0, 0, 1, 2, 1], 3, 2);
        assert_eq!(offsets, vec![0, 2, 4, 6]);
        assert_eq!(owners, vec![0, 1, 1, 2, 0, 2]);
        let (offsets, rows) = group_by_list(&[1, 0, 1], 2, 1);
        assert_eq!((offsets, rows), (vec![0, 1, 3], vec![1, 0, 2]));
    }

    #[test]
    fn nearest_centroid_is_the_largest_dot_product() {
        let centroids = [1.0, 0.0, 0.0, 1.0, -1.0, 0.0];
        let rows = [0.9, 0.1, 0.1, 0.9, -0.8, -0.2];
        assert_eq!(nearest_centroid(&rows, &centroids, 2), vec![0, 1, 2]);
    }
}
