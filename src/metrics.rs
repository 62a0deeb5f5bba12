//! Classification metrics with scikit-learn's definitions: error rate, and
//! precision / recall / F1 averaged over classes weighted by support
//! (`average="weighted"`, `zero_division=0`).
//!
//! A missing prediction (`None`: no HMM hit, no BLAST hit, abstention) counts
//! as an error and as a prediction of no class.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Error rate and weighted precision / recall / F1 of one set of predictions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub n: usize,
    pub errors: usize,
    pub error_rate: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Scores predictions against true class labels (any comparable label type).
pub fn score<L: Ord + Clone>(truth: &[L], predicted: &[Option<L>]) -> Metrics {
    assert_eq!(truth.len(), predicted.len(), "one prediction per true label");
    let n = truth.len();
    #[derive(Default)]
    struct Counts {
        support: usize,
        true_positive: usize,
        predicted: usize,
    }
    let mut per_class: BTreeMap<L, Counts> = BTreeMap::new();
    let mut errors = 0;
    for (t, p) in truth.iter().zip(predicted) {
        per_class.entry(t.clone()).or_default().support += 1;
        match p {
            Some(p) => {
                per_class.entry(p.clone()).or_default().predicted += 1;
                if p == t {
                    per_class.get_mut(t).expect("inserted above").true_positive += 1;
                } else {
                    errors += 1;
                }
            }
            None => errors += 1,
        }
    }
    // scikit-learn weights by support, so classes only ever predicted (support 0)
    // contribute nothing but still lower other classes' precision.
    let (mut precision, mut recall, mut f1) = (0.0, 0.0, 0.0);
    for c in per_class.values() {
        if c.support == 0 {
            continue;
        }
        let p = if c.predicted == 0 {
            0.0
        } else {
            c.true_positive as f64 / c.predicted as f64
        };
        let r = c.true_positive as f64 / c.support as f64;
        let f = if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) };
        let w = c.support as f64;
        precision += w * p;
        recall += w * r;
        f1 += w * f;
    }
    let total = n.max(1) as f64;
    Metrics {
        n,
        errors,
        error_rate: errors as f64 / total,
        precision: precision / total,
        recall: recall / total,
        f1: f1 / total,
    }
}

/// Training-family size bins of the paper's few-shot analysis.
pub const SIZE_BINS: [(usize, usize, &str); 5] = [
    (1, 1, "1"),
    (2, 4, "2-4"),
    (5, 9, "5-9"),
    (10, 49, "10-49"),
    (50, usize::MAX, "50+"),
];

/// Error rate among test items whose family has a given number of training examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeBinError {
    /// Bin label (`1`, `2-4`, `5-9`, `10-49`, `50+`, or `0` for families absent from training).
    pub bin: String,
    pub n: usize,
    pub errors: usize,
    pub error_rate: f64,
}

/// Error rate per training-family-size bin; `train_sizes(label)` gives how many
/// training examples the true family of a test item has.
pub fn error_by_family_size<L: Ord + Clone>(
    truth: &[L],
    predicted: &[Option<L>],
    train_size: impl Fn(&L) -> usize,
) -> Vec<SizeBinError> {
    let mut bins: Vec<(String, usize, usize)> = Vec::new();
    let mut absent = (0usize, 0usize);
    let mut counts = vec![(0usize, 0usize); SIZE_BINS.len()];
    for (t, p) in truth.iter().zip(predicted) {
        let wrong = p.as_ref() != Some(t);
        let size = train_size(t);
        let slot = if size == 0 {
            &mut absent
        } else {
            let i = SIZE_BINS
                .iter()
                .position(|(lo, hi, _)| size >= *lo && size <= *hi)
                .expect("bins cover 1..");
            &mut counts[i]
        };
        slot.0 += 1;
        slot.1 += usize::from(wrong);
    }
    if absent.0 > 0 {
        bins.push(("0".to_string(), absent.0, absent.1));
    }
    for ((_, _, label), (n, e)) in SIZE_BINS.iter().zip(counts) {
        bins.push((label.to_string(), n, e));
    }
    bins.into_iter()
        .map(|(bin, n, errors)| SizeBinError {
            bin,
            n,
            errors,
            error_rate: if n == 0 { 0.0 } else { errors as f64 / n as f64 },
        })
        .collect()
}

/// One row of an evaluation report (the JSON format shared by `evaluate`,
/// `baseline` and `compare`). Baselines use classifier `hmm` / `blast` and
/// embedding `none`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRow {
    pub embedding: String,
    pub classifier: String,
    pub n: usize,
    pub errors: usize,
    pub error_rate: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub train_seconds: f64,
    pub predict_seconds: f64,
    #[serde(default)]
    pub by_family_size: Vec<SizeBinError>,
}

