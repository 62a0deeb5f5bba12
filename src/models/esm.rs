//! ESM protein language models in Candle: one implementation for ESM-1b,
//! ESM-1v and every ESM-2 size (t6_8M to t48_15B), mirroring Hugging Face
//! transformers' `EsmModel` (`modeling_esm.py`) module for module, with HF
//! tensor names verbatim.
//!
//! What differs between the families is all in `config.json`:
//! - ESM-1b/1v: learned absolute positions (`position_embedding_type:
//!   "absolute"`, ids counted from `pad_token_id + 1` as fairseq does) and a
//!   LayerNorm on the embeddings (`emb_layer_norm_before: true`);
//! - ESM-2: rotary position embeddings (`"rotary"`, rotate-half form applied to
//!   the scaled queries and the keys) and no embedding LayerNorm.
//!
//! Both use pre-LayerNorm blocks, erf GELU, a final `emb_layer_norm_after`, and
//! token-dropout scaling: during training 15% x 80% of tokens were masked and
//! their embeddings zeroed, so at inference embeddings are scaled by
//! `(1 - 0.12) / (1 - observed mask ratio)` (0.88 for unmasked input).
//!
//! # Layers
//! `LoadOptions::layer` follows fair-esm's `repr_layers` numbering: layer 0 is
//! the embedding output, layer `L` (1..N) is the output of block `L`, and layer
//! `N` (the default, also `-1`) is the output of the last block *after*
//! `emb_layer_norm_after`, i.e. HF's `last_hidden_state`. Negative values count
//! from the end (`-2` is block N-1's output). For layers 0..N-1 this equals HF's
//! `hidden_states[L]`.
//!
//! # Long sequences
//! ESM-1b/1v were trained with learned positions up to 1024 tokens (1022
//! residues plus `<cls>`/`<eos>`); ESM-2 was trained on crops of the same length
//! and its rotary positions have no hard limit, but fair-esm's `extract.py`
//! truncates both at 1022 residues. We never truncate: any sequence longer than
//! `max_position_embeddings - pad_token_id - 3` residues (1022 for every
//! released ESM) is embedded in overlapping windows of that length whose
//! residue embeddings are averaged where they overlap
//! ([`crate::models::window`]), for ESM-2 as well, because it has never seen
//! longer contexts.
//!
//! # CPU
//! This file is the model as HF writes it, in Candle ops
//! ([`EsmModel::forward_candle`], any device and dtype). An f32 model on the
//! CPU runs its blocks on the fused kernels of [`crate::models::esm_cpu`]
//! instead ([`EsmModel::forward_cpu`], same values for every real token), and
//! `--dtype bf16` on the CPU loads the model in f32 and packs its projection
//! weights for bf16 products there ([`EsmModel::use_bf16_products`]).
//!
//! # Tokenization
//! Equal to HF's `EsmTokenizer` id for id: `<cls>`, one token per residue
//! (longest match over the vocabulary, so `<mask>` etc. are recognised),
//! `<eos>`; whitespace is dropped. A character outside the vocabulary (J,
//! lower case) is `<unk>`. One documented difference: HF merges a *run* of
//! unknown characters into a single `<unk>`, which would misalign residues and
//! embeddings; we emit one `<unk>` per character.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use super::cpu_kernels::Products;
use super::hf_config;
use super::weights::{self, Checkpoint};
use super::window::{embed_windowed, WindowPolicy};
use super::{LoadOptions, ModelError};
use crate::embedder::{EmbedError, Embedder, EmbedderSpec, Pooling, ResidueMatrix};

/// The 33-token vocabulary of every ESM-1b/1v/2 checkpoint (`vocab.txt` on the hub).
pub const ESM_VOCAB: [&str; 33] = [
    "<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y",
    "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
];

/// Fraction of tokens replaced by `<mask>` in every ESM training run (15% selected x 80% masked).
const MASK_RATIO_TRAIN: f64 = 0.15 * 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionEmbeddingType {
    Absolute,
    Rotary,
}

/// `config.json` of an HF ESM checkpoint (keys verbatim; others are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default)]
    pub mask_token_id: Option<u32>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub layer_norm_eps: Option<f64>,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    #[serde(default)]
    pub emb_layer_norm_before: Option<bool>,
    #[serde(default)]
    pub token_dropout: Option<bool>,
    #[serde(default)]
    pub is_folding_model: Option<bool>,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_max_position_embeddings() -> usize {
    1026
}

