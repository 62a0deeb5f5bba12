//! Learned combinations of per-family evidence, fit on `tune_split`:
//! `residue-knn-tuned` (transfer learning alone: `residue-knn`'s vote,
//! alignment and family-size features) and `hybrid` (the same plus the
//! profile-HMM baseline's bit scores and E-values).
//!
//! Why a learned ranker instead of a fixed weighted sum: the fixed
//! `residue-knn` score means different things for families of different size
//! (a family with hundreds of training domains collects chance votes that a
//! two-member family never gets), and the HMM's bit scores and E-values live
//! on scales unrelated to cosine votes. Both are fixed by a conditional logit
//! model over each query's candidate families (the union of `residue-knn`'s
//! and the HMM's best few): `P(family | query) = softmax(w . x)`, where `x`
//! holds the evidence features of [`features`] (with interactions with the
//! log training-family size, which is what lets a large family need more
//! evidence than a small one). It is fit by Newton's method with an L2
//! penalty on standardised features: convex, deterministic, no seed needed.
//!
//! The winning candidate's softmax probability is the confidence; the
//! abstention cut for a target precision is fit on out-of-fold tune
//! probabilities (folds by true family), so it is not fit on the very
//! answers the model was trained on. Nothing here ever sees a test part.

pub mod run;
pub mod saved;

use serde::{Deserialize, Serialize};

/// Classifier names.
pub const RESIDUE_TUNED: &str = "residue-knn-tuned";
pub const HYBRID: &str = "hybrid";

/// Best few families taken from each source as a query's candidates.
pub const CANDIDATES_PER_SOURCE: usize = 5;

/// Which evidence a model weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureSet {
    /// `residue-knn` evidence only (transfer learning alone).
    Residue,
    /// `residue-knn` and profile-HMM evidence.
    Hybrid,
}

impl FeatureSet {
    pub fn name(self) -> &'static str {
        match self {
            FeatureSet::Residue => RESIDUE_TUNED,
            FeatureSet::Hybrid => HYBRID,
        }
    }

    /// Names of the features, in the order of [`features`].
    pub fn feature_names(self) -> Vec<&'static str> {
        let mut names = vec![
            "residue_present",
            "residue_score",
            "residue_vote",
            "residue_alignment",
            "residue_second_alignment",
            "residue_log_aligned_members",
            "residue_margin",
            "residue_top",
            "log_train_size",
            "residue_score_x_log_size",
            "residue_alignment_x_log_size",
        ];
        for k in self.enhanced_variants() {
            names.extend(ENHANCED_NAMES[*k]);
        }
        if self == FeatureSet::Hybrid {
            names.extend([
                "hmm_present",
                "hmm_bits",
                "hmm_log_evalue",
                "hmm_margin",
                "hmm_top",
                "hmm_bits_x_log_size",
            ]);
        }
        names
    }
}

impl FeatureSet {
    /// Which signal-enhanced alignments ([`crate::residue::align::ENHANCED_VARIANTS`])
    /// the set weighs: chosen on out-of-fold tune and dev errors (docs/learned.md).
    fn enhanced_variants(self) -> &'static [usize] {
        match self {
            FeatureSet::Residue => &[1],
            FeatureSet::Hybrid => &[0, 1],
        }
    }
}

/// Feature names of each enhanced alignment variant: score, margin, score x log size.
const ENHANCED_NAMES: [[&str; 3]; 2] = [
    ["enhanced1_alignment", "enhanced1_margin", "enhanced1_x_log_size"],
    ["enhanced2_alignment", "enhanced2_margin", "enhanced2_x_log_size"],
];

/// `residue-knn`'s evidence for one candidate family.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResidueEvidence {
    /// The fixed-weight `residue-knn` score.
    pub score: f32,
    pub vote: f32,
    pub alignment: f32,
    pub second_alignment: f32,
    pub aligned_members: usize,
    /// Best alignment on the signal-enhanced matrix (per enhanced variant).
    #[serde(default)]
    pub enhanced_alignment: [f32; 2],
}

/// The profile HMM's evidence for one candidate family.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HmmEvidence {
    /// Full-sequence bit score.
    pub bits: f64,
    /// E-value per comparison (HMMER's E-value over the number of sequences searched).
    pub evalue: f64,
}

