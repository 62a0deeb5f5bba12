//! Domain calls by residue retrieval and local alignment on embeddings.
//!
//! For each protein:
//! 1. embed every residue once with the store's embedder and search every
//!    `search_stride`-th residue in the `residue-knn` store (top `search_k`);
//! 2. cut the protein into windows of `window` residues overlapping by half;
//!    in each window the training domains with the largest summed similarity
//!    (each searched residue adds its best hit on that domain) become
//!    candidates, `window_candidates` per window, so that every domain of a
//!    multi-domain protein gets its own candidates however strong the others;
//! 3. align each candidate (Smith-Waterman with affine gaps, cosine minus
//!    `shift` as the match score: [`crate::residue::align::local_alignment`])
//!    to the stretch of the protein its windows cover, widened by the
//!    candidate's length on both sides, once per phase of the store's stride
//!    (the stored rows of a domain start at its own first residue); the
//!    aligned span is the call's envelope and the candidate's span its match;
//! 4. resolve overlaps as Pfam does ([`super::resolve_overlaps`]).
//!
//! The call score is the alignment score in residues (raw score times the
//! stride): about the number of residues that align well, so it grows with the
//! length of a true match and stays small for chance ones. Which calls count as
//! confident is decided by the calibration fitted on a tuning set
//! ([`super::eval::DomainCalibration`]).
//!
//! Memory stays bounded for any protein length: proteins are processed in
//! batches of at most `batch_residues` residues (one protein longer than that
//! forms a batch alone), and an alignment only ever covers one candidate's stretch.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{resolve_overlaps, DomainCall, DomainError, ProteinDomains};
use crate::embedder::Embedder;
use crate::io::Record;
use crate::residue::align::{local_alignment, AlignParams};
use crate::residue::classifier::QueryResidues;
use crate::residue::search::{normalise_rows, Hit};
use crate::residue::store::kept_positions;
use crate::residue::ResidueKnn;

/// Settings of the scan; every one changes the calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanParams {
    /// Search every N-th residue (a multiple of the store's stride).
    pub search_stride: usize,
    /// Window length in residues (windows overlap by half).
    pub window: usize,
    /// Training domains aligned per window.
    pub window_candidates: usize,
    /// Subtracted from the cosine to give the match score.
    pub shift: f32,
    pub gap_open: f32,
    pub gap_extend: f32,
    /// Calls scoring below this (residues) are not reported at all.
    pub min_score: f64,
    /// Weight of the family's residue votes inside the call's span, added to
    /// the alignment score: the best hit on any training domain of the family
    /// for each searched residue (cosine minus `shift`, at least 0), summed and
    /// scaled to residues. Evidence from every member of the family, where the
    /// alignment sees one.
    #[serde(default)]
    pub vote_weight: f32,
}

impl Default for ScanParams {
    fn default() -> Self {
        ScanParams {
            search_stride: 4,
            window: 64,
            window_candidates: 8,
            shift: 0.2,
            gap_open: 1.0,
            gap_extend: 0.1,
            min_score: 5.0,
            vote_weight: 0.0,
        }
    }
}

impl ScanParams {
    pub fn validate(&self, store_stride: usize) -> Result<(), DomainError> {
        let bad = |m: String| Err(DomainError::InvalidParams(m));
        if self.search_stride == 0 || !self.search_stride.is_multiple_of(store_stride.max(1)) {
            return bad(format!(
                "search stride {} must be a positive multiple of the store's stride {store_stride}",
                self.search_stride
            ));
        }
        if self.window < 2 || self.window_candidates == 0 {
            return bad("window must be at least 2 residues and window_candidates at least 1".into());
        }
        if !(self.min_score.is_finite() && self.min_score >= 0.0) {
            return bad("min_score must be finite and >= 0".into());
        }
        if !(self.vote_weight.is_finite() && self.vote_weight >= 0.0) {
            return bad("vote_weight must be finite and >= 0".into());
        }
        self.align()
            .validate()
            .map_err(|e| DomainError::InvalidParams(e.to_string()))
    }

    pub(crate) fn align(&self) -> AlignParams {
        AlignParams {
            candidates: 1,
            shift: self.shift,
            gap_open: self.gap_open,
            gap_extend: self.gap_extend,
            weight: 1.0,
        }
    }