impl Config {
    /// Reads and checks `config.json`; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let cfg: Config = serde_json::from_str(&text).map_err(|e| ModelError::File {
            path: path.to_path_buf(),
            message: format!("not an ESM config: {e}"),
        })?;
        cfg.validate().map_err(|message| ModelError::File {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.model_type {
            if t != "esm" {
                return Err(format!("model_type is {t:?}, not \"esm\""));
            }
        }
        if self.is_folding_model == Some(true) {
            return Err("ESMFold (is_folding_model) checkpoints are not supported; use an ESM-2 language model".into());
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.position_embedding_type()? == PositionEmbeddingType::Rotary && !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "rotary embeddings need an even head size, got {}",
                self.head_dim()
            ));
        }
        if self.pad_token_id() as usize >= self.vocab_size {
            return Err(format!(
                "pad_token_id {} outside vocab_size {}",
                self.pad_token_id(),
                self.vocab_size
            ));
        }
        if self.max_residues() == 0 {
            return Err(format!(
                "max_position_embeddings {} leaves no room for residues",
                self.max_position_embeddings
            ));
        }
        Ok(())
    }

    pub fn position_embedding_type(&self) -> Result<PositionEmbeddingType, String> {
        match self.position_embedding_type.as_deref() {
            None | Some("absolute") => Ok(PositionEmbeddingType::Absolute),
            Some("rotary") => Ok(PositionEmbeddingType::Rotary),
            Some(other) => Err(format!(
                "position_embedding_type {other:?} is not supported (absolute, rotary)"
            )),
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn pad_token_id(&self) -> u32 {
        self.pad_token_id.unwrap_or(1)
    }

    pub fn layer_norm_eps(&self) -> f64 {
        self.layer_norm_eps.unwrap_or(1e-12)
    }

    /// Residues per forward pass: learned positions start at `pad_token_id + 1` and two slots go to
    /// `<cls>`/`<eos>` (1022 for all released ESM models).
    pub fn max_residues(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.pad_token_id() as usize + 1 + 2)
    }

    /// Every tensor `EsmModel` reads, with its shape (names without the `esm.` prefix).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let mut out = vec![(
            "embeddings.word_embeddings.weight".to_string(),
            vec![self.vocab_size, h],
        )];
        if self.position_embedding_type() == Ok(PositionEmbeddingType::Absolute) {
            out.push((
                "embeddings.position_embeddings.weight".into(),
                vec![self.max_position_embeddings, h],
            ));
        }
        if self.emb_layer_norm_before == Some(true) {
            out.push(("embeddings.layer_norm.weight".into(), vec![h]));
            out.push(("embeddings.layer_norm.bias".into(), vec![h]));
        }
        for l in 0..self.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            for (name, shape) in [
                ("attention.self.query.weight", vec![h, h]),
                ("attention.self.query.bias", vec![h]),
                ("attention.self.key.weight", vec![h, h]),
                ("attention.self.key.bias", vec![h]),
                ("attention.self.value.weight", vec![h, h]),
                ("attention.self.value.bias", vec![h]),
                ("attention.output.dense.weight", vec![h, h]),
                ("attention.output.dense.bias", vec![h]),
                ("attention.LayerNorm.weight", vec![h]),
                ("attention.LayerNorm.bias", vec![h]),
                ("intermediate.dense.weight", vec![i, h]),
                ("intermediate.dense.bias", vec![i]),
                ("output.dense.weight", vec![h, i]),
                ("output.dense.bias", vec![h]),
                ("LayerNorm.weight", vec![h]),
                ("LayerNorm.bias", vec![h]),
            ] {
                out.push((format!("{p}.{name}"), shape));
            }
        }
        out.push(("encoder.emb_layer_norm_after.weight".into(), vec![h]));
        out.push(("encoder.emb_layer_norm_after.bias".into(), vec![h]));
        out
    }
}

/// ESM's tokenizer: `<cls>` + one token per residue + `<eos>`.
#[derive(Debug, Clone)]
pub struct EsmTokenizer {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    max_token_chars: usize,
    cls: u32,
    eos: u32,
    pad: u32,
    unk: u32,
}

impl EsmTokenizer {
    /// The built-in 33-token ESM vocabulary.
    pub fn builtin() -> Self {
        Self::from_tokens(ESM_VOCAB.iter().map(|t| t.to_string()).collect()).expect("built-in vocabulary is complete")
    }

