//! f32 CPU kernels for transformer encoders, used by the ESM CPU path
//! ([`crate::models::esm_cpu`]) and the UniRep recurrence; [`linear_bf16`] is
//! the `Linear` of the `--dtype bf16` path (products on [`crate::lowp`]).
//!
//! Why they exist: Candle's CPU backend runs every op as its own pass over a
//! freshly allocated tensor, so an encoder block spends much of its time in page
//! faults, memory traffic and scalar `expf`/`erff`, and attention runs as many
//! tiny batched matmuls over `[batch, heads, tokens, tokens]` score tensors that
//! do not fit any cache. These kernels fuse what can be fused (bias and residual
//! into the GEMM, GELU in one vectorised pass, scores -> softmax -> values per
//! sequence and head in a cache-sized scratch), work on packed sequences so that
//! no time goes to padding, write into buffers the caller reuses, and spread the
//! work over rayon's threads. They compute the same functions as the
//! Candle ops they replace; the unit tests at the bottom and the ESM parity tests
//! check that.
//!
//! Matrices are row-major `&[f32]`; `Linear` weights keep PyTorch's `[out, in]`
//! layout (GEMM reads them transposed through strides, no copy).

use candle_core::Tensor;
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::gemm::{gemm_strided, SharedMut};
use crate::lowp::PackedRhs;
use crate::simd::vectorised;

/// Elements per rayon task in elementwise passes: enough to amortise scheduling.
const ELEMENTS_PER_TASK: usize = 1 << 14;

/// Rows per rayon task for a row-wise pass over rows of `width` elements.
fn rows_per_task(width: usize) -> usize {
    (ELEMENTS_PER_TASK / width.max(1)).max(1)
}

/// `out = x W^T + bias (+ residual)`: PyTorch's `Linear` on `rows` rows of `x`, with `weight`
/// `[out, in]`, optionally adding `residual` (same shape as `out`).
pub fn linear(x: &[f32], rows: usize, weight: &[f32], bias: &[f32], residual: Option<&[f32]>, out: &mut [f32]) {
    let n_out = bias.len();
    assert!(
        n_out > 0 && weight.len().is_multiple_of(n_out),
        "weight is not [out, in]"
    );
    let n_in = weight.len() / n_out;
    assert_eq!(x.len(), rows * n_in, "input is not [rows, in]");
    fill_bias(bias, residual, out);
    // out += x (rows x in) * W^T, W read (out x in) row-major through strides.
    gemm_strided((rows, n_out, n_in), out, true, (x, n_in, 1), (weight, 1, n_in));
}

/// [`linear`] with the weight rounded to bf16 and packed ([`crate::lowp::PackedRhs`] of the
/// `[out, in]` weight): `x` is rounded to bf16 for the product, which sums in f32; the bias and
/// residual are added in f32.
pub fn linear_bf16(
    x: &[f32],
    rows: usize,
    weight: &PackedRhs,
    bias: &[f32],
    residual: Option<&[f32]>,
    out: &mut [f32],
) {
    assert_eq!(weight.n(), bias.len(), "weight is not [out, in] for this bias");
    assert_eq!(x.len(), rows * weight.k(), "input is not [rows, in]");
    assert_eq!(out.len(), rows * weight.n(), "output is not [rows, out]");
    crate::lowp::matmul_abt_bias(x, rows, weight, bias, residual, out);
}

/// `out` = `bias` (+ `residual`) row by row: starting from them lets the GEMM accumulate onto
/// them, with no extra pass over `out`.
fn fill_bias(bias: &[f32], residual: Option<&[f32]>, out: &mut [f32]) {
    let n_out = bias.len();
    assert!(
        n_out > 0 && out.len().is_multiple_of(n_out),
        "output is not [rows, out]"
    );
    let chunk = rows_per_task(n_out) * n_out;
    match residual {
        Some(residual) => {
            assert_eq!(residual.len(), out.len(), "residual is not [rows, out]");
            out.par_chunks_mut(chunk)
                .zip(residual.par_chunks(chunk))
                .for_each(|(out, residual)| {
                    for (out, residual) in out.chunks_exact_mut(n_out).zip(residual.chunks_exact(n_out)) {
                        for ((o, r), b) in out.iter_mut().zip(residual).zip(bias) {
                            *o = r + b;
                        }
                    }
                });
        }
        None => out.par_chunks_mut(chunk).for_each(|out| {
            for out in out.chunks_exact_mut(n_out) {
                out.copy_from_slice(bias);
            }
        }),
    }
}