/// One candidate family of a query, with what each source says about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Family accession.
    pub accession: String,
    pub residue: Option<ResidueEvidence>,
    pub hmm: Option<HmmEvidence>,
    /// Training domains of the family.
    pub train_size: usize,
}

/// A query's candidates (and its true family, where known).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryEvidence {
    pub id: String,
    pub truth: Option<String>,
    pub candidates: Vec<Candidate>,
}

impl QueryEvidence {
    /// The candidates this feature set considers (for `Residue`, those `residue-knn` proposed).
    fn considered(&self, set: FeatureSet) -> Vec<&Candidate> {
        self.candidates
            .iter()
            .filter(|c| set == FeatureSet::Hybrid || c.residue.is_some())
            .collect()
    }
}

/// Feature rows of `candidates` (one query's), in the order of [`FeatureSet::feature_names`].
pub fn features(set: FeatureSet, candidates: &[&Candidate]) -> Vec<Vec<f64>> {
    let residue_score = |c: &Candidate| c.residue.map_or(0.0, |r| r.score as f64);
    let hmm_bits = |c: &Candidate| c.hmm.map_or(0.0, |h| h.bits / 100.0);
    // Margins against the best *other* candidate: positive only for the leader.
    let margin = |i: usize, value: &dyn Fn(&Candidate) -> f64, present: &dyn Fn(&Candidate) -> bool| {
        if !present(candidates[i]) {
            return 0.0;
        }
        let other = candidates
            .iter()
            .enumerate()
            .filter(|&(j, c)| j != i && present(c))
            .map(|(_, c)| value(c))
            .fold(f64::NEG_INFINITY, f64::max);
        let own = value(candidates[i]);
        if other.is_finite() {
            own - other
        } else {
            own
        }
    };
    let best_residue = candidates
        .iter()
        .map(|c| residue_score(c))
        .fold(f64::NEG_INFINITY, f64::max);
    let best_hmm = candidates
        .iter()
        .filter(|c| c.hmm.is_some())
        .map(|c| hmm_bits(c))
        .fold(f64::NEG_INFINITY, f64::max);
    (0..candidates.len())
        .map(|i| {
            let c = candidates[i];
            let log_size = (1.0 + c.train_size as f64).ln();
            let r = c.residue;
            let score = residue_score(c);
            let alignment = r.map_or(0.0, |r| r.alignment as f64);
            let mut row = vec![
                f64::from(u8::from(r.is_some())),
                score,
                r.map_or(0.0, |r| r.vote as f64),
                alignment,
                r.map_or(0.0, |r| r.second_alignment as f64),
                r.map_or(0.0, |r| (1.0 + r.aligned_members as f64).ln()),
                margin(i, &residue_score, &|c| c.residue.is_some()),
                f64::from(u8::from(r.is_some() && score >= best_residue)),
                log_size,
                score * log_size,
                alignment * log_size,
            ];
            for &k in set.enhanced_variants() {
                let enhanced = |c: &Candidate| c.residue.map_or(0.0, |r| r.enhanced_alignment[k] as f64);
                let value = enhanced(c);
                row.extend([value, margin(i, &enhanced, &|c| c.residue.is_some()), value * log_size]);
            }
            if set == FeatureSet::Hybrid {
                let bits = hmm_bits(c);
                row.extend([
                    f64::from(u8::from(c.hmm.is_some())),
                    bits,
                    // -log10 E, clipped: beyond 1e-30 every hit is certain, above 10 none is.
                    c.hmm
                        .map_or(0.0, |h| (-h.evalue.max(1e-300).log10()).clamp(-1.0, 30.0) / 10.0),
                    margin(i, &hmm_bits, &|c| c.hmm.is_some()),
                    f64::from(u8::from(c.hmm.is_some() && bits >= best_hmm)),
                    bits * log_size,
                ]);
            }
            row
        })
        .collect()
}

/// Errors of fitting or using a model.
#[derive(Debug, thiserror::Error)]
pub enum FusionError {
    #[error("cannot fit {model}: {message}")]
    Fit { model: String, message: String },
}

/// A fitted conditional logit over candidate families.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusionModel {
    pub set: FeatureSet,
    pub feature_names: Vec<String>,
    /// Standardisation of each feature (over the training candidates).
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// Weights on the standardised features.
    pub weights: Vec<f64>,
    /// L2 penalty the weights were fit with.
    pub l2: f64,
    /// Queries the fit used (their true family was a candidate).
    pub fit_queries: usize,
}

