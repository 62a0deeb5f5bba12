//! Scoring domain calls against a truth table, choosing the score cut for a
//! target precision, and the calibrated confidence.
//!
//! A call is correct when its family is right and it covers at least half of
//! a true domain's envelope that no better-scoring call of the same protein
//! has claimed; any other call (a wrong family, a region with no labelled
//! domain, a second call on one domain) is a false positive. Calls are matched
//! in score order, so the calls above any cut are labelled exactly as if only
//! they had been made: one sorted pass gives precision and recall at every cut.
//!
//! The cut and the confidence are fitted on a tuning set (the `dev` proteins),
//! never on the set that is reported: the cut is the lowest score at which the
//! calls at or above it reach the target precision; the confidence is the
//! isotonic (pool-adjacent-violators) fit of correctness on score, a
//! non-decreasing step function.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::scan::ScanParams;
use super::{DomainError, ProteinDomains};
use crate::io::Family;

/// One labelled domain of the truth table.
#[derive(Debug, Clone, PartialEq)]
pub struct TruthDomain {
    pub sequence_id: String,
    pub start: usize,
    pub end: usize,
    pub family: Family,
    /// Where the domain lies in the split (`train`, `dev`, `test`).
    pub part: String,
}

/// Truth domains by protein.
#[derive(Debug, Clone, Default)]
pub struct Truth {
    pub domains: Vec<TruthDomain>,
    by_protein: HashMap<String, Vec<usize>>,
}

impl Truth {
    /// Reads a TSV with the header `sequence_id start end family_id family_accession part`.
    pub fn read(path: &Path) -> Result<Truth, DomainError> {
        let file = std::fs::File::open(path).map_err(|e| DomainError::io(path, "cannot open the truth table", e))?;
        Truth::from_reader(std::io::BufReader::new(file), path)
    }

    pub fn from_reader(reader: impl BufRead, path: &Path) -> Result<Truth, DomainError> {
        const HEADER: [&str; 6] = ["sequence_id", "start", "end", "family_id", "family_accession", "part"];
        let parse = |line: usize, message: String| DomainError::Parse {
            path: path.display().to_string(),
            line,
            message,
        };
        let mut truth = Truth::default();
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| DomainError::io(path, "cannot read", e))?;
            let n = i + 1;
            let fields: Vec<&str> = line.trim_end_matches('\r').split('\t').collect();
            if n == 1 {
                if fields != HEADER {
                    return Err(parse(
                        n,
                        format!("expected the header {:?}, found {line:?}", HEADER.join("\t")),
                    ));
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let [id, start, end, family_id, accession, part] = fields[..] else {
                return Err(parse(
                    n,
                    format!("expected 6 tab-separated fields, found {}", fields.len()),
                ));
            };
            let coordinate = |s: &str, what: &str| {
                s.parse::<usize>()
                    .ok()
                    .filter(|&v| v >= 1)
                    .ok_or_else(|| parse(n, format!("{what} {s:?} is not a 1-based position")))
            };
            let (start, end) = (coordinate(start, "start")?, coordinate(end, "end")?);
            if end < start {
                return Err(parse(n, format!("end {end} is before start {start}")));
            }
            truth
                .by_protein
                .entry(id.to_string())
                .or_default()
                .push(truth.domains.len());
            truth.domains.push(TruthDomain {
                sequence_id: id.to_string(),
                start,
                end,
                family: Family::new(family_id, accession),
                part: part.to_string(),
            });
        }
        if truth.domains.is_empty() {
            return Err(parse(1, "no domain in the truth table".into()));
        }
        Ok(truth)
    }

    /// Indices into [`Self::domains`] of one protein's domains.
    pub fn of(&self, sequence_id: &str) -> &[usize] {
        self.by_protein.get(sequence_id).map_or(&[], |v| v.as_slice())
    }

    /// Domains per part.
    pub fn part_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for d in &self.domains {
            *counts.entry(d.part.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// One call with its verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelledCall {
    pub score: f64,
    /// The truth domain it found, when correct.
    pub truth: Option<usize>,
    /// Protein index and call index within it.
    pub protein: usize,
    pub call: usize,
}

/// Labels every call of `proteins` (matched in score order within each protein).
pub fn label_calls(proteins: &[ProteinDomains], truth: &Truth) -> Vec<LabelledCall> {
    let mut out = Vec::new();
    for (pi, p) in proteins.iter().enumerate() {
        let domains = truth.of(&p.sequence_id);
        let mut claimed = vec![false; domains.len()];
        let mut order: Vec<usize> = (0..p.calls.len()).collect();
        order.sort_by(|&a, &b| p.calls[b].score.total_cmp(&p.calls[a].score).then(a.cmp(&b)));
        for ci in order {
            let c = &p.calls[ci];
            let found = domains.iter().enumerate().find(|&(k, &d)| {
                let t = &truth.domains[d];
                !claimed[k]
                    && t.family.accession == c.family.accession
                    && 2 * c.overlap(t.start, t.end) >= t.end + 1 - t.start
            });
            let truth_index = found.map(|(k, &d)| {
                claimed[k] = true;
                d
            });
            out.push(LabelledCall {
                score: c.score,
                truth: truth_index,
                protein: pi,
                call: ci,
            });
        }
    }
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then((a.protein, a.call).cmp(&(b.protein, b.call)))
    });
    out
}

