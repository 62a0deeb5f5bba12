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
//! takes a third fewer multiply-adds (see `Stage`). On other devices training
//! uses candle's autograd. All paths compute the same model (a unit test checks
//! them against each other).
//!
//! Inputs can be standardised (per-dimension mean and standard deviation of the
//! training vectors; constant dimensions are left unscaled). It is off by default,
//! as in the paper; the scaler, when used, is saved with the model.

use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor, Var};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{check_finite, check_queries, class_indices, ClassifyError, ComputeDevice, Fit, Predict, Prediction};
use crate::gemm::{gemm_strided, matmul_ab};
use crate::io::vocab::LabelVocab;
use crate::models::cpu_kernels::{exp, lane_max, lane_sum, linear};
use crate::simd::vectorised;
use crate::vectors::VectorSet;

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

/// Adam as scikit-learn's `AdamOptimizer` computes it, with the L2 penalty's
/// gradient (`l2 * w`, weights only) added to each gradient first.
///
/// On the CPU the moments live in plain vectors and one parallel pass per
/// parameter tensor does penalty, both moments and the update: the
/// tensor-op form costs about a dozen full passes and temporaries per tensor
/// per mini-batch, which dominated an epoch. Other devices use tensor ops.
struct Adam {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    t: i32,
    moments: Moments,
}

enum Moments {
    /// `(m, v)` per parameter tensor.
    Cpu(Vec<(Vec<f32>, Vec<f32>)>),
    Tensors {
        m: Vec<Tensor>,
        v: Vec<Tensor>,
    },
}

impl Adam {
    fn new(vars: &[Var], p: &MlpParams) -> candle_core::Result<Adam> {
        let moments = if vars.iter().all(|v| v.device().is_cpu() && v.dtype() == DType::F32) {
            Moments::Cpu(
                vars.iter()
                    .map(|v| (vec![0f32; v.elem_count()], vec![0f32; v.elem_count()]))
                    .collect(),
            )
        } else {
            let zeros = vars
                .iter()
                .map(|v| v.zeros_like())
                .collect::<candle_core::Result<Vec<_>>>()?;
            Moments::Tensors {
                m: zeros.clone(),
                v: zeros,
            }
        };
        Ok(Adam {
            lr: p.learning_rate,
            beta1: p.beta1,
            beta2: p.beta2,
            eps: p.epsilon,
            t: 0,
            moments,
        })
    }

    /// One step; `l2[i]` is the penalty factor of parameter `i` (0 for biases).
    fn step(&mut self, vars: &[Var], grads: &[Tensor], l2: &[f64]) -> candle_core::Result<()> {
        self.t += 1;
        let step = self.lr * (1.0 - self.beta2.powi(self.t)).sqrt() / (1.0 - self.beta1.powi(self.t));
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        match &mut self.moments {
            Moments::Cpu(state) => {
                for ((var, g), ((m, v), &l2)) in vars.iter().zip(grads).zip(state.iter_mut().zip(l2)) {
                    let mut w = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                    let g = g.flatten_all()?.to_vec1::<f32>()?;
                    adam_update(&mut w, &g, m, v, [b1, b2, eps, step, l2]);
                    var.set(&Tensor::from_vec(w, var.shape(), var.device())?)?;
                }
            }
            Moments::Tensors { m: ms, v: vs } => {
                for (i, (var, g)) in vars.iter().zip(grads).enumerate() {
                    let g = if l2[i] > 0.0 {
                        (g + (var.as_tensor().detach() * l2[i])?)?
                    } else {
                        g.clone()
                    };
                    let m = ((&ms[i] * b1)? + (&g * (1.0 - b1))?)?;
                    let v = ((&vs[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
                    let update = (m.clone() / (v.sqrt()? + eps)?)?;
                    var.set(&(var.as_tensor().detach() - (update * step)?)?)?;
                    ms[i] = m;
                    vs[i] = v;
                }
            }
        }
        Ok(())
    }
}

/// One fused Adam step on plain vectors (`coef`: beta1, beta2, eps, step size,
/// L2 factor), one parallel pass: penalty, both moments and the update.
fn adam_update(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], coef: [f64; 5]) {
    let [b1, b2, eps, step, l2] = coef.map(|c| c as f32);
    const CHUNK: usize = 1 << 14;
    w.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((w, g), (m, v))| {
            vectorised(|| {
                for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let g = g + l2 * *w;
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * (g * g);
                    *w -= (*m / (v.sqrt() + eps)) * step;
                }
            })
        });
}

