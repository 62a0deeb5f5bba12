//! Family scores of one query sequence from the nearest training residues of
//! its residues.
//!
//! Every kept query residue has up to `top_k` hits (training residues with
//! their cosine similarity). A hit's weight is its similarity, raised by
//! *diagonal consistency*: other hits of the same query on the same training
//! sequence whose offset `query_pos - target_pos` lies within `diagonal_band`
//! of this hit's offset are agreeing seeds, as in seed-and-extend search, and
//! a homologous stretch gives many of them while chance matches scatter:
//!
//! `weight = similarity * (1 + diagonal_weight * min(agree, diagonal_cap)) / (1 + diagonal_weight * diagonal_cap)`
//!
//! so weights stay in `[0, 1]`, and with `diagonal_weight = 0` the weight is
//! the plain similarity (the simple vote). Each query residue then gives each
//! family (or, with [`Aggregate::Sequence`], each training sequence) the
//! largest weight among its hits to it, and the per-family sums are divided
//! by the number of query residues: a family's score is the share of the
//! query that its training residues explain, between 0 and 1, comparable
//! across queries of different lengths and therefore usable as a threshold
//! for abstention.

use serde::{Deserialize, Serialize};

use super::align::AlignParams;
use super::search::Hit;
use super::ResidueError;

/// How residue votes are pooled into a family score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregate {
    /// Sum over query residues of the family's best hit (the simple vote).
    #[default]
    Family,
    /// Best single training sequence of the family: votes are summed per
    /// training sequence, and a family scores its best sequence. Large
    /// families then gain nothing from merely having many residues.
    Sequence,
}

impl std::str::FromStr for Aggregate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "family" => Ok(Aggregate::Family),
            "sequence" => Ok(Aggregate::Sequence),
            other => Err(format!("unknown aggregate {other:?} (family or sequence)")),
        }
    }
}

impl std::fmt::Display for Aggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Aggregate::Family => "family",
            Aggregate::Sequence => "sequence",
        })
    }
}

/// Scoring parameters (defaults tuned on the dev part; see docs/residue-knn.md).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreParams {
    /// Hits per query residue that vote.
    pub top_k: usize,
    /// Hits below this cosine similarity are ignored.
    pub min_similarity: f32,
    /// Strength of the diagonal-consistency bonus (0 = simple vote).
    pub diagonal_weight: f32,
    /// Offsets within this many residues agree.
    pub diagonal_band: u32,
    /// Agreeing hits beyond this many add nothing more.
    pub diagonal_cap: u32,
    pub aggregate: Aggregate,
    /// Alignment of the best candidate training sequences (off: vote scores only).
    #[serde(default)]
    pub align: AlignParams,
}

impl ScoreParams {
    /// The baseline of the issue: nearest residue, similarity-weighted family vote.
    pub fn simple_vote() -> Self {
        ScoreParams {
            top_k: 1,
            min_similarity: -1.0,
            diagonal_weight: 0.0,
            diagonal_band: 0,
            diagonal_cap: 0,
            aggregate: Aggregate::Family,
            align: AlignParams::OFF,
        }
    }

    pub fn validate(&self) -> Result<(), ResidueError> {
        if self.top_k == 0 {
            return Err(ResidueError::InvalidParams("top_k must be at least 1".into()));
        }
        if !(self.diagonal_weight >= 0.0 && self.diagonal_weight.is_finite()) {
            return Err(ResidueError::InvalidParams(
                "diagonal_weight must be finite and >= 0".into(),
            ));
        }
        if !(-1.0..=1.0).contains(&self.min_similarity) {
            return Err(ResidueError::InvalidParams("min_similarity must lie in [-1, 1]".into()));
        }
        self.align.validate()
    }
}

/// What the scorer needs to know about store rows.
pub struct Targets<'a> {
    pub row_sequence: &'a [u32],
    pub row_position: &'a [u32],
    /// Class index of each stored sequence (`None`: unlabelled or unknown family).
    pub sequence_class: &'a [Option<u32>],
}

/// Families ranked by score for one query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FamilyScores {
    /// Query residues that were searched (after stride and skipping `X`).
    pub n_query_residues: usize,
    /// `(class, score)`, best first; ties go to the lower class index.
    pub ranked: Vec<(usize, f32)>,
    /// Best single hit `(store row, similarity)` of the winning family.
    pub best_hit: Option<(u32, f32)>,
}

struct Candidate {
    query: u32,
    target_sequence: u32,
    diagonal: i64,
    similarity: f32,
    class: u32,
    row: u32,
    weight: f32,
}

