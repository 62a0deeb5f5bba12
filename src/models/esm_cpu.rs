//! The CPU fast path of [`EsmModel`]: the same function as its Candle
//! `forward`, run on [`crate::models::cpu_kernels`] over plain buffers.
//!
//! An f32 model on the CPU runs its blocks here ([`EsmModel::forward_cpu`]): the
//! real tokens of a batch are packed without padding, each projection is one
//! GEMM with its bias and residual folded in (query, key and value stacked into
//! one at load time), and attention runs per sequence and head. Real tokens get
//! the same values as [`EsmModel::forward_candle`] (the tests below compare the
//! two); padding positions, which HF fills with values nothing reads, stay zero.
//!
//! # bf16 (`--dtype bf16` on the CPU)
//! [`EsmModel::use_bf16_products`] rounds the four projection weights of every
//! block to bf16 and packs them once ([`crate::lowp`]); the projections then
//! multiply bf16-rounded activations by them on AMX tiles (or AVX512-BF16, or
//! f32 elsewhere), summing in f32. Everything else stays f32, as under
//! PyTorch's `torch.autocast("cpu", dtype=torch.bfloat16)`: the residual
//! stream, LayerNorm, the softmax and its scores, GELU, the embeddings and the
//! pooling. (Running these in bf16, as Candle's bf16 CPU path does, is what
//! made the old `--dtype bf16` vectors differ from f32 by up to ~1: an 8-bit
//! mantissa cannot hold a residual stream summed over 12+ blocks, nor
//! LayerNorm's mean and variance.) Attention's two products stay f32: per head
//! they are small (`tokens x 20-64`), and as bf16 products (tried) they were
//! slower, the head depth and width padded to the kernels' 32 and each head's
//! keys and values packed per sequence.

use candle_core::{DType, Tensor};
use candle_nn::{LayerNorm, Linear};

use super::cpu_kernels::{self, CpuF32, Heads, PackedLayer, Products};
use super::esm::{
    EsmAttention, EsmEncoder, EsmIntermediate, EsmLayer, EsmModel, EsmOutput, EsmSelfAttention, EsmSelfOutput,
};
use crate::lowp::PackedRhs;

/// One ESM block's four projections, rounded to bf16 and packed.
fn pack_layer(layer: &EsmLayer) -> candle_core::Result<PackedLayer> {
    let pack = |linear: &Linear| -> candle_core::Result<PackedRhs> {
        let (n, k) = linear.weight().dims2()?;
        Ok(PackedRhs::pack(&CpuF32::of(linear.weight())?, n, k))
    };
    Ok(PackedLayer {
        qkv: pack(&layer.attention.self_attention.qkv)?,
        attention_output: pack(&layer.attention.output.dense)?,
        intermediate: pack(&layer.intermediate.dense)?,
        output: pack(&layer.output.dense)?,
    })
}

impl EsmModel {
    /// Rounds and packs the projection weights for bf16 products on the CPU path (see the module
    /// doc). Needs an f32 model on the CPU.
    pub fn use_bf16_products(&mut self) -> candle_core::Result<()> {
        if !self.uses_cpu_kernels() {
            candle_core::bail!("bf16 CPU products need an f32 model on the CPU");
        }
        let layers = self
            .encoder
            .layers
            .iter()
            .map(pack_layer)
            .collect::<candle_core::Result<_>>()?;
        self.products = Products::Bf16(layers);
        Ok(())
    }

    /// Whether the CPU path multiplies in bf16.
    pub fn uses_bf16_products(&self) -> bool {
        matches!(self.products, Products::Bf16(_))
    }

