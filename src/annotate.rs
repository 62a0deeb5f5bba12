//! Annotation of a user's sequences with a trained classifier, and the
//! calibration that tells when not to answer.
//!
//! # Abstention calibration
//! A sequence from a family the classifier never saw still gets a "best"
//! family. To avoid forcing it into a wrong one silently, [`calibrate`] picks
//! a confidence threshold on the labelled **dev** part, never on test:
//! - two statistics are tried: the prediction **score** (vote share for kNN,
//!   softmax probability for MLPs; confident when `score >= threshold`) and,
//!   for neighbour methods, the Euclidean **distance to the nearest training
//!   vector** (confident when `distance <= threshold`);
//! - for each, dev predictions are ranked from most to least confident and the
//!   threshold is the loosest cut whose accepted set still reaches the target
//!   precision (`--min-precision`, 0.95 by default): precision = correct /
//!   accepted, coverage = accepted / dev size. Tied values are accepted or
//!   rejected together;
//! - the statistic that keeps more dev sequences at that precision is the one
//!   that "separates better" and is used (ties go to the score). With 1-NN the
//!   score is always 1, so the distance wins; MLPs have only the score.
//! - dev sequences whose family is not in the classifier's vocabulary count as
//!   errors, as they would be in use.
//!
//! If no cut reaches the target, the threshold is `None` and every answer is
//! reported as not confident (the calibration says so).
//!
//! The result is a [`Calibration`], stored as `calibration.json` in the
//! classifier directory and printed by `protfam info`.
//!
//! # Output
//! [`Annotation`] rows, one per input record in input order (invalid records
//! included, with the reason), written as TSV ([`write_tsv`]) or JSON ([`write_json`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::classify::Prediction;
use crate::io::vocab::LabelVocab;

/// File name of the calibration inside a classifier directory.
pub const CALIBRATION_FILE: &str = "calibration.json";

/// What abstaining rows say instead of a family.
pub const NO_CONFIDENT_FAMILY: &str = "no confident family";

/// What rows of unreadable records say instead of a family.
pub const INVALID_RECORD: &str = "invalid record";

#[derive(Debug, thiserror::Error)]
pub enum AnnotateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a calibration: {source}")]
    NotCalibration {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("calibration: {0}")]
    Calibration(String),
}

fn io_err(path: &Path, source: std::io::Error) -> AnnotateError {
    AnnotateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The confidence statistic a threshold applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    /// Prediction score; confident when `score >= threshold`.
    Score,
    /// Distance to the nearest training vector; confident when `distance <= threshold`.
    NearestDistance,
}

impl std::fmt::Display for Statistic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Statistic::Score => "score",
            Statistic::NearestDistance => "nearest_distance",
        })
    }
}

impl Statistic {
    /// The statistic's value for a prediction, oriented so that higher is more
    /// confident; `None` when the prediction lacks it.
    fn confidence(&self, p: &Prediction) -> Option<f64> {
        match self {
            Statistic::Score => Some(p.score as f64),
            Statistic::NearestDistance => p.nearest.map(|(_, d)| -(d as f64)),
        }
    }
}

/// What one statistic achieves on dev at the target precision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub statistic: Statistic,
    /// `None`: no cut reaches the target precision.
    pub threshold: Option<f64>,
    /// Precision of the accepted dev predictions (`None` when nothing is accepted).
    pub precision: Option<f64>,
    /// Share of dev sequences accepted.
    pub coverage: f64,
    /// Dev sequences accepted.
    pub accepted: usize,
}