    /// Reads an HF `vocab.txt` (one token per line, id = line number).
    pub fn from_vocab_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let tokens = text.lines().map(|l| l.trim().to_string()).collect();
        Self::from_tokens(tokens).map_err(|message| ModelError::File {
            path: path.to_path_buf(),
            message,
        })
    }

    fn from_tokens(tokens: Vec<String>) -> Result<Self, String> {
        let mut ids = HashMap::new();
        for (i, t) in tokens.iter().enumerate() {
            ids.entry(t.clone()).or_insert(i as u32);
        }
        let find = |t: &str| {
            ids.get(t)
                .copied()
                .ok_or_else(|| format!("vocabulary lacks the special token {t}"))
        };
        Ok(EsmTokenizer {
            cls: find("<cls>")?,
            eos: find("<eos>")?,
            pad: find("<pad>")?,
            unk: find("<unk>")?,
            max_token_chars: tokens.iter().map(|t| t.chars().count()).max().unwrap_or(1),
            ids,
            tokens,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Token ids of one sequence, with `<cls>` and `<eos>`.
    pub fn encode(&self, sequence: &str) -> Vec<u32> {
        let chars: Vec<char> = sequence.chars().filter(|c| !c.is_whitespace()).collect();
        let mut out = Vec::with_capacity(chars.len() + 2);
        out.push(self.cls);
        let mut i = 0;
        let mut buf = String::new();
        while i < chars.len() {
            // Longest vocabulary match at i, as HF's no-split-token trie does.
            let mut matched = None;
            let longest = self.max_token_chars.min(chars.len() - i);
            for n in (1..=longest).rev() {
                buf.clear();
                buf.extend(&chars[i..i + n]);
                if let Some(&id) = self.ids.get(buf.as_str()) {
                    matched = Some((id, n));
                    break;
                }
            }
            let (id, n) = matched.unwrap_or((self.unk, 1));
            out.push(id);
            i += n;
        }
        out.push(self.eos);
        out
    }
}

fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    candle_nn::layer_norm(
        size,
        candle_nn::LayerNormConfig {
            eps,
            ..Default::default()
        },
        vb,
    )
}

/// `EsmEmbeddings`: word embeddings, token-dropout scaling, learned positions (ESM-1b) and the
/// optional embedding LayerNorm; padding positions are zeroed.
#[derive(Debug, Clone)]
pub struct EsmEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Option<Embedding>,
    layer_norm: Option<LayerNorm>,
    token_dropout: bool,
    mask_token_id: Option<u32>,
    padding_idx: u32,
}

impl EsmEmbeddings {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let word_embeddings = candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("word_embeddings"))?;
        let position_embeddings = match cfg.position_embedding_type() {
            Ok(PositionEmbeddingType::Absolute) => Some(candle_nn::embedding(
                cfg.max_position_embeddings,
                cfg.hidden_size,
                vb.pp("position_embeddings"),
            )?),
            _ => None,
        };
        let layer_norm = if cfg.emb_layer_norm_before == Some(true) {
            Some(layer_norm(cfg.hidden_size, cfg.layer_norm_eps(), vb.pp("layer_norm"))?)
        } else {
            None
        };
        Ok(EsmEmbeddings {
            word_embeddings,
            position_embeddings,
            layer_norm,
            token_dropout: cfg.token_dropout == Some(true),
            mask_token_id: cfg.mask_token_id,
            padding_idx: cfg.pad_token_id(),
        })
    }

    /// `input_ids`: `[batch, tokens]` u32; `attention_mask`: `[batch, tokens]` (1 token, 0 padding) in the
    /// compute dtype.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = attention_mask.dtype();
        let mut embeddings = self.word_embeddings.forward(input_ids)?;
        if self.token_dropout {
            if let Some(mask_id) = self.mask_token_id {
                // Masked tokens count as dropped out: zero them, then rescale by the ratio of unmasked
                // tokens seen in training to that in this sequence.
                let is_mask = input_ids.eq(mask_id)?.to_dtype(DType::F32)?;
                let keep = (1.0 - &is_mask)?.to_dtype(dtype)?.unsqueeze(D::Minus1)?;
                embeddings = embeddings.broadcast_mul(&keep)?;
                let src_lengths = attention_mask.to_dtype(DType::F32)?.sum_keepdim(1)?;
                let observed = is_mask.sum_keepdim(1)?.div(&src_lengths)?;
                let scale = ((1.0 - observed)?.recip()? * (1.0 - MASK_RATIO_TRAIN))?;
                embeddings = embeddings.broadcast_mul(&scale.to_dtype(dtype)?.unsqueeze(D::Minus1)?)?;
            } else {
                embeddings = (embeddings * (1.0 - MASK_RATIO_TRAIN))?;
            }
        }
        if let Some(pe) = &self.position_embeddings {
            let positions = position_ids(input_ids, self.padding_idx)?;
            embeddings = (embeddings + pe.forward(&positions)?)?;
        }
        if let Some(ln) = &self.layer_norm {
            embeddings = ln.forward(&embeddings)?;
        }
        embeddings.broadcast_mul(&attention_mask.unsqueeze(D::Minus1)?)
    }
}

