//! How sure a report may be about its ranking: the 95% Wilson interval of every
//! error rate, McNemar's exact test between the best row and the runner-up on the
//! test items they share, and the headline those allow. A headline names a winner
//! only when the test (or, without predictions to pair, non-overlapping intervals)
//! says the difference is more than the luck of which domains were drawn.

use std::collections::HashMap;

use super::{PredictionRow, ReportRow};

/// Significance level of the headline's verdict.
pub const ALPHA: f64 = 0.05;

/// McNemar's exact test of two methods on the same test items: only the items one
/// gets right and the other wrong say which is better.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct McNemar {
    /// Items both methods were scored on.
    pub paired: usize,
    /// Right for the first method only.
    pub first_only: usize,
    /// Right for the second method only.
    pub second_only: usize,
    /// Two-sided exact binomial p-value of `first_only` vs `second_only` (1 when both are 0).
    pub p_value: f64,
}

impl McNemar {
    pub fn from_counts(paired: usize, first_only: usize, second_only: usize) -> McNemar {
        McNemar {
            paired,
            first_only,
            second_only,
            p_value: exact_two_sided(first_only, second_only),
        }
    }

    /// Pairs two predictions files by query id. `Err` says why they cannot be paired
    /// (the two were not scored on the same items).
    pub fn paired(first: &[PredictionRow], second: &[PredictionRow]) -> Result<McNemar, String> {
        if first.len() != second.len() {
            return Err(format!("{} vs {} predictions", first.len(), second.len()));
        }
        let second_right: HashMap<&str, bool> = second.iter().map(|p| (p.id.as_str(), is_right(p))).collect();
        if second_right.len() != second.len() {
            return Err("repeated query ids".to_string());
        }
        let (mut first_only, mut second_only) = (0, 0);
        for p in first {
            let Some(&other) = second_right.get(p.id.as_str()) else {
                return Err(format!("query {} is in one predictions file only", p.id));
            };
            match (is_right(p), other) {
                (true, false) => first_only += 1,
                (false, true) => second_only += 1,
                _ => {}
            }
        }
        Ok(McNemar::from_counts(first.len(), first_only, second_only))
    }
}

/// Whether a prediction names the true family (a missing prediction is wrong), by
/// accession where both sides have one, as the report's error counts are.
pub fn is_right(p: &PredictionRow) -> bool {
    if p.predicted.is_empty() && p.predicted_accession.is_empty() {
        return false;
    }
    if !p.predicted_accession.is_empty() && !p.true_accession.is_empty() {
        p.predicted_accession == p.true_accession
    } else {
        p.predicted == p.true_family
    }
}

/// `P(X <= min(b, c)) * 2` for `X ~ Binomial(b + c, 1/2)`, capped at 1; summed in log
/// space so that thousands of discordant items do not underflow.
fn exact_two_sided(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let mut log_term = -(n as f64) * std::f64::consts::LN_2; // C(n, 0) / 2^n
    let mut tail = 0.0;
    for i in 0..=k {
        tail += log_term.exp();
        log_term += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    (2.0 * tail).min(1.0)
}

/// The report's one-paragraph verdict on its ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    pub best: ReportRow,
    pub runner_up: Option<ReportRow>,
    /// The paired test, when both rows' predictions could be paired.
    pub test: Option<McNemar>,
    /// Why there is no paired test, when there is a runner-up but no test.
    pub untested_because: Option<String>,
}

impl Headline {
    /// The verdict on `rows` (any order); `predictions` gives a row's per-query
    /// predictions where they were kept. `None` when there are no rows.
    pub fn of(rows: &[ReportRow], predictions: impl Fn(&ReportRow) -> Option<Vec<PredictionRow>>) -> Option<Headline> {
        let ranked = super::ranked(rows);
        let best = ranked.first()?.clone();
        let runner_up = ranked.get(1).cloned();
        let (mut test, mut untested_because) = (None, None);
        if let Some(second) = &runner_up {
            match paired_test(&best, second, &predictions) {
                Ok(t) => test = Some(t),
                Err(why) => untested_because = Some(why),
            }
        }
        Some(Headline {
            best,
            runner_up,
            test,
            untested_because,
        })
    }