/// Sum of `f(x)` over a slice in eight independent lanes, so that the loop vectorises (a plain
/// f32 fold is sequential by IEEE rules) and rounding error grows more slowly.
#[inline(always)]
pub(crate) fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    lanes.iter().sum::<f32>() + tail
}

/// PyTorch's `LayerNorm` over the last dimension (`weight.len()` wide): biased variance,
/// `eps` inside the square root.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    assert!(dim > 0 && bias.len() == dim, "LayerNorm weight and bias differ");
    assert!(
        x.len() == out.len() && x.len().is_multiple_of(dim),
        "input is not [rows, dim]"
    );
    let chunk = rows_per_task(dim) * dim;
    out.par_chunks_mut(chunk).zip(x.par_chunks(chunk)).for_each(|(out, x)| {
        for (out, x) in out.chunks_exact_mut(dim).zip(x.chunks_exact(dim)) {
            let mean = lane_sum(x, |v| v) / dim as f32;
            let var = lane_sum(x, |v| (v - mean) * (v - mean)) / dim as f32;
            let inv_std = 1.0 / (var + eps).sqrt();
            for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
                *o = (v - mean) * inv_std * w + b;
            }
        }
    });
}

/// `erf(x)` for f32, within 1e-6 of the exact value (the tests check against libm's f64 `erf`).
///
/// The odd/even rational minimax fit `x P(x^2) / Q(x^2)` on [-4, 4] that Eigen and XLA use
/// (beyond 4, erf is 1 to f32 precision). Branch- and call-free, so loops over it vectorise;
/// libm's scalar `erff` made GELU one of the costliest steps of an ESM block.
#[inline(always)]
#[allow(clippy::excessive_precision)] // coefficients as published for the fit
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_258_013_06e-10 + 2.770_681_424_959_02e-8;
    p = x2 * p - 2.101_024_020_825_08e-6;
    p = x2 * p - 5.692_506_394_623_46e-5;
    p = x2 * p - 7.349_906_303_268_55e-4;
    p = x2 * p - 2.954_599_808_540_25e-3;
    p = x2 * p - 1.609_603_332_624_15e-2;
    let mut q = x2 * -1.456_607_184_649_96e-5 - 2.133_740_552_789_05e-4;
    q = x2 * q - 1.682_826_974_382_03e-3;
    q = x2 * q - 7.373_329_167_204_68e-3;
    q = x2 * q - 1.426_473_905_141_89e-2;
    x * p / q
}

/// `e^x` for f32 (Cephes' `expf` polynomial, within 2 ulp of the exact value), written without
/// branches or calls so that loops over it vectorise; libm's scalar `expf` would otherwise
/// dominate softmax and the UniRep recurrence. Arguments are clamped to about +-88 (results
/// saturate near 0 and f32::MAX).
#[inline(always)]
#[allow(clippy::excessive_precision)] // coefficients as published for the minimax fit
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1;
    let p = p * r * r + r + 1.0;
    // 2^n from its biased exponent n + 127 (in 2..=254 after the clamp). Adding 2^23 puts that
    // integer in the low mantissa bits, and the shift drops the rest: unlike a saturating
    // `as i32` cast, this vectorises.
    let biased = (n + 127.0 + 8_388_608.0).to_bits();
    p * f32::from_bits(biased << 23)
}

#[inline(always)]
fn gelu_erf_slice(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// Exact (erf) GELU in place: `x / 2 * (1 + erf(x / sqrt 2))`, as `nn.GELU()` and Candle's
/// `gelu_erf`, compiled for the CPU's vector extensions (the default x86-64 target only
/// vectorises it 4 wide).
pub fn gelu_erf(x: &mut [f32]) {
    x.par_chunks_mut(ELEMENTS_PER_TASK)
        .for_each(|chunk| vectorised(|| gelu_erf_slice(chunk)));
}

/// Maximum of a slice in sixteen lanes with plain comparisons (`f32::max`'s NaN rules keep a
/// fold from vectorising); at least `f32::MIN`.
#[inline(always)]
pub(crate) fn lane_max(x: &[f32]) -> f32 {
    let mut lanes = [f32::MIN; 16];
    let mut chunks = x.chunks_exact(16);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = if v > *lane { v } else { *lane };
        }
    }
    let mut max = f32::MIN;
    for &v in lanes.iter().chain(chunks.remainder()) {
        max = if v > max { v } else { max };
    }
    max
}

