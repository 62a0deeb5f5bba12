//! Domain annotation of whole proteins: every Pfam domain of a protein with
//! its envelope, family, score and calibrated confidence, as `hmmscan
//! --domtblout`, `pfam_scan` and ProtENN2 report them.
//!
//! The transfer-learning route ([`scan`]) is residue-level: the protein's
//! residues are embedded once, a sample of them is searched in the
//! `residue-knn` store of training domains, the training domains that collect
//! the most similarity in each window of the protein become candidates, and
//! each candidate is aligned locally (Smith-Waterman on embedding cosines) to
//! its window, which gives the span on both sides directly. Overlapping calls
//! are resolved as Pfam resolves them ([`resolve_overlaps`]).
//!
//! [`eval`] scores calls against a truth table (precision, recall per `part`,
//! boundary error), chooses the score cut for a target precision on a tuning
//! set and fits the calibrated confidence; [`hmmer`] is the `hmmscan`
//! baseline on the same proteins; [`output`] writes TSV, JSON and GFF3.

pub mod eval;
pub mod hmmer;
pub mod output;
pub mod scan;

use serde::{Deserialize, Serialize};

use crate::io::Family;

/// Errors of domain scanning, evaluation and output.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("{path}: {message}")]
    Io {
        path: String,
        message: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Parse { path: String, line: usize, message: String },
    #[error("invalid domain scan parameter: {0}")]
    InvalidParams(String),
    #[error("protein {id}: {message}")]
    Protein { id: String, message: String },
    #[error("{path}: {message}")]
    Calibration { path: String, message: String },
    #[error(transparent)]
    Residue(#[from] crate::residue::ResidueError),
    #[error(transparent)]
    Baseline(#[from] crate::baseline::BaselineError),
}

impl DomainError {
    pub(crate) fn io(path: &std::path::Path, message: &str, source: std::io::Error) -> DomainError {
        DomainError::Io {
            path: path.display().to_string(),
            message: format!("{message}: {source}"),
            source,
        }
    }
}

/// One domain call on a protein (coordinates 1-based, inclusive, as in Pfam).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainCall {
    pub start: usize,
    pub end: usize,
    pub family: Family,
    /// Method score: the alignment score in residues (`scan`), the domain bit score (HMMER).
    pub score: f64,
    /// HMMER's independent E-value; `None` for transfer-learning calls.
    pub evalue: Option<f64>,
    /// Calibrated probability that the call is right (from the tuning set), when calibrated.
    pub confidence: Option<f64>,
    /// At or above the calibrated score cut.
    pub confident: bool,
    /// The best-matching training domain and its aligned span (1-based, inclusive).
    pub best_match: String,
    pub match_start: usize,
    pub match_end: usize,
    pub match_len: usize,
}

impl DomainCall {
    pub fn len(&self) -> usize {
        self.end + 1 - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }

    /// Residues shared with `[start, end]`.
    pub fn overlap(&self, start: usize, end: usize) -> usize {
        (self.end.min(end) + 1).saturating_sub(self.start.max(start))
    }
}

/// The calls on one protein, in sequence order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProteinDomains {
    pub sequence_id: String,
    pub length: usize,
    pub calls: Vec<DomainCall>,
    /// Why the protein has no call at all (empty, only `X`, no hit), when it has none.
    pub note: Option<String>,
}

impl ProteinDomains {
    pub fn confident(&self) -> impl Iterator<Item = &DomainCall> {
        self.calls.iter().filter(|c| c.confident)
    }
}

/// Pfam's overlap rule: the calls sorted by score (best first, ties by start);
/// a call is kept unless a kept call overlaps it by more than half of the
/// shorter of the two. Returns the kept calls in sequence order.
pub fn resolve_overlaps(mut calls: Vec<DomainCall>) -> Vec<DomainCall> {
    calls.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.start.cmp(&b.start))
            .then(a.family.accession.cmp(&b.family.accession))
    });
    let mut kept: Vec<DomainCall> = Vec::with_capacity(calls.len());
    for call in calls {
        let clashes = kept.iter().any(|k| {
            let shorter = k.len().min(call.len());
            2 * k.overlap(call.start, call.end) > shorter
        });
        if !clashes {
            kept.push(call);
        }
    }
    kept.sort_by_key(|c| (c.start, c.end));
    kept
}

#[cfg(test)]
pub(crate) fn call(start: usize, end: usize, accession: &str, score: f64) -> DomainCall {
    DomainCall {
        start,
        end,
        family: Family::new(format!("fam_{accession}"), accession),
        score,
        evalue: None,
        confidence: None,
        confident: true,
        best_match: "train/1-10".into(),
        match_start: 1,
        match_end: 10,
        match_len: 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn better_score_wins_an_overlap_of_more_than_half_the_shorter() {
        let kept = resolve_overlaps(vec![
            call(1, 100, "PF1", 10.0),
            call(40, 140, "PF2", 20.0), // overlaps PF1 by 61 of 100: PF1 goes
            call(141, 200, "PF3", 5.0),
            call(190, 260, "PF4", 4.0), // overlaps PF3 by 11 of 60: both stay
        ]);
        let names: Vec<&str> = kept.iter().map(|c| c.family.accession.as_str()).collect();
        assert_eq!(names, ["PF2", "PF3", "PF4"]);
    }

    #[test]
    fn overlap_counts_shared_residues() {
        let c = call(10, 20, "PF1", 1.0);
        assert_eq!(c.overlap(20, 30), 1);
        assert_eq!(c.overlap(21, 30), 0);
        assert_eq!(c.overlap(1, 100), 11);
        assert_eq!(c.len(), 11);
    }
}