/// One query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedPrediction {
    /// Winning family, `None` when the query had no candidate.
    pub family: Option<String>,
    /// Its softmax probability among the candidates.
    pub confidence: f64,
}

impl FusionModel {
    /// Fits the model on labelled queries. `l2` must be positive (it keeps the
    /// Newton system well posed when a feature separates the data).
    pub fn fit(set: FeatureSet, queries: &[QueryEvidence], l2: f64) -> Result<FusionModel, FusionError> {
        let fail = |message: String| FusionError::Fit {
            model: set.name().to_string(),
            message,
        };
        if !(l2 > 0.0 && l2.is_finite()) {
            return Err(fail(format!("the L2 penalty must be positive and finite, not {l2}")));
        }
        let names = set.feature_names();
        let d = names.len();
        let mut groups = labelled_groups(set, queries);
        if groups.len() < 2 * d {
            return Err(fail(format!(
                "only {} labelled queries have their true family and a rival among the candidates; at least {} are needed",
                groups.len(),
                2 * d
            )));
        }
        let rows = groups.iter().flat_map(|(x, _)| x.iter());
        let n_rows = groups.iter().map(|(x, _)| x.len()).sum::<usize>() as f64;
        let mut mean = vec![0.0; d];
        for row in rows.clone() {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v / n_rows;
            }
        }
        let mut scale = vec![0.0; d];
        for row in rows {
            for ((s, v), m) in scale.iter_mut().zip(row).zip(&mean) {
                *s += (v - m) * (v - m) / n_rows;
            }
        }
        for s in &mut scale {
            *s = if s.sqrt() > 1e-9 { s.sqrt() } else { 1.0 };
        }
        for (x, _) in &mut groups {
            for row in x.iter_mut() {
                for j in 0..d {
                    row[j] = (row[j] - mean[j]) / scale[j];
                }
            }
        }
        let loss = |w: &[f64]| penalised_loss(&groups, w, l2);
        let mut w = vec![0.0; d];
        let mut current = loss(&w);
        for _ in 0..100 {
            let mut grad: Vec<f64> = w.iter().map(|v| l2 * v).collect();
            let mut hess = vec![vec![0.0; d]; d];
            for (i, row) in hess.iter_mut().enumerate() {
                row[i] = l2;
            }
            for (x, t) in &groups {
                let s: Vec<f64> = x.iter().map(|row| dot(row, &w)).collect();
                let lse = log_sum_exp(&s);
                let p: Vec<f64> = s.iter().map(|v| (v - lse).exp()).collect();
                let mut ex = vec![0.0; d];
                for (row, pc) in x.iter().zip(&p) {
                    for j in 0..d {
                        ex[j] += pc * row[j];
                    }
                }
                for j in 0..d {
                    grad[j] += ex[j] - x[*t][j];
                }
                for (row, pc) in x.iter().zip(&p) {
                    for a in 0..d {
                        let da = row[a] - ex[a];
                        for b in 0..d {
                            hess[a][b] += pc * da * (row[b] - ex[b]);
                        }
                    }
                }
            }
            let step = solve(hess, &grad).ok_or_else(|| fail("singular Newton system".into()))?;
            // Damped Newton: halve the step until the loss falls.
            let mut t = 1.0;
            let mut improved = false;
            while t > 1e-8 {
                let trial: Vec<f64> = w.iter().zip(&step).map(|(wi, si)| wi - t * si).collect();
                let l = loss(&trial);
                if l <= current {
                    improved = current - l > 1e-10 * current.abs().max(1.0);
                    w = trial;
                    current = l;
                    break;
                }
                t *= 0.5;
            }
            if !improved {
                break;
            }
        }
        Ok(FusionModel {
            set,
            feature_names: names.iter().map(|s| s.to_string()).collect(),
            mean,
            scale,
            weights: w,
            l2,
            fit_queries: groups.len(),
        })
    }

    /// The most probable candidate of `query` and its probability.
    pub fn predict(&self, query: &QueryEvidence) -> FusedPrediction {
        match self.probabilities(query).into_iter().next() {
            Some((family, confidence)) => FusedPrediction {
                family: Some(family),
                confidence,
            },
            None => FusedPrediction {
                family: None,
                confidence: 0.0,
            },
        }
    }

    /// Every candidate of `query` with its probability, most probable first (ties keep
    /// the candidates' order: residue-knn's, then the HMM's).
    pub fn probabilities(&self, query: &QueryEvidence) -> Vec<(String, f64)> {
        let considered = query.considered(self.set);
        if considered.is_empty() {
            return Vec::new();
        }
        let s: Vec<f64> = features(self.set, &considered)
            .iter()
            .map(|row| {
                row.iter()
                    .zip(&self.mean)
                    .zip(&self.scale)
                    .zip(&self.weights)
                    .map(|(((v, m), sc), w)| (v - m) / sc * w)
                    .sum()
            })
            .collect();
        let lse = log_sum_exp(&s);
        let mut ranked: Vec<(String, f64)> = considered
            .iter()
            .zip(&s)
            .map(|(c, v)| (c.accession.clone(), (v - lse).exp()))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1)); // stable: ties keep their order
        ranked
    }
}