/// Numerically stable softmax of one row in place.
#[inline(always)]
fn softmax(row: &mut [f32]) {
    let max = lane_max(row);
    for v in row.iter_mut() {
        *v = exp(*v - max);
    }
    let inv_sum = 1.0 / lane_sum(row, |v| v);
    for v in row.iter_mut() {
        *v *= inv_sum;
    }
}

crate::simd::multiversion! {
    /// Row-wise softmax over `scores` (`[rows, width]`). A function of its own (not a
    /// [`vectorised`] closure, which LLVM left un-inlined here, so that the rows ran scalar with a
    /// libm `floorf` call per score: a third of the bf16 ESM path's time).
    fn softmax_rows(scores: &mut [f32], width: usize) {
        for row in scores.chunks_exact_mut(width) {
            softmax(row);
        }
    }
}

/// How the CPU path of a transformer multiplies by its projection weights (kept by
/// the model, so that `models::esm` names no fast-path module).
#[derive(Debug, Clone, Default)]
pub enum Products {
    /// f32 weights, read in place from the Candle tensors.
    #[default]
    F32,
    /// bf16 weights packed once, one entry per block.
    Bf16(Vec<PackedLayer>),
}

/// One block's projection weights, rounded to bf16 and packed.
#[derive(Debug, Clone)]
pub struct PackedLayer {
    pub(crate) qkv: PackedRhs,
    pub(crate) attention_output: PackedRhs,
    pub(crate) intermediate: PackedRhs,
    pub(crate) output: PackedRhs,
}

/// How heads lie in a row of a fused projection: `heads * head_dim` queries, then as many keys,
/// then as many values, heads side by side as PyTorch's `view(..., heads, head_dim)` splits them.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub heads: usize,
    pub head_dim: usize,
}