    /// [`EsmModel::forward`] through the CPU kernels: the embeddings in Candle (one cheap pass),
    /// then the blocks on the real tokens only, packed without padding into buffers reused from
    /// layer to layer. A padding position's output is its embedding, zero, where HF and
    /// [`EsmModel::forward_candle`] leave values that nothing reads; every real token's output is
    /// the same (to f32 rounding, or to bf16 rounding of the products with
    /// [`Self::use_bf16_products`]).
    pub fn forward_cpu(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        layer: usize,
    ) -> candle_core::Result<Tensor> {
        if !self.uses_cpu_kernels() {
            candle_core::bail!(
                "the ESM CPU kernels need an f32 model on the CPU, not {:?} on {:?}",
                self.dtype,
                self.device
            );
        }
        let mask = attention_mask.to_dtype(DType::F32)?;
        let hidden = self.embeddings.forward(input_ids, &mask)?;
        if layer == 0 {
            return Ok(hidden);
        }
        let (b, t, h) = hidden.dims3()?;
        let mask: Vec<f32> = mask.flatten_all()?.to_vec1()?;
        let mut padded: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
        let mut kept = Vec::with_capacity(b * t);
        let mut positions = Vec::with_capacity(b * t);
        let mut sequences = Vec::with_capacity(b);
        for (row, mask) in mask.chunks_exact(t.max(1)).enumerate() {
            let start = kept.len();
            for (position, &m) in mask.iter().enumerate() {
                if m != 0.0 {
                    kept.push(row * t + position);
                    positions.push(position);
                }
            }
            sequences.push(start..kept.len());
        }
        let mut packed = Vec::with_capacity(kept.len() * h);
        for &i in &kept {
            packed.extend_from_slice(&padded[i * h..(i + 1) * h]);
        }
        let rotary = match &self.rotary_embeddings {
            Some(r) => {
                let (cos, sin) = r.forward(t)?;
                Some((cos.flatten_all()?.to_vec1()?, sin.flatten_all()?.to_vec1()?))
            }
            None => None,
        };
        let batch = CpuBatch {
            heads: Heads {
                heads: self.num_heads,
                head_dim: h / self.num_heads,
            },
            sequences,
            positions,
            rotary,
        };
        encoder_forward(&self.encoder, &self.products, &mut packed, &batch, layer)?;
        for (&i, row) in kept.iter().zip(packed.chunks_exact(h)) {
            padded[i * h..(i + 1) * h].copy_from_slice(row);
        }
        Tensor::from_vec(padded, (b, t, h), &self.device)
    }
}

/// What every block of one CPU forward pass shares.
struct CpuBatch {
    heads: Heads,
    /// Each sequence's range of packed rows (its real tokens).
    sequences: Vec<std::ops::Range<usize>>,
    /// Each packed row's position in its sequence (its column in the padded batch).
    positions: Vec<usize>,
    /// `(cos, sin)`, each `[tokens, head_dim]`, for rotary models.
    rotary: Option<(Vec<f32>, Vec<f32>)>,
}

/// Activations of one block, allocated once per forward pass: fresh multi-megabyte buffers per op
/// cost page faults that rival the arithmetic.
struct CpuBuffers {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    attention_output: Vec<f32>,
    intermediate: Vec<f32>,
}

impl CpuBuffers {
    fn new(rows: usize, hidden: usize, intermediate: usize) -> Self {
        CpuBuffers {
            normed: vec![0.0; rows * hidden],
            qkv: vec![0.0; rows * 3 * hidden],
            context: vec![0.0; rows * hidden],
            attention_output: vec![0.0; rows * hidden],
            intermediate: vec![0.0; rows * intermediate],
        }
    }
}

/// `EsmEncoder::forward` on the packed tokens `hidden` `[rows, hidden]`, in place.
fn encoder_forward(
    encoder: &EsmEncoder,
    products: &Products,
    hidden: &mut Vec<f32>,
    batch: &CpuBatch,
    upto: usize,
) -> candle_core::Result<()> {
    let rows = batch.positions.len();
    let intermediate = match encoder.layers.first() {
        Some(layer) => layer.intermediate.dense.weight().dim(0)?,
        None => 0,
    };
    let mut bufs = CpuBuffers::new(rows, batch.heads.hidden(), intermediate);
    for (i, layer) in encoder.layers.iter().take(upto).enumerate() {
        let packed = match products {
            Products::F32 => None,
            Products::Bf16(layers) => Some(&layers[i]),
        };
        layer_forward(layer, packed, hidden, batch, &mut bufs)?;
    }
    if upto == encoder.layers.len() {
        layer_norm(&encoder.emb_layer_norm_after, hidden, &mut bufs.normed)?;
        std::mem::swap(hidden, &mut bufs.normed);
    }
    Ok(())
}