impl ReportRow {
    pub fn new(embedding: &str, classifier: &str, metrics: Metrics, train_seconds: f64, predict_seconds: f64) -> Self {
        ReportRow {
            embedding: embedding.to_string(),
            classifier: classifier.to_string(),
            n: metrics.n,
            errors: metrics.errors,
            error_rate: metrics.error_rate,
            precision: metrics.precision,
            recall: metrics.recall,
            f1: metrics.f1,
            train_seconds,
            predict_seconds,
            by_family_size: Vec::new(),
        }
    }

    /// A row scoring `predicted` against `truth` (family accessions), with the error rate by
    /// training-family size from `train_sizes` (accession -> training examples; absent = 0).
    pub fn scored(
        embedding: &str,
        classifier: &str,
        truth: &[String],
        predicted: &[Option<String>],
        train_sizes: &BTreeMap<String, usize>,
        train_seconds: f64,
        predict_seconds: f64,
    ) -> Self {
        let mut row = ReportRow::new(
            embedding,
            classifier,
            score(truth, predicted),
            train_seconds,
            predict_seconds,
        );
        row.by_family_size = error_by_family_size(truth, predicted, |acc| train_sizes.get(acc).copied().unwrap_or(0));
        row
    }

    /// Name in tables and legends: `embedding + classifier`, or the classifier alone
    /// for the baselines (embedding `none`).
    pub fn name(&self) -> String {
        if self.embedding == "none" || self.embedding.is_empty() {
            self.classifier.clone()
        } else {
            format!("{} + {}", self.embedding, self.classifier)
        }
    }

    /// The 95% Wilson interval of [`Self::error_rate`].
    pub fn error_interval(&self) -> (f64, f64) {
        wilson_interval(self.errors, self.n)
    }

    /// The interval as report tables print it: percent with one decimal, `low-high`.
    pub fn error_interval_cell(&self) -> String {
        let (low, high) = self.error_interval();
        format!("{:.1}-{:.1}", 100.0 * low, 100.0 * high)
    }

    /// This row's error for training-family-size bin `label`, when it has that bin.
    pub fn size_bin(&self, label: &str) -> Option<&SizeBinError> {
        self.by_family_size.iter().find(|b| b.bin == label)
    }

    /// The error rate (%) of bin `label` with one decimal, as report tables show it, or `-`
    /// where the bin has no test items.
    pub fn size_bin_percent(&self, label: &str) -> String {
        match self.size_bin(label) {
            Some(b) if b.n > 0 => format!("{:.1}", 100.0 * b.error_rate),
            _ => "-".to_string(),
        }
    }

    /// The scalar fields as the report tables show them, in [`CSV_SCALAR_COLUMNS`]
    /// order (the interval in one cell): error rate in percent with two decimals and its
    /// 95% interval with one, precision / recall / F1 with four, seconds with one.
    pub fn table_cells(&self) -> Vec<String> {
        vec![
            self.embedding.clone(),
            self.classifier.clone(),
            self.n.to_string(),
            self.errors.to_string(),
            format!("{:.2}", 100.0 * self.error_rate),
            self.error_interval_cell(),
            format!("{:.4}", self.precision),
            format!("{:.4}", self.recall),
            format!("{:.4}", self.f1),
            format!("{:.1}", self.train_seconds),
            format!("{:.1}", self.predict_seconds),
        ]
    }

    /// The scalar fields as CSV cells in [`CSV_SCALAR_COLUMNS`] order: rates with six
    /// decimals, seconds with three.
    pub fn csv_scalars(&self) -> Vec<String> {
        let (low, high) = self.error_interval();
        vec![
            self.embedding.clone(),
            self.classifier.clone(),
            self.n.to_string(),
            self.errors.to_string(),
            format!("{:.6}", self.error_rate),
            format!("{:.6}", low),
            format!("{:.6}", high),
            format!("{:.6}", self.precision),
            format!("{:.6}", self.recall),
            format!("{:.6}", self.f1),
            format!("{:.3}", self.train_seconds),
            format!("{:.3}", self.predict_seconds),
        ]
    }
}

/// The two-sided 95% normal quantile.
const Z95: f64 = 1.959_963_984_540_054;

