//! Multi-layer perceptron classifier trained with candle-nn, following the
//! paper's recipe (scikit-learn `MLPClassifier` semantics):
//!
//! - hidden layers 500, 100, 100, 1000 with the identity activation by default
//!   (ReLU optional), a softmax output and cross-entropy loss;
//! - Glorot-uniform initialisation of weights and biases as scikit-learn does
//!   (`bound = sqrt(6 / (fan_in + fan_out))`), from a seeded ChaCha RNG;
//! - Adam exactly as scikit-learn writes it (lr 1e-3, betas 0.9 / 0.999, eps 1e-8
//!   added to `sqrt(v)`, bias correction folded into the step size) with an L2
//!   penalty `alpha / (2 * batch) * ||W||^2` on the weights only (alpha 1e-4);
//! - mini-batches of 1% of the training data (the paper's "partial fits"),
//!   reshuffled every epoch with the seeded RNG;
//! - up to 25 epochs; with a dev set, early stopping once the dev error has not
//!   improved for `patience` (10) epochs, and the weights of the best dev epoch
//!   are kept (scikit-learn keeps its best validation coefficients the same way).
//!
//! On the CPU the network trains on plain f32 buffers with a hand-written
//! backward pass (GEMMs through `gemm` with transposes as strides, softmax and
//! cross-entropy fused, no gradient for the input batch, Adam in place); with
//! the identity activation, two layers where a narrow one feeds a wide one
//! (the paper's 100 -> 1000 -> classes end) train through their product, which
//! takes a third fewer multiply-adds (see `cpu::Stage`). On other devices
//! training uses candle's autograd. All paths compute the same model (a unit
//! test checks them against each other).
//!
//! Inputs can be standardised (per-dimension mean and standard deviation of the
//! training vectors; constant dimensions are left unscaled). It is off by default,
//! as in the paper; the scaler, when used, is saved with the model.
//!
//! This file holds the hyper-parameters and their checks, the fitted model and
//! prediction; `train.rs` the training loop (initialisation, epochs, early
//! stopping), `adam.rs` the optimiser, `cpu.rs` the CPU engine and
//! `autograd.rs` the candle path.

use candle_core::{DType, Module, Tensor};
use serde::{Deserialize, Serialize};

use super::{check_finite, check_queries, class_indices, ClassifyError, ComputeDevice, Fit, Predict, Prediction};
use crate::io::vocab::LabelVocab;
use crate::vectors::VectorSet;

mod adam;
mod autograd;
mod cpu;
mod train;

/// How many runners-up a prediction lists.
pub const TOP_CLASSES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// The paper's choice: the network is linear up to the softmax.
    #[default]
    Identity,
    Relu,
}

/// Mini-batch size: a fraction of the training set or a fixed count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchSize {
    Fraction(f64),
    Rows(usize),
}

impl BatchSize {
    pub fn rows(&self, n: usize) -> usize {
        match *self {
            BatchSize::Fraction(f) => ((n as f64 * f).ceil() as usize).clamp(1, n.max(1)),
            BatchSize::Rows(r) => r.clamp(1, n.max(1)),
        }
    }
}

/// Hyper-parameters of [`Mlp`]; the defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpParams {
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// L2 penalty on the weights (scikit-learn's `alpha`).
    pub alpha: f64,
    pub batch: BatchSize,
    pub max_epochs: usize,
    /// Epochs without dev-error improvement before stopping.
    pub patience: usize,
    pub standardize: bool,
    pub seed: u64,
    #[serde(skip)]
    pub device: ComputeDevice,
}

impl Default for MlpParams {
    fn default() -> Self {
        MlpParams {
            hidden: vec![500, 100, 100, 1000],
            activation: Activation::Identity,
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            alpha: 1e-4,
            batch: BatchSize::Fraction(0.01),
            max_epochs: 25,
            patience: 10,
            standardize: false,
            seed: 0,
            device: ComputeDevice::default(),
        }
    }
}

impl MlpParams {
    pub fn check(&self) -> Result<(), ClassifyError> {
        let bad = |m: &str| Err(ClassifyError::InvalidParams(m.to_string()));
        if self.hidden.contains(&0) {
            return bad("hidden layer sizes must be at least 1");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("learning rate must be positive");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("Adam betas must be in [0, 1)");
        }
        if self.epsilon.is_nan() || self.epsilon <= 0.0 || self.alpha.is_nan() || self.alpha < 0.0 {
            return bad("epsilon must be positive and alpha non-negative");
        }
        match self.batch {
            BatchSize::Fraction(f) if !(f > 0.0 && f <= 1.0) => return bad("batch fraction must be in (0, 1]"),
            BatchSize::Rows(0) => return bad("batch size must be at least 1"),
            _ => {}
        }
        if self.max_epochs == 0 || self.patience == 0 {
            return bad("max_epochs and patience must be at least 1");
        }
        Ok(())
    }
}