/// `EsmLayer::forward` on `hidden` `[rows, hidden]` in place.
fn layer_forward(
    layer: &EsmLayer,
    packed: Option<&PackedLayer>,
    hidden: &mut [f32],
    batch: &CpuBatch,
    bufs: &mut CpuBuffers,
) -> candle_core::Result<()> {
    attention_forward(&layer.attention, packed, hidden, batch, bufs)?;
    layer_norm(&layer.layer_norm, &bufs.attention_output, &mut bufs.normed)?;
    intermediate_forward(
        &layer.intermediate,
        packed.map(|p| &p.intermediate),
        &bufs.normed,
        &mut bufs.intermediate,
    )?;
    output_forward(
        &layer.output,
        packed.map(|p| &p.output),
        &bufs.intermediate,
        &bufs.attention_output,
        hidden,
    )
}

/// `EsmAttention::forward`: `hidden` -> `bufs.attention_output`.
fn attention_forward(
    attention: &EsmAttention,
    packed: Option<&PackedLayer>,
    hidden: &[f32],
    batch: &CpuBatch,
    bufs: &mut CpuBuffers,
) -> candle_core::Result<()> {
    layer_norm(&attention.layer_norm, hidden, &mut bufs.normed)?;
    self_attention_forward(
        &attention.self_attention,
        packed.map(|p| &p.qkv),
        &bufs.normed,
        batch,
        &mut bufs.qkv,
        &mut bufs.context,
    )?;
    self_output_forward(
        &attention.output,
        packed.map(|p| &p.attention_output),
        &bufs.context,
        hidden,
        &mut bufs.attention_output,
    )
}

/// `EsmSelfAttention::forward`: `normed` `[rows, hidden]` -> `context` `[rows, hidden]`.
fn self_attention_forward(
    attention: &EsmSelfAttention,
    packed: Option<&PackedRhs>,
    normed: &[f32],
    batch: &CpuBatch,
    qkv: &mut [f32],
    context: &mut [f32],
) -> candle_core::Result<()> {
    linear(&attention.qkv, packed, normed, None, qkv)?;
    let rotary = batch.rotary.as_ref().map(|(cos, sin)| (cos.as_slice(), sin.as_slice()));
    cpu_kernels::scale_and_rotate(
        qkv,
        &batch.positions,
        batch.heads,
        attention.query_scale() as f32,
        rotary,
    );
    cpu_kernels::attention(qkv, &batch.sequences, batch.heads, context);
    Ok(())
}

/// `EsmSelfOutput::forward`: projection plus residual.
fn self_output_forward(
    output: &EsmSelfOutput,
    packed: Option<&PackedRhs>,
    hidden: &[f32],
    input: &[f32],
    out: &mut [f32],
) -> candle_core::Result<()> {
    linear(&output.dense, packed, hidden, Some(input), out)
}

/// `EsmIntermediate::forward`: up-projection and erf GELU.
fn intermediate_forward(
    intermediate: &EsmIntermediate,
    packed: Option<&PackedRhs>,
    hidden: &[f32],
    out: &mut [f32],
) -> candle_core::Result<()> {
    linear(&intermediate.dense, packed, hidden, None, out)?;
    cpu_kernels::gelu_erf(out);
    Ok(())
}

/// `EsmOutput::forward`: down-projection plus residual.
fn output_forward(
    output: &EsmOutput,
    packed: Option<&PackedRhs>,
    hidden: &[f32],
    input: &[f32],
    out: &mut [f32],
) -> candle_core::Result<()> {
    linear(&output.dense, packed, hidden, Some(input), out)
}

/// A `Linear` on `x`, through its packed bf16 weight when there is one.
fn linear(
    linear: &Linear,
    packed: Option<&PackedRhs>,
    x: &[f32],
    residual: Option<&[f32]>,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let Some(bias) = linear.bias() else {
        candle_core::bail!("ESM projections have biases");
    };
    let bias = CpuF32::of(bias)?;
    let rows = out.len() / bias.len().max(1);
    match packed {
        Some(weight) => cpu_kernels::linear_bf16(x, rows, weight, &bias, residual, out),
        None => cpu_kernels::linear(x, rows, &CpuF32::of(linear.weight())?, &bias, residual, out),
    }
    Ok(())
}