/// Softmax cross-entropy of one row of logits `z` with its true class `label`:
/// writes `(softmax(z) - onehot(label)) * scale` into `d`, returns the loss.
#[inline(always)]
fn softmax_cross_entropy(z: &[f32], label: usize, scale: f32, d: &mut [f32]) -> f64 {
    let max = lane_max(z);
    for (d, &z) in d.iter_mut().zip(z) {
        *d = exp(z - max);
    }
    let sum = lane_sum(d, |v| v);
    let factor = scale / sum;
    // Probabilities below f32's smallest normal number are flushed to zero: as
    // the network fits the training set they become subnormal, and every
    // product with them then takes the CPU's slow path (one-hot epochs went
    // from 3 s to 60 s).
    d.iter_mut().for_each(|d| {
        let p = *d * factor;
        *d = if p < f32::MIN_POSITIVE { 0.0 } else { p };
    });
    d[label] -= scale;
    (max + sum.ln() - z[label]) as f64
}

/// How the CPU pass groups layers. With the identity activation two consecutive
/// layers are one affine map, `x -> Wb (Wa x + ba) + bb`; where the first
/// layer's input is narrower than the batch and than its output (the
/// 100 -> 1000 -> classes end of the paper's network), products through
/// `P = Wb Wa` take a third fewer multiply-adds than the two layers one by one,
/// forward and backward. The parameters, loss, gradients and Adam updates are
/// the same; only the order of the sums differs (f32 rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Single(usize),
    /// Layers `l` and `l + 1` through their product.
    Pair(usize),
}

/// Multiply-adds of one training step of a layer `n0 -> n1` on `rows` rows:
/// forward, weight gradient and (except for the first layer) input gradient.
fn single_cost(rows: usize, n0: usize, n1: usize, first: bool) -> usize {
    rows * n0 * n1 * if first { 2 } else { 3 }
}

/// Multiply-adds of one training step of layers `n0 -> n1 -> n2` as a pair:
/// `P`, both weight gradients (`G Wa^T`, `Wb^T G`) at `n0 n1 n2` each; the
/// forward product, `G = delta^T x` and the input gradient at `rows n0 n2` each.
fn pair_cost(rows: usize, n0: usize, n1: usize, n2: usize, first: bool) -> usize {
    3 * n0 * n1 * n2 + rows * n0 * n2 * if first { 2 } else { 3 }
}

/// The grouping with the fewest multiply-adds per step (dynamic programming
/// along the chain); pairs only where the activation between them is the identity.
fn plan_stages(sizes: &[usize], rows: usize, relu: bool) -> Vec<Stage> {
    let layers = sizes.len() - 1;
    // best[l]: fewest multiply-adds for layers l.. and the stage that starts there.
    let mut best = vec![(0usize, Stage::Single(0)); layers + 1];
    for l in (0..layers).rev() {
        let first = l == 0;
        best[l] = (
            single_cost(rows, sizes[l], sizes[l + 1], first) + best[l + 1].0,
            Stage::Single(l),
        );
        if !relu && l + 2 <= layers {
            let pair = pair_cost(rows, sizes[l], sizes[l + 1], sizes[l + 2], first) + best[l + 2].0;
            if pair < best[l].0 {
                best[l] = (pair, Stage::Pair(l));
            }
        }
    }
    let mut stages = Vec::new();
    let mut l = 0;
    while l < layers {
        let stage = best[l].1;
        stages.push(stage);
        l += match stage {
            Stage::Single(_) => 1,
            Stage::Pair(_) => 2,
        };
    }
    stages
}

/// Whether the first layer's weight gradient is cheaper through the second
/// layer: with the identity activation `dW0 = (delta1 W1)^T x = W1^T (delta1^T x)`,
/// and the right side costs fewer multiply-adds when the second layer is
/// narrow (the paper's 1900 -> 500 -> 100 start: a fifth fewer).
fn first_through_next(stages: &[Stage], sizes: &[usize], rows: usize, relu: bool) -> bool {
    if relu || stages.len() < 2 || stages[0] != Stage::Single(0) || stages[1] != Stage::Single(1) {
        return false;
    }
    let (n0, n1, n2) = (sizes[0], sizes[1], sizes[2]);
    n2 * n0 * rows + n1 * n0 * n2 < rows * n2 * n1 + n1 * n0 * rows
}

/// `out[j] = sum over rows of m[row][j]`.
fn column_sums(m: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for row in m.chunks_exact(out.len()) {
        out.iter_mut().zip(row).for_each(|(o, &v)| *o += v);
    }
}

