//! A `Linear` layer whose product can run in bf16 on the CPU: the `--dtype bf16`
//! CPU path of the encoders that run on Candle ops (T5, BERT).
//!
//! A [`Projection`] loads and computes exactly like Candle's `Linear` (HF's
//! `[out, in]` weight and optional bias, same tensor names) until
//! [`Projection::use_bf16_products`] rounds its weight to bf16 and packs it once
//! ([`crate::lowp`]). From then on its forward multiplies the bf16-rounded input
//! by that weight on AMX tiles, AVX512-BF16 or f32 (whichever the CPU has),
//! summing in f32 and adding the bias in f32, and returns f32. Everything around
//! the projections (residual stream, norms, softmax, activations) stays in the
//! model's f32 Candle ops: this is the split PyTorch's
//! `torch.autocast("cpu", dtype=torch.bfloat16)` makes, and running those in bf16
//! is what made Candle's own bf16 CPU path drift from f32 by up to ~1.
//!
//! The ESM CPU path multiplies through the same packed weights but inside its
//! own fused kernels ([`crate::models::esm_cpu`]).

use candle_core::{DType, Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::cpu_kernels::CpuF32;
use crate::lowp::PackedRhs;

/// A weight rounded to bf16 and packed, and its bias kept in f32.
#[derive(Debug, Clone)]
struct Bf16Weight {
    weight: PackedRhs,
    bias: Option<Vec<f32>>,
}

/// `y = x Wᵀ + b`, in f32 (Candle's `Linear`) or with bf16 products (module doc).
#[derive(Debug, Clone)]
pub struct Projection {
    linear: Linear,
    bf16: Option<Bf16Weight>,
}

impl Projection {
    /// Loads `weight` (`[out_dim, in_dim]`) and, with `bias`, `bias` (`[out_dim]`) from `vb`.
    pub fn load(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> candle_core::Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias { Some(vb.get(out_dim, "bias")?) } else { None };
        Ok(Projection {
            linear: Linear::new(weight, bias),
            bf16: None,
        })
    }

    /// Rounds and packs the weight for bf16 products; needs an f32 weight on the CPU.
    pub fn use_bf16_products(&mut self) -> candle_core::Result<()> {
        let weight = self.linear.weight();
        if weight.dtype() != DType::F32 || !weight.device().is_cpu() {
            candle_core::bail!("bf16 CPU products need an f32 model on the CPU");
        }
        let (n, k) = weight.dims2()?;
        let packed = PackedRhs::pack(&CpuF32::of(&weight.contiguous()?)?, n, k);
        let bias = match self.linear.bias() {
            Some(bias) => Some(bias.to_vec1::<f32>()?),
            None => None,
        };
        self.bf16 = Some(Bf16Weight { weight: packed, bias });
        Ok(())
    }

    /// Whether the forward multiplies in bf16.
    pub fn uses_bf16_products(&self) -> bool {
        self.bf16.is_some()
    }

    pub fn weight(&self) -> &Tensor {
        self.linear.weight()
    }
}

impl Module for Projection {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let Some(bf16) = &self.bf16 else {
            return self.linear.forward(xs);
        };
        let dims = xs.dims();
        let Some((&k, outer)) = dims.split_last() else {
            candle_core::bail!("a projection's input needs at least one dimension");
        };
        if k != bf16.weight.k() {
            candle_core::bail!(
                "projection input has {k} features, the weight takes {}",
                bf16.weight.k()
            );
        }
        let (m, n) = (outer.iter().product::<usize>(), bf16.weight.n());
        let xs = xs.to_dtype(DType::F32)?.contiguous()?;
        let mut out = vec![0f32; m * n];
        let x = CpuF32::of(&xs)?;
        match &bf16.bias {
            Some(bias) => crate::lowp::matmul_abt_bias(&x, m, &bf16.weight, bias, None, &mut out),
            None => crate::lowp::matmul_abt(&x, m, &bf16.weight, &mut out, false),
        }
        let mut shape = outer.to_vec();
        shape.push(n);
        Tensor::from_vec(out, shape, xs.device())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::Device;

    use super::*;
    use crate::lowp::{round_bf16, Level};

    fn projection(bias: bool) -> Projection {
        let (out_dim, in_dim) = (40, 70);
        let weight: Vec<f32> = (0..out_dim * in_dim)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 61.0)
            .collect();
        let mut tensors = HashMap::new();
        tensors.insert(
            "weight".to_string(),
            Tensor::from_vec(weight, (out_dim, in_dim), &Device::Cpu).unwrap(),
        );
        let bias_values: Vec<f32> = (0..out_dim).map(|i| i as f32 / 7.0 - 3.0).collect();
        tensors.insert(
            "bias".to_string(),
            Tensor::from_vec(bias_values, out_dim, &Device::Cpu).unwrap(),
        );
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        Projection::load(in_dim, out_dim, bias, vb).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// `xs` (3 x 5 x 70) with values that are not bf16-exact.
    fn input() -> Tensor {
        let values: Vec<f32> = (0..3 * 5 * 70).map(|i| ((i * 53 % 97) as f32 - 48.0) / 29.3).collect();
        Tensor::from_vec(values, (3, 5, 70), &Device::Cpu).unwrap()
    }

    /// The bf16 path computes the products of the bf16-rounded operands exactly (each product of two
    /// bf16 values is exact in f32), so it must equal the f32 `Linear` run on rounded operands up to
    /// the order of the f32 additions, with and without a bias, whatever level the CPU allows.
    #[test]
    fn bf16_products_equal_the_f32_linear_on_rounded_operands() {
        for bias in [false, true] {
            let mut bf16 = projection(bias);
            let reference = {
                let rounded_weight = bf16.weight().to_vec2::<f32>().unwrap();
                let rounded: Vec<f32> = rounded_weight.iter().flatten().map(|&v| round_bf16(v)).collect();
                let weight = Tensor::from_vec(rounded, bf16.weight().dims(), &Device::Cpu).unwrap();
                let linear = Linear::new(weight, bf16.linear.bias().cloned());
                let xs: Vec<f32> = input().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let xs = Tensor::from_vec(
                    xs.iter().map(|&v| round_bf16(v)).collect::<Vec<_>>(),
                    (3, 5, 70),
                    &Device::Cpu,
                )
                .unwrap();
                linear.forward(&xs).unwrap()
            };
            bf16.use_bf16_products().unwrap();
            assert!(bf16.uses_bf16_products());
            let got = bf16.forward(&input()).unwrap();
            assert_eq!(got.dims(), &[3, 5, 40]);
            let diff = max_abs_diff(&got, &reference);
            assert!(
                diff < 1e-4,
                "bias {bias}: max |diff| {diff} at level {}",
                Level::detected().name()
            );
        }
    }

    #[test]
    fn f32_forward_is_candles_linear() {
        let p = projection(true);
        let linear = Linear::new(p.weight().clone(), p.linear.bias().cloned());
        let diff = max_abs_diff(&p.forward(&input()).unwrap(), &linear.forward(&input()).unwrap());
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn a_wrong_input_width_is_an_error_not_a_panic() {
        let mut p = projection(false);
        p.use_bf16_products().unwrap();
        let xs = Tensor::zeros((2, 69), DType::F32, &Device::Cpu).unwrap();
        assert!(p.forward(&xs).unwrap_err().to_string().contains("69 features"));
    }
}