/// A calibrated abstention rule, as stored in `calibration.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Statistic the threshold applies to.
    pub statistic: Statistic,
    /// `score >= threshold` or `distance <= threshold` is confident; `None`: never confident.
    pub threshold: Option<f64>,
    /// The precision asked for (`--min-precision`).
    pub target_precision: f64,
    /// Precision of the confident dev predictions.
    pub dev_precision: Option<f64>,
    /// Share of dev sequences answered confidently.
    pub dev_coverage: f64,
    /// Dev sequences calibrated on.
    pub dev_n: usize,
    /// Share of dev sequences whose top prediction is right (no abstention).
    pub dev_accuracy: f64,
    /// Where the dev data came from.
    #[serde(default)]
    pub source: String,
    /// Training-data digest of the classifier calibrated, so a calibration left
    /// over from an earlier classifier in the same directory is not used.
    #[serde(default)]
    pub training_digest: String,
    /// Every statistic tried, the chosen one included.
    pub candidates: Vec<Candidate>,
}

impl Calibration {
    /// Whether a prediction clears the threshold.
    pub fn is_confident(&self, p: &Prediction) -> bool {
        let Some(threshold) = self.threshold else { return false };
        match self.statistic {
            Statistic::Score => p.score as f64 >= threshold,
            Statistic::NearestDistance => p.nearest.is_some_and(|(_, d)| d as f64 <= threshold),
        }
    }

    /// One line for people: `nearest_distance <= 12.3 (target precision 95%: dev precision 96.1%, coverage 41.0% of 366)`.
    pub fn describe(&self) -> String {
        let rule = match (self.threshold, self.statistic) {
            (None, _) => "never confident (no threshold reaches the target on dev)".to_string(),
            (Some(t), Statistic::Score) => format!("confident when score >= {t:.6}"),
            (Some(t), Statistic::NearestDistance) => format!("confident when nearest-neighbour distance <= {t:.6}"),
        };
        let precision = self
            .dev_precision
            .map(|p| format!("{:.1}%", 100.0 * p))
            .unwrap_or("-".into());
        format!(
            "{rule}; target precision {:.1}%: dev precision {precision}, dev coverage {:.1}% of {} (dev accuracy without abstaining {:.1}%)",
            100.0 * self.target_precision,
            100.0 * self.dev_coverage,
            self.dev_n,
            100.0 * self.dev_accuracy
        )
    }

    pub fn path(classifier_dir: &Path) -> PathBuf {
        classifier_dir.join(CALIBRATION_FILE)
    }

    /// Writes `calibration.json` into the classifier directory (atomically).
    pub fn save(&self, classifier_dir: &Path) -> Result<PathBuf, AnnotateError> {
        let path = Self::path(classifier_dir);
        let json = serde_json::to_string_pretty(self).expect("calibration serialises");
        crate::atomic::write_bytes_atomic(&path, json.as_bytes()).map_err(|e| io_err(&path, e))?;
        Ok(path)
    }

    /// Reads `calibration.json`; `Ok(None)` when the directory has none.
    pub fn load(classifier_dir: &Path) -> Result<Option<Self>, AnnotateError> {
        let path = Self::path(classifier_dir);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| AnnotateError::NotCalibration { path, source })
    }
}

/// The loosest threshold on `statistic` whose accepted dev predictions reach `target` precision.
pub fn calibrate_statistic(
    statistic: Statistic,
    predictions: &[Prediction],
    truth: &[Option<usize>],
    target: f64,
) -> Candidate {
    let n = predictions.len();
    let mut ranked: Vec<(f64, bool)> = predictions
        .iter()
        .zip(truth)
        .filter_map(|(p, t)| statistic.confidence(p).map(|c| (c, *t == Some(p.class))))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best: Option<(usize, usize, f64)> = None; // (accepted, correct, cut value)
    let mut correct = 0usize;
    for i in 0..ranked.len() {
        correct += usize::from(ranked[i].1);
        // Only cut between distinct values: ties go together.
        if i + 1 < ranked.len() && ranked[i + 1].0 == ranked[i].0 {
            continue;
        }
        let accepted = i + 1;
        if correct as f64 >= target * accepted as f64 {
            best = Some((accepted, correct, ranked[i].0));
        }
    }
    let threshold_of = |c: f64| match statistic {
        Statistic::Score => c,
        Statistic::NearestDistance => -c,
    };
    match best {
        Some((accepted, correct, cut)) => Candidate {
            statistic,
            threshold: Some(threshold_of(cut)),
            precision: Some(correct as f64 / accepted as f64),
            coverage: accepted as f64 / n.max(1) as f64,
            accepted,
        },
        None => Candidate {
            statistic,
            threshold: None,
            precision: None,
            coverage: 0.0,
            accepted: 0,
        },
    }
}