/// The network on the CPU as plain f32 buffers, with a hand-written backward
/// pass: the same model, loss and optimiser as the candle path, without what
/// autograd costs here (a gradient for the input batch, transposed copies and
/// fresh tensors for every product, a weight copy per Adam step).
struct CpuNet {
    /// Layer widths, input first.
    sizes: Vec<usize>,
    relu: bool,
    stages: Vec<Stage>,
    /// Per layer: weights `(out, in)` row-major, then biases.
    weights: Vec<Vec<f32>>,
    biases: Vec<Vec<f32>>,
    grad_w: Vec<Vec<f32>>,
    grad_b: Vec<Vec<f32>>,
    /// Adam moments `(m, v)` of every weight and bias vector.
    moments_w: Vec<(Vec<f32>, Vec<f32>)>,
    moments_b: Vec<(Vec<f32>, Vec<f32>)>,
    /// Output of every layer for the current batch (`batch x sizes[l + 1]`);
    /// the inner layer of a pair is never materialised.
    acts: Vec<Vec<f32>>,
    /// Per pair starting at layer `l` (else empty): `P = W[l+1] W[l]`, its
    /// bias `W[l+1] b[l] + b[l+1]`, `[G | s]^T` (see `backward_stage`) and
    /// `[W[l] | b[l]]`.
    pair_product: Vec<Vec<f32>>,
    pair_bias: Vec<Vec<f32>>,
    pair_grad: Vec<Vec<f32>>,
    pair_inner: Vec<Vec<f32>>,
    /// `delta1^T x` when the first layer's gradient goes through the second
    /// layer (see `first_through_next`), else `None`.
    first_through_next: Option<Vec<f32>>,
    delta: Vec<f32>,
    delta_prev: Vec<f32>,
    coef: [f64; 4],
    t: i32,
}

impl CpuNet {
    fn new(sizes: Vec<usize>, params: Vec<(Vec<f32>, Vec<f32>)>, p: &MlpParams, batch: usize) -> CpuNet {
        let relu = p.activation == Activation::Relu;
        CpuNet::with_stages(plan_stages(&sizes, batch, relu), sizes, params, p, batch)
    }

    fn with_stages(
        stages: Vec<Stage>,
        sizes: Vec<usize>,
        params: Vec<(Vec<f32>, Vec<f32>)>,
        p: &MlpParams,
        batch: usize,
    ) -> CpuNet {
        let widest = sizes.iter().copied().max().unwrap_or(0);
        let zeros = |v: &Vec<f32>| (vec![0f32; v.len()], vec![0f32; v.len()]);
        let (weights, biases): (Vec<_>, Vec<_>) = params.into_iter().unzip();
        let layers = weights.len();
        let mut pair_product = vec![Vec::new(); layers];
        let mut pair_bias = vec![Vec::new(); layers];
        let mut pair_grad = vec![Vec::new(); layers];
        let mut pair_inner = vec![Vec::new(); layers];
        let mut acts: Vec<Vec<f32>> = sizes[1..].iter().map(|&s| vec![0f32; batch * s]).collect();
        for &stage in &stages {
            if let Stage::Pair(l) = stage {
                pair_product[l] = vec![0f32; sizes[l] * sizes[l + 2]];
                pair_grad[l] = vec![0f32; (sizes[l] + 1) * sizes[l + 2]];
                pair_inner[l] = vec![0f32; sizes[l + 1] * (sizes[l] + 1)];
                pair_bias[l] = vec![0f32; sizes[l + 2]];
                acts[l] = Vec::new();
            }
        }
        let relu = p.activation == Activation::Relu;
        let first_through_next =
            first_through_next(&stages, &sizes, batch, relu).then(|| vec![0f32; sizes[2] * sizes[0]]);
        tracing::debug!(?stages, first_through_next = first_through_next.is_some(), "MLP stages");
        CpuNet {
            relu,
            first_through_next,
            grad_w: weights.iter().map(|w| vec![0f32; w.len()]).collect(),
            grad_b: biases.iter().map(|b| vec![0f32; b.len()]).collect(),
            moments_w: weights.iter().map(zeros).collect(),
            moments_b: biases.iter().map(zeros).collect(),
            acts,
            pair_product,
            pair_bias,
            pair_grad,
            pair_inner,
            delta: vec![0f32; batch * widest],
            delta_prev: vec![0f32; batch * widest],
            coef: [p.learning_rate, p.beta1, p.beta2, p.epsilon],
            t: 0,
            stages,
            sizes,
            weights,
            biases,
        }
    }