/// fairseq's `make_positions`: non-padding tokens are numbered from `padding_idx + 1`, padding
/// keeps `padding_idx`.
fn position_ids(input_ids: &Tensor, padding_idx: u32) -> candle_core::Result<Tensor> {
    let ids = input_ids.to_vec2::<u32>()?;
    let (b, t) = input_ids.dims2()?;
    let mut out = Vec::with_capacity(b * t);
    for row in ids {
        let mut count = 0u32;
        for id in row {
            if id == padding_idx {
                out.push(padding_idx);
            } else {
                count += 1;
                out.push(count + padding_idx);
            }
        }
    }
    Tensor::from_vec(out, (b, t), input_ids.device())
}

/// `EsmRotaryEmbedding`: cos/sin tables of the rotate-half rotary embedding.
#[derive(Debug, Clone)]
pub struct EsmRotaryEmbedding {
    inv_freq: Tensor,
}

impl EsmRotaryEmbedding {
    /// Uses the checkpoint's `inv_freq` when it has one (as HF does: it may have been stored in
    /// reduced precision during training), else `1 / theta^(2i/d)`.
    pub fn load(vb: &VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let half = cfg.head_dim() / 2;
        for name in [
            "rotary_embeddings.inv_freq",
            "encoder.layer.0.attention.self.rotary_embeddings.inv_freq",
        ] {
            if vb.contains_tensor(name) {
                let inv_freq = vb.get_with_hints_dtype(half, name, candle_nn::Init::Const(0.), DType::F32)?;
                return Ok(EsmRotaryEmbedding { inv_freq });
            }
        }
        let theta = cfg.rope_theta.unwrap_or(10000.0);
        let dim = cfg.head_dim() as f64;
        let inv: Vec<f32> = (0..half)
            .map(|i| (1.0 / theta.powf((2 * i) as f64 / dim)) as f32)
            .collect();
        Ok(EsmRotaryEmbedding {
            inv_freq: Tensor::from_vec(inv, half, vb.device())?,
        })
    }

    /// `(cos, sin)`, each `[seq_len, head_dim]` in f32.
    pub fn forward(&self, seq_len: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let positions = Tensor::arange(0u32, seq_len as u32, self.inv_freq.device())?.to_dtype(DType::F32)?;
        let freqs = positions.unsqueeze(1)?.broadcast_mul(&self.inv_freq.unsqueeze(0)?)?;
        let emb = Tensor::cat(&[&freqs, &freqs], D::Minus1)?;
        Ok((emb.cos()?, emb.sin()?))
    }
}

fn rotate_half(x: &Tensor) -> candle_core::Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)
}

/// Rotary embedding in f32 (as HF does) then back to the input dtype.
fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let rotated = (x.broadcast_mul(cos)? + rotate_half(&x)?.broadcast_mul(sin)?)?;
    rotated.to_dtype(dtype)
}

/// `EsmSelfAttention`: multi-head self-attention; ESM scales the queries (before rotary).
#[derive(Debug, Clone)]
pub struct EsmSelfAttention {
    /// HF's `query`, `key` and `value` stacked into one `[3 * hidden, hidden]` projection at load
    /// time: one GEMM instead of three, and the row layout the CPU attention kernel reads.
    pub(super) qkv: Linear,
    pub(super) num_heads: usize,
    pub(super) head_dim: usize,
}

