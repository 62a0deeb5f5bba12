//! Second stage of `residue-knn`: local alignment of the query's residue
//! embeddings against its best candidate training sequences.
//!
//! The residue votes of [`super::score`] find the right family among their
//! first few for almost every query, but a family with many training residues
//! collects chance votes, and the votes ignore order. Here each candidate
//! training sequence is aligned to the query as in Smith-Waterman, with the
//! cosine similarity of two residue embeddings in place of a substitution
//! matrix (as pLM-BLAST and EBA do with language-model embeddings):
//!
//! - match score of query residue `i` and target residue `j`: `cos(i, j) - shift`,
//!   so unrelated residues (cosine below `shift`) cost and related ones pay;
//! - affine gaps: `gap_open` for the first skipped residue, `gap_extend` for
//!   each further one, on either side;
//! - a family's alignment score is its best aligned candidate, divided by the
//!   number of searched query residues and by `1 - shift` (the best possible
//!   score of one residue), so it lies in `[0, 1]` like the vote score;
//! - the family score is `(vote + weight * alignment) / (1 + weight)`: on the
//!   dev part neither signal alone beats the other, but they err on different
//!   queries (docs/residue-knn.md), and the result stays in `[0, 1]`,
//!   comparable across query lengths and usable for abstention.
//!
//! Candidates are the training sequences with the largest residue votes (the
//! sum over query residues of the best hit to that sequence), so the search
//! stays the only pass over the whole store; alignment touches only
//! `candidates` sequences per query.

use serde::{Deserialize, Serialize};

use super::search::Hit;
use super::ResidueError;

/// Parameters of the alignment stage (`candidates = 0` turns it off).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlignParams {
    /// Training sequences per query that are aligned (0: no alignment, vote scores only).
    pub candidates: usize,
    /// Subtracted from the cosine similarity to give the match score.
    pub shift: f32,
    /// Cost of the first residue of a gap.
    pub gap_open: f32,
    /// Cost of each further residue of a gap.
    pub gap_extend: f32,
    /// Weight of the alignment score added to the vote score.
    pub weight: f32,
}

impl AlignParams {
    /// No alignment stage.
    pub const OFF: AlignParams = AlignParams {
        candidates: 0,
        shift: 0.0,
        gap_open: 0.0,
        gap_extend: 0.0,
        weight: 0.0,
    };

    pub fn is_on(&self) -> bool {
        self.candidates > 0
    }

    pub fn validate(&self) -> Result<(), ResidueError> {
        if !self.is_on() {
            return Ok(());
        }
        if !(0.0..1.0).contains(&self.shift) {
            return Err(ResidueError::InvalidParams("align shift must lie in [0, 1)".into()));
        }
        let finite_non_negative = |v: f32| v.is_finite() && v >= 0.0;
        if !finite_non_negative(self.gap_open) || !finite_non_negative(self.gap_extend) {
            return Err(ResidueError::InvalidParams(
                "gap_open and gap_extend must be finite and >= 0".into(),
            ));
        }
        if !(self.weight.is_finite() && self.weight > 0.0) {
            return Err(ResidueError::InvalidParams(
                "align weight must be finite and > 0".into(),
            ));
        }
        Ok(())
    }
}

impl Default for AlignParams {
    fn default() -> Self {
        AlignParams::OFF
    }
}

/// The best local alignment score of a query (rows of `sim`) against a target
/// (columns), with match score `sim[i][j] - shift` and affine gaps (Gotoh's
/// recurrences, one row of state at a time).
pub fn local_alignment_score(sim: &[f32], rows: usize, cols: usize, params: &AlignParams) -> f32 {
    debug_assert_eq!(sim.len(), rows * cols);
    if rows == 0 || cols == 0 {
        return 0.0;
    }
    let (open, extend) = (params.gap_open, params.gap_extend);
    // h[j]: best score of an alignment ending at (i, j); f[j]: ending at (i, j) with a gap in the
    // target (a query residue skipped), both carried over from the previous row.
    let mut h = vec![0f32; cols + 1];
    let mut f = vec![f32::NEG_INFINITY; cols + 1];
    let mut best = 0f32;
    for row in sim.chunks_exact(cols) {
        let mut diagonal = 0f32; // h[i-1][j-1]
        let mut e = f32::NEG_INFINITY; // gap in the query, along the row
        let mut left = 0f32; // h[i][j-1]
        for j in 1..=cols {
            let up = h[j];
            f[j] = (up - open).max(f[j] - extend);
            e = (left - open).max(e - extend);
            let cell = (diagonal + row[j - 1] - params.shift).max(e).max(f[j]).max(0.0);
            diagonal = up;
            h[j] = cell;
            left = cell;
            best = best.max(cell);
        }
    }
    best
}