/// Calibrates on dev predictions; `truth[i]` is the class of dev item `i`
/// (`None` when its family is not in the classifier's vocabulary).
pub fn calibrate(
    predictions: &[Prediction],
    truth: &[Option<usize>],
    target_precision: f64,
    source: &str,
) -> Result<Calibration, AnnotateError> {
    if !(target_precision > 0.0 && target_precision <= 1.0) {
        return Err(AnnotateError::Calibration(format!(
            "--min-precision must be in (0, 1], not {target_precision}"
        )));
    }
    if predictions.len() != truth.len() {
        return Err(AnnotateError::Calibration(format!(
            "{} predictions for {} labelled dev sequences",
            predictions.len(),
            truth.len()
        )));
    }
    if predictions.is_empty() {
        return Err(AnnotateError::Calibration("the dev part is empty".into()));
    }
    let mut statistics = vec![Statistic::Score];
    if predictions.iter().all(|p| p.nearest.is_some()) {
        statistics.push(Statistic::NearestDistance);
    }
    let candidates: Vec<Candidate> = statistics
        .iter()
        .map(|&s| calibrate_statistic(s, predictions, truth, target_precision))
        .collect();
    // Most dev sequences kept wins; the first (score) wins ties.
    let chosen = candidates
        .iter()
        .enumerate()
        .max_by(|(i, a), (j, b)| a.accepted.cmp(&b.accepted).then(j.cmp(i)))
        .map(|(_, c)| c.clone())
        .expect("at least the score");
    let correct = predictions
        .iter()
        .zip(truth)
        .filter(|(p, t)| **t == Some(p.class))
        .count();
    Ok(Calibration {
        statistic: chosen.statistic,
        threshold: chosen.threshold,
        target_precision,
        dev_precision: chosen.precision,
        dev_coverage: chosen.coverage,
        dev_n: predictions.len(),
        dev_accuracy: correct as f64 / predictions.len() as f64,
        source: source.to_string(),
        training_digest: String::new(),
        candidates,
    })
}

/// A runner-up family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    pub family_id: String,
    pub accession: String,
    pub score: f32,
}

/// One output row: one input record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub id: String,
    /// The confident family id, [`NO_CONFIDENT_FAMILY`] or [`INVALID_RECORD`].
    pub annotation: String,
    /// The classifier's top family, also when not confident (empty for invalid records).
    pub family_id: String,
    pub family_accession: String,
    pub score: Option<f32>,
    pub confident: bool,
    /// Next best families, best first.
    pub next_best: Vec<Alternative>,
    /// Nearest training example (neighbour methods).
    pub nearest_id: Option<String>,
    pub nearest_distance: Option<f32>,
    /// Residues in the input sequence.
    pub length: usize,
    /// Problems with the record: invalid residues, duplicate id.
    pub note: String,
}

impl Annotation {
    /// A row that names no family (an invalid record, or a query with no candidate at all).
    fn without_family(id: &str, annotation: &str, length: usize, note: String) -> Self {
        Annotation {
            id: id.to_string(),
            annotation: annotation.to_string(),
            family_id: String::new(),
            family_accession: String::new(),
            score: None,
            confident: false,
            next_best: Vec::new(),
            nearest_id: None,
            nearest_distance: None,
            length,
            note,
        }
    }
}

/// One input record as read: a valid one to be predicted, or one that was not readable.
#[derive(Debug, Clone, PartialEq)]
pub enum InputItem {
    Valid { id: String, length: usize, note: String },
    Invalid { id: String, message: String },
}