impl EsmSelfAttention {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let mut weights = Vec::with_capacity(3);
        let mut biases = Vec::with_capacity(3);
        for name in ["query", "key", "value"] {
            weights.push(vb.pp(name).get((h, h), "weight")?);
            biases.push(vb.pp(name).get(h, "bias")?);
        }
        Ok(EsmSelfAttention {
            qkv: Linear::new(Tensor::cat(&weights, 0)?, Some(Tensor::cat(&biases, 0)?)),
            num_heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }

    pub(super) fn query_scale(&self) -> f64 {
        (self.head_dim as f64).powf(-0.5)
    }

    /// `mask_bias`: `[batch, 1, 1, tokens]`, 0 for tokens and a large negative value for padding.
    pub fn forward(
        &self,
        hidden: &Tensor,
        mask_bias: &Tensor,
        rotary: Option<&(Tensor, Tensor)>,
    ) -> candle_core::Result<Tensor> {
        let (b, t, _) = hidden.dims3()?;
        let width = self.num_heads * self.head_dim;
        let qkv = self.qkv.forward(hidden)?;
        let heads = |part: usize| -> candle_core::Result<Tensor> {
            qkv.narrow(D::Minus1, part * width, width)?
                .contiguous()?
                .reshape((b, t, self.num_heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let mut q = (heads(0)? * self.query_scale())?;
        let mut k = heads(1)?;
        let v = heads(2)?;
        if let Some((cos, sin)) = rotary {
            q = apply_rotary(&q, cos, sin)?;
            k = apply_rotary(&k, cos, sin)?;
        }
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask_bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, width))
    }
}

/// `EsmSelfOutput`: projection plus residual.
#[derive(Debug, Clone)]
pub struct EsmSelfOutput {
    pub(super) dense: Linear,
}

impl EsmSelfOutput {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(EsmSelfOutput {
            dense: candle_nn::linear(cfg.hidden_size, cfg.hidden_size, vb.pp("dense"))?,
        })
    }

    pub fn forward(&self, hidden: &Tensor, input: &Tensor) -> candle_core::Result<Tensor> {
        self.dense.forward(hidden)? + input
    }
}

/// `EsmAttention`: pre-LayerNorm self-attention block.
#[derive(Debug, Clone)]
pub struct EsmAttention {
    pub(super) self_attention: EsmSelfAttention,
    pub(super) output: EsmSelfOutput,
    pub(super) layer_norm: LayerNorm,
}

impl EsmAttention {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(EsmAttention {
            self_attention: EsmSelfAttention::load(vb.pp("self"), cfg)?,
            output: EsmSelfOutput::load(vb.pp("output"), cfg)?,
            layer_norm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps(), vb.pp("LayerNorm"))?,
        })
    }

    pub fn forward(
        &self,
        hidden: &Tensor,
        mask_bias: &Tensor,
        rotary: Option<&(Tensor, Tensor)>,
    ) -> candle_core::Result<Tensor> {
        let normed = self.layer_norm.forward(hidden)?;
        let attended = self.self_attention.forward(&normed, mask_bias, rotary)?;
        self.output.forward(&attended, hidden)
    }
}

/// `EsmIntermediate`: up-projection and the exact (erf) GELU of the original ESM.
#[derive(Debug, Clone)]
pub struct EsmIntermediate {
    pub(super) dense: Linear,
}

impl EsmIntermediate {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(EsmIntermediate {
            dense: candle_nn::linear(cfg.hidden_size, cfg.intermediate_size, vb.pp("dense"))?,
        })
    }

    pub fn forward(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.dense.forward(hidden)?.gelu_erf()
    }
}

/// `EsmOutput`: down-projection plus residual.
#[derive(Debug, Clone)]
pub struct EsmOutput {
    pub(super) dense: Linear,
}

impl EsmOutput {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(EsmOutput {
            dense: candle_nn::linear(cfg.intermediate_size, cfg.hidden_size, vb.pp("dense"))?,
        })
    }

    pub fn forward(&self, hidden: &Tensor, input: &Tensor) -> candle_core::Result<Tensor> {
        self.dense.forward(hidden)? + input
    }
}

/// `EsmLayer`: attention block then pre-LayerNorm feed-forward block.
#[derive(Debug, Clone)]
pub struct EsmLayer {
    pub(super) attention: EsmAttention,
    pub(super) intermediate: EsmIntermediate,
    pub(super) output: EsmOutput,
    pub(super) layer_norm: LayerNorm,
}

impl EsmLayer {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(EsmLayer {
            attention: EsmAttention::load(vb.pp("attention"), cfg)?,
            intermediate: EsmIntermediate::load(vb.pp("intermediate"), cfg)?,
            output: EsmOutput::load(vb.pp("output"), cfg)?,
            layer_norm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps(), vb.pp("LayerNorm"))?,
        })
    }

    pub fn forward(
        &self,
        hidden: &Tensor,
        mask_bias: &Tensor,
        rotary: Option<&(Tensor, Tensor)>,
    ) -> candle_core::Result<Tensor> {
        let attention_output = self.attention.forward(hidden, mask_bias, rotary)?;
        let normed = self.layer_norm.forward(&attention_output)?;
        let intermediate = self.intermediate.forward(&normed)?;
        self.output.forward(&intermediate, &attention_output)
    }
}

/// `EsmEncoder`: the blocks and the final `emb_layer_norm_after`.
#[derive(Debug, Clone)]
pub struct EsmEncoder {
    pub(super) layers: Vec<EsmLayer>,
    pub(super) emb_layer_norm_after: LayerNorm,
}

impl EsmEncoder {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EsmLayer::load(vb.pp("layer").pp(i), cfg))
            .collect::<Result<_, _>>()?;
        let emb_layer_norm_after = layer_norm(cfg.hidden_size, cfg.layer_norm_eps(), vb.pp("emb_layer_norm_after"))?;
        Ok(EsmEncoder {
            layers,
            emb_layer_norm_after,
        })
    }

    /// Hidden states after `upto` blocks (fair-esm numbering; `upto == layers.len()` adds the final
    /// LayerNorm).
    pub fn forward(
        &self,
        hidden: &Tensor,
        mask_bias: &Tensor,
        rotary: Option<&(Tensor, Tensor)>,
        upto: usize,
    ) -> candle_core::Result<Tensor> {
        let mut hidden = hidden.clone();
        for layer in self.layers.iter().take(upto) {
            hidden = layer.forward(&hidden, mask_bias, rotary)?;
        }
        if upto == self.layers.len() {
            hidden = self.emb_layer_norm_after.forward(&hidden)?;
        }
        Ok(hidden)
    }
}

