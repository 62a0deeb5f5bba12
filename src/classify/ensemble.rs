//! Ensembles with majority vote, as the paper defines them.
//!
//! - [`KnnEnsemble`]: the training set is shuffled with a seeded RNG and cut into
//!   `members` disjoint parts of (nearly) equal size; each part is a kNN
//!   classifier (rows kept in their original order, so neighbour ties still go to
//!   the lower training index).
//! - [`MlpEnsemble`]: either `members` MLPs on disjoint parts ([`EnsembleMode::Disjoint`],
//!   the paper's Table 1) or `members` MLPs on all the training data that differ
//!   only in their seed ([`EnsembleMode::Full`], Table 2). Member `i` uses seed
//!   `seed + i`.
//!
//! **Vote and ties**: each member predicts one class; the class with most votes
//! wins. kNN ensembles break ties by the nearest neighbour among the members
//! that voted for each tied class; MLP ensembles by the higher mean member
//! probability, then the lower class index. The score of a kNN ensemble is the
//! vote share; that of an MLP ensemble is the mean member probability of the
//! predicted class (a finer confidence than 11 possible vote shares).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::knn::{Knn, KnnParams};
use super::mlp::{top_classes, Mlp, MlpParams, TOP_CLASSES};
use super::{class_indices, ClassifyError, Fit, Predict, Prediction};
use crate::io::vocab::LabelVocab;
use crate::vectors::VectorSet;

/// Assigns each of `n` rows to one of `members` disjoint parts (seeded shuffle,
/// then equal slices); returns each part's rows in increasing order.
pub fn disjoint_parts(n: usize, members: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut parts = Vec::with_capacity(members);
    for m in 0..members {
        let (lo, hi) = (m * n / members, (m + 1) * n / members);
        let mut part = order[lo..hi].to_vec();
        part.sort_unstable();
        parts.push(part);
    }
    parts
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnnEnsembleParams {
    pub members: usize,
    pub seed: u64,
    pub knn: KnnParams,
}

impl Default for KnnEnsembleParams {
    fn default() -> Self {
        KnnEnsembleParams {
            members: 10,
            seed: 0,
            knn: KnnParams::default(),
        }
    }
}

impl KnnEnsembleParams {
    pub fn check(&self, n_train: usize) -> Result<(), ClassifyError> {
        self.knn.check()?;
        if self.members < 2 {
            return Err(ClassifyError::InvalidParams(
                "an ensemble needs at least 2 members".into(),
            ));
        }
        if n_train < self.members {
            return Err(ClassifyError::Data(format!(
                "{n_train} training vectors cannot make {} disjoint non-empty parts",
                self.members
            )));
        }
        Ok(())
    }
}

/// kNN members on disjoint parts of one training set.
#[derive(Debug, Clone)]
pub struct KnnEnsemble {
    pub params: KnnEnsembleParams,
    /// Training rows of each member, increasing.
    pub parts: Vec<Vec<usize>>,
    pub members: Vec<Knn>,
}

impl Fit for KnnEnsembleParams {
    type Model = KnnEnsemble;

    fn fit(
        &self,
        train: &VectorSet,
        _dev: Option<&VectorSet>,
        vocab: &LabelVocab,
    ) -> Result<KnnEnsemble, ClassifyError> {
        self.check(train.len())?;
        let labels = class_indices(train, vocab)?;
        let parts = disjoint_parts(train.len(), self.members, self.seed);
        KnnEnsemble::from_parts(self.clone(), vocab.len(), train.dim, &train.data, &labels, parts)
    }
}

impl KnnEnsemble {
    /// Builds the members from the whole training set and each member's rows.
    pub fn from_parts(
        params: KnnEnsembleParams,
        n_classes: usize,
        dim: usize,
        data: &[f32],
        labels: &[u32],
        parts: Vec<Vec<usize>>,
    ) -> Result<KnnEnsemble, ClassifyError> {
        let members = parts
            .iter()
            .map(|rows| {
                let mut vectors = Vec::with_capacity(rows.len() * dim);
                for &r in rows {
                    vectors.extend_from_slice(&data[r * dim..(r + 1) * dim]);
                }
                let member_labels = rows.iter().map(|&r| labels[r]).collect();
                Knn::from_parts(params.knn.clone(), n_classes, dim, vectors, member_labels)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KnnEnsemble { params, parts, members })
    }

    /// Number of training rows over all members.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Predict for KnnEnsemble {
    fn predict(&self, queries: &VectorSet) -> Result<Vec<Prediction>, ClassifyError> {
        let per_member: Vec<Vec<Prediction>> = self
            .members
            .iter()
            .map(|m| m.predict(queries))
            .collect::<Result<_, _>>()?;
        let n_members = self.members.len() as f32;
        Ok((0..queries.len())
            .map(|q| {
                // (class, votes, nearest distance among its voters, global index of that neighbour)
                let mut tally: Vec<(usize, usize, f32, usize)> = Vec::new();
                for (m, preds) in per_member.iter().enumerate() {
                    let p = &preds[q];
                    let (local, dist) = p.nearest.expect("kNN predictions carry their nearest neighbour");
                    let global = self.parts[m][local];
                    match tally.iter_mut().find(|t| t.0 == p.class) {
                        Some(t) => {
                            t.1 += 1;
                            if (dist, global) < (t.2, t.3) {
                                t.2 = dist;
                                t.3 = global;
                            }
                        }
                        None => tally.push((p.class, 1, dist, global)),
                    }
                }
                tally.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.total_cmp(&b.2)).then(a.3.cmp(&b.3)));
                let nearest = tally
                    .iter()
                    .map(|t| (t.3, t.2))
                    .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                let top: Vec<(usize, f32)> = tally.iter().map(|t| (t.0, t.1 as f32 / n_members)).collect();
                Prediction {
                    class: top[0].0,
                    score: top[0].1,
                    top,
                    nearest,
                }
            })
            .collect())
    }
}