/// One training epoch's record (the paper's supplementary per-epoch table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's mini-batches (without the L2 term).
    pub train_loss: f64,
    /// Error rate on the dev set, when one was given.
    pub dev_error: Option<f64>,
    pub seconds: f64,
}

/// Per-dimension standardisation learnt on the training vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaler {
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
}

impl Scaler {
    pub fn fit(data: &[f32], dim: usize) -> Scaler {
        let n = (data.len() / dim).max(1) as f64;
        let mut mean = vec![0f64; dim];
        for row in data.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; dim];
        for row in data.chunks_exact(dim) {
            for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v as f64 - m).powi(2);
            }
        }
        let scale = var
            .iter()
            .map(|s| (s / n).sqrt())
            .map(|s| if s > 1e-12 { s as f32 } else { 1.0 })
            .collect();
        Scaler {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            scale,
        }
    }

    pub fn apply(&self, data: &[f32]) -> Vec<f32> {
        let dim = self.mean.len();
        let mut out = data.to_vec();
        for row in out.chunks_exact_mut(dim) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *v = (*v - m) / s;
            }
        }
        out
    }
}

/// A trained MLP: `layers[i]` maps layer `i` to `i + 1`; weights are `(out, in)`.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub params: MlpParams,
    pub dim: usize,
    pub n_classes: usize,
    pub layers: Vec<(Tensor, Tensor)>,
    pub scaler: Option<Scaler>,
    pub epochs: Vec<EpochLog>,
    /// Epoch (1-based) whose weights were kept.
    pub best_epoch: usize,
}

impl Fit for MlpParams {
    type Model = Mlp;

    fn fit(&self, train: &VectorSet, dev: Option<&VectorSet>, vocab: &LabelVocab) -> Result<Mlp, ClassifyError> {
        self.check()?;
        let labels = class_indices(train, vocab)?;
        if labels.is_empty() {
            return Err(ClassifyError::Data("MLP needs at least one training vector".into()));
        }
        if train.dim == 0 {
            return Err(ClassifyError::Data("training vectors have dimension 0".into()));
        }
        check_finite(&train.data, train.dim, "training")?;
        let dev = match dev {
            Some(d) if !d.is_empty() => {
                if d.dim != train.dim {
                    return Err(ClassifyError::Data(format!(
                        "dev vectors have dimension {}, training vectors {}",
                        d.dim, train.dim
                    )));
                }
                check_finite(&d.data, d.dim, "dev")?;
                // Dev families absent from training can never be predicted: they count as errors.
                let truth: Vec<Option<u32>> = d
                    .families
                    .iter()
                    .map(|f| f.as_ref().and_then(|f| vocab.index_of(f)).map(|i| i as u32))
                    .collect();
                Some((d, truth))
            }
            _ => None,
        };
        train::train_mlp(self, train, &labels, vocab.len(), dev)
    }
}

/// Logits of a batch of rows through every layer, ReLU between layers when
/// chosen (prediction, the dev error and the autograd path all go through it).
fn forward(layers: &[(Tensor, Tensor)], activation: Activation, x: &Tensor) -> candle_core::Result<Tensor> {
    let mut h = x.clone();
    for (i, (w, b)) in layers.iter().enumerate() {
        h = candle_nn::Linear::new(w.clone(), Some(b.clone())).forward(&h)?;
        if i + 1 < layers.len() && activation == Activation::Relu {
            h = h.relu()?;
        }
    }
    Ok(h)
}

const PREDICT_BATCH: usize = 4096;

impl Mlp {
    /// Class probabilities (softmax) for every query row.
    pub fn predict_proba(&self, queries: &VectorSet) -> Result<Vec<Vec<f32>>, ClassifyError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        check_queries(queries, self.dim)?;
        let x = match &self.scaler {
            Some(s) => s.apply(&queries.data),
            None => queries.data.clone(),
        };
        let device = self.layers[0].0.device();
        let mut out = Vec::with_capacity(queries.len());
        for chunk in x.chunks(PREDICT_BATCH * self.dim) {
            let t = Tensor::from_slice(chunk, (chunk.len() / self.dim, self.dim), device)?;
            let logits = forward(&self.layers, self.params.activation, &t)?;
            let probs = candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F32)?)?;
            out.extend(probs.to_vec2::<f32>()?);
        }
        Ok(out)
    }
}