    /// One mini-batch (`x`: `rows x dim`, `y`: class indices): forward, softmax
    /// cross-entropy, backward, Adam with the L2 factor `l2` on the weights.
    /// Returns the summed cross-entropy of the rows.
    fn step(&mut self, x: &[f32], y: &[u32], l2: f64) -> f64 {
        let rows = y.len();
        let layers = self.weights.len();
        for s in 0..self.stages.len() {
            self.forward_stage(self.stages[s], x, rows);
        }
        // Softmax and cross-entropy fused: the gradient of the batch-mean loss
        // w.r.t. the logits is (softmax - onehot) / rows.
        let classes = self.sizes[layers];
        let logits = &self.acts[layers - 1][..rows * classes];
        let delta = &mut self.delta[..rows * classes];
        let inv_rows = 1.0 / rows as f32;
        let loss: f64 = delta
            .par_chunks_mut(classes * 16)
            .zip(logits.par_chunks(classes * 16))
            .zip(y.par_chunks(16))
            .map(|((d, z), labels)| {
                vectorised(|| {
                    d.chunks_exact_mut(classes)
                        .zip(z.chunks_exact(classes))
                        .zip(labels)
                        .map(|((d, z), &label)| softmax_cross_entropy(z, label as usize, inv_rows, d))
                        .sum::<f64>()
                })
            })
            .sum();
        for s in (0..self.stages.len()).rev() {
            self.backward_stage(self.stages[s], x, rows);
        }
        self.t += 1;
        let [lr, b1, b2, eps] = self.coef;
        let step = lr * (1.0 - b2.powi(self.t)).sqrt() / (1.0 - b1.powi(self.t));
        for l in 0..layers {
            let (m, v) = &mut self.moments_w[l];
            adam_update(&mut self.weights[l], &self.grad_w[l], m, v, [b1, b2, eps, step, l2]);
            let (m, v) = &mut self.moments_b[l];
            adam_update(&mut self.biases[l], &self.grad_b[l], m, v, [b1, b2, eps, step, 0.0]);
        }
        loss
    }

