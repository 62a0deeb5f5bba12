//! What the two ProtTrans encoders, ProtT5 ([`super::t5`]) and ProtBert
//! ([`super::bert`]), share around their architectures: ProtTrans' rare-residue
//! mapping, right-padded batches with an additive key mask (so a batch gives the
//! same vectors as one sequence at a time), residue rows out of the hidden
//! states, and the end of loading (hidden-state index, weights, spec, log line).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::hf_config;
use super::weights::{self, Checkpoint};
use super::{LoadOptions, ModelError};
use crate::embedder::{EmbedError, EmbedderSpec, Pooling, ResidueMatrix};

/// ProtTrans' `re.sub(r"[UZOB]", "X", sequence)`.
pub(crate) fn map_rare_residue(letter: u8) -> u8 {
    match letter {
        b'U' | b'Z' | b'O' | b'B' => b'X',
        other => other,
    }
}

/// Right-pads `ids` to one `(batch, len)` u32 tensor plus a `(batch, len)` f32
/// additive key mask: 0 on real tokens, -inf on padding.
pub(crate) fn pad_batch(ids: &[Vec<u32>], pad_id: u32, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let len = ids.iter().map(Vec::len).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(ids.len() * len);
    let mut mask = Vec::with_capacity(ids.len() * len);
    for seq in ids {
        flat.extend_from_slice(seq);
        flat.extend(std::iter::repeat_n(pad_id, len - seq.len()));
        mask.extend(std::iter::repeat_n(0f32, seq.len()));
        mask.extend(std::iter::repeat_n(f32::NEG_INFINITY, len - seq.len()));
    }
    Ok((
        Tensor::from_vec(flat, (ids.len(), len), device)?,
        Tensor::from_vec(mask, (ids.len(), len), device)?,
    ))
}

/// Rows `offset..offset + n` of each batch item of `hidden` `(batch, len, dim)`, as f32 matrices.
pub(crate) fn residue_rows(
    hidden: &Tensor,
    lengths: &[usize],
    offset: usize,
) -> candle_core::Result<Vec<ResidueMatrix>> {
    let hidden = hidden.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    let dim = hidden.dim(2)?;
    lengths
        .iter()
        .enumerate()
        .map(|(b, &n)| {
            let rows = hidden.get(b)?.narrow(0, offset, n)?;
            Ok(ResidueMatrix {
                len: n,
                dim,
                data: rows.flatten_all()?.to_vec1::<f32>()?,
            })
        })
        .collect()
}

/// The names HF uses for compute dtypes.
pub(crate) fn dtype_name(dtype: DType) -> String {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F64 => "f64",
        _ => "other",
    }
    .to_string()
}

/// An encoder that maps right-padded token ids and their key mask to one of its hidden states.
pub(crate) trait PaddedEncoder {
    /// Hidden state `state` (0 = embeddings, `i` = output of layer `i - 1`) `(batch, len, dim)`
    /// for `input_ids` `(batch, len)`; `key_bias` is `(batch, len)` f32, 0 on real tokens and -inf
    /// on padding.
    fn hidden_state(&self, input_ids: &Tensor, key_bias: &Tensor, state: usize) -> candle_core::Result<Tensor>;

    /// Switches every projection to bf16 products on the CPU ([`super::projection`]).
    fn use_bf16_products(&mut self) -> candle_core::Result<()>;
}

/// What a loader knows about its architecture once `config.json` is checked.
pub(crate) struct Layout {
    /// `EmbedderSpec::architecture`: `t5` or `bert`.
    pub architecture: &'static str,
    pub num_layers: usize,
    pub dim: usize,
    /// Most residues one sequence may have (`None`: no limit).
    pub max_residues: Option<usize>,
}

/// A loaded ProtTrans encoder with its spec, ready to embed token ids.
pub(crate) struct Encoder<M> {
    model: M,
    spec: EmbedderSpec,
    device: Device,
    /// Hidden state index (0 = embeddings, `num_layers` = final output).
    state: usize,
}

impl<M: PaddedEncoder> Encoder<M> {
    /// The common end of the ProtT5 and ProtBert loaders: the hidden state `--layer` picks, the
    /// weights of `dir` through one [`Checkpoint`] (`build` chooses the tensor prefix and constructs
    /// the model; a failure names the file and tensor), and the spec with the weights digest.
    pub fn load(
        dir: &Path,
        name: &str,
        opts: &LoadOptions,
        layout: Layout,
        vocab_source: &str,
        build: impl FnOnce(&Checkpoint, VarBuilder<'static>) -> candle_core::Result<M>,
    ) -> Result<Self, ModelError> {
        let config_path = dir.join("config.json");
        let state = hf_config::hidden_state_index(opts.layer, layout.num_layers + 1, &config_path)?;
        let ckpt = Checkpoint::open(dir)?;
        // bf16 on the CPU: an f32 model whose projections multiply in bf16 (super::projection).
        let vb = ckpt.var_builder(opts.weights_dtype(), &opts.device);
        let mut model = build(&ckpt, vb).map_err(|err| ckpt.explain(err))?;
        if opts.bf16_cpu_products() {
            model.use_bf16_products().map_err(|err| ckpt.explain(err))?;
        }
        let spec = EmbedderSpec {
            name: name.to_string(),
            architecture: layout.architecture.into(),
            weights_digest: weights::model_digest(dir)?,
            dim: layout.dim,
            layer: opts.layer,
            pooling: Pooling::Mean,
            max_residues: layout.max_residues,
            dtype: dtype_name(opts.dtype),
        };
        tracing::info!(
            model = name,
            layers = layout.num_layers,
            dim = layout.dim,
            vocab = %vocab_source,
            "loaded {} encoder from {}",
            layout.architecture.to_uppercase(),
            dir.display()
        );
        Ok(Encoder {
            model,
            spec,
            device: opts.device.clone(),
            state,
        })
    }

    pub fn spec(&self) -> &EmbedderSpec {
        &self.spec
    }

    /// Residues per batch: small on the CPU, where Candle materialises each batch's
    /// `[batch, heads, len, len]` attention scores and the wide feed-forward activations as
    /// fresh tensors (page faults and memory traffic): ProtT5-XL-shaped blocks embedded 12 test
    /// domains 2.1x faster in bf16 in batches of 256 residues than of 2,048, and 1.4x faster in
    /// f32 in batches of 512 (measured with another job sharing the cores); larger on CUDA.
    pub fn default_batch_tokens(&self) -> usize {
        if self.device.is_cpu() {
            256
        } else {
            2048
        }
    }

    /// Embeds a batch of token ids padded with `pad_id`: sequence `i` has `lengths[i]` residues,
    /// which start after `offset` leading special tokens.
    pub fn embed(
        &self,
        ids: &[Vec<u32>],
        pad_id: u32,
        lengths: &[usize],
        offset: usize,
    ) -> Result<Vec<ResidueMatrix>, EmbedError> {
        let candle = |source| EmbedError::Candle {
            model: self.spec.name.clone(),
            source,
        };
        let (input_ids, key_bias) = pad_batch(ids, pad_id, &self.device).map_err(candle)?;
        let hidden = self
            .model
            .hidden_state(&input_ids, &key_bias, self.state)
            .map_err(candle)?;
        residue_rows(&hidden, lengths, offset).map_err(candle)
    }
}