/// The lowest score cut at which the calls scoring at least the cut reach
/// `min_precision` (only cuts between distinct scores). `None` when no cut does.
pub fn cut_for_precision(labelled: &[LabelledCall], min_precision: f64) -> Option<f64> {
    let answers: Vec<(f64, bool)> = labelled.iter().map(|c| (c.score, c.truth.is_some())).collect();
    crate::metrics::precision_cut(&answers, min_precision)
}

/// Non-decreasing fit of P(correct | score): `(lowest score of the block, probability)`
/// by increasing score (pool adjacent violators).
pub fn isotonic(labelled: &[LabelledCall]) -> Vec<(f64, f64)> {
    // Blocks by increasing score: (lowest score, correct, n).
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    for c in labelled.iter().rev() {
        let y = if c.truth.is_some() { 1.0 } else { 0.0 };
        match blocks.last_mut() {
            Some(last) if last.0 == c.score => {
                last.1 += y;
                last.2 += 1.0;
            }
            _ => blocks.push((c.score, y, 1.0)),
        }
        while blocks.len() >= 2 {
            let n = blocks.len();
            let (a, b) = (blocks[n - 2], blocks[n - 1]);
            if a.1 / a.2 > b.1 / b.2 {
                blocks[n - 2] = (a.0, a.1 + b.1, a.2 + b.2);
                blocks.pop();
            } else {
                break;
            }
        }
    }
    blocks.into_iter().map(|(s, y, n)| (s, y / n)).collect()
}

/// Reads a probability off an [`isotonic`] step function.
pub fn confidence_at(steps: &[(f64, f64)], score: f64) -> Option<f64> {
    let first = steps.first()?;
    let i = steps.partition_point(|&(s, _)| s <= score);
    Some(if i == 0 { first.1 } else { steps[i - 1].1 })
}

/// The fitted cut and confidence of a domain annotator, stored with its classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainCalibration {
    /// `scan` (transfer learning) or `hmmscan`.
    pub method: String,
    /// The scan settings the calibration holds for (chosen on the tuning set too).
    pub params: ScanParams,
    pub min_precision: f64,
    /// Score cut; `None` when no cut reached the target on the tuning set (nothing is confident).
    pub cut: Option<f64>,
    pub steps: Vec<(f64, f64)>,
    /// What it was fitted on, and how it did there.
    pub tuned_on: String,
    pub tune_metrics: DomainMetrics,
}

/// File of the stored calibration in a classifier directory.
pub const CALIBRATION_FILE: &str = "domain-calibration.json";

impl DomainCalibration {
    /// Fits the cut and confidence on calls of a tuning set.
    pub fn fit(
        method: &str,
        params: &ScanParams,
        proteins: &[ProteinDomains],
        truth: &Truth,
        min_precision: f64,
        tuned_on: &str,
    ) -> DomainCalibration {
        let labelled = label_calls(proteins, truth);
        let cut = cut_for_precision(&labelled, min_precision);
        let mut calibrated = proteins.to_vec();
        let mut me = DomainCalibration {
            method: method.into(),
            params: params.clone(),
            min_precision,
            cut,
            steps: isotonic(&labelled),
            tuned_on: tuned_on.into(),
            tune_metrics: DomainMetrics::default(),
        };
        me.apply(&mut calibrated);
        me.tune_metrics = DomainMetrics::of(&calibrated, truth);
        me
    }