/// How the members of an MLP ensemble get their training data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnsembleMode {
    /// Disjoint parts of the training set (paper Table 1).
    Disjoint,
    /// All training data for every member, different seeds (paper Table 2).
    Full,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpEnsembleParams {
    pub members: usize,
    pub mode: EnsembleMode,
    /// Seed of the disjoint split and base seed of the members.
    pub seed: u64,
    pub mlp: MlpParams,
}

impl MlpEnsembleParams {
    /// 10 MLPs on disjoint parts (Table 1).
    pub fn disjoint() -> Self {
        MlpEnsembleParams {
            members: 10,
            mode: EnsembleMode::Disjoint,
            seed: 0,
            mlp: MlpParams::default(),
        }
    }

    /// 5 MLPs on all data (Table 2's best figure).
    pub fn full() -> Self {
        MlpEnsembleParams {
            members: 5,
            mode: EnsembleMode::Full,
            seed: 0,
            mlp: MlpParams::default(),
        }
    }

    pub fn check(&self, n_train: usize) -> Result<(), ClassifyError> {
        self.mlp.check()?;
        if self.members < 2 {
            return Err(ClassifyError::InvalidParams(
                "an ensemble needs at least 2 members".into(),
            ));
        }
        if self.mode == EnsembleMode::Disjoint && n_train < self.members {
            return Err(ClassifyError::Data(format!(
                "{n_train} training vectors cannot make {} disjoint non-empty parts",
                self.members
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct MlpEnsemble {
    pub params: MlpEnsembleParams,
    pub members: Vec<Mlp>,
}

impl Fit for MlpEnsembleParams {
    type Model = MlpEnsemble;

    fn fit(
        &self,
        train: &VectorSet,
        dev: Option<&VectorSet>,
        vocab: &LabelVocab,
    ) -> Result<MlpEnsemble, ClassifyError> {
        self.check(train.len())?;
        class_indices(train, vocab)?;
        let mut members = Vec::with_capacity(self.members);
        let parts = match self.mode {
            EnsembleMode::Disjoint => Some(disjoint_parts(train.len(), self.members, self.seed)),
            EnsembleMode::Full => None,
        };
        for m in 0..self.members {
            let params = MlpParams {
                seed: self.seed.wrapping_add(m as u64),
                ..self.mlp.clone()
            };
            tracing::info!(member = m + 1, of = self.members, "training ensemble member");
            let member = match &parts {
                Some(parts) => params.fit(&train.select(&parts[m]), dev, vocab)?,
                None => params.fit(train, dev, vocab)?,
            };
            members.push(member);
        }
        Ok(MlpEnsemble {
            params: self.clone(),
            members,
        })
    }
}

impl Predict for MlpEnsemble {
    fn predict(&self, queries: &VectorSet) -> Result<Vec<Prediction>, ClassifyError> {
        let probs: Vec<Vec<Vec<f32>>> = self
            .members
            .iter()
            .map(|m| m.predict_proba(queries))
            .collect::<Result<_, _>>()?;
        let n_members = self.members.len() as f32;
        Ok((0..queries.len())
            .map(|q| {
                let n_classes = probs[0][q].len();
                let mut mean = vec![0f32; n_classes];
                let mut votes = vec![0usize; n_classes];
                for member in &probs {
                    let row = &member[q];
                    for (m, &p) in mean.iter_mut().zip(row) {
                        *m += p / n_members;
                    }
                    votes[top_classes(row, 1)[0].0] += 1;
                }
                let mut voted: Vec<usize> = (0..n_classes).filter(|&c| votes[c] > 0).collect();
                voted.sort_by(|&a, &b| {
                    votes[b]
                        .cmp(&votes[a])
                        .then(mean[b].total_cmp(&mean[a]))
                        .then(a.cmp(&b))
                });
                let mut top: Vec<(usize, f32)> = voted.iter().map(|&c| (c, mean[c])).collect();
                // Fill the runners-up with the best classes by mean probability that got no vote.
                for (c, p) in top_classes(&mean, TOP_CLASSES + voted.len()) {
                    if top.len() >= TOP_CLASSES.max(voted.len()) {
                        break;
                    }
                    if votes[c] == 0 {
                        top.push((c, p));
                    }
                }
                Prediction::from_top(top)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_disjoint_cover_all_and_are_seeded() {
        let parts = disjoint_parts(103, 10, 5);
        let mut all: Vec<usize> = parts.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        assert!(parts.iter().all(|p| p.len() == 10 || p.len() == 11));
        assert!(parts.iter().all(|p| p.windows(2).all(|w| w[0] < w[1])));
        assert_eq!(parts, disjoint_parts(103, 10, 5));
        assert_ne!(parts, disjoint_parts(103, 10, 6));
    }
}