/// Out-of-fold predictions of `queries`: each fold (queries grouped by true
/// family, `folds` groups) is predicted by a model fit on the others.
pub fn cross_fit(
    set: FeatureSet,
    queries: &[QueryEvidence],
    l2: f64,
    folds: usize,
) -> Result<Vec<FusedPrediction>, FusionError> {
    let fold_of = |q: &QueryEvidence| {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(q.truth.as_deref().unwrap_or(&q.id).as_bytes());
        (u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) % folds as u64) as usize
    };
    let mut out = vec![
        FusedPrediction {
            family: None,
            confidence: 0.0
        };
        queries.len()
    ];
    for fold in 0..folds {
        let train: Vec<QueryEvidence> = queries.iter().filter(|q| fold_of(q) != fold).cloned().collect();
        let model = FusionModel::fit(set, &train, l2)?;
        for (i, q) in queries.iter().enumerate() {
            if fold_of(q) == fold {
                out[i] = model.predict(q);
            }
        }
    }
    Ok(out)
}

/// Each usable labelled query: its candidates' feature rows and the index of its true family.
/// Queries whose true family is not a candidate, or that have a single candidate, say
/// nothing about the weights.
fn labelled_groups(set: FeatureSet, queries: &[QueryEvidence]) -> Vec<(Vec<Vec<f64>>, usize)> {
    let mut groups = Vec::new();
    for q in queries {
        let considered = q.considered(set);
        let Some(truth) = q.truth.as_deref() else { continue };
        let Some(t) = considered.iter().position(|c| c.accession == truth) else {
            continue;
        };
        if considered.len() >= 2 {
            groups.push((features(set, &considered), t));
        }
    }
    groups
}

