//! Training the MLP: seeded Glorot initialisation, the epoch loop over
//! reshuffled mini-batches, the dev error after every epoch, early stopping
//! and the snapshot of the best dev epoch. The network it trains is the CPU
//! engine (`cpu.rs`) on the CPU and candle's autograd (`autograd.rs`) elsewhere.

use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::autograd::CandleNet;
use super::cpu::CpuNet;
use super::{forward, Activation, EpochLog, Mlp, MlpParams, Scaler, PREDICT_BATCH};
use crate::classify::ClassifyError;
use crate::vectors::VectorSet;

/// Weight and bias tensors of every layer.
type Layers = Vec<(Tensor, Tensor)>;

/// The trainable network: plain buffers on the CPU, candle variables and autograd elsewhere.
enum Net {
    Cpu(Box<CpuNet>),
    Candle(CandleNet),
}

impl Net {
    fn layer_tensors(&self) -> candle_core::Result<Vec<(Tensor, Tensor)>> {
        match self {
            Net::Cpu(net) => net.layer_tensors(),
            Net::Candle(net) => Ok(net.layer_tensors()),
        }
    }

    /// Trains on one mini-batch; returns the summed cross-entropy of its rows.
    fn step(&mut self, x: &[f32], y: &[u32], activation: Activation, l2: f64) -> candle_core::Result<f64> {
        match self {
            Net::Cpu(net) => Ok(net.step(x, y, l2)),
            Net::Candle(net) => net.step(x, y, activation, l2),
        }
    }
}

/// `n` values uniform in `±sqrt(6 / (fan_in + fan_out))`, scikit-learn's
/// initialisation of a layer's weights and biases.
fn glorot(rng: &mut ChaCha8Rng, fan_in: usize, fan_out: usize, n: usize) -> Vec<f32> {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    (0..n).map(|_| rng.gen_range(-bound..bound)).collect()
}

/// Trains on checked inputs: `labels` is the class of every training row and
/// `dev` the dev vectors with their classes (`None` for a family absent from training).
pub(super) fn train_mlp(
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
        Net::Candle(CandleNet::new(&sizes, init, p, device)?)
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

/// Predicted class of every row of `x`, `PREDICT_BATCH` rows at a time (the dev error of an epoch).
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

#[cfg(test)]
mod tests {
    use super::super::cpu::Stage;
    use super::*;

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
            let mut candle = Net::Candle(CandleNet::new(&sizes, init.clone(), &p, &Device::Cpu).unwrap());
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
}