/// A best local alignment with its span: rows `query_start..=query_end` of the
/// query aligned to columns `target_start..=target_end` of the target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalAlignment {
    /// Raw score (sum of `sim - shift` over aligned pairs minus gap costs).
    pub score: f32,
    pub query_start: usize,
    pub query_end: usize,
    pub target_start: usize,
    pub target_end: usize,
}

/// [`local_alignment_score`] that also says where the best alignment starts and
/// ends. Each cell of the recurrences carries the cell its path started from, so
/// no traceback matrix is kept: memory stays at a few rows whatever the sizes.
/// `None` when no pair scores above zero.
pub fn local_alignment(sim: &[f32], rows: usize, cols: usize, params: &AlignParams) -> Option<LocalAlignment> {
    debug_assert_eq!(sim.len(), rows * cols);
    if rows == 0 || cols == 0 {
        return None;
    }
    let (open, extend) = (params.gap_open, params.gap_extend);
    const NONE: (u32, u32) = (u32::MAX, u32::MAX);
    let mut h = vec![0f32; cols + 1];
    let mut h_start = vec![NONE; cols + 1];
    let mut f = vec![f32::NEG_INFINITY; cols + 1];
    let mut f_start = vec![NONE; cols + 1];
    let mut best: Option<LocalAlignment> = None;
    for (i, row) in sim.chunks_exact(cols).enumerate() {
        let (mut diagonal, mut diagonal_start) = (0f32, NONE);
        let (mut e, mut e_start) = (f32::NEG_INFINITY, NONE);
        let (mut left, mut left_start) = (0f32, NONE);
        for j in 1..=cols {
            let (up, up_start) = (h[j], h_start[j]);
            // Gap in the target (query residue i skipped): from the cell above.
            if up - open >= f[j] - extend {
                f[j] = up - open;
                f_start[j] = up_start;
            } else {
                f[j] -= extend;
            }
            // Gap in the query (target residue j skipped): from the cell on the left.
            if left - open >= e - extend {
                e = left - open;
                e_start = left_start;
            } else {
                e -= extend;
            }
            let matched = diagonal + row[j - 1] - params.shift;
            // A path whose predecessor scored 0 starts here.
            let matched_start = if diagonal > 0.0 {
                diagonal_start
            } else {
                (i as u32, (j - 1) as u32)
            };
            let (mut cell, mut cell_start) = (matched, matched_start);
            if e > cell {
                (cell, cell_start) = (e, e_start);
            }
            if f[j] > cell {
                (cell, cell_start) = (f[j], f_start[j]);
            }
            if cell <= 0.0 {
                (cell, cell_start) = (0.0, NONE);
            }
            (diagonal, diagonal_start) = (up, up_start);
            h[j] = cell;
            h_start[j] = cell_start;
            (left, left_start) = (cell, cell_start);
            if cell > 0.0 && best.is_none_or(|b| cell > b.score) {
                best = Some(LocalAlignment {
                    score: cell,
                    query_start: cell_start.0 as usize,
                    query_end: i,
                    target_start: cell_start.1 as usize,
                    target_end: j - 1,
                });
            }
        }
    }
    best
}

/// The training sequences with the largest residue votes: for each sequence, the sum over
/// query residues of the best hit similarity to it (among each residue's first `top_k` hits).
/// Returns at most `n` sequence indices, best first (ties: lower index).
pub fn candidate_sequences(hits: &[&[Hit]], top_k: usize, row_sequence: &[u32], n: usize) -> Vec<u32> {
    let mut votes: Vec<(u32, u32, f32)> = Vec::new();
    for (qi, row) in hits.iter().enumerate() {
        for hit in row.iter().take(top_k).filter(|h| !h.is_empty()) {
            votes.push((row_sequence[hit.row as usize], qi as u32, hit.similarity));
        }
    }
    votes.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(b.2.total_cmp(&a.2)));
    votes.dedup_by(|later, first| later.0 == first.0 && later.1 == first.1);
    let mut totals: Vec<(u32, f32)> = Vec::new();
    for (seq, _, sim) in votes {
        match totals.last_mut() {
            Some((s, total)) if *s == seq => *total += sim,
            _ => totals.push((seq, sim)),
        }
    }
    totals.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    totals.truncate(n);
    totals.into_iter().map(|(seq, _)| seq).collect()
}