    /// Sets each call's confidence and confident flag.
    pub fn apply(&self, proteins: &mut [ProteinDomains]) {
        for p in proteins {
            for c in &mut p.calls {
                c.confidence = confidence_at(&self.steps, c.score);
                c.confident = self.cut.is_some_and(|cut| c.score >= cut);
            }
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), DomainError> {
        let path = dir.join(CALIBRATION_FILE);
        let json = serde_json::to_vec_pretty(self).expect("calibration serialises");
        crate::atomic::write_bytes_atomic(&path, &json).map_err(|e| DomainError::io(&path, "cannot write", e))
    }

    /// The stored calibration, `None` when there is none.
    pub fn load(dir: &Path) -> Result<Option<DomainCalibration>, DomainError> {
        let path = dir.join(CALIBRATION_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| DomainError::io(&path, "cannot read", e))?;
        let me: DomainCalibration = serde_json::from_str(&text).map_err(|e| DomainError::Calibration {
            path: path.display().to_string(),
            message: format!("damaged domain calibration ({e}); run `protfam domains calibrate` again"),
        })?;
        let steps_ok = me.steps.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            && me.steps.iter().all(|s| s.0.is_finite() && (0.0..=1.0).contains(&s.1));
        if !steps_ok || !(0.0..=1.0).contains(&me.min_precision) || me.cut.is_some_and(|c| !c.is_finite()) {
            return Err(DomainError::Calibration {
                path: path.display().to_string(),
                message: "inconsistent domain calibration (steps, precision or cut out of range); \
                          run `protfam domains calibrate` again"
                    .into(),
            });
        }
        Ok(Some(me))
    }
}

/// Domain-level figures of confident calls against a truth table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DomainMetrics {
    pub proteins: usize,
    pub calls: usize,
    pub correct: usize,
    pub precision: f64,
    /// Per truth `part`: (found, total).
    pub recall_by_part: BTreeMap<String, (usize, usize)>,
    pub recall: f64,
    pub f1: f64,
    /// Proteins whose every truth domain is found and that have no false call.
    pub proteins_all_right: usize,
    /// Median |start - true start| and |end - true end| over correct calls.
    pub median_start_error: f64,
    pub median_end_error: f64,
}

impl DomainMetrics {
    /// Scores the confident calls of `proteins`.
    pub fn of(proteins: &[ProteinDomains], truth: &Truth) -> DomainMetrics {
        let confident: Vec<ProteinDomains> = proteins
            .iter()
            .map(|p| ProteinDomains {
                calls: p.confident().cloned().collect(),
                ..p.clone()
            })
            .collect();
        let labelled = label_calls(&confident, truth);
        let mut m = DomainMetrics {
            proteins: proteins.len(),
            calls: labelled.len(),
            correct: labelled.iter().filter(|c| c.truth.is_some()).count(),
            ..Default::default()
        };
        let ids: std::collections::HashSet<&str> = proteins.iter().map(|p| p.sequence_id.as_str()).collect();
        for d in truth.domains.iter().filter(|d| ids.contains(d.sequence_id.as_str())) {
            m.recall_by_part.entry(d.part.clone()).or_insert((0, 0)).1 += 1;
        }
        let mut start_errors = Vec::new();
        let mut end_errors = Vec::new();
        let mut wrong_protein = vec![false; proteins.len()];
        let mut found_per_protein = vec![0usize; proteins.len()];
        for c in &labelled {
            match c.truth {
                Some(t) => {
                    let d = &truth.domains[t];
                    m.recall_by_part.entry(d.part.clone()).or_insert((0, 0)).0 += 1;
                    let call = &confident[c.protein].calls[c.call];
                    start_errors.push(call.start.abs_diff(d.start) as f64);
                    end_errors.push(call.end.abs_diff(d.end) as f64);
                    found_per_protein[c.protein] += 1;
                }
                None => wrong_protein[c.protein] = true,
            }
        }
        m.proteins_all_right = proteins
            .iter()
            .enumerate()
            .filter(|&(i, p)| !wrong_protein[i] && found_per_protein[i] == truth.of(&p.sequence_id).len())
            .count();
        let total: usize = m.recall_by_part.values().map(|v| v.1).sum();
        m.precision = ratio(m.correct, m.calls);
        m.recall = ratio(m.correct, total);
        m.f1 = if m.precision + m.recall > 0.0 {
            2.0 * m.precision * m.recall / (m.precision + m.recall)
        } else {
            0.0
        };
        m.median_start_error = median(&mut start_errors);
        m.median_end_error = median(&mut end_errors);
        m
    }

    /// Recall of one part (0 when the part has no domain).
    pub fn recall_of(&self, part: &str) -> f64 {
        self.recall_by_part.get(part).map_or(0.0, |&(f, t)| ratio(f, t))
    }
}

