//! The embedding pipeline: records in, cached per-protein vectors out.
//!
//! [`embed_records`] streams records from any reader, checks their residues
//! ([`crate::io::alphabet`]), keeps one copy of identical sequences, serves
//! what the [`cache`](crate::cache) already holds, embeds the rest in
//! length-sorted batches filled up to a residue budget, and writes new vectors
//! to the cache every few thousand vectors or seconds, so a killed run loses
//! little and a restarted one embeds only what is missing.
//! [`embed_to_vectors`] does the same and also returns the vectors in input
//! order; [`embed_into`] is both on an open [`ModelCache`]; [`load_vectors`]
//! is the one call classifiers need:
//!
//! ```no_run
//! use protfam::{cache::Cache, models, pipeline};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let embedder = models::load("unirep1900", &models::LoadOptions::default())?;
//! let cache = Cache::new("data/cache");
//! let split = protfam::dataset::Split::open("data/pfam35-uniprot20k", "clustered_split")?;
//! let opts = pipeline::EmbedOptions::default();
//! // Every record of the part, in file order, with its family; missing vectors are embedded now.
//! let train = pipeline::load_vectors(embedder.as_ref(), &cache, &split, "train", &opts)?;
//! assert_eq!(train.dim, embedder.spec().dim);
//! # Ok(()) }
//! ```
//!
//! Read errors and invalid records stop the run with an error naming the file
//! and record, after what was embedded so far has been written to the cache;
//! with [`EmbedOptions::lenient`] invalid records (bad residues, empty
//! sequences: [`ReadError::is_skippable`]) are skipped, counted and reported
//! instead, while a file that cannot be read or parsed still stops the run. [`WorkShard`] selects a deterministic 1/N of the records by
//! sequence hash, so N independent workers (a Slurm job array, a Kubernetes
//! Indexed Job) cover a dataset exactly once between them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::cache::{sequence_hash, Cache, CacheError, ModelCache, SeqHash};
use crate::embedder::{EmbedError, Embedder};
use crate::io::{alphabet, Family, ReadError, Record};
use crate::vectors::VectorSet;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error("{source_name}: record {record}: {message}")]
    InvalidRecord {
        source_name: String,
        record: String,
        message: String,
    },
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{0}")]
    Other(String),
}

/// One of N disjoint parts of a dataset, chosen by sequence hash (`K/N`, K counted from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkShard {
    pub index: usize,
    pub count: usize,
}

impl WorkShard {
    pub fn new(index: usize, count: usize) -> Result<Self, String> {
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: need 0 <= K < N (K counts from 0, as SLURM_ARRAY_TASK_ID and JOB_COMPLETION_INDEX do)"));
        }
        Ok(WorkShard { index, count })
    }

    /// Whether this worker owns the sequence. Identical sequences always go
    /// to the same worker, so no vector is computed twice.
    pub fn selects(&self, hash: &SeqHash) -> bool {
        let head = u64::from_be_bytes(hash[..8].try_into().expect("8 bytes"));
        (head % self.count as u64) as usize == self.index
    }
}

impl std::str::FromStr for WorkShard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard {s:?}: expected K/N, e.g. 0/3"))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("shard {s:?}: {v:?} is not a number"))
        };
        WorkShard::new(parse(k)?, parse(n)?)
    }
}