    /// The input of layer `l` for the current batch and that layer's output buffer.
    fn input_and_output<'a>(
        acts: &'a mut [Vec<f32>],
        x: &'a [f32],
        l: usize,
        out_layer: usize,
    ) -> (&'a [f32], &'a mut [f32]) {
        let (done, rest) = acts.split_at_mut(out_layer);
        let input = if l == 0 { x } else { &done[l - 1][..] };
        (input, &mut rest[0][..])
    }

    fn forward_stage(&mut self, stage: Stage, x: &[f32], rows: usize) {
        match stage {
            Stage::Single(l) => {
                let (n_in, n_out) = (self.sizes[l], self.sizes[l + 1]);
                let (input, out) = Self::input_and_output(&mut self.acts, x, l, l);
                let (input, out) = (&input[..rows * n_in], &mut out[..rows * n_out]);
                linear(input, rows, &self.weights[l], &self.biases[l], None, out);
                if self.relu && l + 1 < self.weights.len() {
                    out.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            }
            Stage::Pair(l) => {
                let (n0, n1, n2) = (self.sizes[l], self.sizes[l + 1], self.sizes[l + 2]);
                let product = &mut self.pair_product[l];
                matmul_ab(n2, n0, n1, &self.weights[l + 1], &self.weights[l], product);
                let bias = &mut self.pair_bias[l];
                bias.copy_from_slice(&self.biases[l + 1]);
                gemm_strided(
                    (n2, 1, n1),
                    bias,
                    true,
                    (&self.weights[l + 1], n1, 1),
                    (&self.biases[l], 1, 1),
                );
                let (input, out) = Self::input_and_output(&mut self.acts, x, l, l + 1);
                let (input, out) = (&input[..rows * n0], &mut out[..rows * n2]);
                linear(input, rows, product, bias, None, out);
            }
        }
    }

    /// Gradients of one stage from `self.delta` (the loss gradient w.r.t. the
    /// stage's output); leaves the gradient w.r.t. its input in `self.delta`.
    fn backward_stage(&mut self, stage: Stage, x: &[f32], rows: usize) {
        match stage {
            Stage::Single(0) if self.first_through_next.is_some() => {
                // Done with the second layer.
            }
            Stage::Single(l) => {
                let (n_in, n_out) = (self.sizes[l], self.sizes[l + 1]);
                let input = if l == 0 { x } else { &self.acts[l - 1][..] };
                let input = &input[..rows * n_in];
                let delta = &self.delta[..rows * n_out];
                // dW (out x in) = delta^T (out x rows) * input (rows x in).
                gemm_strided(
                    (n_out, n_in, rows),
                    &mut self.grad_w[l],
                    false,
                    (delta, 1, n_out),
                    (input, n_in, 1),
                );
                column_sums(delta, &mut self.grad_b[l]);
                if let (1, Some(h)) = (l, self.first_through_next.as_mut()) {
                    // The first layer's gradients: dW0 = W1^T (delta1^T x), db0 = W1^T db1.
                    let n0 = self.sizes[0];
                    let x = &x[..rows * n0];
                    gemm_strided((n_out, n0, rows), h, false, (delta, 1, n_out), (x, n0, 1));
                    let grad_first = &mut self.grad_w[0];
                    gemm_strided(
                        (n_in, n0, n_out),
                        grad_first,
                        false,
                        (&self.weights[1], 1, n_in),
                        (h, n0, 1),
                    );
                    let (first, rest) = self.grad_b.split_at_mut(1);
                    gemm_strided(
                        (n_in, 1, n_out),
                        &mut first[0],
                        false,
                        (&self.weights[1], 1, n_in),
                        (&rest[0], 1, 1),
                    );
                    return;
                }
                // No gradient for the input batch: nothing learns from it.
                if l > 0 {
                    let prev = &mut self.delta_prev[..rows * n_in];
                    gemm_strided(
                        (rows, n_in, n_out),
                        prev,
                        false,
                        (delta, n_out, 1),
                        (&self.weights[l], n_in, 1),
                    );
                    if self.relu {
                        prev.iter_mut()
                            .zip(input)
                            .for_each(|(d, &a)| *d = if a > 0.0 { *d } else { 0.0 });
                    }
                    std::mem::swap(&mut self.delta, &mut self.delta_prev);
                }
            }
            Stage::Pair(l) => {
                let (n0, n1, n2) = (self.sizes[l], self.sizes[l + 1], self.sizes[l + 2]);
                let input = if l == 0 { x } else { &self.acts[l - 1][..] };
                let input = &input[..rows * n0];
                let delta = &self.delta[..rows * n2];
                let (w_a, w_b) = (&self.weights[l], &self.weights[l + 1]);
                let (lower, upper) = self.grad_w.split_at_mut(l + 1);
                let (grad_a, grad_b) = (&mut lower[l], &mut upper[0]);
                let (lower, upper) = self.grad_b.split_at_mut(l + 1);
                let (bias_grad_a, bias_grad_b) = (&mut lower[l], &mut upper[0]);
                // The inner activation is `h = input Wa^T + ba` and the output
                // `h Wb^T + bb`, so with `G = delta^T input` and `s` the column
                // sums of delta: dWb = G Wa^T + s ba^T = [G | s] [Wa | ba]^T,
                // dWa = Wb^T G, dba = Wb^T s, dbb = s, d input = delta P.
                // `[G | s]` is kept transposed, `G^T` with `s` as its last row.
                let gs = &mut self.pair_grad[l];
                let (g_t, s) = gs.split_at_mut(n0 * n2);
                gemm_strided((n0, n2, rows), g_t, false, (input, 1, n0), (delta, n2, 1));
                column_sums(delta, s);
                bias_grad_b.copy_from_slice(s);
                let inner = &mut self.pair_inner[l];
                for ((row, w), &b) in inner
                    .chunks_exact_mut(n0 + 1)
                    .zip(w_a.chunks_exact(n0))
                    .zip(&self.biases[l])
                {
                    row[..n0].copy_from_slice(w);
                    row[n0] = b;
                }
                gemm_strided((n2, n1, n0 + 1), grad_b, false, (gs, 1, n2), (inner, 1, n0 + 1));
                gemm_strided((n1, n0, n2), grad_a, false, (w_b, 1, n1), (gs, 1, n2));
                gemm_strided((n1, 1, n2), bias_grad_a, false, (w_b, 1, n1), (bias_grad_b, 1, 1));
                if l > 0 {
                    let prev = &mut self.delta_prev[..rows * n0];
                    gemm_strided(
                        (rows, n0, n2),
                        prev,
                        false,
                        (delta, n2, 1),
                        (&self.pair_product[l], n0, 1),
                    );
                    std::mem::swap(&mut self.delta, &mut self.delta_prev);
                }
            }
        }
    }

    /// The weights as tensors (for evaluation, snapshots and the fitted model).
    fn layer_tensors(&self) -> candle_core::Result<Vec<(Tensor, Tensor)>> {
        (0..self.weights.len())
            .map(|l| {
                Ok((
                    Tensor::from_slice(&self.weights[l], (self.sizes[l + 1], self.sizes[l]), &Device::Cpu)?,
                    Tensor::from_slice(&self.biases[l], self.sizes[l + 1], &Device::Cpu)?,
                ))
            })
            .collect()
    }
}

/// Weight and bias tensors of every layer.
type Layers = Vec<(Tensor, Tensor)>;

/// The trainable network: plain buffers on the CPU, candle variables and autograd elsewhere.
enum Net {
    Cpu(Box<CpuNet>),
    Candle { vars: Vec<Var>, adam: Adam },
}

impl Net {
    fn layer_tensors(&self) -> candle_core::Result<Vec<(Tensor, Tensor)>> {
        match self {
            Net::Cpu(net) => net.layer_tensors(),
            Net::Candle { vars, .. } => Ok(layer_tensors(vars)),
        }
    }