impl Heads {
    pub fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// Multi-head scaled-dot-product self-attention over packed sequences, one rayon task per
/// (sequence, head).
///
/// `qkv` is `[rows, 3 * hidden]` (see [`Heads`]), queries already scaled and, for rotary
/// models, rotated. The rows hold the real tokens of several sequences back to back, no padding:
/// `sequences` gives each one's row range, and a token attends to every token of its own
/// sequence. That is exactly what a padded batch with a padding mask computes for its real
/// tokens, since a masked key's probability underflows to 0, without spending time on
/// padding. `out` is `[rows, hidden]`.
pub fn attention(qkv: &[f32], sequences: &[std::ops::Range<usize>], heads: Heads, out: &mut [f32]) {
    let Heads { heads, head_dim } = heads;
    let hidden = heads * head_dim;
    let row = 3 * hidden;
    let rows = qkv.len() / row.max(1);
    assert_eq!(qkv.len(), rows * row, "qkv is not [rows, 3 * hidden]");
    assert_eq!(out.len(), rows * hidden, "output is not [rows, hidden]");
    assert!(
        sequences.iter().all(|s| s.start <= s.end && s.end <= rows),
        "sequence rows outside qkv"
    );
    let out_ptr = SharedMut(out.as_mut_ptr());
    (0..sequences.len() * heads)
        .into_par_iter()
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, task| {
            let (sequence, h) = (&sequences[task / heads], task % heads);
            let tokens = sequence.len();
            if tokens == 0 {
                return;
            }
            scores.resize(tokens * tokens, 0.0);
            let base = sequence.start * row + h * head_dim;
            let (q, k, v) = (&qkv[base..], &qkv[base + hidden..], &qkv[base + 2 * hidden..]);
            // SAFETY: q, k and v are read at rows 0..tokens (stride `row`) and columns
            // 0..head_dim of their head, all inside `qkv` (asserted above); `scores` holds
            // tokens x tokens.
            unsafe {
                gemm(
                    tokens,
                    tokens,
                    head_dim,
                    scores.as_mut_ptr(),
                    1,
                    tokens as isize,
                    false,
                    q.as_ptr(),
                    1,
                    row as isize,
                    k.as_ptr(),
                    row as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
            softmax_rows(scores, tokens);
            // SAFETY: this task alone writes this sequence's rows, columns
            // h*head_dim..(h+1)*head_dim, of `out` (asserted [rows, hidden]; sequences do not
            // overlap by contract, and a task per head); `out` is borrowed mutably for the whole
            // parallel loop and aliases neither input.
            unsafe {
                gemm(
                    tokens,
                    head_dim,
                    tokens,
                    out_ptr.ptr().add(sequence.start * hidden + h * head_dim),
                    1,
                    hidden as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    tokens as isize,
                    v.as_ptr(),
                    1,
                    row as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
        });
}

/// Scales the queries of `qkv` (`[rows, 3 * hidden]`, see [`Heads`]) by `query_scale` in place,
/// then, given `(cos, sin)` tables (`[positions, head_dim]`), applies rotate-half rotary
/// embeddings to queries and keys, row `i` at position `positions[i]`: the order of HF's
/// `EsmSelfAttention`.
pub fn scale_and_rotate(
    qkv: &mut [f32],
    positions: &[usize],
    heads: Heads,
    query_scale: f32,
    rotary: Option<(&[f32], &[f32])>,
) {
    let head_dim = heads.head_dim;
    let hidden = heads.hidden();
    let row = 3 * hidden;
    assert_eq!(qkv.len(), positions.len() * row, "qkv is not [positions, 3 * hidden]");
    if let Some((cos, sin)) = rotary {
        assert!(
            cos.len() == sin.len() && cos.len().is_multiple_of(head_dim.max(1)),
            "rotary tables are not [positions, head_dim]"
        );
        assert!(
            positions.iter().all(|&p| (p + 1) * head_dim <= cos.len()),
            "position beyond the rotary tables"
        );
        assert!(head_dim.is_multiple_of(2), "rotary embeddings need an even head size");
    }
    let half = head_dim / 2;
    let rows_per = rows_per_task(row);
    qkv.par_chunks_mut(rows_per * row)
        .zip(positions.par_chunks(rows_per))
        .for_each(|(chunk, positions)| {
            for (token_row, &position) in chunk.chunks_exact_mut(row).zip(positions) {
                let (queries, rest) = token_row.split_at_mut(hidden);
                for q in queries.iter_mut() {
                    *q *= query_scale;
                }
                let Some((cos, sin)) = rotary else { continue };
                let cos = &cos[position * head_dim..(position + 1) * head_dim];
                let sin = &sin[position * head_dim..(position + 1) * head_dim];
                for x in queries
                    .chunks_exact_mut(head_dim)
                    .chain(rest[..hidden].chunks_exact_mut(head_dim))
                {
                    for j in 0..half {
                        let (a, c) = (x[j], x[j + half]);
                        // x * cos + rotate_half(x) * sin, rotate_half(x) = (-x2, x1).
                        x[j] = a * cos[j] + -c * sin[j];
                        x[j + half] = c * cos[j + half] + a * sin[j + half];
                    }
                }
            }
        });
}

/// A contiguous f32 CPU tensor's elements, borrowed (no copy) while the view lives.
pub(crate) struct CpuF32<'a> {
    storage: candle_core::StorageRef<'a>,
    range: std::ops::Range<usize>,
}

impl<'a> CpuF32<'a> {
    pub(crate) fn of(tensor: &'a Tensor) -> candle_core::Result<Self> {
        let (storage, layout) = tensor.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the CPU kernels need a contiguous tensor");
        };
        match &*storage {
            candle_core::Storage::Cpu(cpu) => {
                cpu.as_slice::<f32>()?;
            }
            _ => candle_core::bail!("the CPU kernels need a tensor on the CPU"),
        }
        Ok(CpuF32 {
            storage,
            range: start..end,
        })
    }
}

impl std::ops::Deref for CpuF32<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &*self.storage {
            candle_core::Storage::Cpu(cpu) => {
                &cpu.as_slice::<f32>().expect("f32 checked in CpuF32::of")[self.range.clone()]
            }
            _ => unreachable!("CPU storage checked in CpuF32::of"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn erf_is_within_1e6_of_libm_everywhere() {
        let mut worst = 0f64;
        let mut at = 0f32;
        // Dense grid over the whole interesting range plus the saturated tails.
        let steps = 2_000_000;
        for i in 0..=steps {
            let x = -10.0 + 20.0 * i as f32 / steps as f32;
            let err = (erf(x) as f64 - libm::erf(x as f64)).abs();
            if err > worst {
                worst = err;
                at = x;
            }
        }
        assert!(worst <= 1e-6, "max |erf error| {worst:e} at {at}");
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
    }

    #[test]
    fn gelu_matches_exact_definition() {
        let mut x: Vec<f32> = (0..100_003).map(|i| -12.0 + 24.0 * i as f32 / 100_003.0).collect();
        let want: Vec<f32> = x
            .iter()
            .map(|&v| (0.5 * v as f64 * (1.0 + libm::erf(v as f64 / std::f64::consts::SQRT_2))) as f32)
            .collect();
        gelu_erf(&mut x);
        let worst = x
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0f32, f32::max);
        assert!(worst <= 2e-6, "GELU relative error {worst}");
    }

    #[test]
    fn exp_matches_std() {
        for i in 0..=20_000 {
            let x = -80.0 + 160.0 * i as f32 / 20_000.0;
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            assert!(rel <= 3e-7, "exp({x}) relative error {rel}");
        }
    }

    #[test]
    fn linear_matches_reference_with_bias_and_residual() {
        let (rows, n_in, n_out) = (37, 29, 45);
        let x = random(rows * n_in, 1);
        let w = random(n_out * n_in, 2);
        let b = random(n_out, 3);
        let residual = random(rows * n_out, 4);
        let mut want = vec![0f32; rows * n_out];
        for r in 0..rows {
            for o in 0..n_out {
                let dot: f64 = (0..n_in).map(|i| x[r * n_in + i] as f64 * w[o * n_in + i] as f64).sum();
                want[r * n_out + o] = (dot + b[o] as f64 + residual[r * n_out + o] as f64) as f32;
            }
        }
        let mut out = vec![f32::NAN; rows * n_out];
        linear(&x, rows, &w, &b, Some(&residual), &mut out);
        assert!(max_abs_diff(&out, &want) < 1e-5);
        let mut plain = vec![f32::NAN; rows * n_out];
        linear(&x, rows, &w, &b, None, &mut plain);
        let without: Vec<f32> = want.iter().zip(&residual).map(|(a, r)| a - r).collect();
        assert!(max_abs_diff(&plain, &without) < 1e-5);
    }

    #[test]
    fn bf16_linear_is_the_f32_linear_of_rounded_operands() {
        let (rows, n_in, n_out) = (37, 29, 45);
        let x = random(rows * n_in, 1);
        let w = random(n_out * n_in, 2);
        let b = random(n_out, 3);
        let residual = random(rows * n_out, 4);
        let round = |v: &[f32]| v.iter().map(|&v| crate::lowp::round_bf16(v)).collect::<Vec<_>>();
        let mut want = vec![0f32; rows * n_out];
        linear(&round(&x), rows, &round(&w), &b, Some(&residual), &mut want);
        let mut out = vec![f32::NAN; rows * n_out];
        linear_bf16(
            &x,
            rows,
            &PackedRhs::pack(&w, n_out, n_in),
            &b,
            Some(&residual),
            &mut out,
        );
        // Same exact products, f32 sums in another order.
        assert!(max_abs_diff(&out, &want) < 1e-5);
    }

    #[test]
    fn layer_norm_matches_candle() {
        let (rows, dim) = (33, 480);
        let x: Vec<f32> = random(rows * dim, 5).iter().map(|v| v * 7.0 + 3.0).collect();
        let w = random(dim, 6);
        let b = random(dim, 7);
        let dev = candle_core::Device::Cpu;
        let ln = candle_nn::LayerNorm::new(
            candle_core::Tensor::new(w.as_slice(), &dev).unwrap(),
            candle_core::Tensor::new(b.as_slice(), &dev).unwrap(),
            1e-5,
        );
        let xt = candle_core::Tensor::from_vec(x.clone(), (rows, dim), &dev).unwrap();
        let want = candle_core::Module::forward(&ln, &xt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut out = vec![0f32; rows * dim];
        layer_norm(&x, &w, &b, 1e-5, &mut out);
        assert!(max_abs_diff(&out, &want) < 1e-5);
    }

    /// Attention the plain way with Candle ops on a padded batch (as the ESM Candle path
    /// computes it): `qkv` `[b * t, 3 * hidden]`, `mask` `[b, t]`.
    fn candle_attention(qkv: &[f32], mask: &[f32], b: usize, t: usize, heads: Heads) -> Vec<f32> {
        use candle_core::{Device, Tensor, D};
        let dev = Device::Cpu;
        let (h, d) = (heads.heads, heads.head_dim);
        let qkv = Tensor::from_vec(qkv.to_vec(), (b, t, 3 * h * d), &dev).unwrap();
        let part = |i: usize| {
            qkv.narrow(2, i * h * d, h * d)
                .unwrap()
                .contiguous()
                .unwrap()
                .reshape((b, t, h, d))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (q, k, v) = (part(0), part(1), part(2));
        let mask = Tensor::from_vec(mask.to_vec(), (b, t), &dev).unwrap();
        let bias = ((1.0 - mask).unwrap() * f32::MIN as f64)
            .unwrap()
            .reshape((b, 1, 1, t))
            .unwrap();
        let scores = q.matmul(&k.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
        let probs = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        probs
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b * t, h * d))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn packed_attention_matches_padded_candle_attention() {
        let (b, t) = (4, 23);
        let heads = Heads { heads: 4, head_dim: 6 };
        let row = 3 * heads.hidden();
        let qkv: Vec<f32> = random(b * t * row, 8).iter().map(|v| v * 3.0).collect();
        // Full, right-padded, a masked token that is not trailing, and a single token.
        let mut mask = vec![1f32; b * t];
        mask[t + 15..2 * t].fill(0.0);
        mask[2 * t + 4] = 0.0;
        mask[2 * t + 20..3 * t].fill(0.0);
        mask[3 * t + 1..].fill(0.0);
        let want = candle_attention(&qkv, &mask, b, t, heads);
        // The same tokens packed, padding left out.
        let kept: Vec<usize> = (0..b * t).filter(|&i| mask[i] != 0.0).collect();
        let mut sequences = Vec::new();
        for s in 0..b {
            let start = kept.iter().position(|&i| i >= s * t).unwrap();
            let end = kept.iter().position(|&i| i >= (s + 1) * t).unwrap_or(kept.len());
            sequences.push(start..end);
        }
        let packed: Vec<f32> = kept
            .iter()
            .flat_map(|&i| qkv[i * row..(i + 1) * row].to_vec())
            .collect();
        let mut out = vec![f32::NAN; kept.len() * heads.hidden()];
        attention(&packed, &sequences, heads, &mut out);
        let hidden = heads.hidden();
        let expected: Vec<f32> = kept
            .iter()
            .flat_map(|&i| want[i * hidden..(i + 1) * hidden].to_vec())
            .collect();
        let worst = max_abs_diff(&out, &expected);
        assert!(worst < 1e-5, "attention differs by {worst}");
    }

    #[test]
    fn rotation_matches_rotate_half_definition() {
        let heads = Heads { heads: 2, head_dim: 4 };
        let row = 3 * heads.hidden();
        let positions = [0usize, 1, 2, 3, 4, 0, 1, 3];
        let qkv = random(positions.len() * row, 9);
        let cos = random(5 * heads.head_dim, 10);
        let sin = random(5 * heads.head_dim, 11);
        let mut got = qkv.clone();
        scale_and_rotate(&mut got, &positions, heads, 0.5, Some((&cos, &sin)));
        for (r, &p) in positions.iter().enumerate() {
            for part in 0..3 {
                for h in 0..heads.heads {
                    let at = r * row + part * heads.hidden() + h * heads.head_dim;
                    let scale = if part == 0 { 0.5 } else { 1.0 };
                    let x: Vec<f32> = qkv[at..at + 4].iter().map(|v| v * scale).collect();
                    let want: Vec<f32> = if part == 2 {
                        x.clone()
                    } else {
                        let rot = [-x[2], -x[3], x[0], x[1]];
                        (0..4)
                            .map(|j| x[j] * cos[p * 4 + j] + rot[j] * sin[p * 4 + j])
                            .collect()
                    };
                    assert!(
                        max_abs_diff(&got[at..at + 4], &want) < 1e-6,
                        "row {r} part {part} head {h}"
                    );
                }
            }
        }
        // Without tables only the queries are scaled.
        let mut scaled = qkv.clone();
        scale_and_rotate(&mut scaled, &positions, heads, 0.5, None);
        for (r, (a, b)) in scaled.iter().zip(&qkv).enumerate() {
            let want = if r % row < heads.hidden() { b * 0.5 } else { *b };
            assert_eq!(*a, want);
        }
    }
}