    /// Short description for reports (`stride 4, window 160 x 6, shift 0.2, gaps 1/0.1`).
    pub fn describe(&self) -> String {
        format!(
            "search stride {}, windows of {} x {} candidates, shift {}, gaps {}/{}, vote weight {}, min score {}",
            self.search_stride,
            self.window,
            self.window_candidates,
            self.shift,
            self.gap_open,
            self.gap_extend,
            self.vote_weight,
            self.min_score
        )
    }
}

/// One protein's embedded residues and searched hits: all that calling needs,
/// so that several call settings can be tried without searching again.
#[derive(Debug, Clone)]
pub struct SearchedProtein {
    pub id: String,
    pub len: usize,
    /// Positions (0-based) of every informative residue, and their unit rows.
    pub positions: Vec<u32>,
    pub rows: Vec<f32>,
    /// Searched positions and their hits (`k` slots each, best first).
    pub searched: Vec<u32>,
    pub hits: Vec<Hit>,
    pub k: usize,
}

/// The scanner: a fitted `residue-knn` (its store of training domains) and its embedder.
pub struct DomainScanner<'a> {
    pub knn: &'a ResidueKnn,
    pub embedder: &'a dyn Embedder,
    /// Residues embedded and searched per batch.
    pub batch_residues: usize,
}

impl<'a> DomainScanner<'a> {
    pub fn new(knn: &'a ResidueKnn, embedder: &'a dyn Embedder) -> Result<Self, DomainError> {
        knn.check_embedder(embedder.spec())?;
        Ok(DomainScanner {
            knn,
            embedder,
            batch_residues: 100_000,
        })
    }

    /// Batches of consecutive proteins of at most `batch_residues` residues (input order kept).
    pub fn batches(&self, records: &[Record]) -> Vec<std::ops::Range<usize>> {
        batch_ranges(records.iter().map(|r| r.sequence.len()), self.batch_residues)
    }

    /// Embeds and searches one batch of proteins.
    pub fn search(&self, records: &[Record], params: &ScanParams) -> Result<Vec<SearchedProtein>, DomainError> {
        let stride = self.knn.store.stride();
        params.validate(stride)?;
        let dim = self.embedder.spec().dim;
        let mut out: Vec<SearchedProtein> = records
            .iter()
            .map(|r| SearchedProtein {
                id: r.id.clone(),
                len: r.sequence.len(),
                // Every informative residue: the stored rows of a training domain sit on its
                // own stride, which falls on either phase of the protein's (see `call`).
                positions: kept_positions(&r.sequence, 1),
                rows: Vec::new(),
                searched: Vec::new(),
                hits: Vec::new(),
                k: self.knn.params.search_k,
            })
            .collect();
        // Proteins with nothing to search are not embedded.
        let todo: Vec<usize> = (0..records.len()).filter(|&i| !out[i].positions.is_empty()).collect();
        let lengths: Vec<usize> = todo.iter().map(|&i| records[i].sequence.len()).collect();
        for batch_indices in crate::embedder::length_sorted_batches(&lengths, self.embedder.default_batch_tokens()) {
            let members: Vec<usize> = batch_indices.iter().map(|&j| todo[j]).collect();
            let batch: Vec<&str> = members.iter().map(|&i| records[i].sequence.as_str()).collect();
            let mats = self
                .embedder
                .embed_residues(&batch)
                .map_err(crate::residue::ResidueError::from)?;
            for (&i, m) in members.iter().zip(mats) {
                if m.len != records[i].sequence.len() || m.dim != dim {
                    return Err(DomainError::Protein {
                        id: records[i].id.clone(),
                        message: format!(
                            "the embedder returned {}x{} for {} residues",
                            m.len,
                            m.dim,
                            records[i].sequence.len()
                        ),
                    });
                }
                let p = &mut out[i];
                p.rows.reserve(p.positions.len() * dim);
                for &pos in &p.positions {
                    p.rows.extend_from_slice(m.row(pos as usize));
                }
                normalise_rows(&mut p.rows, dim);
            }
        }
        // One search over the batch's sampled rows.
        let mut queries = QueryResidues {
            dim,
            ..Default::default()
        };
        for p in &mut out {
            let first = queries.positions.len();
            for (r, &pos) in p.positions.iter().enumerate() {
                if (pos as usize).is_multiple_of(params.search_stride) {
                    queries.positions.push(pos);
                    queries.data.extend_from_slice(&p.rows[r * dim..(r + 1) * dim]);
                }
            }
            queries.ranges.push((first, queries.positions.len()));
            p.searched = queries.positions[first..].to_vec();
        }
        let table = self.knn.search(&queries)?;
        for (p, &(a, b)) in out.iter_mut().zip(&queries.ranges) {
            p.k = table.k;
            p.hits = table.hits[a * table.k..b * table.k].to_vec();
        }
        Ok(out)
    }