    /// Trains on one mini-batch; returns the summed cross-entropy of its rows.
    fn step(&mut self, x: &[f32], y: &[u32], activation: Activation, l2: f64) -> candle_core::Result<f64> {
        match self {
            Net::Cpu(net) => Ok(net.step(x, y, l2)),
            Net::Candle { vars, adam } => {
                let rows = y.len();
                let device = vars[0].device().clone();
                let xt = Tensor::from_slice(x, (rows, x.len() / rows), &device)?;
                let yt = Tensor::from_slice(y, rows, &device)?;
                let logits = forward(&layer_tensors(vars), activation, &xt)?;
                let loss = candle_nn::loss::cross_entropy(&logits, &yt)?;
                let loss_sum = loss.to_scalar::<f32>()? as f64 * rows as f64;
                let grads = loss.backward()?;
                let mut gs = Vec::with_capacity(vars.len());
                for var in vars.iter() {
                    // Detached: optimiser state must not record an autograd graph, or every
                    // step's tensors would stay reachable from the next step's moments.
                    gs.push(match grads.get(var.as_tensor()) {
                        Some(g) => g.detach(),
                        None => var.zeros_like()?.detach(),
                    });
                }
                adam.step(vars, &gs, &penalties(vars.len(), l2))?;
                Ok(loss_sum)
            }
        }
    }
}

/// L2 factor of every parameter tensor (weights, biases alternating): the penalty applies to weights only.
fn penalties(n_vars: usize, l2: f64) -> Vec<f64> {
    (0..n_vars).map(|i| if i % 2 == 0 { l2 } else { 0.0 }).collect()
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
        train_mlp(self, train, &labels, vocab.len(), dev)
    }
}

fn glorot(rng: &mut ChaCha8Rng, fan_in: usize, fan_out: usize, n: usize) -> Vec<f32> {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    (0..n).map(|_| rng.gen_range(-bound..bound)).collect()
}

fn train_mlp(
    p: &MlpParams,
    train: &VectorSet,
    labels: &[u32],
    n_classes: usize,
    dev: Option<(&VectorSet, Vec<Option<u32>>)>,
) -> Result<Mlp, ClassifyError> {
    let device = &p.device.0;
    let dim = train.dim;
    let n = labels.len();
    let scaler = p.standardize.then(|| Scaler::fit(&train.data, dim));
    let x_all = match &scaler {
        Some(s) => s.apply(&train.data),
        None => train.data.clone(),
    };
    let dev_x = dev.as_ref().map(|(d, _)| match &scaler {
        Some(s) => s.apply(&d.data),
        None => d.data.clone(),
    });

    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let mut sizes = vec![dim];
    sizes.extend(&p.hidden);
    sizes.push(n_classes);
    let mut init = Vec::new();
    for w in sizes.windows(2) {
        let (fan_in, fan_out) = (w[0], w[1]);
        let weight = glorot(&mut rng, fan_in, fan_out, fan_in * fan_out);
        let bias = glorot(&mut rng, fan_in, fan_out, fan_out);
        init.push((weight, bias));
    }
    let batch = p.batch.rows(n);
    let mut net = if device.is_cpu() {
        Net::Cpu(Box::new(CpuNet::new(sizes.clone(), init, p, batch)))
    } else {
        let mut vars = Vec::new();
        for ((weight, bias), w) in init.into_iter().zip(sizes.windows(2)) {
            vars.push(Var::from_vec(weight, (w[1], w[0]), device)?);
            vars.push(Var::from_vec(bias, w[1], device)?);
        }
        let adam = Adam::new(&vars, p)?;
        Net::Candle { vars, adam }
    };
    let mut order: Vec<usize> = (0..n).collect();
    let mut xbuf = vec![0f32; batch * dim];
    let mut epochs = Vec::new();
    let mut best: Option<(f64, usize, Layers)> = None;
    let mut since_best = 0;
    tracing::info!(n, dim, n_classes, batch, hidden = ?p.hidden, "training MLP");
    for epoch in 1..=p.max_epochs {
        let started = Instant::now();
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for chunk in order.chunks(batch) {
            let rows = chunk.len();
            for (slot, &i) in xbuf.chunks_exact_mut(dim).zip(chunk) {
                slot.copy_from_slice(&x_all[i * dim..(i + 1) * dim]);
            }
            let y: Vec<u32> = chunk.iter().map(|&i| labels[i]).collect();
            loss_sum += net.step(&xbuf[..rows * dim], &y, p.activation, p.alpha / rows as f64)?;
        }
        let train_loss = loss_sum / n as f64;
        if !train_loss.is_finite() {
            return Err(ClassifyError::Data(format!(
                "MLP training diverged at epoch {epoch} (loss {train_loss})"
            )));
        }
        let dev_error = match (&dev, &dev_x) {
            (Some((_, truth)), Some(x)) => {
                let layers = net.layer_tensors()?;
                let pred = argmax_batched(&layers, p.activation, x, dim, device)?;
                let errors = pred.iter().zip(truth).filter(|(p, t)| Some(**p) != **t).count();
                Some(errors as f64 / truth.len() as f64)
            }
            _ => None,
        };
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(epoch, train_loss, dev_error, seconds, "MLP epoch");
        epochs.push(EpochLog {
            epoch,
            train_loss,
            dev_error,
            seconds,
        });
        if let Some(err) = dev_error {
            if best.as_ref().is_none_or(|b| err < b.0) {
                let snapshot = net
                    .layer_tensors()?
                    .into_iter()
                    .map(|(w, b)| Ok((w.copy()?, b.copy()?)))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                best = Some((err, epoch, snapshot));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= p.patience {
                    tracing::info!(epoch, best_epoch = best.as_ref().map(|b| b.1), "early stopping");
                    break;
                }
            }
        }
    }
    let (layers, best_epoch) = match best {
        Some((_, epoch, snapshot)) => (snapshot, epoch),
        None => (
            net.layer_tensors()?
                .into_iter()
                .map(|(w, b)| Ok((w.copy()?, b.copy()?)))
                .collect::<candle_core::Result<Vec<_>>>()?,
            epochs.len(),
        ),
    };
    Ok(Mlp {
        params: p.clone(),
        dim,
        n_classes,
        layers,
        scaler,
        epochs,
        best_epoch,
    })
}