/// The 95% Wilson score interval of a rate of `errors` in `n` (the whole of `[0, 1]` when
/// `n` is 0). Unlike the normal approximation it stays inside `[0, 1]` and is honest near 0.
pub fn wilson_interval(errors: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, errors as f64 / n as f64);
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Header of the scalar columns of every CSV report (`evaluate`, `baseline`, `compare`);
/// the size-bin columns that follow differ per report.
pub const CSV_SCALAR_COLUMNS: [&str; 12] = [
    "embedding",
    "classifier",
    "n",
    "errors",
    "error_rate",
    "error_rate_ci_low",
    "error_rate_ci_high",
    "precision",
    "recall",
    "f1",
    "train_seconds",
    "predict_seconds",
];

/// The size bins a report shows, with their test n (the most any row has): `0`
/// (families absent from training), then the paper's five, each only where some row
/// has test items in it (an empty column or x position says nothing).
pub fn shown_size_bins<'a>(rows: impl IntoIterator<Item = &'a ReportRow>) -> Vec<(String, usize)> {
    let rows: Vec<&ReportRow> = rows.into_iter().collect();
    std::iter::once("0")
        .chain(SIZE_BINS.iter().map(|(_, _, label)| *label))
        .filter_map(|bin| {
            let n = rows
                .iter()
                .filter_map(|r| r.size_bin(bin))
                .map(|b| b.n)
                .max()
                .unwrap_or(0);
            (n > 0).then(|| (bin.to_string(), n))
        })
        .collect()
}

/// The size-bin labels that occur in `rows`, in first-seen order.
pub fn bins_seen(rows: &[ReportRow]) -> Vec<String> {
    let mut bins: Vec<String> = Vec::new();
    for row in rows {
        for b in &row.by_family_size {
            if !bins.contains(&b.bin) {
                bins.push(b.bin.clone());
            }
        }
    }
    bins
}

/// The lowest confidence cut whose answers (`(confidence, right)`) at or above it
/// reach `precision`; only cuts between distinct confidences. `None` when no cut does.
pub fn precision_cut(answers: &[(f64, bool)], precision: f64) -> Option<f64> {
    let mut sorted: Vec<(f64, bool)> = answers.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut correct = 0usize;
    let mut cut = None;
    for (i, &(confidence, right)) in sorted.iter().enumerate() {
        correct += usize::from(right);
        let last_of_tie = sorted.get(i + 1).is_none_or(|n| n.0 < confidence);
        if last_of_tie && correct as f64 >= precision * (i + 1) as f64 {
            cut = Some(confidence);
        }
    }
    cut
}

/// Coverage (share of all queries answered) and precision of the answers at or above `cut`.
pub fn coverage_at(answers: &[(f64, bool)], cut: f64) -> (f64, f64) {
    let kept: Vec<bool> = answers.iter().filter(|a| a.0 >= cut).map(|a| a.1).collect();
    let coverage = kept.len() as f64 / answers.len().max(1) as f64;
    let precision = kept.iter().filter(|&&r| r).count() as f64 / kept.len().max(1) as f64;
    (coverage, precision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263 -> 0.2553-0.3662.
        let (low, high) = wilson_interval(81, 263);
        assert!(
            (low - 0.2553).abs() < 5e-4 && (high - 0.3662).abs() < 5e-4,
            "{low} {high}"
        );
        // 0 of 10 -> 0 to 0.2775 (same table).
        let (low, high) = wilson_interval(0, 10);
        assert_eq!(low, 0.0);
        assert!((high - 0.2775).abs() < 5e-4, "{high}");
        assert_eq!(wilson_interval(0, 0), (0.0, 1.0));
    }

    #[test]
    fn matches_hand_computed_weighted_scores() {
        // truth a a b c; pred a b b (none)
        let truth = ["a", "a", "b", "c"];
        let pred = [Some("a"), Some("b"), Some("b"), None];
        let m = score(&truth, &pred);
        assert_eq!(m.errors, 2);
        // a: p=1 r=.5 f=2/3 (w2); b: p=.5 r=1 f=2/3 (w1); c: 0 (w1)
        assert!((m.precision - (2.0 * 1.0 + 0.5) / 4.0).abs() < 1e-12);
        assert!((m.recall - (2.0 * 0.5 + 1.0) / 4.0).abs() < 1e-12);
        assert!((m.f1 - (3.0 * 2.0 / 3.0) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn precision_cut_and_coverage() {
        let answers = [(0.9, true), (0.8, true), (0.7, false), (0.6, true), (0.5, false)];
        assert_eq!(precision_cut(&answers, 1.0), Some(0.8));
        assert_eq!(precision_cut(&answers, 0.75), Some(0.6));
        assert_eq!(precision_cut(&[(0.5, false)], 0.9), None);
        let (coverage, precision) = coverage_at(&answers, 0.6);
        assert!((coverage - 0.8).abs() < 1e-12 && (precision - 0.75).abs() < 1e-12);
    }
}
