//! The T5 encoder as used by ProtT5-XL (`Rostlab/prot_t5_xl_uniref50`, a full
//! `T5ForConditionalGeneration` checkpoint of which only `shared.*` and
//! `encoder.*` are read, and the half-precision encoder-only
//! `Rostlab/prot_t5_xl_half_uniref50-enc`), mirroring HF transformers'
//! `modeling_t5.py`: RMS layer norms, pre-norm blocks, relative position
//! buckets computed by the first layer and shared by all others, unscaled
//! dot-product attention, ReLU or gated-GELU feed-forward.
//!
//! Unlike Candle's own T5 this encoder takes an attention padding mask, so a
//! batch of unequal lengths gives the same vectors as one sequence at a time.
//!
//! Tokenization equals HF's `T5Tokenizer` on the Rostlab `spiece.model`:
//! residues are space-separated after mapping U/Z/O/B to X (as ProtTrans
//! does), each residue becomes the piece `▁<residue>`, and `</s>` is appended.
//! The vocabulary comes from `tokenizer.json` or `spiece.model` (a minimal
//! protobuf reader), or the built-in ProtT5 vocabulary when neither exists.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, VarBuilder};
use serde::Deserialize;

use super::hf_config;
use super::projection::Projection;
use super::prottrans::{map_rare_residue, Encoder, Layout, PaddedEncoder};
use super::{LoadOptions, ModelError};
use crate::embedder::{EmbedError, Embedder, EmbedderSpec, ResidueMatrix};

fn default_num_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_layer_norm_epsilon() -> f64 {
    1e-6
}
fn default_feed_forward_proj() -> String {
    "relu".to_string()
}

/// `config.json` of a T5 model; only the keys the encoder needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    #[serde(default = "default_num_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "default_layer_norm_epsilon")]
    pub layer_norm_epsilon: f64,
    /// `relu`, `gated-gelu`, `gated-silu`, ... ; `dense_act_fn` and
    /// `is_gated_act` are derived from it exactly as `T5Config` does.
    #[serde(default = "default_feed_forward_proj")]
    pub feed_forward_proj: String,
    /// Informational: the token ids come from the vocabulary (`<pad>`, `</s>`).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

impl Config {
    /// Whether the feed-forward is gated (`wi_0`, `wi_1`) rather than `wi`.
    pub fn is_gated_act(&self) -> bool {
        self.feed_forward_proj.split('-').next() == Some("gated")
    }

    /// The HF activation name of the feed-forward.
    pub fn dense_act_fn(&self) -> &str {
        if self.feed_forward_proj == "gated-gelu" {
            // T5Config keeps the tanh approximation here for backward compatibility.
            return "gelu_new";
        }
        self.feed_forward_proj.rsplit('-').next().unwrap_or("relu")
    }

    /// The ProtT5-XL encoder's shape (`Rostlab/prot_t5_xl_uniref50`).
    pub fn prot_t5_xl() -> Self {
        Config {
            model_type: Some("t5".into()),
            vocab_size: 128,
            d_model: 1024,
            d_kv: 128,
            d_ff: 16384,
            num_layers: 24,
            num_heads: 32,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            feed_forward_proj: "relu".into(),
            pad_token_id: Some(0),
            eos_token_id: Some(1),
        }
    }
}

/// HF activation functions by their `ACT2FN` names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Activation {
    Relu,
    /// Exact (erf) GELU: HF `gelu`.
    GeluErf,
    /// Tanh approximation: HF `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`.
    GeluTanh,
    Silu,
    QuickGelu,
}

impl Activation {
    pub(crate) fn from_hf(name: &str) -> Option<Self> {
        Some(match name {
            "relu" => Activation::Relu,
            "gelu" | "gelu_python" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "silu" | "swish" => Activation::Silu,
            "quick_gelu" => Activation::QuickGelu,
            _ => return None,
        })
    }
}

impl Module for Activation {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Relu => xs.relu(),
            Activation::GeluErf => xs.gelu_erf(),
            Activation::GeluTanh => xs.gelu(),
            Activation::Silu => xs.silu(),
            Activation::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
        }
    }
}

/// RMS norm without mean subtraction or bias, accumulated in f32.
#[derive(Debug, Clone)]
pub struct T5LayerNorm {
    weight: Tensor,
    variance_epsilon: f64,
}