/// `EsmModel` without the pooler and contact head (neither feeds residue embeddings).
#[derive(Debug, Clone)]
pub struct EsmModel {
    pub(super) embeddings: EsmEmbeddings,
    pub(super) rotary_embeddings: Option<EsmRotaryEmbedding>,
    pub(super) encoder: EsmEncoder,
    pub(super) num_heads: usize,
    pub(super) dtype: DType,
    pub(super) device: Device,
    /// How the CPU path multiplies by the projection weights (f32 unless
    /// [`Self::use_bf16_products`]).
    pub(super) products: Products,
}

impl EsmModel {
    /// `vb` is rooted at the `EsmModel` (pass `vb.pp("esm")` for EsmForMaskedLM checkpoints).
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let rotary_embeddings = match cfg.position_embedding_type() {
            Ok(PositionEmbeddingType::Rotary) => Some(EsmRotaryEmbedding::load(&vb, cfg)?),
            _ => None,
        };
        Ok(EsmModel {
            embeddings: EsmEmbeddings::load(vb.pp("embeddings"), cfg)?,
            rotary_embeddings,
            encoder: EsmEncoder::load(vb.pp("encoder"), cfg)?,
            num_heads: cfg.num_attention_heads,
            dtype: vb.dtype(),
            device: vb.device().clone(),
            products: Products::F32,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.encoder.layers.len()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether [`Self::forward`] takes the CPU kernels ([`crate::models::esm_cpu`]) rather than
    /// Candle ops: on the CPU in f32, where Candle's per-op passes cost most.
    pub fn uses_cpu_kernels(&self) -> bool {
        self.device.is_cpu() && self.dtype == DType::F32
    }

    /// Hidden states `[batch, tokens, hidden]` at `layer` (0 = embeddings, `num_layers()` = last
    /// hidden state after `emb_layer_norm_after`). `attention_mask` is `[batch, tokens]` u8/u32/f32
    /// with 1 for tokens and 0 for padding.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, layer: usize) -> candle_core::Result<Tensor> {
        if self.uses_cpu_kernels() {
            self.forward_cpu(input_ids, attention_mask, layer)
        } else {
            self.forward_candle(input_ids, attention_mask, layer)
        }
    }

    /// [`Self::forward`] with Candle ops only: any device and dtype (always f32 products on an f32
    /// model, whether or not [`Self::use_bf16_products`] was called).
    pub fn forward_candle(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        layer: usize,
    ) -> candle_core::Result<Tensor> {
        let mask = attention_mask.to_dtype(self.dtype)?;
        let hidden = self.embeddings.forward(input_ids, &mask)?;
        if layer == 0 {
            return Ok(hidden);
        }
        let (b, t) = input_ids.dims2()?;
        let neg = match self.dtype {
            DType::F16 => -65504.0,
            DType::BF16 | DType::F32 => f32::MIN as f64,
            _ => f64::MIN,
        };
        // (1 - mask) * neg is exactly 0 for tokens and `neg` for padding.
        let mask_bias = ((1.0 - attention_mask.to_dtype(DType::F32)?)? * neg)?
            .to_dtype(self.dtype)?
            .reshape((b, 1, 1, t))?;
        let rotary = match &self.rotary_embeddings {
            Some(r) => Some(r.forward(t)?),
            None => None,
        };
        self.encoder.forward(&hidden, &mask_bias, rotary.as_ref(), layer)
    }
}

/// An ESM checkpoint ready to embed sequences.
pub struct EsmEmbedder {
    model: EsmModel,
    tokenizer: EsmTokenizer,
    spec: EmbedderSpec,
    layer: usize,
    window: WindowPolicy,
    batch_tokens: usize,
}

impl std::fmt::Debug for EsmEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsmEmbedder").field("spec", &self.spec).finish()
    }
}

impl EsmEmbedder {
    pub fn model(&self) -> &EsmModel {
        &self.model
    }

    pub fn tokenizer(&self) -> &EsmTokenizer {
        &self.tokenizer
    }