/// The best recall of `part` domains over cuts whose precision is at least `precision`
/// (a point of the precision-recall curve, for comparing methods at equal precision).
pub fn recall_at_precision(
    proteins: &[ProteinDomains],
    truth: &Truth,
    precision: f64,
    part: &str,
) -> (f64, Option<f64>) {
    let labelled = label_calls(proteins, truth);
    let ids: std::collections::HashSet<&str> = proteins.iter().map(|p| p.sequence_id.as_str()).collect();
    let total = truth
        .domains
        .iter()
        .filter(|d| d.part == part && ids.contains(d.sequence_id.as_str()))
        .count();
    let (mut correct, mut found) = (0usize, 0usize);
    let mut best = (0.0, None);
    for (i, c) in labelled.iter().enumerate() {
        if let Some(t) = c.truth {
            correct += 1;
            found += (truth.domains[t].part == part) as usize;
        }
        let next_differs = labelled.get(i + 1).is_none_or(|n| n.score < c.score);
        if next_differs && correct as f64 >= precision * (i + 1) as f64 {
            let recall = ratio(found, total);
            if recall >= best.0 {
                best = (recall, Some(c.score));
            }
        }
    }
    best
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domains::call;

    fn truth() -> Truth {
        let text = "sequence_id\tstart\tend\tfamily_id\tfamily_accession\tpart\n\
                    p1\t1\t100\tfam_PF1\tPF1.3\ttest\n\
                    p1\t150\t250\tfam_PF2\tPF2.1\ttrain\n\
                    p2\t10\t60\tfam_PF1\tPF1.3\ttrain\n";
        Truth::from_reader(text.as_bytes(), Path::new("truth.tsv")).unwrap()
    }

    fn protein(id: &str, calls: Vec<crate::domains::DomainCall>) -> ProteinDomains {
        ProteinDomains {
            sequence_id: id.into(),
            length: 300,
            calls,
            note: None,
        }
    }

    #[test]
    fn calls_are_right_when_family_matches_and_half_the_envelope_is_covered() {
        let t = truth();
        let proteins = vec![
            protein(
                "p1",
                vec![
                    call(5, 60, "PF1", 30.0),    // covers 56 of 100: right
                    call(40, 90, "PF1", 20.0),   // the same domain again: wrong
                    call(150, 190, "PF2", 25.0), // covers 41 of 101: wrong
                ],
            ),
            protein("p2", vec![call(12, 61, "PF9", 40.0)]), // wrong family
            protein("p3", vec![call(1, 50, "PF1", 10.0)]),  // no domain there
        ];
        let labelled = label_calls(&proteins, &t);
        let verdicts: Vec<(f64, bool)> = labelled.iter().map(|c| (c.score, c.truth.is_some())).collect();
        assert_eq!(
            verdicts,
            [(40.0, false), (30.0, true), (25.0, false), (20.0, false), (10.0, false)]
        );
        let m = DomainMetrics::of(&proteins, &t);
        assert_eq!((m.calls, m.correct), (5, 1));
        assert_eq!(m.recall_by_part["test"], (1, 1));
        assert_eq!(m.recall_by_part["train"], (0, 2));
        assert_eq!(m.proteins_all_right, 0);
        assert_eq!((m.median_start_error, m.median_end_error), (4.0, 40.0));
    }

    #[test]
    fn the_cut_is_the_lowest_score_reaching_the_precision() {
        let t = truth();
        let proteins = vec![
            protein("p1", vec![call(1, 100, "PF1", 50.0), call(150, 250, "PF2", 30.0)]),
            protein("p2", vec![call(10, 60, "PF1", 10.0)]),
            protein("p3", vec![call(1, 50, "PF1", 40.0), call(100, 150, "PF1", 5.0)]),
        ];
        let labelled = label_calls(&proteins, &t);
        // By score: 50 right, 40 wrong, 30 right, 10 right, 5 wrong.
        assert_eq!(cut_for_precision(&labelled, 1.0), Some(50.0));
        assert_eq!(cut_for_precision(&labelled, 0.75), Some(10.0));
        assert_eq!(cut_for_precision(&labelled, 0.59), Some(5.0));
        let steps = isotonic(&labelled);
        // Increasing scores 5(w) 10(r) 30(r) 40(w) 50(r): the 40/30 violation pools.
        assert_eq!(steps, vec![(5.0, 0.0), (10.0, 1.0 * 2.0 / 3.0), (50.0, 1.0)]);
        assert_eq!(confidence_at(&steps, 1.0), Some(0.0));
        assert_eq!(confidence_at(&steps, 35.0), Some(2.0 / 3.0));
        assert_eq!(confidence_at(&steps, 99.0), Some(1.0));
        let (recall, cut) = recall_at_precision(&proteins, &t, 0.75, "train");
        assert_eq!((recall, cut), (1.0, Some(10.0)));
    }

    #[test]
    fn bad_truth_tables_name_the_line() {
        let bad = |text: &str| {
            Truth::from_reader(text.as_bytes(), Path::new("t.tsv"))
                .unwrap_err()
                .to_string()
        };
        assert!(bad("id\tstart\n").contains("line 1"));
        let header = "sequence_id\tstart\tend\tfamily_id\tfamily_accession\tpart\n";
        assert!(bad(&format!("{header}p\t0\t5\tf\tPF1\ttest\n")).contains("line 2"));
        assert!(bad(&format!("{header}p\t9\t5\tf\tPF1\ttest\n")).contains("before start"));
        assert!(bad(&format!("{header}p\t1\t5\tf\n")).contains("6 tab-separated"));
        assert!(bad(header).contains("no domain"));
    }
}