impl T5LayerNorm {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(T5LayerNorm {
            weight: vb.get(cfg.d_model, "weight")?,
            variance_epsilon: cfg.layer_norm_epsilon,
        })
    }
}

impl Module for T5LayerNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = xs.dtype();
        let xs = xs.to_dtype(DType::F32)?;
        let variance = xs.sqr()?.mean_keepdim(D::Minus1)?;
        let xs = xs.broadcast_div(&(variance + self.variance_epsilon)?.sqrt()?)?;
        xs.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}

fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Projection> {
    Projection::load(in_dim, out_dim, false, vb)
}

/// `wi` -> activation -> `wo`.
#[derive(Debug, Clone)]
pub struct T5DenseActDense {
    wi: Projection,
    wo: Projection,
    act: Activation,
}

impl T5DenseActDense {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(T5DenseActDense {
            wi: linear_no_bias(cfg.d_model, cfg.d_ff, vb.pp("wi"))?,
            wo: linear_no_bias(cfg.d_ff, cfg.d_model, vb.pp("wo"))?,
            act: activation(cfg)?,
        })
    }
}

impl T5DenseActDense {
    fn projections_mut(&mut self) -> Vec<&mut Projection> {
        vec![&mut self.wi, &mut self.wo]
    }
}

impl Module for T5DenseActDense {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.wo.forward(&self.act.forward(&self.wi.forward(xs)?)?)
    }
}

/// `act(wi_0 x) * wi_1 x` -> `wo` (T5 v1.1 style).
#[derive(Debug, Clone)]
pub struct T5DenseGatedActDense {
    wi_0: Projection,
    wi_1: Projection,
    wo: Projection,
    act: Activation,
}

impl T5DenseGatedActDense {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(T5DenseGatedActDense {
            wi_0: linear_no_bias(cfg.d_model, cfg.d_ff, vb.pp("wi_0"))?,
            wi_1: linear_no_bias(cfg.d_model, cfg.d_ff, vb.pp("wi_1"))?,
            wo: linear_no_bias(cfg.d_ff, cfg.d_model, vb.pp("wo"))?,
            act: activation(cfg)?,
        })
    }
}

impl T5DenseGatedActDense {
    fn projections_mut(&mut self) -> Vec<&mut Projection> {
        vec![&mut self.wi_0, &mut self.wi_1, &mut self.wo]
    }
}

impl Module for T5DenseGatedActDense {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let gate = self.act.forward(&self.wi_0.forward(xs)?)?;
        self.wo.forward(&(gate * self.wi_1.forward(xs)?)?)
    }
}

fn activation(cfg: &Config) -> candle_core::Result<Activation> {
    Activation::from_hf(cfg.dense_act_fn()).ok_or_else(|| {
        candle_core::Error::Msg(format!(
            "unsupported feed_forward_proj {:?} in config.json",
            cfg.feed_forward_proj
        ))
    })
}

#[derive(Debug, Clone)]
enum DenseReluDense {
    Plain(T5DenseActDense),
    Gated(T5DenseGatedActDense),
}

/// Pre-norm feed-forward sub-layer with residual.
#[derive(Debug, Clone)]
pub struct T5LayerFF {
    dense_relu_dense: DenseReluDense,
    layer_norm: T5LayerNorm,
}

impl T5LayerFF {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let dense_relu_dense = if cfg.is_gated_act() {
            DenseReluDense::Gated(T5DenseGatedActDense::load(vb.pp("DenseReluDense"), cfg)?)
        } else {
            DenseReluDense::Plain(T5DenseActDense::load(vb.pp("DenseReluDense"), cfg)?)
        };
        Ok(T5LayerFF {
            dense_relu_dense,
            layer_norm: T5LayerNorm::load(vb.pp("layer_norm"), cfg)?,
        })
    }
}

impl T5LayerFF {
    fn projections_mut(&mut self) -> Vec<&mut Projection> {
        match &mut self.dense_relu_dense {
            DenseReluDense::Plain(m) => m.projections_mut(),
            DenseReluDense::Gated(m) => m.projections_mut(),
        }
    }
}

impl Module for T5LayerFF {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let normed = self.layer_norm.forward(xs)?;
        let ys = match &self.dense_relu_dense {
            DenseReluDense::Plain(m) => m.forward(&normed)?,
            DenseReluDense::Gated(m) => m.forward(&normed)?,
        };
        xs + ys
    }
}