    /// Whether the best row is better than the runner-up beyond chance: by the paired
    /// test where there is one, else by intervals that do not overlap. `None` with a single row.
    pub fn clear_winner(&self) -> Option<bool> {
        let second = self.runner_up.as_ref()?;
        Some(match &self.test {
            Some(t) => t.first_only > t.second_only && t.p_value < ALPHA,
            None => self.best.error_interval().1 < second.error_interval().0,
        })
    }

    /// The paragraph, with `strong` wrapping the names (`**` for Markdown, `<b>` for HTML).
    fn text(&self, strong: impl Fn(&str) -> String) -> String {
        let mut out = format!(
            "Lowest error: {}, {}.",
            strong(&self.best.name()),
            rate_with_interval(&self.best)
        );
        let Some(second) = &self.runner_up else {
            out.push_str(" Only one method, so no comparison.");
            return out;
        };
        let clear = self.clear_winner() == Some(true);
        out.push_str(&format!(
            " Runner-up: {}, {}.",
            strong(&second.name()),
            rate_with_interval(second)
        ));
        match &self.test {
            Some(t) => out.push_str(&format!(
                " McNemar's exact test on the {} test items both were scored on: {} right only for the first, {} only \
                 for the second, p = {}.",
                t.paired,
                t.first_only,
                t.second_only,
                format_p(t.p_value)
            )),
            None => out.push_str(&format!(
                " No paired test ({}); the 95% intervals {}.",
                self.untested_because.as_deref().unwrap_or("no predictions"),
                if clear { "do not overlap" } else { "overlap" }
            )),
        }
        out.push_str(if clear {
            " The lowest error is a clear winner at the 5% level."
        } else {
            " No clear winner: the difference is within what the choice of test domains alone could give."
        });
        out
    }

    pub fn markdown(&self) -> String {
        self.text(|name| format!("**{name}**"))
    }

    /// HTML (names escaped by `escape`).
    pub fn html(&self, escape: impl Fn(&str) -> String) -> String {
        self.text(|name| format!("<b>{}</b>", escape(name)))
    }
}

fn paired_test(
    best: &ReportRow,
    second: &ReportRow,
    predictions: &impl Fn(&ReportRow) -> Option<Vec<PredictionRow>>,
) -> Result<McNemar, String> {
    let kept = |row: &ReportRow| -> Result<Vec<PredictionRow>, String> {
        let rows = predictions(row).ok_or_else(|| format!("no predictions kept for {}", row.name()))?;
        let wrong = rows.iter().filter(|p| !is_right(p)).count();
        if rows.len() != row.n || wrong != row.errors {
            // A predictions file from another run than the row: pairing it would test the wrong thing.
            return Err(format!(
                "the predictions of {} ({wrong} wrong of {}) are not those of its row ({} of {})",
                row.name(),
                rows.len(),
                row.errors,
                row.n
            ));
        }
        Ok(rows)
    };
    McNemar::paired(&kept(best)?, &kept(second)?)
        .map_err(|why| format!("{} and {} cannot be paired: {why}", best.name(), second.name()))
}

/// `"18.83% errors (95% CI 16.77-21.08%, 235 of 1248)"`.
pub fn rate_with_interval(row: &ReportRow) -> String {
    let (low, high) = row.error_interval();
    format!(
        "{:.2}% errors (95% CI {:.2}-{:.2}%, {} of {})",
        100.0 * row.error_rate,
        100.0 * low,
        100.0 * high,
        row.errors,
        row.n
    )
}

