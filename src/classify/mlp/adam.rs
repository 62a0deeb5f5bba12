//! The MLP's optimiser: Adam as scikit-learn's `AdamOptimizer` writes it
//! (bias correction folded into the step size, `eps` added to `sqrt(v)`), with
//! the L2 penalty's gradient added first. `adam_update` is the fused in-place
//! step on plain f32 buffers that the CPU engine (`cpu.rs`) calls directly;
//! `Adam` holds the moments of candle variables for the autograd path.

use candle_core::{DType, Tensor, Var};
use rayon::prelude::*;

use super::MlpParams;
use crate::simd::vectorised;

/// Adam as scikit-learn's `AdamOptimizer` computes it, with the L2 penalty's
/// gradient (`l2 * w`, weights only) added to each gradient first.
///
/// On the CPU the moments live in plain vectors and one parallel pass per
/// parameter tensor does penalty, both moments and the update: the
/// tensor-op form costs about a dozen full passes and temporaries per tensor
/// per mini-batch, which dominated an epoch. Other devices use tensor ops.
pub(super) struct Adam {
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
    pub(super) fn new(vars: &[Var], p: &MlpParams) -> candle_core::Result<Adam> {
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
    pub(super) fn step(&mut self, vars: &[Var], grads: &[Tensor], l2: &[f64]) -> candle_core::Result<()> {
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
pub(super) fn adam_update(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], coef: [f64; 5]) {
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

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

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
}