impl std::fmt::Display for WorkShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// How to run the pipeline. `Default` gives the embedder's own batch size,
/// strict validation, no sharding and a hidden progress bar.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// Residues per batch, counting padding (batch size x longest sequence);
    /// `None` takes [`Embedder::default_batch_tokens`].
    pub batch_tokens: Option<usize>,
    /// Skip (and count and report) unreadable or invalid records instead of stopping.
    pub lenient: bool,
    /// Embed only this worker's share of the records.
    pub shard: Option<WorkShard>,
    /// Write a cache shard once this many new vectors are buffered...
    pub flush_rows: usize,
    /// ...or once they take this many bytes (wide vectors such as one-hot)...
    pub flush_bytes: usize,
    /// ...or this long after the last write, whichever comes first.
    pub flush_interval: Duration,
    /// Residues read ahead and sorted by length together (memory vs batching quality).
    pub chunk_residues: usize,
    /// Advanced by one per record processed; its message shows residues/s.
    pub progress: indicatif::ProgressBar,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            batch_tokens: None,
            lenient: false,
            shard: None,
            flush_rows: 4096,
            flush_bytes: 64 << 20,
            flush_interval: Duration::from_secs(30),
            chunk_residues: 2_000_000,
            progress: indicatif::ProgressBar::hidden(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct EmbedSummary {
    /// Records accepted (valid and, with a shard, owned by this worker).
    pub records: usize,
    /// Records skipped as unreadable or invalid (lenient mode).
    pub skipped: usize,
    /// Records left to other workers (`--shard`).
    pub other_shard: usize,
    /// Distinct sequences among the accepted records.
    pub unique: usize,
    /// Distinct sequences served from the cache.
    pub cached: usize,
    /// Distinct sequences embedded by this run.
    pub embedded: usize,
    /// Residues of the accepted records.
    pub residues: u64,
    /// Residues embedded by this run.
    pub residues_embedded: u64,
    pub batches: usize,
    pub seconds: f64,
    /// Seconds spent inside the embedder.
    pub embed_seconds: f64,
    /// Peak resident memory of the process (VmHWM), where known.
    pub peak_memory_bytes: Option<u64>,
    /// One line per skipped record or damaged cache shard.
    pub problems: Vec<String>,
}

impl EmbedSummary {
    /// Embedded residues per second of wall time.
    pub fn residues_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.residues_embedded as f64 / self.seconds
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for EmbedSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} records ({} distinct: {} cached, {} embedded)",
            self.records, self.unique, self.cached, self.embedded
        )?;
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        if self.other_shard > 0 {
            write!(f, ", {} left to other shards", self.other_shard)?;
        }
        write!(
            f,
            " in {:.1} s, {:.0} residues/s",
            self.seconds,
            self.residues_per_second()
        )?;
        if let Some(peak) = self.peak_memory_bytes {
            write!(f, ", peak memory {:.0} MiB", peak as f64 / (1024.0 * 1024.0))?;
        }
        Ok(())
    }
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`).
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What [`embed_into`] hands back besides the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Only write the cache (nothing is kept in memory beyond a chunk).
    Nothing,
    /// Also return the vectors of the accepted records in input order
    /// (duplicates included, skipped records left out).
    Vectors,
}

/// The pipeline itself, on an already opened [`ModelCache`] (so one command can
/// embed several inputs into one cache). `source` names the input (a file or
/// dataset part) in error messages.
pub fn embed_into<I>(
    embedder: &dyn Embedder,
    records: I,
    source: &str,
    cache: &mut ModelCache,
    opts: &EmbedOptions,
    keep: Keep,
) -> Result<(Option<VectorSet>, EmbedSummary), PipelineError>
where
    I: IntoIterator<Item = Result<Record, ReadError>>,
{
    run(
        embedder,
        records.into_iter(),
        source,
        cache,
        opts,
        keep == Keep::Vectors,
    )
}

/// Embeds records into the cache (nothing is kept in memory beyond a chunk).
pub fn embed_records<I>(
    embedder: &dyn Embedder,
    records: I,
    source: &str,
    cache: &Cache,
    opts: &EmbedOptions,
) -> Result<EmbedSummary, PipelineError>
where
    I: IntoIterator<Item = Result<Record, ReadError>>,
{
    let mut model_cache = cache.open_model(embedder.spec())?;
    embed_into(embedder, records, source, &mut model_cache, opts, Keep::Nothing).map(|(_, s)| s)
}

/// Like [`embed_records`], and returns the vectors of the accepted records in
/// input order (duplicates included, skipped records left out).
pub fn embed_to_vectors<I>(
    embedder: &dyn Embedder,
    records: I,
    source: &str,
    cache: &Cache,
    opts: &EmbedOptions,
) -> Result<(VectorSet, EmbedSummary), PipelineError>
where
    I: IntoIterator<Item = Result<Record, ReadError>>,
{
    let mut model_cache = cache.open_model(embedder.spec())?;
    let (vectors, summary) = embed_into(embedder, records, source, &mut model_cache, opts, Keep::Vectors)?;
    Ok((vectors.expect("kept"), summary))
}

/// The vectors of one part of a Pfam split, every record in file order with
/// its family label, embedding (and caching) what the cache lacks. Invalid
/// records are an error unless `opts.lenient`.
pub fn load_vectors(
    embedder: &dyn Embedder,
    cache: &Cache,
    split: &crate::dataset::Split,
    part: &str,
    opts: &EmbedOptions,
) -> Result<VectorSet, PipelineError> {
    let records = split.records(part)?;
    // The part's size is known here (the bar's creator could not know it): progress lines then
    // say how far along, not `n/0`.
    opts.progress.set_length(records.len() as u64);
    let source = split.part_label(part);
    let (vectors, summary) = embed_to_vectors(embedder, records.iter().cloned().map(Ok), &source, cache, opts)?;
    tracing::info!("{source} with {}: {summary}", embedder.spec().name);
    Ok(vectors)
}

/// A distinct sequence of the current chunk that still needs a vector.
struct Pending {
    hash: SeqHash,
    slot: u32,
    sequence: String,
    /// First record id carrying it (for error reports).
    record: String,
    /// Records of this chunk carrying it (for progress).
    records: u64,
}

/// Why a chunk ended.
enum ChunkEnd {
    /// The residue budget was reached; more input may follow.
    Full,
    /// The input ended.
    Exhausted,
    /// A record or the file was bad (and not skippable).
    Failed(PipelineError),
}

struct Run<'a> {
    embedder: &'a dyn Embedder,
    cache: &'a mut ModelCache,
    opts: &'a EmbedOptions,
    source: &'a str,
    dim: usize,
    collect: bool,
    /// Distinct sequence -> slot (its row in `store`).
    slots: HashMap<SeqHash, u32>,
    store: Vec<f32>,
    /// Accepted records: id, family, slot (only when collecting).
    order: Vec<(String, Option<Family>, u32)>,
    summary: EmbedSummary,
    started: Instant,
    last_flush: Instant,
    /// Chunks another process had claimed (its hashes, our misses): done at the end.
    deferred: Vec<(Vec<SeqHash>, Vec<Pending>)>,
}

fn run<I>(
    embedder: &dyn Embedder,
    records: I,
    source: &str,
    cache: &mut ModelCache,
    opts: &EmbedOptions,
    collect: bool,
) -> Result<(Option<VectorSet>, EmbedSummary), PipelineError>
where
    I: Iterator<Item = Result<Record, ReadError>>,
{
    let dim = embedder.spec().dim;
    if cache.spec() != embedder.spec() {
        return Err(PipelineError::Other(format!(
            "cache {} belongs to {}, not to the embedder {}",
            cache.dir().display(),
            cache.key(),
            embedder.spec().key()
        )));
    }
    let problems_before = cache.problems().len();
    let mut state = Run {
        embedder,
        cache,
        opts,
        source,
        dim,
        collect,
        slots: HashMap::new(),
        store: Vec::new(),
        order: Vec::new(),
        summary: EmbedSummary::default(),
        started: Instant::now(),
        last_flush: Instant::now(),
        deferred: Vec::new(),
    };
    let outcome = state.process(records);
    // Whatever happened, vectors already computed reach the disk.
    let flushed = state.cache.flush();
    outcome?;
    flushed?;
    state
        .summary
        .problems
        .extend(state.cache.problems()[problems_before..].iter().cloned());
    state.summary.seconds = state.started.elapsed().as_secs_f64();
    state.summary.peak_memory_bytes = peak_memory_bytes();
    let vectors = collect.then(|| {
        let mut set = VectorSet {
            dim,
            ..Default::default()
        };
        set.ids.reserve(state.order.len());
        set.data.reserve(state.order.len() * dim);
        for (id, family, slot) in state.order.drain(..) {
            let s = slot as usize;
            set.ids.push(id);
            set.families.push(family);
            set.data.extend_from_slice(&state.store[s * dim..(s + 1) * dim]);
        }
        set
    });
    Ok((vectors, state.summary))
}

impl Run<'_> {
    fn process<I>(&mut self, mut records: I) -> Result<(), PipelineError>
    where
        I: Iterator<Item = Result<Record, ReadError>>,
    {
        loop {
            // Records read before a failure are still embedded and saved.
            let (chunk, end) = self.read_chunk(&mut records);
            self.resolve_chunk(chunk)?;
            match end {
                ChunkEnd::Full => continue,
                ChunkEnd::Exhausted => return self.finish_deferred(),
                ChunkEnd::Failed(e) => {
                    self.finish_deferred()?;
                    return Err(e);
                }
            }
        }
    }

    /// Skips a bad record in lenient mode, or turns it into the run's error.
    fn reject(&mut self, error: PipelineError) -> Result<(), PipelineError> {
        if !self.opts.lenient {
            return Err(error);
        }
        let line = format!("skipped: {error}");
        tracing::warn!("{line}");
        self.summary.skipped += 1;
        self.summary.problems.push(line);
        self.opts.progress.inc(1);
        Ok(())
    }

    /// Reads records until the chunk's residue budget is reached; returns the
    /// new distinct sequences of the chunk and why reading stopped.
    fn read_chunk<I>(&mut self, records: &mut I) -> (Vec<Pending>, ChunkEnd)
    where
        I: Iterator<Item = Result<Record, ReadError>>,
    {
        let mut chunk: Vec<Pending> = Vec::new();
        let mut in_chunk: HashMap<u32, usize> = HashMap::new();
        let mut residues = 0usize;
        while residues < self.opts.chunk_residues {
            let Some(item) = records.next() else {
                return (chunk, ChunkEnd::Exhausted);
            };
            let record = match item {
                Ok(r) => r,
                // Lenient mode skips a bad record, never a broken file.
                Err(e) if e.is_skippable() => {
                    if let Err(e) = self.reject(PipelineError::Read(e)) {
                        return (chunk, ChunkEnd::Failed(e));
                    }
                    continue;
                }
                Err(e) => return (chunk, ChunkEnd::Failed(PipelineError::Read(e))),
            };
            if let Err(message) = alphabet::check(&record.sequence) {
                let error = PipelineError::InvalidRecord {
                    source_name: self.source.to_string(),
                    record: record.id.clone(),
                    message,
                };
                if let Err(e) = self.reject(error) {
                    return (chunk, ChunkEnd::Failed(e));
                }
                continue;
            }
            let hash = sequence_hash(&record.sequence);
            if let Some(shard) = &self.opts.shard {
                if !shard.selects(&hash) {
                    self.summary.other_shard += 1;
                    self.opts.progress.inc(1);
                    continue;
                }
            }
            self.summary.records += 1;
            self.summary.residues += record.sequence.len() as u64;
            let slot = match self.slots.get(&hash) {
                Some(&slot) => {
                    match in_chunk.get(&slot) {
                        Some(&i) => chunk[i].records += 1,
                        None => self.opts.progress.inc(1),
                    }
                    slot
                }
                None => {
                    let slot = self.slots.len() as u32;
                    self.slots.insert(hash, slot);
                    self.summary.unique += 1;
                    if self.collect {
                        self.store.resize(self.store.len() + self.dim, 0.0);
                    }
                    residues += record.sequence.len();
                    in_chunk.insert(slot, chunk.len());
                    chunk.push(Pending {
                        hash,
                        slot,
                        sequence: record.sequence.clone(),
                        record: record.id.clone(),
                        records: 1,
                    });
                    slot
                }
            };
            if self.collect {
                self.order.push((record.id, record.family, slot));
            }
        }
        (chunk, ChunkEnd::Full)
    }

    fn fill(&mut self, slot: u32, vector: &[f32]) {
        if self.collect {
            let s = slot as usize;
            self.store[s * self.dim..(s + 1) * self.dim].copy_from_slice(vector);
        }
    }

    /// Serves a chunk's sequences from the cache and embeds the rest, unless
    /// another process has claimed the chunk (then it waits for the end).
    fn resolve_chunk(&mut self, chunk: Vec<Pending>) -> Result<(), PipelineError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let hashes: Vec<SeqHash> = chunk.iter().map(|p| p.hash).collect();
        let misses = self.serve_cached(chunk)?;
        if misses.is_empty() {
            return Ok(());
        }
        match self.cache.claim(&hashes, false)? {
            Some(claim) => {
                // Another process may have finished it between our lookup and the claim.
                let misses = if self.cache.refresh()? > 0 {
                    self.serve_cached(misses)?
                } else {
                    misses
                };
                self.embed_claimed(misses, claim)
            }
            None => {
                tracing::info!(
                    "{} sequences claimed by another run on {}; coming back to them at the end",
                    misses.len(),
                    self.cache.dir().display()
                );
                self.deferred.push((hashes, misses));
                Ok(())
            }
        }
    }

    /// Waits for the chunks other processes claimed, then embeds what they left.
    fn finish_deferred(&mut self) -> Result<(), PipelineError> {
        for (hashes, misses) in std::mem::take(&mut self.deferred) {
            let claim = self
                .cache
                .claim(&hashes, true)?
                .expect("a blocking claim always returns one");
            self.cache.refresh()?;
            let misses = self.serve_cached(misses)?;
            self.embed_claimed(misses, claim)?;
        }
        Ok(())
    }

    /// Fills the sequences the cache has; returns the others.
    fn serve_cached(&mut self, chunk: Vec<Pending>) -> Result<Vec<Pending>, PipelineError> {
        let hashes: Vec<SeqHash> = chunk.iter().map(|p| p.hash).collect();
        let found = self.cache.get_many(&hashes)?;
        let mut misses = Vec::new();
        for (pending, hit) in chunk.into_iter().zip(found) {
            match hit {
                Some(vector) => {
                    self.summary.cached += 1;
                    self.fill(pending.slot, &vector);
                    self.opts.progress.inc(pending.records);
                }
                None => misses.push(pending),
            }
        }
        Ok(misses)
    }

    /// Embeds a claimed chunk's misses and writes them before the claim is released.
    fn embed_claimed(&mut self, mut misses: Vec<Pending>, claim: crate::cache::Claim) -> Result<(), PipelineError> {
        if misses.is_empty() {
            return Ok(());
        }
        // Longest first: similar lengths share a batch (little padding) and the
        // largest batches, which need the most memory, run before hours are spent.
        misses.sort_by_key(|p| std::cmp::Reverse(p.sequence.len()));
        let budget = self
            .opts
            .batch_tokens
            .unwrap_or_else(|| self.embedder.default_batch_tokens())
            .max(1);
        let mut start = 0;
        while start < misses.len() {
            let longest = misses[start].sequence.len().max(1);
            let per_batch = (budget / longest).max(1);
            let end = (start + per_batch).min(misses.len());
            self.embed_batch(&misses[start..end])?;
            start = end;
            let pending = self.cache.pending();
            if pending >= self.opts.flush_rows
                || pending * self.dim * 4 >= self.opts.flush_bytes
                || self.last_flush.elapsed() >= self.opts.flush_interval
            {
                self.cache.flush()?;
                self.last_flush = Instant::now();
            }
        }
        // On disk before the claim goes: a waiting process then finds these vectors.
        self.cache.flush()?;
        self.last_flush = Instant::now();
        drop(claim);
        Ok(())
    }

    fn embed_batch(&mut self, batch: &[Pending]) -> Result<(), PipelineError> {
        let sequences: Vec<&str> = batch.iter().map(|p| p.sequence.as_str()).collect();
        let t0 = Instant::now();
        let result = self.embedder.embed_pooled(&sequences);
        self.summary.embed_seconds += t0.elapsed().as_secs_f64();
        self.summary.batches += 1;
        let vectors = match result {
            Ok(v) => v,
            Err(e) if self.opts.lenient && batch.len() > 1 => {
                // Find the record(s) the model refuses; embed the others.
                tracing::debug!("batch of {} failed ({e}); retrying one by one", batch.len());
                for one in batch.chunks(1) {
                    self.embed_batch(one)?;
                }
                return Ok(());
            }
            Err(e) => {
                let error = PipelineError::InvalidRecord {
                    source_name: self.source.to_string(),
                    record: batch.iter().map(|p| p.record.as_str()).collect::<Vec<_>>().join(", "),
                    message: e.to_string(),
                };
                self.reject(error)?;
                let duplicates = batch[0].records - 1;
                self.summary.skipped += duplicates as usize;
                self.opts.progress.inc(duplicates);
                self.summary.records -= batch[0].records as usize;
                self.summary.unique -= 1;
                self.forget(&batch[0]);
                return Ok(());
            }
        };
        if vectors.len() != batch.len() {
            return Err(PipelineError::Other(format!(
                "model {} returned {} vectors for a batch of {}",
                self.embedder.spec().name,
                vectors.len(),
                batch.len()
            )));
        }
        let mut residues = 0u64;
        let mut records = 0u64;
        for (pending, vector) in batch.iter().zip(&vectors) {
            if vector.len() != self.dim {
                return Err(PipelineError::Other(format!(
                    "model {} returned a vector of length {} (its spec says {}) for record {}",
                    self.embedder.spec().name,
                    vector.len(),
                    self.dim,
                    pending.record
                )));
            }
            self.cache.insert(pending.hash, vector)?;
            self.fill(pending.slot, vector);
            residues += pending.sequence.len() as u64;
            records += pending.records;
        }
        self.summary.embedded += batch.len();
        self.summary.residues_embedded += residues;
        self.opts.progress.inc(records);
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        self.opts.progress.set_message(format!(
            "{:.0} residues/s, {} cached, {} embedded",
            self.summary.residues_embedded as f64 / elapsed,
            self.summary.cached,
            self.summary.embedded
        ));
        Ok(())
    }

    /// Drops a sequence the model refused (lenient mode) from the output.
    fn forget(&mut self, pending: &Pending) {
        self.slots.remove(&pending.hash);
        if self.collect {
            self.order.retain(|(_, _, slot)| *slot != pending.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_shards_partition_sequences() {
        let shards: Vec<WorkShard> = (0..3).map(|k| format!("{k}/3").parse().unwrap()).collect();
        for i in 0..200 {
            let h = sequence_hash(&format!("MKV{i}A"));
            assert_eq!(shards.iter().filter(|s| s.selects(&h)).count(), 1);
        }
        assert!("3/3".parse::<WorkShard>().is_err());
        assert!("1/0".parse::<WorkShard>().is_err());
        assert!("a/2".parse::<WorkShard>().is_err());
        assert_eq!("2/5".parse::<WorkShard>().unwrap().to_string(), "2/5");
    }

    #[test]
    fn peak_memory_is_read() {
        assert!(peak_memory_bytes().unwrap() > 0);
    }
}