fn format_p(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn prediction(id: usize, right: bool) -> PredictionRow {
        PredictionRow {
            id: format!("q{id}"),
            true_family: "A".into(),
            true_accession: "PF00001.1".into(),
            predicted: if right { "A" } else { "B" }.into(),
            predicted_accession: if right { "PF00001.1" } else { "PF00002.1" }.into(),
            score: 1.0,
            nearest_id: String::new(),
            nearest_distance: None,
        }
    }

    fn row(classifier: &str, errors: usize, n: usize) -> ReportRow {
        let metrics = Metrics {
            n,
            errors,
            error_rate: errors as f64 / n as f64,
            precision: 0.0,
            recall: 0.0,
            f1: 0.0,
        };
        ReportRow::new("none", classifier, metrics, 0.0, 0.0)
    }

    #[test]
    fn exact_mcnemar_matches_the_binomial_tail() {
        // b = 1, c = 9: 2 * (1 + 10) / 1024.
        assert!((exact_two_sided(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(exact_two_sided(5, 5), 1.0);
        assert_eq!(exact_two_sided(0, 0), 1.0);
        // Thousands of discordant pairs neither underflow nor exceed 1.
        let p = exact_two_sided(2000, 2100);
        assert!(p > 0.1 && p < 0.2, "{p}");
        assert!(exact_two_sided(100, 300) < 1e-20);
    }

    #[test]
    fn pairs_by_id_and_refuses_other_items() {
        let first: Vec<_> = (0..10).map(|i| prediction(i, i < 8)).collect();
        let mut second: Vec<_> = (0..10).map(|i| prediction(i, i >= 5)).collect();
        second.reverse();
        let t = McNemar::paired(&first, &second).unwrap();
        assert_eq!((t.paired, t.first_only, t.second_only), (10, 5, 2));
        second[0].id = "elsewhere".into();
        assert!(McNemar::paired(&first, &second).is_err());
        assert!(McNemar::paired(&first, &second[1..]).is_err());
    }

    #[test]
    fn a_one_domain_lead_is_no_winner_and_a_large_one_is() {
        // The case that prompted this: 246 vs 247 errors of 1248.
        let rows = [row("residue-knn", 246, 1248), row("hmm", 247, 1248)];
        let kept = |r: &ReportRow| {
            let wrong = r.errors;
            Some((0..1248).map(|i| prediction(i, i >= wrong)).collect::<Vec<_>>())
        };
        let headline = Headline::of(&rows, kept).unwrap();
        assert_eq!(headline.best.name(), "residue-knn");
        assert_eq!(headline.clear_winner(), Some(false));
        let text = headline.markdown();
        assert!(text.contains("No clear winner"), "{text}");
        assert!(text.contains("p = 1.0000"), "{text}");

        let rows = [row("hybrid", 185, 1248), row("hmm", 247, 1248)];
        let headline = Headline::of(&rows, kept).unwrap();
        assert_eq!(headline.clear_winner(), Some(true));
        assert!(headline.markdown().contains("clear winner at the 5% level"));
    }

    #[test]
    fn without_predictions_it_falls_back_to_the_intervals_and_says_so() {
        let close = [row("a", 246, 1248), row("b", 247, 1248)];
        let headline = Headline::of(&close, |_| None).unwrap();
        assert_eq!(headline.clear_winner(), Some(false));
        assert!(headline
            .markdown()
            .contains("No paired test (no predictions kept for a)"));
        let far = [row("a", 100, 1248), row("b", 300, 1248)];
        assert_eq!(Headline::of(&far, |_| None).unwrap().clear_winner(), Some(true));
        // Predictions of another run than the row are not paired.
        let stale = |_: &ReportRow| Some((0..1248).map(|i| prediction(i, i >= 10)).collect::<Vec<_>>());
        let headline = Headline::of(&close, stale).unwrap();
        assert!(headline.test.is_none());
        assert!(headline.untested_because.unwrap().contains("are not those of its row"));
        let single = Headline::of(&close[..1], |_| None).unwrap();
        assert_eq!(single.clear_winner(), None);
        assert!(single.markdown().contains("Only one method"));
        assert!(Headline::of(&[], |_| None).is_none());
    }
}