/// T5's relative position bucket (bidirectional, as in the encoder) of
/// `relative_position = key_position - query_position`. The logarithmic part
/// is computed in f32 like `torch.log(relative_position.float() / max_exact)`
/// so bucket boundaries fall exactly where the reference puts them.
pub fn relative_position_bucket(relative_position: i64, num_buckets: usize, max_distance: usize) -> u32 {
    let num_buckets = (num_buckets / 2) as i64;
    let mut bucket = if relative_position > 0 { num_buckets } else { 0 };
    let distance = relative_position.abs();
    let max_exact = num_buckets / 2;
    if distance < max_exact {
        bucket += distance;
    } else {
        let log_ratio = (distance as f32 / max_exact as f32).ln();
        let scale = (max_distance as f64 / max_exact as f64).ln() as f32;
        let large = max_exact + (log_ratio / scale * (num_buckets - max_exact) as f32) as i64;
        bucket += large.min(num_buckets - 1);
    }
    bucket as u32
}

/// Multi-head self-attention; the first layer owns the relative position bias.
#[derive(Debug, Clone)]
pub struct T5Attention {
    q: Projection,
    k: Projection,
    v: Projection,
    o: Projection,
    n_heads: usize,
    d_kv: usize,
    relative_attention_bias: Option<Embedding>,
    relative_attention_num_buckets: usize,
    relative_attention_max_distance: usize,
}

impl T5Attention {
    pub fn load(has_relative_attention_bias: bool, vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let inner = cfg.num_heads * cfg.d_kv;
        let relative_attention_bias = if has_relative_attention_bias {
            let weight = vb
                .pp("relative_attention_bias")
                .get((cfg.relative_attention_num_buckets, cfg.num_heads), "weight")?;
            Some(Embedding::new(weight, cfg.num_heads))
        } else {
            None
        };
        Ok(T5Attention {
            q: linear_no_bias(cfg.d_model, inner, vb.pp("q"))?,
            k: linear_no_bias(cfg.d_model, inner, vb.pp("k"))?,
            v: linear_no_bias(cfg.d_model, inner, vb.pp("v"))?,
            o: linear_no_bias(inner, cfg.d_model, vb.pp("o"))?,
            n_heads: cfg.num_heads,
            d_kv: cfg.d_kv,
            relative_attention_bias,
            relative_attention_num_buckets: cfg.relative_attention_num_buckets,
            relative_attention_max_distance: cfg.relative_attention_max_distance,
        })
    }

    fn projections_mut(&mut self) -> Vec<&mut Projection> {
        vec![&mut self.q, &mut self.k, &mut self.v, &mut self.o]
    }

    /// Relative position bias `(1, heads, len, len)` in f32.
    pub fn compute_bias(&self, len: usize, device: &Device) -> candle_core::Result<Option<Tensor>> {
        let Some(embedding) = &self.relative_attention_bias else {
            return Ok(None);
        };
        let buckets: Vec<u32> = (0..len as i64)
            .flat_map(|query| {
                (0..len as i64).map(move |key| {
                    relative_position_bucket(
                        key - query,
                        self.relative_attention_num_buckets,
                        self.relative_attention_max_distance,
                    )
                })
            })
            .collect();
        let buckets = Tensor::from_vec(buckets, (len, len), device)?;
        let values = embedding.forward(&buckets)?.to_dtype(DType::F32)?; // (len, len, heads)
        Ok(Some(values.permute((2, 0, 1))?.unsqueeze(0)?.contiguous()?))
    }

    /// `bias` is the position bias plus the padding mask, `(batch, heads, len, len)` f32.
    pub fn forward(&self, xs: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, len, _) = xs.dims3()?;
        let heads = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((batch, len, self.n_heads, self.d_kv))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.q.forward(xs)?)?;
        let k = heads(self.k.forward(xs)?)?;
        let v = heads(self.v.forward(xs)?)?;
        // T5 folds the 1/sqrt(d) scaling into its initialisation: scores are unscaled.
        let scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?.broadcast_add(bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        let out = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch, len, self.n_heads * self.d_kv))?;
        self.o.forward(&out)
    }
}

/// Pre-norm self-attention sub-layer with residual.
#[derive(Debug, Clone)]
pub struct T5LayerSelfAttention {
    self_attention: T5Attention,
    layer_norm: T5LayerNorm,
}