/// One aligned candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aligned {
    pub sequence: u32,
    /// Local alignment score divided by `query_rows * (1 - shift)`.
    pub score: f32,
    /// The same alignment on the signal-enhanced matrix ([`enhance_signal`]) under
    /// [`ENHANCED_VARIANTS`], each divided by `query_rows` (`None` unless asked for).
    pub enhanced: Option<[f32; 2]>,
}

/// Match shift and gap costs (in z units) of the alignments on the
/// signal-enhanced similarity matrix.
pub const ENHANCED_VARIANTS: [AlignParams; 2] = [
    AlignParams {
        candidates: 1,
        shift: 1.0,
        gap_open: 2.0,
        gap_extend: 0.2,
        weight: 1.0,
    },
    AlignParams {
        candidates: 1,
        shift: 2.0,
        gap_open: 4.0,
        gap_extend: 0.4,
        weight: 1.0,
    },
];

/// EBA's signal enhancement (Pantolini et al. 2024): each similarity becomes
/// the mean of its z-score within its row and within its column, so that a
/// residue pair stands out only when it is exceptional for both residues. A
/// query residue similar to everything (low-complexity, common motifs) no
/// longer pays on every target, which is how chance hits of large families
/// add up in the plain matrix.
pub fn enhance_signal(sim: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let stats = |values: &mut dyn Iterator<Item = f32>, n: usize| {
        let (mut sum, mut sq) = (0f64, 0f64);
        for v in values {
            sum += v as f64;
            sq += (v as f64) * (v as f64);
        }
        let mean = sum / n.max(1) as f64;
        let sd = (sq / n.max(1) as f64 - mean * mean).max(0.0).sqrt();
        (mean as f32, if sd > 1e-6 { 1.0 / sd as f32 } else { 0.0 })
    };
    let row_stats: Vec<(f32, f32)> = (0..rows)
        .map(|i| stats(&mut sim[i * cols..(i + 1) * cols].iter().copied(), cols))
        .collect();
    let col_stats: Vec<(f32, f32)> = (0..cols)
        .map(|j| stats(&mut (0..rows).map(|i| sim[i * cols + j]), rows))
        .collect();
    let mut out = vec![0f32; rows * cols];
    for i in 0..rows {
        let (rm, ri) = row_stats[i];
        for j in 0..cols {
            let (cm, ci) = col_stats[j];
            let v = sim[i * cols + j];
            out[i * cols + j] = 0.5 * ((v - rm) * ri + (v - cm) * ci);
        }
    }
    out
}