    /// Embeds sequences that fit the model in one pass, sorted by length into sub-batches of
    /// about `batch_tokens` residues, padding included (padding is masked, so grouping does not change the numbers).
    fn embed_fitting(&self, seqs: &[&str]) -> Result<Vec<ResidueMatrix>, EmbedError> {
        let model_err = |e: candle_core::Error| EmbedError::Candle {
            model: self.spec.name.clone(),
            source: e,
        };
        let tokenized: Vec<Vec<u32>> = seqs.iter().map(|s| self.tokenizer.encode(s)).collect();
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| tokenized[i].len());
        let mut out: Vec<Option<ResidueMatrix>> = vec![None; seqs.len()];
        let mut start = 0;
        while start < order.len() {
            // Sorted ascending, so the last member sets the padded length. The budget counts
            // residues (without <cls>/<eos>), as the pipeline's batches do: counting tokens split
            // every full pipeline batch into a large sub-batch and a lone, inefficient straggler.
            let mut end = start + 1;
            while end < order.len() && (tokenized[order[end]].len() - 2) * (end + 1 - start) <= self.batch_tokens {
                end += 1;
            }
            let group = &order[start..end];
            let width = tokenized[group[group.len() - 1]].len();
            let mut ids = Vec::with_capacity(group.len() * width);
            let mut mask = Vec::with_capacity(group.len() * width);
            for &i in group {
                let toks = &tokenized[i];
                ids.extend_from_slice(toks);
                ids.extend(std::iter::repeat_n(self.tokenizer.pad_id(), width - toks.len()));
                mask.extend(std::iter::repeat_n(1f32, toks.len()));
                mask.extend(std::iter::repeat_n(0f32, width - toks.len()));
            }
            let device = self.model.device();
            let ids = Tensor::from_vec(ids, (group.len(), width), device).map_err(model_err)?;
            let mask = Tensor::from_vec(mask, (group.len(), width), device).map_err(model_err)?;
            let hidden = self
                .model
                .forward(&ids, &mask, self.layer)
                .and_then(|h| h.to_dtype(DType::F32))
                .and_then(|h| h.to_device(&Device::Cpu))
                .map_err(model_err)?;
            let dim = hidden.dim(2).map_err(model_err)?;
            for (row, &i) in group.iter().enumerate() {
                let len = tokenized[i].len() - 2;
                let data = hidden
                    .get(row)
                    .and_then(|h| h.narrow(0, 1, len))
                    .and_then(|h| h.flatten_all())
                    .and_then(|h| h.to_vec1::<f32>())
                    .map_err(model_err)?;
                out[i] = Some(ResidueMatrix { len, dim, data });
            }
            start = end;
        }
        Ok(out.into_iter().map(|m| m.expect("every sequence embedded")).collect())
    }
}

impl Embedder for EsmEmbedder {
    fn spec(&self) -> &EmbedderSpec {
        &self.spec
    }

    fn embed_residues(&self, batch: &[&str]) -> Result<Vec<ResidueMatrix>, EmbedError> {
        embed_windowed(batch, &self.window, &self.spec.name, |pieces| {
            self.embed_fitting(pieces)
        })
    }

    fn default_batch_tokens(&self) -> usize {
        self.batch_tokens
    }
}

/// Which names the checkpoint uses: bare `EsmModel` ones or `esm.`-prefixed (EsmForMaskedLM).
fn detect_prefix(ckpt: &Checkpoint) -> &'static str {
    if !ckpt.contains("embeddings.word_embeddings.weight") && ckpt.contains("esm.embeddings.word_embeddings.weight") {
        "esm."
    } else {
        ""
    }
}

/// Loads an HF ESM directory (`config.json`, weights, optional `vocab.txt`) as an [`Embedder`].
pub fn load_embedder(dir: &Path, name: &str, opts: &LoadOptions) -> Result<Box<dyn Embedder>, ModelError> {
    Ok(Box::new(load_esm(dir, name, opts)?))
}