/// What an annotation run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AnnotateSummary {
    pub sequences: usize,
    /// Confident answers.
    pub annotated: usize,
    /// Valid sequences without a confident family.
    pub abstained: usize,
    pub invalid: usize,
    pub duplicate_ids: usize,
    pub seconds: f64,
}

impl std::fmt::Display for AnnotateSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sequences: {} annotated, {} abstained ({NO_CONFIDENT_FAMILY}), {} invalid, {} duplicate ids; {:.1} s",
            self.sequences, self.annotated, self.abstained, self.invalid, self.duplicate_ids, self.seconds
        )
    }
}

/// What one query got from a classifier: its ranked families (none when the
/// classifier had nothing to say) and, for an abstention the classifier itself
/// decided (no searchable residue, no hit, score under its floor), the reason.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub prediction: Option<Prediction>,
    pub abstained: Option<String>,
}

impl Outcome {
    /// A prediction with no abstention of the classifier's own.
    pub fn predicted(prediction: Prediction) -> Self {
        Outcome {
            prediction: Some(prediction),
            abstained: None,
        }
    }
}

/// Builds the output rows: `outcomes` belong to the `Valid` items, in order.
/// Without a calibration every answer counts as confident; a classifier's own
/// abstention is `no confident family` whatever the calibration says, with the
/// reason in the note.
pub fn annotations(
    items: &[InputItem],
    outcomes: &[Outcome],
    vocab: &LabelVocab,
    train_ids: &[String],
    calibration: Option<&Calibration>,
    top_k: usize,
) -> Vec<Annotation> {
    let mut outcomes = outcomes.iter();
    items
        .iter()
        .map(|item| match item {
            InputItem::Invalid { id, message } => Annotation::without_family(id, INVALID_RECORD, 0, message.clone()),
            InputItem::Valid { id, length, note } => {
                let outcome = outcomes.next().expect("one outcome per valid record");
                let with_reason = |note: &str| match &outcome.abstained {
                    Some(reason) if note.is_empty() => reason.clone(),
                    Some(reason) => format!("{note}; {reason}"),
                    None => note.to_string(),
                };
                let Some(p) = &outcome.prediction else {
                    return Annotation::without_family(id, NO_CONFIDENT_FAMILY, *length, with_reason(note));
                };
                let family = vocab.family(p.class);
                let confident = outcome.abstained.is_none() && calibration.is_none_or(|c| c.is_confident(p));
                Annotation {
                    id: id.clone(),
                    annotation: if confident {
                        family.family_id.clone()
                    } else {
                        NO_CONFIDENT_FAMILY.to_string()
                    },
                    family_id: family.family_id.clone(),
                    family_accession: family.accession.clone(),
                    score: Some(p.score),
                    confident,
                    next_best: p
                        .top
                        .iter()
                        .filter(|(c, _)| *c != p.class)
                        .take(top_k.saturating_sub(1))
                        .map(|&(c, score)| {
                            let f = vocab.family(c);
                            Alternative {
                                family_id: f.family_id.clone(),
                                accession: f.accession.clone(),
                                score,
                            }
                        })
                        .collect(),
                    nearest_id: p.nearest.and_then(|(i, _)| train_ids.get(i).cloned()),
                    nearest_distance: p.nearest.map(|(_, d)| d),
                    length: *length,
                    note: with_reason(note),
                }
            }
        })
        .collect()
}

/// Counts of a finished run (seconds are the caller's).
pub fn summarise(rows: &[Annotation], duplicate_ids: usize, seconds: f64) -> AnnotateSummary {
    let invalid = rows.iter().filter(|r| r.annotation == INVALID_RECORD).count();
    let annotated = rows.iter().filter(|r| r.confident).count();
    AnnotateSummary {
        sequences: rows.len(),
        annotated,
        abstained: rows.len() - invalid - annotated,
        invalid,
        duplicate_ids,
        seconds,
    }
}