    /// The calls on one searched protein: every candidate alignment scoring at least
    /// `min_score`, overlaps resolved; nothing is marked confident yet.
    pub fn call(&self, protein: &SearchedProtein, params: &ScanParams) -> ProteinDomains {
        let store = &self.knn.store;
        let stride = store.stride();
        let dim = store.dim();
        let note = |m: &str| ProteinDomains {
            sequence_id: protein.id.clone(),
            length: protein.len,
            calls: Vec::new(),
            note: Some(m.to_string()),
        };
        if protein.positions.is_empty() {
            return note("no searchable residue (empty, or only X / ambiguous letters)");
        }
        let align = params.align();
        let mut calls = Vec::new();
        for (seq, regions) in candidate_regions(protein, params, &store.row_sequence) {
            let stored = &store.sequences[seq as usize];
            let Some(family) = stored.family.clone() else {
                continue;
            };
            let target = store.rows_f32(stored.first_row, stored.first_row + stored.n_rows, true);
            let cols = stored.n_rows;
            if cols == 0 {
                continue;
            }
            for (a, b) in regions {
                let lo_res = a.saturating_sub(stored.len);
                let hi_res = (b + stored.len).min(protein.len);
                let lo = protein.positions.partition_point(|&p| (p as usize) < lo_res);
                let hi = protein.positions.partition_point(|&p| (p as usize) < hi_res);
                // The store keeps every `stride`-th residue of the training domain from its own
                // first residue; a domain inside a protein may start on any phase of that stride,
                // so each phase of the protein's residues is aligned and every call kept
                // (overlap resolution keeps the better phase).
                for phase in 0..stride {
                    let picked: Vec<usize> = (lo..hi)
                        .filter(|&r| protein.positions[r] as usize % stride == phase)
                        .collect();
                    if picked.is_empty() {
                        continue;
                    }
                    let rows = picked.len();
                    let mut query = Vec::with_capacity(rows * dim);
                    for &r in &picked {
                        query.extend_from_slice(&protein.rows[r * dim..(r + 1) * dim]);
                    }
                    let mut sim = vec![0f32; rows * cols];
                    crate::gemm::matmul_abt(rows, cols, dim, &query, &target, &mut sim);
                    // Copies of one domain in a stretch (tandem repeats) are each a call: after the
                    // best alignment its query rows are masked and the stretch is aligned again,
                    // until nothing scores `min_score`.
                    for _ in 0..ALIGNMENTS_PER_STRETCH {
                        let Some(hit) = local_alignment(&sim, rows, cols, &align) else {
                            break;
                        };
                        let alignment_score = hit.score as f64 * stride as f64;
                        if alignment_score < params.min_score {
                            break;
                        }
                        sim[hit.query_start * cols..(hit.query_end + 1) * cols].fill(MASKED);
                        let q_first = protein.positions[picked[hit.query_start]] as usize;
                        let q_last = protein.positions[picked[hit.query_end]] as usize;
                        let score = if params.vote_weight > 0.0 {
                            let vote = family_vote(protein, store, q_first, q_last, &family, params.shift);
                            alignment_score + params.vote_weight as f64 * vote * params.search_stride as f64
                        } else {
                            alignment_score
                        };
                        let t_first = store.row_position[stored.first_row + hit.target_start] as usize;
                        let t_last = store.row_position[stored.first_row + hit.target_end] as usize;
                        calls.push(DomainCall {
                            start: q_first + 1,
                            // The last aligned row stands for the residues up to the next one on the stride.
                            end: (q_last + stride).min(protein.len),
                            family: family.clone(),
                            score,
                            evalue: None,
                            confidence: None,
                            confident: false,
                            best_match: stored.id.clone(),
                            match_start: t_first + 1,
                            match_end: (t_last + stride).min(stored.len),
                            match_len: stored.len,
                        });
                    }
                }
            }
        }
        let calls = resolve_overlaps(calls);
        ProteinDomains {
            sequence_id: protein.id.clone(),
            length: protein.len,
            note: if calls.is_empty() {
                Some(format!("no alignment scoring {} or more", params.min_score))
            } else {
                None
            },
            calls,
        }
    }