/// Scores one query from its residues' hits. `query_positions[i]` is the
/// residue position of the query row whose hits are `hits[i]`.
pub fn score_query(
    query_positions: &[u32],
    hits: &[&[Hit]],
    targets: &Targets<'_>,
    params: &ScoreParams,
) -> FamilyScores {
    let n = query_positions.len();
    let mut cands: Vec<Candidate> = Vec::new();
    for (qi, (&qpos, row_hits)) in query_positions.iter().zip(hits).enumerate() {
        for hit in row_hits.iter().take(params.top_k) {
            if hit.is_empty() || hit.similarity < params.min_similarity {
                continue;
            }
            let seq = targets.row_sequence[hit.row as usize];
            let Some(class) = targets.sequence_class[seq as usize] else {
                continue;
            };
            cands.push(Candidate {
                query: qi as u32,
                target_sequence: seq,
                diagonal: qpos as i64 - targets.row_position[hit.row as usize] as i64,
                similarity: hit.similarity,
                class,
                row: hit.row,
                weight: hit.similarity,
            });
        }
    }
    if params.diagonal_weight > 0.0 && params.diagonal_cap > 0 {
        cands.sort_by_key(|c| (c.target_sequence, c.diagonal, c.query));
        let band = params.diagonal_band as i64;
        let cap = params.diagonal_cap as f32;
        let scale = 1.0 / (1.0 + params.diagonal_weight * cap);
        let mut start = 0;
        while start < cands.len() {
            let mut end = start;
            while end < cands.len() && cands[end].target_sequence == cands[start].target_sequence {
                end += 1;
            }
            // Two pointers over the group's sorted diagonals: hits within the band of each hit.
            let (mut lo, mut hi) = (start, start);
            for i in start..end {
                let d = cands[i].diagonal;
                while cands[lo].diagonal < d - band {
                    lo += 1;
                }
                while hi < end && cands[hi].diagonal <= d + band {
                    hi += 1;
                }
                let agree = (hi - lo - 1) as f32;
                cands[i].weight = cands[i].similarity * (1.0 + params.diagonal_weight * agree.min(cap)) * scale;
            }
            start = end;
        }
    }
    // Best weight per (query residue, voter), where the voter is a family or a training sequence.
    let voter = |c: &Candidate| match params.aggregate {
        Aggregate::Family => c.class,
        Aggregate::Sequence => c.target_sequence,
    };
    cands.sort_by(|a, b| {
        (a.query, voter(a))
            .cmp(&(b.query, voter(b)))
            .then(b.weight.total_cmp(&a.weight))
    });
    let mut totals: std::collections::HashMap<u32, (f32, u32, f32, u32)> = std::collections::HashMap::new();
    let mut prev: Option<(u32, u32)> = None;
    for c in &cands {
        let key = (c.query, voter(c));
        if prev == Some(key) {
            continue; // not the best hit of this residue for this voter
        }
        prev = Some(key);
        let entry = totals
            .entry(voter(c))
            .or_insert((0.0, c.class, f32::NEG_INFINITY, c.row));
        entry.0 += c.weight;
        if c.similarity > entry.2 {
            entry.2 = c.similarity;
            entry.3 = c.row;
        }
    }
    // Per family: the sum (Family) or the best sequence's sum (Sequence).
    let mut per_class: std::collections::HashMap<u32, (f32, f32, u32)> = std::collections::HashMap::new();
    for (_, (sum, class, best_sim, best_row)) in totals {
        let e = per_class
            .entry(class)
            .or_insert((f32::NEG_INFINITY, f32::NEG_INFINITY, u32::MAX));
        let better = sum > e.0 || (sum == e.0 && best_row < e.2);
        if better {
            *e = (sum, best_sim, best_row);
        }
    }
    let denom = n.max(1) as f32;
    let mut ranked: Vec<(usize, f32, (u32, f32))> = per_class
        .into_iter()
        .map(|(c, (sum, sim, row))| (c as usize, sum / denom, (row, sim)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    FamilyScores {
        n_query_residues: n,
        best_hit: ranked.first().map(|r| r.2),
        ranked: ranked.into_iter().map(|(c, s, _)| (c, s)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(row: u32, similarity: f32) -> Hit {
        Hit { row, similarity }
    }

    /// Rows 0..10 belong to sequence 0 (class 0) at positions 0..10; rows 10..20
    /// to sequence 1 (class 1); rows 20..30 to sequence 2 (class 1).
    fn targets() -> (Vec<u32>, Vec<u32>, Vec<Option<u32>>) {
        let seq: Vec<u32> = (0..30).map(|r| r / 10).collect();
        let pos: Vec<u32> = (0..30).map(|r| r % 10).collect();
        (seq, pos, vec![Some(0), Some(1), Some(1)])
    }

    #[test]
    fn simple_vote_sums_similarities_per_family() {
        let (s, p, c) = targets();
        let t = Targets {
            row_sequence: &s,
            row_position: &p,
            sequence_class: &c,
        };
        let hits: Vec<Vec<Hit>> = vec![vec![h(0, 0.9)], vec![h(12, 0.5)], vec![h(25, 0.5)], vec![]];
        let refs: Vec<&[Hit]> = hits.iter().map(|v| v.as_slice()).collect();
        let out = score_query(&[0, 2, 4, 6], &refs, &t, &ScoreParams::simple_vote());
        // Family 1 has 0.5 + 0.5 = 1.0 > 0.9; scores divided by 4 query residues.
        assert_eq!(out.ranked[0].0, 1);
        assert!((out.ranked[0].1 - 0.25).abs() < 1e-6);
        assert!((out.ranked[1].1 - 0.9 / 4.0).abs() < 1e-6);
        // Best-sequence aggregation: class 0's single sequence (0.9) beats class 1's best (0.5).
        let seq = ScoreParams {
            aggregate: Aggregate::Sequence,
            ..ScoreParams::simple_vote()
        };
        let out = score_query(&[0, 2, 4, 6], &refs, &t, &seq);
        assert_eq!(out.ranked[0].0, 0);
        assert_eq!(out.best_hit, Some((0, 0.9)));
    }

    #[test]
    fn top_k_counts_a_family_once_per_residue() {
        let (s, p, c) = targets();
        let t = Targets {
            row_sequence: &s,
            row_position: &p,
            sequence_class: &c,
        };
        let hits = [vec![h(0, 0.6), h(11, 0.55), h(21, 0.54)]];
        let refs: Vec<&[Hit]> = hits.iter().map(|v| v.as_slice()).collect();
        let k1 = score_query(&[0], &refs, &t, &ScoreParams::simple_vote());
        assert_eq!(k1.ranked, vec![(0, 0.6)]);
        let k3 = score_query(
            &[0],
            &refs,
            &t,
            &ScoreParams {
                top_k: 3,
                ..ScoreParams::simple_vote()
            },
        );
        assert_eq!(k3.ranked, vec![(0, 0.6), (1, 0.55)]);
        let thresholded = ScoreParams {
            min_similarity: 0.7,
            ..ScoreParams::simple_vote()
        };
        assert!(score_query(&[0], &refs, &t, &thresholded).ranked.is_empty());
    }

    #[test]
    fn diagonal_consistency_beats_scattered_matches() {
        let (s, p, c) = targets();
        let t = Targets {
            row_sequence: &s,
            row_position: &p,
            sequence_class: &c,
        };
        // Query residues at 0,1,2,3 hit sequence 0 on one diagonal (offset 0) with
        // similarity 0.5; residues 4..8 hit class 1 at scattered offsets with 0.6.
        let qpos: Vec<u32> = (0..9).collect();
        let hits: Vec<Vec<Hit>> = vec![
            vec![h(0, 0.5)],
            vec![h(1, 0.5)],
            vec![h(2, 0.5)],
            vec![h(3, 0.5)],
            vec![h(19, 0.6)],
            vec![h(10, 0.6)],
            vec![h(28, 0.6)],
            vec![h(21, 0.6)],
            vec![h(15, 0.6)],
        ];
        let refs: Vec<&[Hit]> = hits.iter().map(|v| v.as_slice()).collect();
        let plain = score_query(&qpos, &refs, &t, &ScoreParams::simple_vote());
        assert_eq!(plain.ranked[0].0, 1, "the simple vote prefers the scattered family");
        let diag = ScoreParams {
            diagonal_weight: 1.0,
            diagonal_band: 1,
            diagonal_cap: 3,
            ..ScoreParams::simple_vote()
        };
        let out = score_query(&qpos, &refs, &t, &diag);
        assert_eq!(out.ranked[0].0, 0);
        // Each diagonal hit has 3 agreeing hits: full weight 0.5; each scattered hit none: 0.6/4.
        assert!((out.ranked[0].1 - 4.0 * 0.5 / 9.0).abs() < 1e-6);
        assert!((out.ranked[1].1 - 5.0 * 0.15 / 9.0).abs() < 1e-6);
    }

    #[test]
    fn no_residues_or_no_hits_give_no_family() {
        let (s, p, c) = targets();
        let t = Targets {
            row_sequence: &s,
            row_position: &p,
            sequence_class: &c,
        };
        let out = score_query(&[], &[], &t, &ScoreParams::simple_vote());
        assert_eq!(out.n_query_residues, 0);
        assert!(out.ranked.is_empty() && out.best_hit.is_none());
        assert!(ScoreParams {
            top_k: 0,
            ..ScoreParams::simple_vote()
        }
        .validate()
        .is_err());
    }
}