fn layer_tensors(vars: &[Var]) -> Vec<(Tensor, Tensor)> {
    vars.chunks_exact(2)
        .map(|wb| (wb[0].as_tensor().clone(), wb[1].as_tensor().clone()))
        .collect()
}

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

fn argmax_batched(
    layers: &[(Tensor, Tensor)],
    activation: Activation,
    x: &[f32],
    dim: usize,
    device: &Device,
) -> candle_core::Result<Vec<u32>> {
    let mut out = Vec::with_capacity(x.len() / dim);
    for chunk in x.chunks(PREDICT_BATCH * dim) {
        let t = Tensor::from_slice(chunk, (chunk.len() / dim, dim), device)?;
        out.extend(forward(layers, activation, &t)?.argmax(1)?.to_vec1::<u32>()?);
    }
    Ok(out)
}

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
    fn adam_first_step_matches_scikit_learn_formula() {
        // After one step from m = v = 0, sklearn's update is -lr * sqrt(1-b2)/(1-b1) * m/(sqrt(v)+eps)
        // = -lr * g / (|g| + eps / sqrt(1 - b2)) (up to eps), i.e. about -lr * sign(g).
        let p = MlpParams::default();
        let var = Var::from_vec(vec![1.0f32, -2.0], 2, &Device::Cpu).unwrap();
        let mut adam = Adam::new(std::slice::from_ref(&var), &p).unwrap();
        let g = Tensor::new(&[0.5f32, -0.25], &Device::Cpu).unwrap();
        adam.step(std::slice::from_ref(&var), &[g], &[0.0]).unwrap();
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        let lr_t = 1e-3 * (1.0f64 - 0.999).sqrt() / (1.0 - 0.9);
        let expect = |w: f64, g: f64| w - lr_t * (0.1 * g) / ((0.001 * g * g).sqrt() + 1e-8);
        assert!((got[0] as f64 - expect(1.0, 0.5)).abs() < 1e-6);
        assert!((got[1] as f64 - expect(-2.0, -0.25)).abs() < 1e-6);
    }

    #[test]
    fn fused_cpu_adam_matches_the_tensor_form() {
        let p = MlpParams::default();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let init: Vec<f32> = (0..300).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let (fused_var, plain_var) = (
            Var::from_vec(init.clone(), (20, 15), &Device::Cpu).unwrap(),
            Var::from_vec(init, (20, 15), &Device::Cpu).unwrap(),
        );
        let mut fused = Adam::new(std::slice::from_ref(&fused_var), &p).unwrap();
        let mut plain = Adam::new(std::slice::from_ref(&plain_var), &p).unwrap();
        let zeros = plain_var.zeros_like().unwrap();
        plain.moments = Moments::Tensors {
            m: vec![zeros.clone()],
            v: vec![zeros],
        };
        for _ in 0..5 {
            let g: Vec<f32> = (0..300).map(|_| rng.gen_range(-0.5f32..0.5)).collect();
            let g = Tensor::from_vec(g, (20, 15), &Device::Cpu).unwrap();
            fused
                .step(std::slice::from_ref(&fused_var), std::slice::from_ref(&g), &[0.01])
                .unwrap();
            plain.step(std::slice::from_ref(&plain_var), &[g], &[0.01]).unwrap();
        }
        let a = fused_var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = plain_var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-6, "fused and tensor Adam differ by {worst}");
    }

    #[test]
    fn cpu_network_matches_candle_autograd() {
        // Same initial weights and batches through the hand-written CPU pass and
        // through candle's autograd + Adam: the weights must agree to rounding,
        // whichever layers the CPU pass fuses into pairs.
        let sizes = vec![12, 9, 3, 8, 5];
        let singles = vec![Stage::Single(0), Stage::Single(1), Stage::Single(2), Stage::Single(3)];
        // (activation, stages, first layer's gradient through the second)
        let groupings = [
            (Activation::Relu, singles.clone(), false),
            (Activation::Identity, singles.clone(), false),
            (Activation::Identity, singles, true),
            (Activation::Identity, vec![Stage::Pair(0), Stage::Pair(2)], false),
            (
                Activation::Identity,
                vec![Stage::Single(0), Stage::Single(1), Stage::Pair(2)],
                true,
            ),
            (
                Activation::Identity,
                vec![Stage::Single(0), Stage::Pair(1), Stage::Single(3)],
                false,
            ),
        ];
        for (activation, stages, through_next) in groupings {
            let p = MlpParams {
                activation,
                ..MlpParams::default()
            };
            let mut rng = ChaCha8Rng::seed_from_u64(21);
            let init: Vec<(Vec<f32>, Vec<f32>)> = sizes
                .windows(2)
                .map(|w| {
                    (
                        glorot(&mut rng, w[0], w[1], w[0] * w[1]),
                        glorot(&mut rng, w[0], w[1], w[1]),
                    )
                })
                .collect();
            let mut vars = Vec::new();
            for ((w, b), s) in init.iter().zip(sizes.windows(2)) {
                vars.push(Var::from_vec(w.clone(), (s[1], s[0]), &Device::Cpu).unwrap());
                vars.push(Var::from_vec(b.clone(), s[1], &Device::Cpu).unwrap());
            }
            let adam = Adam::new(&vars, &p).unwrap();
            let mut candle = Net::Candle { vars, adam };
            let mut cpu_net = CpuNet::with_stages(stages.clone(), sizes.clone(), init, &p, 6);
            // 12 -> 9 -> 3 makes the route through the second layer the cheaper one.
            assert_eq!(
                cpu_net.first_through_next.is_some(),
                activation == Activation::Identity && stages[1] == Stage::Single(1)
            );
            if !through_next {
                cpu_net.first_through_next = None;
            }
            let mut cpu = Net::Cpu(Box::new(cpu_net));
            for step in 0..4 {
                let rows = 6 - step % 2;
                let x: Vec<f32> = (0..rows * 12).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
                let y: Vec<u32> = (0..rows).map(|_| rng.gen_range(0..5)).collect();
                let a = cpu.step(&x, &y, activation, 0.01).unwrap();
                let b = candle.step(&x, &y, activation, 0.01).unwrap();
                assert!(
                    (a - b).abs() < 1e-4 * b.abs().max(1.0),
                    "{stages:?} {through_next}: loss {a} vs {b}"
                );
            }
            for ((wa, ba), (wb, bb)) in cpu.layer_tensors().unwrap().iter().zip(candle.layer_tensors().unwrap()) {
                for (t, u) in [(wa, &wb), (ba, &bb)] {
                    let t = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let u = u.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let worst = t.iter().zip(&u).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                    assert!(
                        worst < 1e-5,
                        "{activation:?} {stages:?} {through_next}: parameters differ by {worst}"
                    );
                }
            }
        }
    }

    #[test]
    fn softmax_gradient_has_no_subnormal_values() {
        // Logits far apart, as in a network that fits its training set.
        let z = [0.0f32, -95.0, -150.0, 60.0, 59.0, -40.0];
        let mut d = [0f32; 6];
        let loss = softmax_cross_entropy(&z, 3, 1.0 / 162.0, &mut d);
        assert!(d.iter().all(|v| *v == 0.0 || v.is_normal()), "{d:?}");
        // Still the gradient: the row sums to zero and the loss is -log p(label).
        assert!(d.iter().sum::<f32>().abs() < 1e-7);
        let p3 = 1.0 / (1.0 + (-1.0f64).exp());
        assert!((loss + p3.ln()).abs() < 1e-5, "{loss}");
    }

    #[test]
    fn shortcuts_only_where_they_save_work_and_never_across_relu() {
        // The paper's network at 1% of 16,114 rows: only the 100 -> 1000 -> classes end pairs.
        let paper = [1900, 500, 100, 100, 1000, 1273];
        assert_eq!(
            plan_stages(&paper, 162, false),
            [Stage::Single(0), Stage::Single(1), Stage::Single(2), Stage::Pair(3)]
        );
        assert!(plan_stages(&paper, 162, true)
            .iter()
            .all(|s| matches!(s, Stage::Single(_))));
        assert!(first_through_next(&plan_stages(&paper, 162, false), &paper, 162, false));
        assert!(!first_through_next(&plan_stages(&paper, 162, true), &paper, 162, true));
        // With a batch far narrower than every layer, nothing is worth pairing.
        assert!(plan_stages(&paper, 8, false)
            .iter()
            .all(|s| matches!(s, Stage::Single(_))));
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