    /// [`Self::call`] for many proteins in parallel, in input order.
    pub fn call_all(&self, proteins: &[SearchedProtein], params: &ScanParams) -> Vec<ProteinDomains> {
        proteins.par_iter().map(|p| self.call(p, params)).collect()
    }
}

/// Sum over the searched residues in `first..=last` of the best hit on any
/// training domain of `family` (cosine minus `shift`, at least 0).
fn family_vote(
    protein: &SearchedProtein,
    store: &crate::residue::ResidueStore,
    first: usize,
    last: usize,
    family: &crate::io::Family,
    shift: f32,
) -> f64 {
    let k = protein.k.max(1);
    let a = protein.searched.partition_point(|&p| (p as usize) < first);
    let b = protein.searched.partition_point(|&p| (p as usize) <= last);
    (a..b)
        .map(|i| {
            protein.hits[i * k..(i + 1) * k]
                .iter()
                .filter(|h| !h.is_empty())
                .filter(|h| {
                    let seq = store.row_sequence[h.row as usize] as usize;
                    store.sequences[seq]
                        .family
                        .as_ref()
                        .is_some_and(|f| f.accession == family.accession)
                })
                .map(|h| (h.similarity - shift).max(0.0) as f64)
                .fold(0.0, f64::max)
        })
        .sum()
}

/// Consecutive ranges of items whose lengths sum to at most `max` (an item longer
/// than `max` alone), in order.
pub fn batch_ranges(lengths: impl IntoIterator<Item = usize>, max: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut total, mut n) = (0, 0, 0);
    for (i, len) in lengths.into_iter().enumerate() {
        if i > start && total + len > max {
            out.push(start..i);
            start = i;
            total = 0;
        }
        total += len;
        n = i + 1;
    }
    if start < n {
        out.push(start..n);
    }
    out
}

/// At most this many alignments per candidate and stretch: a stretch can hold
/// several copies of a repeated domain (all of them are called).
const ALIGNMENTS_PER_STRETCH: usize = 8;
/// Similarity of masked (already aligned) query rows: no alignment crosses them.
const MASKED: f32 = -1.0e3;