/// TSV column names, in order.
pub const TSV_HEADER: [&str; 11] = [
    "id",
    "annotation",
    "family_id",
    "family_accession",
    "score",
    "confident",
    "next_best",
    "nearest_id",
    "nearest_distance",
    "length",
    "note",
];

/// Tabs and line breaks cannot appear inside a TSV field.
fn tsv_field(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

/// Writes the rows as TSV with a header line; `next_best` is
/// `family_id:accession:score` items joined by `;`.
pub fn write_tsv<W: Write>(mut out: W, rows: &[Annotation]) -> std::io::Result<()> {
    writeln!(out, "{}", TSV_HEADER.join("\t"))?;
    for r in rows {
        let next: Vec<String> = r
            .next_best
            .iter()
            .map(|a| format!("{}:{}:{:.4}", a.family_id, a.accession, a.score))
            .collect();
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            tsv_field(&r.id),
            tsv_field(&r.annotation),
            r.family_id,
            r.family_accession,
            r.score.map(|s| format!("{s:.4}")).unwrap_or_default(),
            if r.confident { "yes" } else { "no" },
            next.join(";"),
            r.nearest_id.as_deref().map(tsv_field).unwrap_or_default(),
            r.nearest_distance.map(|d| format!("{d:.4}")).unwrap_or_default(),
            r.length,
            tsv_field(&r.note),
        )?;
    }
    out.flush()
}