fn layer_norm(ln: &LayerNorm, x: &[f32], out: &mut [f32]) -> candle_core::Result<()> {
    let Some(bias) = ln.bias() else {
        candle_core::bail!("ESM LayerNorms have biases");
    };
    let (weight, bias) = (CpuF32::of(ln.weight())?, CpuF32::of(bias)?);
    cpu_kernels::layer_norm(x, &weight, &bias, ln.eps() as f32, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::Device;
    use candle_nn::VarBuilder;

    use super::*;
    use crate::lowp::Level;
    use crate::models::esm::{Config, EsmTokenizer};

    /// A random-weight model of `cfg` (LayerNorm weights near 1, as trained ones are).
    fn random_model(cfg: &Config, seed: u64) -> EsmModel {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut tensors = HashMap::new();
        for (name, shape) in cfg.expected_tensors() {
            let n: usize = shape.iter().product();
            let centre = if name.contains("LayerNorm.weight") || name.contains("layer_norm") && name.ends_with("weight")
            {
                1.0
            } else {
                0.0
            };
            let data: Vec<f32> = (0..n).map(|_| centre + rng.gen_range(-0.3f32..0.3)).collect();
            tensors.insert(name, Tensor::from_vec(data, shape.as_slice(), &Device::Cpu).unwrap());
        }
        EsmModel::load(VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu), cfg).unwrap()
    }

    fn config(position: &str) -> Config {
        serde_json::from_str(&format!(
            r#"{{"vocab_size":33,"hidden_size":40,"num_hidden_layers":3,"num_attention_heads":5,
                "intermediate_size":96,"pad_token_id":1,"mask_token_id":32,"max_position_embeddings":64,
                "position_embedding_type":"{position}","token_dropout":true,"layer_norm_eps":1e-5,
                "emb_layer_norm_before":{}}}"#,
            position == "absolute"
        ))
        .unwrap()
    }

    /// A padded batch of four sequences: ids, mask, and the mask as rows.
    fn batch() -> (Tensor, Tensor, Vec<Vec<f32>>) {
        let tok = EsmTokenizer::builtin();
        let seqs = [
            "MKTAYIAKQRQISFVKSHFSRQ",
            "GSHMLE<mask>DPK",
            "W",
            "ACDEFGHIKLMNPQRSTVWYXBUZO",
        ];
        let width = seqs.iter().map(|s| tok.encode(s).len()).max().unwrap();
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for s in seqs {
            let toks = tok.encode(s);
            mask.extend((0..width).map(|i| if i < toks.len() { 1f32 } else { 0.0 }));
            ids.extend(toks.iter().copied().chain(std::iter::repeat(tok.pad_id())).take(width));
        }
        let ids = Tensor::from_vec(ids, (seqs.len(), width), &Device::Cpu).unwrap();
        let mask = Tensor::from_vec(mask, (seqs.len(), width), &Device::Cpu).unwrap();
        let real = mask.to_vec2::<f32>().unwrap();
        (ids, mask, real)
    }

    /// Max |fast - plain| over real tokens; checks that padding stays zero in `fast`.
    fn worst_real_token_difference(fast: &Tensor, plain: &Tensor, real: &[Vec<f32>]) -> f32 {
        assert_eq!(fast.dims(), plain.dims());
        let (fast, plain) = (fast.to_vec3::<f32>().unwrap(), plain.to_vec3::<f32>().unwrap());
        let mut worst = 0f32;
        for (s, real) in real.iter().enumerate() {
            for (p, &m) in real.iter().enumerate() {
                if m == 0.0 {
                    assert!(fast[s][p].iter().all(|&v| v == 0.0), "padding keeps its zero embedding");
                    continue;
                }
                for (a, b) in fast[s][p].iter().zip(&plain[s][p]) {
                    worst = worst.max((a - b).abs());
                }
            }
        }
        worst
    }

    #[test]
    fn cpu_kernels_match_candle_ops_with_padding() {
        for position in ["rotary", "absolute"] {
            let model = random_model(&config(position), 7);
            assert!(model.uses_cpu_kernels() && !model.uses_bf16_products());
            let (ids, mask, real) = batch();
            for layer in [0, 1, 3] {
                let fast = model.forward_cpu(&ids, &mask, layer).unwrap();
                let plain = model.forward_candle(&ids, &mask, layer).unwrap();
                let worst = worst_real_token_difference(&fast, &plain, &real);
                assert!(
                    worst <= 2e-5,
                    "{position} layer {layer}: CPU kernels differ from Candle by {worst}"
                );
            }
        }
    }

    /// bf16 products, at every level this CPU has (f32, AVX512-BF16, AMX), stay within bf16
    /// rounding of the f32 model: |diff| <= 0.1 on hidden states of LayerNorm scale (about 1;
    /// bf16 keeps 8 bits, relative 2^-9 per operand, and 3 random blocks amplify it a few times;
    /// bf16 sums or LayerNorm statistics would be off by ~1), and the levels agree with each other
    /// to 0.02: their f32 sums differ in order only, which can flip the bf16 rounding of a few
    /// activations in the next product.
    #[test]
    fn bf16_products_stay_within_bf16_rounding_of_f32_at_every_level() {
        let levels: Vec<Level> = [Level::F32, Level::Avx512Bf16, Level::Amx]
            .into_iter()
            .filter(|&l| l <= Level::detected())
            .collect();
        for position in ["rotary", "absolute"] {
            let model = random_model(&config(position), 11);
            let (ids, mask, real) = batch();
            let f32_out = model.forward_cpu(&ids, &mask, 3).unwrap();
            let mut first: Option<Tensor> = None;
            for &level in &levels {
                let mut low = model.clone();
                low.products = Products::Bf16(
                    low.encoder
                        .layers
                        .iter()
                        .map(|layer| {
                            let pack = |l: &Linear| {
                                let (n, k) = l.weight().dims2().unwrap();
                                PackedRhs::pack_at(&CpuF32::of(l.weight()).unwrap(), n, k, level)
                            };
                            PackedLayer {
                                qkv: pack(&layer.attention.self_attention.qkv),
                                attention_output: pack(&layer.attention.output.dense),
                                intermediate: pack(&layer.intermediate.dense),
                                output: pack(&layer.output.dense),
                            }
                        })
                        .collect(),
                );
                let out = low.forward_cpu(&ids, &mask, 3).unwrap();
                let worst = worst_real_token_difference(&out, &f32_out, &real);
                assert!(worst <= 0.1, "{position} {level:?}: bf16 differs from f32 by {worst}");
                assert!(worst > 0.0, "{position} {level:?}: bf16 products changed nothing");
                match &first {
                    None => first = Some(out),
                    Some(first) => {
                        let between = worst_real_token_difference(&out, first, &real);
                        assert!(between <= 0.02, "{position} {level:?} vs {:?}: {between}", levels[0]);
                    }
                }
            }
        }
        // The public switch packs at the detected level.
        let mut model = random_model(&config("rotary"), 11);
        model.use_bf16_products().unwrap();
        assert!(model.uses_bf16_products());
    }

    #[test]
    fn cpu_kernels_are_refused_off_f32_and_candle_serves_it() {
        let cfg: Config = serde_json::from_str(
            r#"{"vocab_size":33,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,
                "intermediate_size":16,"position_embedding_type":"rotary"}"#,
        )
        .unwrap();
        let tensors: HashMap<String, Tensor> = cfg
            .expected_tensors()
            .into_iter()
            .map(|(n, s)| (n, Tensor::ones(s.as_slice(), DType::F16, &Device::Cpu).unwrap()))
            .collect();
        let mut model = EsmModel::load(VarBuilder::from_tensors(tensors, DType::F16, &Device::Cpu), &cfg).unwrap();
        assert!(!model.uses_cpu_kernels());
        assert!(model.use_bf16_products().is_err());
        let ids = Tensor::new(&[[0u32, 5, 2]], &Device::Cpu).unwrap();
        let mask = Tensor::ones((1, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(model.forward_cpu(&ids, &mask, 1).is_err());
        // The generic path serves it.
        assert_eq!(model.forward(&ids, &mask, 1).unwrap().dims(), &[1, 3, 8]);
    }
}