/// The candidates of each window: for each nominated training sequence, the
/// windows (residue ranges `[a, b)`) that nominated it. Each window is aligned
/// on its own (widened by the candidate's length), so that repeats of one
/// family along a protein are found window by window.
fn candidate_regions(
    protein: &SearchedProtein,
    params: &ScanParams,
    row_sequence: &[u32],
) -> Vec<(u32, Vec<(usize, usize)>)> {
    let step = (params.window / 2).max(1);
    let n_windows = if protein.len <= params.window {
        1
    } else {
        (protein.len - params.window).div_ceil(step) + 1
    };
    let window_of = |w: usize| (w * step, (w * step + params.window).min(protein.len));
    let mut votes: Vec<HashMap<u32, f32>> = vec![HashMap::new(); n_windows];
    let k = protein.k.max(1);
    for (i, &pos) in protein.searched.iter().enumerate() {
        let slots = &protein.hits[i * k..(i + 1) * k];
        // Best hit per training sequence among this residue's hits.
        let mut best: Vec<(u32, f32)> = Vec::with_capacity(k);
        for h in slots.iter().filter(|h| !h.is_empty() && h.similarity > 0.0) {
            let seq = row_sequence[h.row as usize];
            match best.iter_mut().find(|(s, _)| *s == seq) {
                Some(entry) => entry.1 = entry.1.max(h.similarity),
                None => best.push((seq, h.similarity)),
            }
        }
        let pos = pos as usize;
        // Windows w with w*step <= pos < w*step + window.
        let last = (pos / step).min(n_windows - 1);
        let first = (pos + 1).saturating_sub(params.window).div_ceil(step);
        for (w, tally) in votes.iter_mut().enumerate().take(last + 1).skip(first) {
            let (a, b) = window_of(w);
            if pos < a || pos >= b {
                continue;
            }
            for &(seq, sim) in &best {
                *tally.entry(seq).or_insert(0.0) += sim;
            }
        }
    }
    let mut nominated: HashMap<u32, Vec<usize>> = HashMap::new();
    for (w, tally) in votes.into_iter().enumerate() {
        let mut ranked: Vec<(u32, f32)> = tally.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for (seq, _) in ranked.into_iter().take(params.window_candidates) {
            nominated.entry(seq).or_default().push(w);
        }
    }
    let mut out: Vec<(u32, Vec<(usize, usize)>)> = nominated
        .into_iter()
        .map(|(seq, windows)| (seq, windows.into_iter().map(window_of).collect()))
        .collect();
    out.sort_by_key(|(seq, _)| *seq);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protein(len: usize, searched: Vec<(u32, Vec<(u32, f32)>)>, k: usize) -> SearchedProtein {
        let mut hits = Vec::new();
        let mut positions = Vec::new();
        for (pos, row_hits) in &searched {
            positions.push(*pos);
            for slot in 0..k {
                hits.push(match row_hits.get(slot) {
                    Some(&(row, similarity)) => Hit { row, similarity },
                    None => Hit {
                        row: u32::MAX,
                        similarity: f32::NEG_INFINITY,
                    },
                });
            }
        }
        SearchedProtein {
            id: "p".into(),
            len,
            positions: positions.clone(),
            rows: Vec::new(),
            searched: positions,
            hits,
            k,
        }
    }

    #[test]
    fn each_window_nominates_its_own_candidates() {
        // Store rows 0..10 belong to sequence 0, rows 10..20 to sequence 1, 20..30 to sequence 2.
        let row_sequence: Vec<u32> = (0..30).map(|r| r / 10).collect();
        // Residues 0..100 hit sequence 0 strongly and sequence 2 weakly, residues 300..400 hit sequence 1.
        let mut searched = Vec::new();
        for pos in (0..100).step_by(4) {
            searched.push((pos, vec![(1, 0.9), (21, 0.3)]));
        }
        for pos in (300..400).step_by(4) {
            searched.push((pos, vec![(11, 0.8)]));
        }
        let p = protein(400, searched, 2);
        let params = ScanParams {
            window: 100,
            window_candidates: 1,
            ..ScanParams::default()
        };
        let regions = candidate_regions(&p, &params, &row_sequence);
        // Windows of 100 at step 50: 0-100 and 50-150 nominate sequence 0; 250-350 and 300-400 sequence 1.
        assert_eq!(
            regions,
            vec![(0, vec![(0, 100), (50, 150)]), (1, vec![(250, 350), (300, 400)])]
        );
        let two = ScanParams {
            window_candidates: 2,
            ..params
        };
        let regions = candidate_regions(&p, &two, &row_sequence);
        assert_eq!(regions[2], (2, vec![(0, 100), (50, 150)]));
    }

    #[test]
    fn a_short_protein_is_one_window() {
        let row_sequence = vec![0u32; 4];
        let p = protein(30, vec![(0, vec![(0, 0.5)]), (8, vec![(1, 0.5)])], 1);
        let regions = candidate_regions(&p, &ScanParams::default(), &row_sequence);
        assert_eq!(regions, vec![(0, vec![(0, 30)])]);
    }

    #[test]
    fn batches_keep_input_order_and_bound_residues() {
        assert_eq!(batch_ranges([50, 60, 200, 10, 10], 120), vec![0..2, 2..3, 3..5]);
        assert_eq!(batch_ranges([5], 1), vec![0..1]);
        assert!(batch_ranges([], 10).is_empty());
    }

    #[test]
    fn validates_the_search_stride_against_the_store() {
        assert!(ScanParams::default().validate(2).is_ok());
        let odd = ScanParams {
            search_stride: 3,
            ..ScanParams::default()
        };
        assert!(odd.validate(2).is_err());
        assert!(odd.validate(1).is_ok());
    }
}