impl T5LayerSelfAttention {
    pub fn load(has_relative_attention_bias: bool, vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(T5LayerSelfAttention {
            self_attention: T5Attention::load(has_relative_attention_bias, vb.pp("SelfAttention"), cfg)?,
            layer_norm: T5LayerNorm::load(vb.pp("layer_norm"), cfg)?,
        })
    }

    pub fn forward(&self, xs: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        xs + self.self_attention.forward(&self.layer_norm.forward(xs)?, bias)?
    }
}

/// Keeps f16 activations finite, as HF's T5Block does.
fn clamp_f16(xs: Tensor) -> candle_core::Result<Tensor> {
    if xs.dtype() != DType::F16 {
        return Ok(xs);
    }
    let max = half::f16::MAX.to_f64();
    let has_inf = xs
        .abs()?
        .to_dtype(DType::F32)?
        .max_all()?
        .to_scalar::<f32>()?
        .is_infinite();
    let clamp = if has_inf { max - 1000.0 } else { max };
    xs.clamp(-clamp, clamp)
}

/// One encoder block: `layer.0` self-attention, `layer.1` feed-forward.
#[derive(Debug, Clone)]
pub struct T5Block {
    self_attention: T5LayerSelfAttention,
    ff: T5LayerFF,
}

impl T5Block {
    pub fn load(has_relative_attention_bias: bool, vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(T5Block {
            self_attention: T5LayerSelfAttention::load(has_relative_attention_bias, vb.pp("layer.0"), cfg)?,
            ff: T5LayerFF::load(vb.pp("layer.1"), cfg)?,
        })
    }

    fn projections_mut(&mut self) -> Vec<&mut Projection> {
        let mut projections = self.self_attention.self_attention.projections_mut();
        projections.extend(self.ff.projections_mut());
        projections
    }

    pub fn forward(&self, xs: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        let xs = clamp_f16(self.self_attention.forward(xs, bias)?)?;
        clamp_f16(self.ff.forward(&xs)?)
    }
}

/// The encoder stack: blocks and the final RMS norm (embeddings live in the model).
#[derive(Debug, Clone)]
pub struct T5Stack {
    block: Vec<T5Block>,
    final_layer_norm: T5LayerNorm,
}

impl T5Stack {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let block = (0..cfg.num_layers)
            .map(|i| T5Block::load(i == 0, vb.pp(format!("block.{i}")), cfg))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(T5Stack {
            block,
            final_layer_norm: T5LayerNorm::load(vb.pp("final_layer_norm"), cfg)?,
        })
    }

    /// Hidden state number `state` as HF's `output_hidden_states` numbers them:
    /// 0 is the embeddings, `i` the output of block `i - 1`, `num_layers` the
    /// final-normed output. `key_bias` is `(batch, len)` f32: 0 for real
    /// tokens, -inf for padding.
    pub fn forward(&self, embeddings: &Tensor, key_bias: &Tensor, state: usize) -> candle_core::Result<Tensor> {
        let (batch, len, _) = embeddings.dims3()?;
        let device = embeddings.device();
        let position_bias = match self.block.first() {
            Some(first) => first.self_attention.self_attention.compute_bias(len, device)?,
            None => None,
        };
        // Padded keys get -inf, shared by every layer like HF's extended mask.
        let key_bias = key_bias.reshape((batch, 1, 1, len))?;
        let bias = match position_bias {
            Some(pb) => pb.broadcast_add(&key_bias)?,
            None => key_bias.broadcast_as((batch, 1, len, len))?.contiguous()?,
        };
        let mut xs = embeddings.clone();
        for block in self.block.iter().take(state) {
            xs = block.forward(&xs, &bias)?;
        }
        if state == self.block.len() {
            xs = self.final_layer_norm.forward(&xs)?;
        }
        Ok(xs)
    }
}

/// Shared token embedding plus the encoder stack.
#[derive(Debug, Clone)]
pub struct T5EncoderModel {
    shared: Embedding,
    encoder: T5Stack,
    num_layers: usize,
}

