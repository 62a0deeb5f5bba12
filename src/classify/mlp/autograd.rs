//! The MLP's training path on devices other than the CPU: candle variables,
//! the model's own [`forward`](super::forward), candle's cross-entropy and
//! autograd, and `Adam` on tensors. It computes the same model as the CPU
//! engine (`cpu.rs`); `train.rs` checks them against each other.

use candle_core::{Device, Tensor, Var};

use super::adam::Adam;
use super::{forward, Activation, MlpParams};

/// The network as candle variables, weights and biases alternating, with their optimiser.
pub(super) struct CandleNet {
    vars: Vec<Var>,
    adam: Adam,
}

impl CandleNet {
    /// Variables on `device` from the initial `(weights, biases)` of every layer
    /// (`sizes`: layer widths, input first; weights are `(out, in)`).
    pub(super) fn new(
        sizes: &[usize],
        init: Vec<(Vec<f32>, Vec<f32>)>,
        p: &MlpParams,
        device: &Device,
    ) -> candle_core::Result<CandleNet> {
        let mut vars = Vec::new();
        for ((weight, bias), w) in init.into_iter().zip(sizes.windows(2)) {
            vars.push(Var::from_vec(weight, (w[1], w[0]), device)?);
            vars.push(Var::from_vec(bias, w[1], device)?);
        }
        let adam = Adam::new(&vars, p)?;
        Ok(CandleNet { vars, adam })
    }

    pub(super) fn layer_tensors(&self) -> Vec<(Tensor, Tensor)> {
        layer_tensors(&self.vars)
    }

    /// Trains on one mini-batch; returns the summed cross-entropy of its rows.
    pub(super) fn step(&mut self, x: &[f32], y: &[u32], activation: Activation, l2: f64) -> candle_core::Result<f64> {
        let CandleNet { vars, adam } = self;
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

fn layer_tensors(vars: &[Var]) -> Vec<(Tensor, Tensor)> {
    vars.chunks_exact(2)
        .map(|wb| (wb[0].as_tensor().clone(), wb[1].as_tensor().clone()))
        .collect()
}

/// L2 factor of every parameter tensor (weights, biases alternating): the penalty applies to weights only.
fn penalties(n_vars: usize, l2: f64) -> Vec<f64> {
    (0..n_vars).map(|i| if i % 2 == 0 { l2 } else { 0.0 }).collect()
}