/// Aligns the query's unit residue rows (`query`, `query_rows x dim`) to each
/// candidate's unit rows (`target_rows(seq)`, row-major, `dim` wide); with
/// `enhanced`, also on the signal-enhanced matrix (three times the work, so only
/// the learned classifiers that weigh it ask).
pub fn align_candidates(
    query: &[f32],
    dim: usize,
    candidates: &[u32],
    target_rows: impl Fn(u32) -> Vec<f32>,
    params: &AlignParams,
    enhanced: bool,
) -> Vec<Aligned> {
    let query_rows = query.len() / dim.max(1);
    let norm = query_rows as f32 * (1.0 - params.shift);
    candidates
        .iter()
        .map(|&sequence| {
            let target = target_rows(sequence);
            let cols = target.len() / dim.max(1);
            let mut sim = vec![0f32; query_rows * cols];
            crate::gemm::matmul_abt(query_rows, cols, dim, query, &target, &mut sim);
            let raw = local_alignment_score(&sim, query_rows, cols, params);
            let enhanced = enhanced.then(|| {
                let enhanced_sim = enhance_signal(&sim, query_rows, cols);
                ENHANCED_VARIANTS
                    .map(|p| local_alignment_score(&enhanced_sim, query_rows, cols, &p) / query_rows.max(1) as f32)
            });
            Aligned {
                sequence,
                score: if norm > 0.0 { raw / norm } else { 0.0 },
                enhanced,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(shift: f32, open: f32, extend: f32) -> AlignParams {
        AlignParams {
            candidates: 1,
            shift,
            gap_open: open,
            gap_extend: extend,
            weight: 1.0,
        }
    }

    /// Reference: Gotoh's recurrences over full matrices.
    fn reference(sim: &[f32], rows: usize, cols: usize, p: &AlignParams) -> f32 {
        let ninf = f32::NEG_INFINITY;
        let mut h = vec![vec![0f32; cols + 1]; rows + 1];
        let mut e = vec![vec![ninf; cols + 1]; rows + 1];
        let mut f = vec![vec![ninf; cols + 1]; rows + 1];
        let mut best = 0f32;
        for i in 1..=rows {
            for j in 1..=cols {
                e[i][j] = (h[i][j - 1] - p.gap_open).max(e[i][j - 1] - p.gap_extend);
                f[i][j] = (h[i - 1][j] - p.gap_open).max(f[i - 1][j] - p.gap_extend);
                h[i][j] = (h[i - 1][j - 1] + sim[(i - 1) * cols + j - 1] - p.shift)
                    .max(e[i][j])
                    .max(f[i][j])
                    .max(0.0);
                best = best.max(h[i][j]);
            }
        }
        best
    }

    #[test]
    fn diagonal_run_scores_its_length() {
        // Identity similarity: a perfect diagonal of 4 matches at shift 0.25 scores 4 * 0.75.
        let n = 4;
        let sim: Vec<f32> = (0..n * n).map(|k| if k / n == k % n { 1.0 } else { 0.0 }).collect();
        let s = local_alignment_score(&sim, n, n, &params(0.25, 1.0, 0.5));
        assert!((s - 3.0).abs() < 1e-6, "{s}");
    }

    #[test]
    fn gaps_bridge_two_runs_only_when_cheap() {
        // Query 0..3 matches target 0..3, query 3..6 matches target 4..7: one target residue skipped.
        let (rows, cols) = (6, 7);
        let mut sim = vec![0f32; rows * cols];
        for i in 0..3 {
            sim[i * cols + i] = 1.0;
            sim[(i + 3) * cols + i + 4] = 1.0;
        }
        let cheap = local_alignment_score(&sim, rows, cols, &params(0.5, 0.2, 0.1));
        assert!((cheap - (3.0 - 0.2)).abs() < 1e-6, "{cheap}");
        let dear = local_alignment_score(&sim, rows, cols, &params(0.5, 5.0, 1.0));
        assert!((dear - 1.5).abs() < 1e-6, "{dear}");
    }

    #[test]
    fn matches_full_matrix_reference_on_random_similarities() {
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        for (rows, cols) in [(1, 1), (3, 9), (17, 5), (30, 31)] {
            let sim: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
            for p in [params(0.1, 0.5, 0.1), params(0.4, 1.0, 0.3), params(0.0, 0.0, 0.0)] {
                let fast = local_alignment_score(&sim, rows, cols, &p);
                let slow = reference(&sim, rows, cols, &p);
                assert!((fast - slow).abs() < 1e-5, "{rows}x{cols} {p:?}: {fast} vs {slow}");
            }
        }
    }

    #[test]
    fn spans_match_the_score_and_a_planted_diagonal() {
        // A 5-long diagonal planted at query 7.., target 2.. in noise below the shift.
        let (rows, cols) = (20, 12);
        let mut sim = vec![0.05f32; rows * cols];
        for k in 0..5 {
            sim[(7 + k) * cols + 2 + k] = 0.9;
        }
        let p = params(0.3, 1.0, 0.2);
        let a = local_alignment(&sim, rows, cols, &p).expect("an alignment");
        assert_eq!(
            (a.query_start, a.query_end, a.target_start, a.target_end),
            (7, 11, 2, 6)
        );
        assert!((a.score - 5.0 * 0.6).abs() < 1e-5, "{a:?}");
        assert!(local_alignment(&[0.1f32; 6], 2, 3, &p).is_none());
    }

    #[test]
    fn spans_agree_with_the_score_only_recurrence_on_random_similarities() {
        let mut state = 777u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        for (rows, cols) in [(1, 1), (4, 9), (17, 5), (40, 33)] {
            let sim: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
            for p in [params(0.1, 0.5, 0.1), params(0.4, 1.0, 0.3), params(0.0, 0.2, 0.05)] {
                let whole = local_alignment_score(&sim, rows, cols, &p);
                let Some(a) = local_alignment(&sim, rows, cols, &p) else {
                    assert_eq!(whole, 0.0);
                    continue;
                };
                assert!((a.score - whole).abs() < 1e-5, "{rows}x{cols} {p:?}");
                // The best alignment lies inside its span: the span's sub-matrix scores the same.
                let (r, c) = (a.query_end - a.query_start + 1, a.target_end - a.target_start + 1);
                let sub: Vec<f32> = (a.query_start..=a.query_end)
                    .flat_map(|i| sim[i * cols + a.target_start..=i * cols + a.target_end].iter().copied())
                    .collect();
                let inside = local_alignment_score(&sub, r, c, &p);
                assert!(
                    (inside - whole).abs() < 1e-5,
                    "{rows}x{cols} {p:?}: {inside} vs {whole}"
                );
            }
        }
    }

    #[test]
    fn empty_sides_score_zero() {
        assert_eq!(local_alignment_score(&[], 0, 5, &params(0.3, 1.0, 0.1)), 0.0);
        let aligned = align_candidates(&[], 4, &[0], |_| vec![1.0, 0.0, 0.0, 0.0], &params(0.3, 1.0, 0.1), true);
        assert_eq!(
            aligned,
            vec![Aligned {
                sequence: 0,
                score: 0.0,
                enhanced: Some([0.0; 2]),
            }]
        );
    }

    #[test]
    fn signal_enhancement_z_scores_rows_and_columns() {
        // Query residue 0 is similar to every target residue; the pair (2, 1) is less
        // similar in raw cosine but exceptional for both of its residues: it must win.
        let sim = [0.8, 0.8, 0.8, 0.1, 0.1, 0.1, 0.1, 0.7, 0.1];
        let z = enhance_signal(&sim, 3, 3);
        let argmax = |v: &[f32]| {
            (0..v.len())
                .max_by(|&a, &b| v[a].total_cmp(&v[b]).then(b.cmp(&a)))
                .unwrap()
        };
        assert_eq!(argmax(&sim), 0);
        assert_eq!(argmax(&z), 7, "{z:?}");
        assert!((z[7] - 0.5 * (2f32.sqrt() + 0.539)).abs() < 0.01, "{z:?}");
        // A constant matrix has no signal at all.
        assert!(enhance_signal(&[0.5; 6], 2, 3).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn candidates_rank_sequences_by_summed_best_hits() {
        let hit = |row: u32, similarity: f32| Hit { row, similarity };
        // Rows 0,1 belong to sequence 0; rows 2,3 to sequence 1; row 4 to sequence 2.
        let row_sequence = [0, 0, 1, 1, 2];
        let q0 = [hit(0, 0.9), hit(1, 0.8), hit(4, 0.7)];
        let q1 = [hit(2, 0.6), hit(3, 0.5), hit(4, 0.4)];
        let q2 = [hit(3, 0.7), hit(0, 0.1), hit(u32::MAX, f32::NEG_INFINITY)];
        let rows: Vec<&[Hit]> = vec![&q0, &q1, &q2];
        // Sequence 0: 0.9 (best of two hits of q0) + 0.1 = 1.0; sequence 1: 0.6 + 0.7 = 1.3;
        // sequence 2: 0.7 + 0.4 = 1.1.
        assert_eq!(candidate_sequences(&rows, 3, &row_sequence, 5), vec![1, 2, 0]);
        assert_eq!(candidate_sequences(&rows, 3, &row_sequence, 2), vec![1, 2]);
        // Only the first hit of each residue: sequence 0 0.9, sequence 1 0.6 + 0.7.
        assert_eq!(candidate_sequences(&rows, 1, &row_sequence, 5), vec![1, 0]);
    }

    #[test]
    fn validates_parameters() {
        assert!(AlignParams::OFF.validate().is_ok());
        assert!(params(1.0, 1.0, 0.1).validate().is_err());
        assert!(params(0.3, -1.0, 0.1).validate().is_err());
        assert!(params(0.3, 1.0, f32::NAN).validate().is_err());
        assert!(params(0.3, 1.0, 0.1).validate().is_ok());
    }
}