impl T5EncoderModel {
    /// `vb` at the checkpoint root: `shared.weight` (or the tied
    /// `encoder.embed_tokens.weight`) and `encoder.*`; a decoder is ignored.
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let embed_name = if vb.contains_tensor("shared.weight") {
            "shared"
        } else {
            "encoder.embed_tokens"
        };
        let shared = Embedding::new(
            vb.pp(embed_name).get((cfg.vocab_size, cfg.d_model), "weight")?,
            cfg.d_model,
        );
        Ok(T5EncoderModel {
            shared,
            encoder: T5Stack::load(vb.pp("encoder"), cfg)?,
            num_layers: cfg.num_layers,
        })
    }

    /// Rounds and packs every projection weight for bf16 products on the CPU
    /// ([`crate::models::projection`]); the norms, attention and residual stream stay f32.
    pub fn use_bf16_products(&mut self) -> candle_core::Result<()> {
        for projection in self.encoder.block.iter_mut().flat_map(T5Block::projections_mut) {
            projection.use_bf16_products()?;
        }
        Ok(())
    }

    /// Hidden state `state` (see [`T5Stack::forward`]) for `input_ids` `(batch, len)`.
    pub fn forward(&self, input_ids: &Tensor, key_bias: &Tensor, state: usize) -> candle_core::Result<Tensor> {
        let embeddings = self.shared.forward(input_ids)?;
        self.encoder.forward(&embeddings, key_bias, state.min(self.num_layers))
    }
}

/// Rostlab's ProtT5 SentencePiece pieces in id order (before the 100 `<extra_id_*>` sentinels).
pub const PROT_T5_PIECES: [&str; 28] = [
    "<pad>", "</s>", "<unk>", "▁A", "▁L", "▁G", "▁V", "▁S", "▁R", "▁E", "▁D", "▁T", "▁I", "▁P", "▁K", "▁F", "▁Q", "▁N",
    "▁Y", "▁M", "▁H", "▁W", "▁C", "▁X", "▁B", "▁O", "▁U", "▁Z",
];

/// One SentencePiece entry.
#[derive(Debug, Clone, PartialEq)]
struct Piece {
    piece: String,
    score: f32,
    /// SentencePiece type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    kind: u64,
}

/// Reads a varint at `*pos`.
fn read_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Protobuf fields of one message: (field number, wire type, payload bytes or varint value).
enum Field<'a> {
    Varint(u64),
    Fixed32([u8; 4]),
    Bytes(&'a [u8]),
    Other,
}