/// Negative log-likelihood of the true families plus `l2 / 2 * |w|^2`.
fn penalised_loss(groups: &[(Vec<Vec<f64>>, usize)], w: &[f64], l2: f64) -> f64 {
    let mut total = 0.5 * l2 * w.iter().map(|v| v * v).sum::<f64>();
    for (x, t) in groups {
        let s: Vec<f64> = x.iter().map(|row| dot(row, w)).collect();
        total += log_sum_exp(&s) - s[*t];
    }
    total
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn log_sum_exp(s: &[f64]) -> f64 {
    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + s.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// Solves `a x = b` (symmetric positive definite `a`) by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut x = b.to_vec();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        x.swap(col, pivot);
        let (upper, lower) = a.split_at_mut(col + 1);
        let pivot_row = &upper[col];
        for (offset, row) in lower.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (v, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *v -= f * p;
            }
            x[col + 1 + offset] -= f * x[col];
        }
    }
    for col in (0..n).rev() {
        let tail: f64 = (col + 1..n).map(|k| a[col][k] * x[k]).sum();
        x[col] = (x[col] - tail) / a[col][col];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(acc: &str, score: f32, bits: Option<f64>, size: usize) -> Candidate {
        Candidate {
            accession: acc.into(),
            residue: Some(ResidueEvidence {
                score,
                vote: score,
                alignment: score,
                second_alignment: 0.0,
                aligned_members: 1,
                enhanced_alignment: [0.0; 2],
            }),
            hmm: bits.map(|b| HmmEvidence {
                bits: b,
                evalue: 10f64.powf(-b / 10.0),
            }),
            train_size: size,
        }
    }

    /// Queries where the true family is the HMM's best but residue-knn prefers a large
    /// family: the hybrid must learn to follow the HMM, the residue model to discount size.
    fn synthetic(n: usize) -> Vec<QueryEvidence> {
        (0..n)
            .map(|i| {
                let truth = format!("PF{i:05}");
                let noise = (i % 7) as f32 * 0.01;
                QueryEvidence {
                    id: format!("q{i}"),
                    truth: Some(truth.clone()),
                    candidates: vec![
                        cand("PFBIG", 0.5 + noise, Some(20.0), 300),
                        cand(&truth, 0.45, Some(60.0 + (i % 5) as f64), 3),
                    ],
                }
            })
            .collect()
    }

    #[test]
    fn hybrid_learns_to_follow_the_stronger_evidence() {
        let queries = synthetic(200);
        let model = FusionModel::fit(FeatureSet::Hybrid, &queries, 1.0).unwrap();
        let right = queries.iter().filter(|q| model.predict(q).family == q.truth).count();
        assert_eq!(right, 200);
        let p = model.predict(&queries[0]);
        assert!(p.confidence > 0.5 && p.confidence <= 1.0, "{p:?}");
    }

    #[test]
    fn residue_model_discounts_large_families() {
        let queries = synthetic(200);
        let model = FusionModel::fit(FeatureSet::Residue, &queries, 1.0).unwrap();
        let right = queries.iter().filter(|q| model.predict(q).family == q.truth).count();
        // The fixed score is wrong on every query; the size feature fixes it.
        assert_eq!(right, 200);
    }

    #[test]
    fn fit_refuses_too_few_queries_and_bad_penalties() {
        let queries = synthetic(5);
        let err = FusionModel::fit(FeatureSet::Hybrid, &queries, 1.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("only 5 labelled queries"), "{err}");
        assert!(FusionModel::fit(FeatureSet::Hybrid, &synthetic(100), 0.0).is_err());
    }

    #[test]
    fn newton_reaches_the_penalised_optimum() {
        // No small step along any weight lowers the loss the fit minimised.
        let mut queries = synthetic(100);
        for (i, q) in queries.iter_mut().enumerate() {
            if i % 3 == 0 {
                q.candidates.swap(0, 1); // some queries where residue-knn leads with the truth
                q.candidates[0].residue.as_mut().unwrap().score = 0.7;
            }
        }
        let m = FusionModel::fit(FeatureSet::Residue, &queries, 2.0).unwrap();
        let mut groups = labelled_groups(FeatureSet::Residue, &queries);
        for (x, _) in &mut groups {
            for row in x.iter_mut() {
                for ((v, mean), scale) in row.iter_mut().zip(&m.mean).zip(&m.scale) {
                    *v = (*v - mean) / scale;
                }
            }
        }
        let at_optimum = penalised_loss(&groups, &m.weights, 2.0);
        for j in 0..m.weights.len() {
            for h in [-1e-3, 1e-3] {
                let mut w = m.weights.clone();
                w[j] += h;
                assert!(
                    penalised_loss(&groups, &w, 2.0) >= at_optimum - 1e-9,
                    "weight {j} step {h}"
                );
            }
        }
        assert_eq!(m.fit_queries, 100);
    }

    #[test]
    fn cross_fit_predicts_every_query_out_of_fold() {
        let queries = synthetic(300);
        let oof = cross_fit(FeatureSet::Hybrid, &queries, 1.0, 5).unwrap();
        assert_eq!(oof.len(), 300);
        assert!(oof.iter().all(|p| p.family.is_some()));
    }

    #[test]
    fn queries_without_candidates_get_no_family() {
        let model = FusionModel::fit(FeatureSet::Hybrid, &synthetic(100), 1.0).unwrap();
        let empty = QueryEvidence {
            id: "q".into(),
            truth: None,
            candidates: Vec::new(),
        };
        assert_eq!(model.predict(&empty).family, None);
    }

    #[test]
    fn solve_inverts_a_small_system() {
        let a = vec![vec![4.0, 1.0], vec![1.0, 3.0]];
        let x = solve(a, &[1.0, 2.0]).unwrap();
        assert!((4.0 * x[0] + x[1] - 1.0).abs() < 1e-12 && (x[0] + 3.0 * x[1] - 2.0).abs() < 1e-12);
    }
}
