//! The MLP's CPU training engine: the network as plain f32 buffers with a
//! hand-written backward pass. GEMMs go through `crate::gemm` with transposes
//! as strides, softmax and cross-entropy are fused, the input batch gets no
//! gradient, and Adam updates the buffers in place (`adam_update`). With the
//! identity activation, layers where a narrow one feeds a wide one train
//! through their product (`Stage`) and the first layer's weight gradient may
//! go through the second (`first_through_next`); both only reorder sums.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::adam::adam_update;
use super::{Activation, MlpParams};
use crate::gemm::{gemm_strided, matmul_ab};
use crate::models::cpu_kernels::{exp, lane_max, lane_sum, linear};
use crate::simd::vectorised;

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
pub(super) enum Stage {
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
pub(super) struct CpuNet {
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
    pub(super) first_through_next: Option<Vec<f32>>,
    delta: Vec<f32>,
    delta_prev: Vec<f32>,
    coef: [f64; 4],
    t: i32,
}

impl CpuNet {
    pub(super) fn new(sizes: Vec<usize>, params: Vec<(Vec<f32>, Vec<f32>)>, p: &MlpParams, batch: usize) -> CpuNet {
        let relu = p.activation == Activation::Relu;
        CpuNet::with_stages(plan_stages(&sizes, batch, relu), sizes, params, p, batch)
    }

    pub(super) fn with_stages(
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
    pub(super) fn step(&mut self, x: &[f32], y: &[u32], l2: f64) -> f64 {
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
    pub(super) fn layer_tensors(&self) -> candle_core::Result<Vec<(Tensor, Tensor)>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