fn parse_fields(bytes: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut pos = 0;
    let mut fields = Vec::new();
    while pos < bytes.len() {
        let key = read_varint(bytes, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        let field = match wire {
            0 => Field::Varint(read_varint(bytes, &mut pos)?),
            1 => {
                pos = pos.checked_add(8).filter(|&p| p <= bytes.len())?;
                Field::Other
            }
            2 => {
                let len = read_varint(bytes, &mut pos)? as usize;
                let end = pos.checked_add(len).filter(|&e| e <= bytes.len())?;
                let payload = &bytes[pos..end];
                pos = end;
                Field::Bytes(payload)
            }
            5 => {
                let end = pos.checked_add(4).filter(|&e| e <= bytes.len())?;
                let mut raw = [0u8; 4];
                raw.copy_from_slice(&bytes[pos..end]);
                pos = end;
                Field::Fixed32(raw)
            }
            _ => return None,
        };
        fields.push((number, field));
    }
    Some(fields)
}

/// The pieces of a serialized SentencePiece `ModelProto` (field 1, repeated
/// `SentencePiece { 1: piece, 2: score, 3: type }`).
fn parse_spiece_model(bytes: &[u8]) -> Option<Vec<Piece>> {
    let mut pieces = Vec::new();
    for (number, field) in parse_fields(bytes)? {
        let (1, Field::Bytes(message)) = (number, field) else {
            continue;
        };
        let mut piece = Piece {
            piece: String::new(),
            score: 0.0,
            kind: 1,
        };
        for (number, field) in parse_fields(message)? {
            match (number, field) {
                (1, Field::Bytes(text)) => piece.piece = String::from_utf8(text.to_vec()).ok()?,
                (2, Field::Fixed32(raw)) => piece.score = f32::from_le_bytes(raw),
                (3, Field::Varint(kind)) => piece.kind = kind,
                _ => {}
            }
        }
        pieces.push(piece);
    }
    Some(pieces)
}

/// ProtT5 tokenization: one SentencePiece token per residue plus `</s>`.
#[derive(Debug, Clone)]
pub struct T5Vocab {
    /// Token ids of each upper-case letter written as a word (`▁<letter>`), after U/Z/O/B -> X.
    residue_tokens: HashMap<u8, Vec<u32>>,
    pub pad_id: u32,
    pub eos_id: u32,
    pub unk_id: u32,
    /// Where the vocabulary came from (a file, or `built-in`).
    pub source: String,
}

impl T5Vocab {
    /// Builds the residue table from `(piece, score, normal)` entries with ids = positions.
    fn from_pieces(pieces: &[(String, f32, bool)], source: String) -> Result<Self, String> {
        let id_of = |wanted: &str| pieces.iter().position(|(p, _, _)| p == wanted).map(|i| i as u32);
        let pad_id = id_of("<pad>").ok_or("no <pad> piece")?;
        let eos_id = id_of("</s>").ok_or("no </s> piece")?;
        let unk_id = id_of("<unk>").ok_or("no <unk> piece")?;
        // Only normal pieces are matched against text.
        let normal: HashMap<&str, (u32, f32)> = pieces
            .iter()
            .enumerate()
            .filter(|(_, (_, _, normal))| *normal)
            .map(|(i, (p, s, _))| (p.as_str(), (i as u32, *s)))
            .collect();
        let mut residue_tokens = HashMap::new();
        for letter in b'A'..=b'Z' {
            let mapped = map_rare_residue(letter) as char;
            let whole = normal.get(format!("▁{mapped}").as_str());
            let space = normal.get("▁");
            let bare = normal.get(mapped.to_string().as_str());
            // Unigram segmentation of the two-symbol word "▁<residue>": the best-scoring
            // of the whole piece or "▁" + residue; unknown symbols become <unk>.
            let tokens = match (whole, space, bare) {
                (Some(w), Some(s), Some(b)) if s.1 + b.1 > w.1 => vec![s.0, b.0],
                (Some(w), _, _) => vec![w.0],
                (None, Some(s), Some(b)) => vec![s.0, b.0],
                (None, Some(s), None) => vec![s.0, unk_id],
                (None, None, Some(b)) => vec![unk_id, b.0],
                (None, None, None) => vec![unk_id],
            };
            residue_tokens.insert(letter, tokens);
        }
        Ok(T5Vocab {
            residue_tokens,
            pad_id,
            eos_id,
            unk_id,
            source,
        })
    }

    /// Rostlab's ProtT5 vocabulary.
    pub fn builtin() -> Self {
        let pieces: Vec<(String, f32, bool)> = PROT_T5_PIECES
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), 0.0, i >= 3))
            .collect();
        Self::from_pieces(&pieces, "built-in".into()).expect("built-in ProtT5 vocabulary is complete")
    }

    /// Reads a SentencePiece model file (`spiece.model`).
    pub fn from_spiece(path: &Path) -> Result<Self, ModelError> {
        let err = |message: String| ModelError::File {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let pieces = parse_spiece_model(&bytes).ok_or_else(|| err("not a SentencePiece model protobuf".into()))?;
        let pieces: Vec<(String, f32, bool)> = pieces.into_iter().map(|p| (p.piece, p.score, p.kind == 1)).collect();
        Self::from_pieces(&pieces, path.display().to_string()).map_err(|m| err(m.to_string()))
    }

    /// Reads a tokenizers `tokenizer.json` with a Unigram model.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self, ModelError> {
        let err = |message: String| ModelError::File {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let model = &json["model"];
        if model["type"].as_str() != Some("Unigram") {
            return Err(err(format!(
                "expected a Unigram tokenizer model, found {}",
                model["type"]
            )));
        }
        let vocab = model["vocab"]
            .as_array()
            .ok_or_else(|| err("model.vocab is not a list".into()))?;
        let mut pieces = Vec::with_capacity(vocab.len());
        for entry in vocab {
            let piece = entry[0]
                .as_str()
                .ok_or_else(|| err(format!("bad vocab entry {entry}")))?;
            let score = entry[1]
                .as_f64()
                .ok_or_else(|| err(format!("bad vocab entry {entry}")))? as f32;
            pieces.push((piece.to_string(), score, true));
        }
        // Special tokens are matched only as added tokens, never as text pieces.
        if let Some(added) = json["added_tokens"].as_array() {
            for token in added {
                let (Some(id), Some(content)) = (token["id"].as_u64(), token["content"].as_str()) else {
                    continue;
                };
                let id = id as usize;
                if id >= pieces.len() {
                    pieces.resize(id + 1, (String::new(), 0.0, false));
                }
                pieces[id] = (content.to_string(), 0.0, false);
            }
        }
        if let Some(unk) = model["unk_id"].as_u64() {
            if let Some(entry) = pieces.get_mut(unk as usize) {
                entry.2 = false;
            }
        }
        Self::from_pieces(&pieces, path.display().to_string()).map_err(|m| err(m.to_string()))
    }

    /// `tokenizer.json`, else `spiece.model`, else the built-in vocabulary.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::from_tokenizer_json(&json);
        }
        let spiece = dir.join("spiece.model");
        if spiece.is_file() {
            return Self::from_spiece(&spiece);
        }
        Ok(Self::builtin())
    }

    /// Token ids of `sequence` (residues, then `</s>`); `Err` names a residue
    /// the vocabulary cannot encode as exactly one token.
    pub fn encode(&self, sequence: &str) -> Result<Vec<u32>, String> {
        let mut ids = Vec::with_capacity(sequence.len() + 1);
        for (i, byte) in sequence.bytes().enumerate() {
            let letter = byte.to_ascii_uppercase();
            match self.residue_tokens.get(&letter).map(Vec::as_slice) {
                Some([id]) => ids.push(*id),
                Some(tokens) => {
                    return Err(format!(
                        "residue {:?} at position {} becomes {} tokens in {}; residue embeddings need one",
                        letter as char,
                        i + 1,
                        tokens.len(),
                        self.source
                    ))
                }
                None => return Err(format!("invalid residue {:?} at position {}", byte as char, i + 1)),
            }
        }
        ids.push(self.eos_id);
        Ok(ids)
    }
}