/// Best classes of a probability row, highest first; ties keep the lower class index.
pub fn top_classes(probs: &[f32], n: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    let n = n.min(idx.len());
    let cmp = |a: &usize, b: &usize| probs[*b].total_cmp(&probs[*a]).then(a.cmp(b));
    if n < idx.len() && n > 0 {
        idx.select_nth_unstable_by(n - 1, cmp);
        idx.truncate(n);
    }
    idx.sort_by(cmp);
    idx.into_iter().map(|i| (i, probs[i])).collect()
}

impl Predict for Mlp {
    fn predict(&self, queries: &VectorSet) -> Result<Vec<Prediction>, ClassifyError> {
        Ok(self
            .predict_proba(queries)?
            .iter()
            .map(|p| Prediction::from_top(top_classes(p, TOP_CLASSES)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::io::Family;

    /// Three Gaussian blobs in 8 dimensions, labelled by blob.
    #[allow(clippy::needless_range_loop)]
    fn blobs(n_per: usize, seed: u64) -> (VectorSet, LabelVocab) {
        let fams: Vec<Family> = (0..3)
            .map(|i| Family::new(format!("F{i}"), &format!("PF{i:05}")))
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut set = VectorSet::default();
        for c in 0..3 {
            for i in 0..n_per {
                let v: Vec<f32> = (0..8)
                    .map(|d| if d == c { 3.0 } else { 0.0 } + rng.gen_range(-1.0f32..1.0))
                    .collect();
                set.push(format!("{c}-{i}"), Some(fams[c].clone()), &v);
            }
        }
        (set, LabelVocab::from_families(fams.iter()))
    }

    fn small() -> MlpParams {
        MlpParams {
            hidden: vec![16, 8],
            batch: BatchSize::Rows(10),
            max_epochs: 15,
            ..Default::default()
        }
    }

    #[test]
    fn learns_separable_blobs_and_logs_epochs() {
        let (train, vocab) = blobs(40, 1);
        let (dev, _) = blobs(10, 2);
        let (test, _) = blobs(20, 3);
        let mlp = small().fit(&train, Some(&dev), &vocab).unwrap();
        assert!(!mlp.epochs.is_empty() && mlp.epochs.iter().all(|e| e.dev_error.is_some()));
        let best = mlp.epochs[mlp.best_epoch - 1].dev_error.unwrap();
        assert!(mlp.epochs.iter().all(|e| e.dev_error.unwrap() >= best));
        let pred = mlp.predict(&test).unwrap();
        let truth = class_indices(&test, &vocab).unwrap();
        let errors = pred.iter().zip(&truth).filter(|(p, t)| p.class != **t as usize).count();
        assert!(errors <= 3, "{errors} errors of {}", truth.len());
        let p = &pred[0];
        assert!(p.top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!((p.top.iter().map(|t| t.1).sum::<f32>() - 1.0).abs() < 1e-4);
    }

    #[test]
    fn seeded_training_is_reproducible_and_seed_sensitive() {
        let (train, vocab) = blobs(20, 4);
        let a = small().fit(&train, None, &vocab).unwrap();
        let b = small().fit(&train, None, &vocab).unwrap();
        let c = MlpParams { seed: 9, ..small() }.fit(&train, None, &vocab).unwrap();
        let flat = |m: &Mlp| m.layers[0].0.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(&a), flat(&b));
        assert_ne!(flat(&a), flat(&c));
        assert_eq!(a.epochs.len(), 15);
    }

    #[test]
    fn rejects_invalid_hyper_parameters() {
        let (train, vocab) = blobs(2, 5);
        for bad in [
            MlpParams {
                hidden: vec![0],
                ..small()
            },
            MlpParams {
                learning_rate: 0.0,
                ..small()
            },
            MlpParams {
                batch: BatchSize::Fraction(0.0),
                ..small()
            },
            MlpParams {
                max_epochs: 0,
                ..small()
            },
        ] {
            assert!(matches!(
                bad.fit(&train, None, &vocab),
                Err(ClassifyError::InvalidParams(_))
            ));
        }
    }

    #[test]
    fn scaler_standardises() {
        let data = vec![1.0, 10.0, 3.0, 10.0];
        let s = Scaler::fit(&data, 2);
        assert_eq!(s.apply(&data), vec![-1.0, 0.0, 1.0, 0.0]);
    }
}