/// [`load_embedder`] with the concrete type.
pub fn load_esm(dir: &Path, name: &str, opts: &LoadOptions) -> Result<EsmEmbedder, ModelError> {
    let config_path = dir.join("config.json");
    let cfg = Config::from_file(&config_path)?;
    let vocab_path = dir.join("vocab.txt");
    let tokenizer = if vocab_path.is_file() {
        EsmTokenizer::from_vocab_file(&vocab_path)?
    } else {
        EsmTokenizer::builtin()
    };
    if tokenizer.vocab_size() > cfg.vocab_size {
        return Err(ModelError::File {
            path: vocab_path,
            message: format!(
                "{} tokens but config.json has vocab_size {}",
                tokenizer.vocab_size(),
                cfg.vocab_size
            ),
        });
    }
    // fair-esm numbering: 0 is the embeddings, `num_hidden_layers` the last layer.
    let layer = hf_config::hidden_state_index(opts.layer, cfg.num_hidden_layers + 1, &config_path)?;

    let ckpt = Checkpoint::open(dir)?;
    let prefix = detect_prefix(&ckpt);
    let expected: Vec<(String, Vec<usize>)> = cfg
        .expected_tensors()
        .into_iter()
        .map(|(n, s)| (format!("{prefix}{n}"), s))
        .collect();
    ckpt.check(&expected, &config_path)?;
    let files: Vec<PathBuf> = ckpt.files().to_vec();
    let digest = weights::model_digest(dir)?;

    // bf16 on the CPU: an f32 model whose projections multiply in bf16 (crate::models::esm_cpu);
    // elsewhere the dtype is Candle's.
    let vb = ckpt.var_builder(opts.weights_dtype(), &opts.device);
    let vb = if prefix.is_empty() { vb } else { vb.pp("esm") };
    let weights_err = |e: candle_core::Error| ModelError::File {
        path: files.first().cloned().unwrap_or_else(|| dir.to_path_buf()),
        message: format!("loading ESM weights: {e}"),
    };
    let mut model = EsmModel::load(vb, &cfg).map_err(weights_err)?;
    if opts.bf16_cpu_products() {
        model.use_bf16_products().map_err(weights_err)?;
    }

    let max_residues = cfg.max_residues();
    let window = WindowPolicy::new(max_residues);
    let spec = EmbedderSpec {
        name: name.to_string(),
        architecture: "esm".into(),
        weights_digest: digest,
        dim: cfg.hidden_size,
        // Normalised so that equal numbers get equal specs (`-1` and the default are both `None`).
        layer: (layer != cfg.num_hidden_layers).then_some(layer as i64),
        pooling: Pooling::Mean,
        max_residues: Some(max_residues),
        dtype: format!("{:?}", opts.dtype).to_lowercase(),
    };
    tracing::info!(
        "loaded ESM {name} from {}: {} layers, dim {}, {} positions, taking layer {layer}/{}; {}",
        dir.display(),
        cfg.num_hidden_layers,
        cfg.hidden_size,
        match cfg.position_embedding_type() {
            Ok(PositionEmbeddingType::Rotary) => "rotary",
            _ => "learned",
        },
        cfg.num_hidden_layers,
        window.describe()
    );
    // Candle's attention memory grows with tokens^2 x heads; keep a sub-batch near one full window
    // for large models and allow several for small ones. The CPU kernels need no such memory and
    // skip padding, but run about 10% faster on t12_35M with 2048 than with 4096 (activations
    // closer to the caches; the embedding-throughput bench, same sequences).
    let batch_tokens = if cfg.hidden_size >= 2560 {
        1024
    } else if model.uses_cpu_kernels() {
        2048
    } else {
        4096
    };
    Ok(EsmEmbedder {
        model,
        tokenizer,
        spec,
        layer,
        window,
        batch_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_tokenizer_matches_esm_ids() {
        let tok = EsmTokenizer::builtin();
        assert_eq!(tok.encode("LAG"), vec![0, 4, 5, 6, 2]);
        assert_eq!(tok.encode(""), vec![0, 2]);
        // Unknown characters are one <unk> each; special tokens are matched whole.
        assert_eq!(tok.encode("MJJK"), vec![0, 20, 3, 3, 15, 2]);
        assert_eq!(tok.encode("A<mask>C"), vec![0, 5, 32, 23, 2]);
        assert_eq!(tok.encode("XBUZO"), vec![0, 24, 25, 26, 27, 28, 2]);
    }

    #[test]
    fn position_ids_skip_padding() {
        let ids = Tensor::new(&[[0u32, 5, 6, 2], [0, 5, 2, 1]], &Device::Cpu).unwrap();
        let pos = position_ids(&ids, 1).unwrap().to_vec2::<u32>().unwrap();
        assert_eq!(pos, vec![vec![2, 3, 4, 5], vec![2, 3, 4, 1]]);
    }

    #[test]
    fn max_residues_is_1022_for_released_configs() {
        let cfg: Config = serde_json::from_str(
            r#"{"vocab_size":33,"hidden_size":1280,"num_hidden_layers":33,"num_attention_heads":20,
                "intermediate_size":5120,"pad_token_id":1,"max_position_embeddings":1026}"#,
        )
        .unwrap();
        assert_eq!(cfg.max_residues(), 1022);
        assert_eq!(cfg.expected_tensors().len(), 1 + 1 + 33 * 16 + 2);
    }

    #[test]
    fn rotate_half_matches_definition() {
        let x = Tensor::new(&[[1f32, 2., 3., 4.]], &Device::Cpu).unwrap();
        assert_eq!(
            rotate_half(&x).unwrap().to_vec2::<f32>().unwrap(),
            vec![vec![-3., -4., 1., 2.]]
        );
    }
}