/// A ProtT5-style encoder ready to embed residue strings.
pub struct ProtT5Embedder {
    encoder: Encoder<T5EncoderModel>,
    vocab: T5Vocab,
}

impl ProtT5Embedder {
    pub fn vocab(&self) -> &T5Vocab {
        &self.vocab
    }

    /// Token ids fed to the encoder for `sequence` (for checks against the reference tokenizer).
    pub fn tokenize(&self, sequence: &str) -> Result<Vec<u32>, String> {
        self.vocab.encode(sequence)
    }
}

impl Embedder for ProtT5Embedder {
    fn spec(&self) -> &EmbedderSpec {
        self.encoder.spec()
    }

    fn embed_residues(&self, batch: &[&str]) -> Result<Vec<ResidueMatrix>, EmbedError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let ids = batch
            .iter()
            .enumerate()
            .map(|(i, seq)| {
                if seq.is_empty() {
                    return Err(EmbedError::Record {
                        id: format!("#{}", i + 1),
                        message: "empty sequence".into(),
                    });
                }
                self.vocab.encode(seq).map_err(|message| EmbedError::Record {
                    id: format!("#{}", i + 1),
                    message,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let lengths: Vec<usize> = batch.iter().map(|s| s.len()).collect();
        self.encoder.embed(&ids, self.vocab.pad_id, &lengths, 0)
    }

    fn default_batch_tokens(&self) -> usize {
        self.encoder.default_batch_tokens()
    }
}

/// Loads a T5 encoder directory (HF layout: `config.json`, weights, optional
/// `spiece.model`/`tokenizer.json`) as an [`Embedder`].
pub fn load_embedder(dir: &Path, name: &str, opts: &LoadOptions) -> Result<Box<dyn Embedder>, ModelError> {
    Ok(Box::new(load_prot_t5(dir, name, opts)?))
}

/// Like [`load_embedder`] but returns the concrete type.
pub fn load_prot_t5(dir: &Path, name: &str, opts: &LoadOptions) -> Result<ProtT5Embedder, ModelError> {
    let config_path: PathBuf = dir.join("config.json");
    hf_config::check_model_type(dir, "t5")?;
    let cfg: Config = hf_config::read_config(dir)?;
    if Activation::from_hf(cfg.dense_act_fn()).is_none() {
        return Err(ModelError::File {
            path: config_path,
            message: format!("unsupported feed_forward_proj {:?}", cfg.feed_forward_proj),
        });
    }
    let vocab = T5Vocab::from_dir(dir)?;
    let layout = Layout {
        architecture: "t5",
        num_layers: cfg.num_layers,
        dim: cfg.d_model,
        max_residues: None,
    };
    let encoder = Encoder::load(dir, name, opts, layout, &vocab.source, |_, vb| {
        T5EncoderModel::load(vb, &cfg)
    })?;
    Ok(ProtT5Embedder { encoder, vocab })
}

impl PaddedEncoder for T5EncoderModel {
    fn hidden_state(&self, input_ids: &Tensor, key_bias: &Tensor, state: usize) -> candle_core::Result<Tensor> {
        self.forward(input_ids, key_bias, state)
    }

    fn use_bf16_products(&mut self) -> candle_core::Result<()> {
        T5EncoderModel::use_bf16_products(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_reference_values() {
        // Values of HF's _relative_position_bucket(bidirectional, 32 buckets, max 128).
        let cases = [
            (0, 0),
            (-1, 1),
            (1, 17),
            (-7, 7),
            (7, 23),
            (-8, 8),
            (8, 24),
            (-11, 8),
            (-12, 9),
            (-16, 10),
            (-32, 12),
            (-64, 14),
            (-127, 15),
            (-1000, 15),
            (1000, 31),
            (-9, 8),
            (-13, 9),
            (-23, 11),
            (-90, 14),
            (-91, 15),
            (23, 27),
            (64, 30),
        ];
        for (rel, want) in cases {
            assert_eq!(relative_position_bucket(rel, 32, 128), want, "relative position {rel}");
        }
    }

    #[test]
    fn builtin_vocab_tokenizes_like_prot_t5() {
        let vocab = T5Vocab::builtin();
        assert_eq!(vocab.encode("ALGVUZOB").unwrap(), vec![3, 4, 5, 6, 23, 23, 23, 23, 1]);
        assert_eq!(vocab.encode("MKX").unwrap(), vec![19, 14, 23, 1]);
        // J is not a ProtT5 piece: one <unk>, as SentencePiece fuses unknown symbols.
        assert_eq!(vocab.encode("J").unwrap(), vec![2, 1]);
    }

    #[test]
    fn spiece_protobuf_is_parsed() {
        fn piece(text: &str, score: f32, kind: u8) -> Vec<u8> {
            let mut inner = vec![0x0a, text.len() as u8];
            inner.extend_from_slice(text.as_bytes());
            inner.push(0x15);
            inner.extend_from_slice(&score.to_le_bytes());
            inner.extend_from_slice(&[0x18, kind]);
            let mut out = vec![0x0a, inner.len() as u8];
            out.extend(inner);
            out
        }
        let mut bytes = Vec::new();
        for (text, kind) in [("<pad>", 3), ("</s>", 3), ("<unk>", 2), ("▁M", 1), ("▁K", 1), ("▁X", 1)] {
            bytes.extend(piece(text, -1.5, kind));
        }
        // A trainer_spec-like field 2 with a nested varint must be skipped.
        bytes.extend_from_slice(&[0x12, 0x02, 0x18, 0x02]);
        let pieces = parse_spiece_model(&bytes).unwrap();
        assert_eq!(pieces.len(), 6);
        assert_eq!(
            pieces[3],
            Piece {
                piece: "▁M".into(),
                score: -1.5,
                kind: 1
            }
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spiece.model");
        std::fs::write(&path, &bytes).unwrap();
        let vocab = T5Vocab::from_spiece(&path).unwrap();
        assert_eq!(vocab.encode("MKU").unwrap(), vec![3, 4, 5, 1]);
        assert_eq!(vocab.encode("A").unwrap(), vec![2, 1]);
        assert!(parse_spiece_model(&[0x0a, 0x05, 0x01]).is_none());
    }

    #[test]
    fn config_derives_activation_like_t5config() {
        let mut cfg = Config::prot_t5_xl();
        assert!(!cfg.is_gated_act());
        assert_eq!(cfg.dense_act_fn(), "relu");
        cfg.feed_forward_proj = "gated-gelu".into();
        assert!(cfg.is_gated_act());
        assert_eq!(cfg.dense_act_fn(), "gelu_new");
        cfg.feed_forward_proj = "gated-silu".into();
        assert_eq!(cfg.dense_act_fn(), "silu");
    }
}