/// Writes the rows as a pretty JSON list of objects (the [`Annotation`] fields).
pub fn write_json<W: Write>(mut out: W, rows: &[Annotation]) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut out, rows)?;
    writeln!(out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Family;

    fn pred(class: usize, score: f32, distance: Option<f32>) -> Prediction {
        Prediction {
            class,
            score,
            top: vec![(class, score), ((class + 1) % 3, 1.0 - score)],
            nearest: distance.map(|d| (class, d)),
        }
    }

    #[test]
    fn threshold_is_the_loosest_cut_reaching_the_target() {
        // Scores best first: 0.9 ok, 0.8 ok, 0.7 wrong, 0.6 ok, 0.5 wrong, 0.4 wrong.
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4];
        let right = [true, true, false, true, false, false];
        let preds: Vec<Prediction> = scores.iter().map(|&s| pred(0, s, None)).collect();
        let truth: Vec<Option<usize>> = right.iter().map(|&r| Some(if r { 0 } else { 1 })).collect();
        let c = calibrate_statistic(Statistic::Score, &preds, &truth, 0.75);
        // Cuts: 1/1, 2/2, 2/3, 3/4 = 0.75 (loosest reaching 0.75), 3/5, 3/6.
        assert_eq!(c.threshold, Some(0.6f32 as f64));
        assert_eq!(c.accepted, 4);
        assert_eq!(c.precision, Some(0.75));
        assert!((c.coverage - 4.0 / 6.0).abs() < 1e-12);
        let strict = calibrate_statistic(Statistic::Score, &preds, &truth, 1.0);
        assert_eq!((strict.threshold, strict.accepted), (Some(0.8f32 as f64), 2));
    }

    #[test]
    fn ties_are_accepted_together_and_unreachable_targets_give_no_threshold() {
        let preds = vec![pred(0, 1.0, None), pred(0, 1.0, None), pred(0, 0.5, None)];
        let truth = vec![Some(0), Some(1), Some(0)];
        // The two tied 1.0 scores give 1/2; no cut reaches 0.9.
        let c = calibrate_statistic(Statistic::Score, &preds, &truth, 0.9);
        assert_eq!((c.threshold, c.accepted, c.precision), (None, 0, None));
        let c = calibrate_statistic(Statistic::Score, &preds, &truth, 0.5);
        assert_eq!((c.threshold, c.accepted), (Some(0.5), 3));
    }

    #[test]
    fn distance_wins_when_scores_do_not_separate() {
        // 1-NN: every score is 1; close neighbours are right, far ones wrong.
        let d = [1.0, 2.0, 3.0, 4.0, 8.0, 9.0];
        let right = [true, true, true, true, false, false];
        let preds: Vec<Prediction> = d.iter().map(|&d| pred(0, 1.0, Some(d))).collect();
        let truth: Vec<Option<usize>> = right.iter().map(|&r| if r { Some(0) } else { None }).collect();
        let cal = calibrate(&preds, &truth, 0.95, "dev").unwrap();
        assert_eq!(cal.statistic, Statistic::NearestDistance);
        assert_eq!(cal.threshold, Some(4.0));
        assert_eq!(cal.dev_precision, Some(1.0));
        assert!((cal.dev_coverage - 4.0 / 6.0).abs() < 1e-12);
        assert!((cal.dev_accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(cal.candidates.len(), 2);
        assert_eq!(cal.candidates[0].threshold, None, "score cannot reach 95%");
        assert!(cal.is_confident(&pred(3, 1.0, Some(4.0))));
        assert!(!cal.is_confident(&pred(3, 1.0, Some(4.01))));
        assert!(!cal.is_confident(&pred(3, 1.0, None)));
        assert!(cal.describe().contains("distance <= 4.0"), "{}", cal.describe());
    }

    #[test]
    fn score_is_used_without_neighbours_and_ties_prefer_it() {
        let preds: Vec<Prediction> = [0.99, 0.9, 0.3].iter().map(|&s| pred(1, s, None)).collect();
        let truth = vec![Some(1), Some(1), Some(2)];
        let cal = calibrate(&preds, &truth, 0.95, "dev").unwrap();
        assert_eq!(
            (cal.statistic, cal.threshold, cal.candidates.len()),
            (Statistic::Score, Some(0.9f32 as f64), 1)
        );
        let with_d: Vec<Prediction> = [(0.99, 1.0), (0.9, 2.0), (0.3, 3.0)]
            .iter()
            .map(|&(s, d)| pred(1, s, Some(d)))
            .collect();
        let cal = calibrate(&with_d, &truth, 0.95, "dev").unwrap();
        assert_eq!(cal.statistic, Statistic::Score, "equal coverage: the score wins");
    }

    #[test]
    fn bad_calibration_inputs_are_errors() {
        let p = vec![pred(0, 1.0, None)];
        assert!(calibrate(&p, &[Some(0)], 0.0, "").is_err());
        assert!(calibrate(&p, &[Some(0)], 1.5, "").is_err());
        assert!(calibrate(&p, &[], 0.9, "").is_err());
        assert!(calibrate(&[], &[], 0.9, "").is_err());
    }

    #[test]
    fn calibration_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Calibration::load(dir.path()).unwrap(), None);
        let preds: Vec<Prediction> = [1.0, 2.0, 5.0].iter().map(|&d| pred(0, 1.0, Some(d))).collect();
        let cal = calibrate(&preds, &[Some(0), Some(0), Some(1)], 0.95, "x/dev").unwrap();
        cal.save(dir.path()).unwrap();
        assert_eq!(Calibration::load(dir.path()).unwrap(), Some(cal));
        std::fs::write(dir.path().join(CALIBRATION_FILE), "[]").unwrap();
        let err = Calibration::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("calibration.json") && err.contains("not a calibration"),
            "{err}"
        );
    }

    fn vocab() -> LabelVocab {
        let fams = [
            Family::new("Kinase", "PF00069"),
            Family::new("fn3", "PF00041"),
            Family::new("Ank", "PF00023"),
        ];
        LabelVocab::from_families(fams.iter())
    }

    #[test]
    fn rows_keep_input_order_and_say_when_not_confident() {
        let vocab = vocab();
        let fam_index = |acc: &str| vocab.index_of_accession(acc).unwrap();
        let (kin, fn3) = (fam_index("PF00069"), fam_index("PF00041"));
        let items = vec![
            InputItem::Valid {
                id: "a".into(),
                length: 120,
                note: String::new(),
            },
            InputItem::Invalid {
                id: "b".into(),
                message: "in.fa: record b: invalid residue '*' at position 3".into(),
            },
            InputItem::Valid {
                id: "c".into(),
                length: 90,
                note: "duplicate id (first at line 1)".into(),
            },
        ];
        let preds = vec![
            Prediction {
                class: kin,
                score: 1.0,
                top: vec![(kin, 1.0)],
                nearest: Some((1, 2.5)),
            },
            Prediction {
                class: fn3,
                score: 0.6,
                top: vec![(fn3, 0.6), (kin, 0.3), (2, 0.1)],
                nearest: Some((0, 9.0)),
            },
        ];
        let cal = Calibration {
            statistic: Statistic::NearestDistance,
            threshold: Some(5.0),
            target_precision: 0.95,
            dev_precision: Some(0.96),
            dev_coverage: 0.4,
            dev_n: 10,
            dev_accuracy: 0.5,
            source: String::new(),
            training_digest: String::new(),
            candidates: Vec::new(),
        };
        let train_ids = vec!["t0".to_string(), "t1".to_string()];
        let preds: Vec<Outcome> = preds.into_iter().map(Outcome::predicted).collect();
        let rows = annotations(&items, &preds, &vocab, &train_ids, Some(&cal), 2);
        assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!((rows[0].annotation.as_str(), rows[0].confident), ("Kinase", true));
        assert_eq!(rows[0].nearest_id.as_deref(), Some("t1"));
        assert_eq!(rows[1].annotation, INVALID_RECORD);
        assert_eq!(
            (rows[2].annotation.as_str(), rows[2].family_id.as_str()),
            (NO_CONFIDENT_FAMILY, "fn3")
        );
        assert_eq!(
            rows[2].next_best,
            vec![Alternative {
                family_id: "Kinase".into(),
                accession: "PF00069".into(),
                score: 0.3
            }]
        );
        let summary = summarise(&rows, 1, 0.5);
        assert_eq!(
            (summary.sequences, summary.annotated, summary.abstained, summary.invalid),
            (3, 1, 1, 1)
        );

        let mut tsv = Vec::new();
        write_tsv(&mut tsv, &rows).unwrap();
        let tsv = String::from_utf8(tsv).unwrap();
        let lines: Vec<&str> = tsv.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines.iter().all(|l| l.split('\t').count() == TSV_HEADER.len()));
        assert_eq!(lines[1], "a\tKinase\tKinase\tPF00069\t1.0000\tyes\t\tt1\t2.5000\t120\t");
        assert!(lines[3].starts_with(
            "c\tno confident family\tfn3\tPF00041\t0.6000\tno\tKinase:PF00069:0.3000\tt0\t9.0000\t90\tduplicate"
        ));
        let mut json = Vec::new();
        write_json(&mut json, &rows).unwrap();
        let back: Vec<Annotation> = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, rows);

        // Without a calibration every valid answer is confident.
        let rows = annotations(&items, &preds, &vocab, &train_ids, None, 3);
        assert!(rows[2].confident && rows[2].next_best.len() == 2);

        // A classifier's own abstention wins over the calibration and says why.
        let mut abstaining = preds.clone();
        abstaining[0].abstained = Some("score under the floor".into());
        abstaining[1] = Outcome {
            prediction: None,
            abstained: Some("no searchable residue".into()),
        };
        let rows = annotations(&items, &abstaining, &vocab, &train_ids, None, 3);
        assert_eq!(
            (rows[0].annotation.as_str(), rows[0].confident),
            (NO_CONFIDENT_FAMILY, false)
        );
        assert_eq!(
            (rows[0].family_id.as_str(), rows[0].note.as_str()),
            ("Kinase", "score under the floor")
        );
        assert_eq!(rows[2].annotation, NO_CONFIDENT_FAMILY);
        assert!(rows[2].family_id.is_empty() && rows[2].score.is_none());
        assert_eq!(rows[2].note, "duplicate id (first at line 1); no searchable residue");
    }
}
