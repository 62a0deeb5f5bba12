//! BERT as used by ProtBert-BFD (`Rostlab/prot_bert_bfd`), mirroring HF
//! transformers' `modeling_bert.py`: word + absolute position + token-type
//! embeddings with LayerNorm, post-LN encoder layers, scaled dot-product
//! attention with an additive padding mask. `BertModel` checkpoints and
//! `BertForMaskedLM`/`BertForPreTraining` ones (weights under `bert.`) both load;
//! heads and the pooler are ignored.
//!
//! Tokenization equals HF's `BertTokenizer` on ProtBert's `vocab.txt` for
//! space-separated upper-case residues: U/Z/O/B are mapped to X (as ProtTrans
//! does), each residue is one word looked up whole (or `[UNK]`), and the
//! sequence is wrapped in `[CLS]` ... `[SEP]`, which pooling leaves out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use serde::Deserialize;

use super::hf_config;
use super::projection::Projection;
use super::prottrans::{map_rare_residue, Encoder, Layout, PaddedEncoder};
use super::t5::Activation;
use super::{LoadOptions, ModelError};
use crate::embedder::{EmbedError, Embedder, EmbedderSpec, ResidueMatrix};

fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".to_string()
}
fn default_type_vocab_size() -> usize {
    2
}
fn default_position_embedding_type() -> String {
    "absolute".to_string()
}

/// `config.json` of a BERT model; only the keys the encoder needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Informational: the padding id comes from the vocabulary (`[PAD]`).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
}

impl Config {
    /// ProtBert-BFD's shape (`Rostlab/prot_bert_bfd`).
    pub fn prot_bert_bfd() -> Self {
        Config {
            model_type: Some("bert".into()),
            vocab_size: 30,
            hidden_size: 1024,
            num_hidden_layers: 30,
            num_attention_heads: 16,
            intermediate_size: 4096,
            hidden_act: "gelu".into(),
            max_position_embeddings: 40000,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: Some(0),
            position_embedding_type: "absolute".into(),
        }
    }
}

fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Projection> {
    Projection::load(in_dim, out_dim, true, vb)
}

fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    Ok(LayerNorm::new(vb.get(size, "weight")?, vb.get(size, "bias")?, eps))
}

/// Word, absolute position and token-type embeddings, summed and normalised.
#[derive(Debug, Clone)]
pub struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
}

impl BertEmbeddings {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let embedding = |n: usize, name: &str| -> candle_core::Result<Embedding> {
            Ok(Embedding::new(vb.pp(name).get((n, h), "weight")?, h))
        };
        Ok(BertEmbeddings {
            word_embeddings: embedding(cfg.vocab_size, "word_embeddings")?,
            position_embeddings: embedding(cfg.max_position_embeddings, "position_embeddings")?,
            token_type_embeddings: embedding(cfg.type_vocab_size, "token_type_embeddings")?,
            layer_norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// Right-padded `input_ids` `(batch, len)`: positions count from 0 and token types are all 0, as HF's defaults.
    pub fn forward(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        let (_, len) = input_ids.dims2()?;
        let device = input_ids.device();
        let positions = Tensor::arange(0u32, len as u32, device)?;
        let words = self.word_embeddings.forward(input_ids)?;
        let positions = self.position_embeddings.forward(&positions)?.unsqueeze(0)?;
        let token_type = self
            .token_type_embeddings
            .forward(&Tensor::zeros(1, DType::U32, device)?)?
            .unsqueeze(0)?;
        let sum = words.broadcast_add(&positions)?.broadcast_add(&token_type)?;
        self.layer_norm.forward(&sum)
    }
}

/// Query/key/value projections and scaled dot-product attention.
#[derive(Debug, Clone)]
pub struct BertSelfAttention {
    query: Projection,
    key: Projection,
    value: Projection,
    num_attention_heads: usize,
    attention_head_size: usize,
}

impl BertSelfAttention {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        if !h.is_multiple_of(cfg.num_attention_heads) {
            candle_core::bail!(
                "hidden_size {h} is not a multiple of num_attention_heads {}",
                cfg.num_attention_heads
            );
        }
        Ok(BertSelfAttention {
            query: linear(h, h, vb.pp("query"))?,
            key: linear(h, h, vb.pp("key"))?,
            value: linear(h, h, vb.pp("value"))?,
            num_attention_heads: cfg.num_attention_heads,
            attention_head_size: h / cfg.num_attention_heads,
        })
    }

    /// `key_bias` is `(batch, 1, 1, len)` f32: 0 for real tokens, -inf for padding.
    pub fn forward(&self, xs: &Tensor, key_bias: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, len, _) = xs.dims3()?;
        let heads = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((batch, len, self.num_attention_heads, self.attention_head_size))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.query.forward(xs)?)?;
        let k = heads(self.key.forward(xs)?)?;
        let v = heads(self.value.forward(xs)?)?;
        let scale = 1.0 / (self.attention_head_size as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?
            .to_dtype(DType::F32)?
            .broadcast_add(key_bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        weights
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch, len, self.num_attention_heads * self.attention_head_size))
    }
}

/// Attention output projection, residual and LayerNorm.
#[derive(Debug, Clone)]
pub struct BertSelfOutput {
    dense: Projection,
    layer_norm: LayerNorm,
}

impl BertSelfOutput {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(BertSelfOutput {
            dense: linear(cfg.hidden_size, cfg.hidden_size, vb.pp("dense"))?,
            layer_norm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    pub fn forward(&self, hidden: &Tensor, input: &Tensor) -> candle_core::Result<Tensor> {
        self.layer_norm.forward(&(self.dense.forward(hidden)? + input)?)
    }
}

/// `attention.self` + `attention.output`.
#[derive(Debug, Clone)]
pub struct BertAttention {
    self_attention: BertSelfAttention,
    output: BertSelfOutput,
}

impl BertAttention {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(BertAttention {
            self_attention: BertSelfAttention::load(vb.pp("self"), cfg)?,
            output: BertSelfOutput::load(vb.pp("output"), cfg)?,
        })
    }

    pub fn forward(&self, xs: &Tensor, key_bias: &Tensor) -> candle_core::Result<Tensor> {
        self.output.forward(&self.self_attention.forward(xs, key_bias)?, xs)
    }
}

/// Feed-forward up-projection and activation.
#[derive(Debug, Clone)]
pub struct BertIntermediate {
    dense: Projection,
    act: Activation,
}

impl BertIntermediate {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let act = Activation::from_hf(&cfg.hidden_act).ok_or_else(|| {
            candle_core::Error::Msg(format!("unsupported hidden_act {:?} in config.json", cfg.hidden_act))
        })?;
        Ok(BertIntermediate {
            dense: linear(cfg.hidden_size, cfg.intermediate_size, vb.pp("dense"))?,
            act,
        })
    }
}

impl Module for BertIntermediate {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.act.forward(&self.dense.forward(xs)?)
    }
}

/// Feed-forward down-projection, residual and LayerNorm.
#[derive(Debug, Clone)]
pub struct BertOutput {
    dense: Projection,
    layer_norm: LayerNorm,
}

impl BertOutput {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(BertOutput {
            dense: linear(cfg.intermediate_size, cfg.hidden_size, vb.pp("dense"))?,
            layer_norm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    pub fn forward(&self, hidden: &Tensor, input: &Tensor) -> candle_core::Result<Tensor> {
        self.layer_norm.forward(&(self.dense.forward(hidden)? + input)?)
    }
}

/// One post-LN transformer layer.
#[derive(Debug, Clone)]
pub struct BertLayer {
    attention: BertAttention,
    intermediate: BertIntermediate,
    output: BertOutput,
}

impl BertLayer {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(BertLayer {
            attention: BertAttention::load(vb.pp("attention"), cfg)?,
            intermediate: BertIntermediate::load(vb.pp("intermediate"), cfg)?,
            output: BertOutput::load(vb.pp("output"), cfg)?,
        })
    }

    fn projections_mut(&mut self) -> Vec<&mut Projection> {
        let query_key_value = &mut self.attention.self_attention;
        vec![
            &mut query_key_value.query,
            &mut query_key_value.key,
            &mut query_key_value.value,
            &mut self.attention.output.dense,
            &mut self.intermediate.dense,
            &mut self.output.dense,
        ]
    }

    pub fn forward(&self, xs: &Tensor, key_bias: &Tensor) -> candle_core::Result<Tensor> {
        let attention = self.attention.forward(xs, key_bias)?;
        self.output.forward(&self.intermediate.forward(&attention)?, &attention)
    }
}

/// The stack of layers.
#[derive(Debug, Clone)]
pub struct BertEncoder {
    layer: Vec<BertLayer>,
}

impl BertEncoder {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let layer = (0..cfg.num_hidden_layers)
            .map(|i| BertLayer::load(vb.pp(format!("layer.{i}")), cfg))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(BertEncoder { layer })
    }

    /// Runs the first `n_layers` layers.
    pub fn forward(&self, xs: &Tensor, key_bias: &Tensor, n_layers: usize) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for layer in self.layer.iter().take(n_layers) {
            xs = layer.forward(&xs, key_bias)?;
        }
        Ok(xs)
    }
}

/// Embeddings plus encoder (no pooler: per-residue outputs are what we need).
#[derive(Debug, Clone)]
pub struct BertModel {
    embeddings: BertEmbeddings,
    encoder: BertEncoder,
}

impl BertModel {
    /// `vb` at the model root (`embeddings.*`, `encoder.*`); see [`load_prot_bert`] for the `bert.` prefix.
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(BertModel {
            embeddings: BertEmbeddings::load(vb.pp("embeddings"), cfg)?,
            encoder: BertEncoder::load(vb.pp("encoder"), cfg)?,
        })
    }

    /// Rounds and packs every projection weight for bf16 products on the CPU
    /// ([`crate::models::projection`]); LayerNorm, attention and the residual stream stay f32.
    pub fn use_bf16_products(&mut self) -> candle_core::Result<()> {
        for projection in self.encoder.layer.iter_mut().flat_map(BertLayer::projections_mut) {
            projection.use_bf16_products()?;
        }
        Ok(())
    }

    /// Hidden state `state` as HF's `output_hidden_states` numbers them (0 =
    /// embeddings, `i` = output of layer `i - 1`). `key_bias` is `(batch, len)`
    /// f32, 0 for real tokens and -inf for padding.
    pub fn forward(&self, input_ids: &Tensor, key_bias: &Tensor, state: usize) -> candle_core::Result<Tensor> {
        let (batch, len) = input_ids.dims2()?;
        let key_bias = key_bias.reshape((batch, 1, 1, len))?;
        let xs = self.embeddings.forward(input_ids)?;
        self.encoder.forward(&xs, &key_bias, state)
    }
}

/// ProtBert's `vocab.txt` order.
pub const PROT_BERT_VOCAB: [&str; 30] = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "L", "A", "G", "V", "E", "S", "I", "K", "R", "D", "T", "P", "N", "Q",
    "F", "Y", "M", "H", "C", "W", "X", "U", "B", "Z", "O",
];

/// WordPiece vocabulary restricted to what protein residues need.
#[derive(Debug, Clone)]
pub struct BertVocab {
    tokens: HashMap<String, u32>,
    pub pad_id: u32,
    pub unk_id: u32,
    pub cls_id: u32,
    pub sep_id: u32,
    /// `do_lower_case` from `tokenizer_config.json` (ProtBert: false).
    pub lower_case: bool,
    pub source: String,
}

impl BertVocab {
    fn from_tokens(list: &[String], lower_case: bool, source: String) -> Result<Self, String> {
        let tokens: HashMap<String, u32> = list.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let id = |t: &str| tokens.get(t).copied().ok_or_else(|| format!("no {t} token"));
        Ok(BertVocab {
            pad_id: id("[PAD]")?,
            unk_id: id("[UNK]")?,
            cls_id: id("[CLS]")?,
            sep_id: id("[SEP]")?,
            tokens,
            lower_case,
            source,
        })
    }

    /// ProtBert's vocabulary.
    pub fn builtin() -> Self {
        let list: Vec<String> = PROT_BERT_VOCAB.iter().map(|t| t.to_string()).collect();
        Self::from_tokens(&list, false, "built-in".into()).expect("built-in ProtBert vocabulary is complete")
    }

    /// `vocab.txt` (one token per line, id = line number) plus `do_lower_case`
    /// from `tokenizer_config.json` when present; the built-in vocabulary when there is no `vocab.txt`.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let lower_case = read_do_lower_case(dir)?;
        let path = dir.join("vocab.txt");
        if !path.is_file() {
            let mut vocab = Self::builtin();
            vocab.lower_case = lower_case;
            return Ok(vocab);
        }
        let err = |message: String| ModelError::File {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| err(format!("cannot read: {e}")))?;
        // HF's load_vocab strips only the trailing newline of each line.
        let list: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
        Self::from_tokens(&list, lower_case, path.display().to_string()).map_err(err)
    }

    /// `[CLS]`, one token per residue, `[SEP]`.
    pub fn encode(&self, sequence: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(sequence.len() + 2);
        ids.push(self.cls_id);
        let mut word = String::with_capacity(1);
        for byte in sequence.bytes() {
            let mut letter = map_rare_residue(byte.to_ascii_uppercase());
            if self.lower_case {
                letter = letter.to_ascii_lowercase();
            }
            word.clear();
            word.push(letter as char);
            ids.push(self.tokens.get(&word).copied().unwrap_or(self.unk_id));
        }
        ids.push(self.sep_id);
        ids
    }
}

fn read_do_lower_case(dir: &Path) -> Result<bool, ModelError> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(false);
    }
    let err = |message: String| ModelError::File {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| err(format!("cannot read: {e}")))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(format!("invalid JSON: {e}")))?;
    // BertTokenizer's default is do_lower_case=True; Rostlab's configs set it to false.
    Ok(json.get("do_lower_case").and_then(|v| v.as_bool()).unwrap_or(true))
}

/// A ProtBert-style encoder ready to embed residue strings.
pub struct ProtBertEmbedder {
    encoder: Encoder<BertModel>,
    vocab: BertVocab,
}

impl ProtBertEmbedder {
    pub fn vocab(&self) -> &BertVocab {
        &self.vocab
    }

    /// Token ids fed to the encoder for `sequence`.
    pub fn tokenize(&self, sequence: &str) -> Vec<u32> {
        self.vocab.encode(sequence)
    }
}

impl Embedder for ProtBertEmbedder {
    fn spec(&self) -> &EmbedderSpec {
        self.encoder.spec()
    }

    fn embed_residues(&self, batch: &[&str]) -> Result<Vec<ResidueMatrix>, EmbedError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let spec = self.encoder.spec();
        let max = spec.max_residues.unwrap_or(usize::MAX);
        for (i, seq) in batch.iter().enumerate() {
            if seq.is_empty() || seq.len() > max {
                return Err(EmbedError::Record {
                    id: format!("#{}", i + 1),
                    message: format!("{} residues; {} takes 1 to {max} in one piece", seq.len(), spec.name),
                });
            }
        }
        let ids: Vec<Vec<u32>> = batch.iter().map(|s| self.vocab.encode(s)).collect();
        let lengths: Vec<usize> = batch.iter().map(|s| s.len()).collect();
        // Row 0 is [CLS]; residues follow; [SEP] and padding are dropped.
        self.encoder.embed(&ids, self.vocab.pad_id, &lengths, 1)
    }

    fn default_batch_tokens(&self) -> usize {
        self.encoder.default_batch_tokens()
    }
}

/// Loads a BERT directory (HF layout: `config.json`, weights, optional
/// `vocab.txt`/`tokenizer_config.json`) as an [`Embedder`].
pub fn load_embedder(dir: &Path, name: &str, opts: &LoadOptions) -> Result<Box<dyn Embedder>, ModelError> {
    Ok(Box::new(load_prot_bert(dir, name, opts)?))
}

/// Like [`load_embedder`] but returns the concrete type.
pub fn load_prot_bert(dir: &Path, name: &str, opts: &LoadOptions) -> Result<ProtBertEmbedder, ModelError> {
    let config_path: PathBuf = dir.join("config.json");
    let cfg: Config = hf_config::read_config(dir)?;
    let config_error = |message: String| ModelError::File {
        path: config_path.clone(),
        message,
    };
    if let Some(model_type) = &cfg.model_type {
        if model_type != "bert" {
            return Err(config_error(format!("model_type is {model_type:?}, expected \"bert\"")));
        }
    }
    if cfg.position_embedding_type != "absolute" {
        return Err(config_error(format!(
            "position_embedding_type {:?} is not supported (only \"absolute\")",
            cfg.position_embedding_type
        )));
    }
    if Activation::from_hf(&cfg.hidden_act).is_none() {
        return Err(config_error(format!("unsupported hidden_act {:?}", cfg.hidden_act)));
    }
    if cfg.max_position_embeddings < 3 {
        return Err(config_error(format!(
            "max_position_embeddings {} is too small",
            cfg.max_position_embeddings
        )));
    }
    let vocab = BertVocab::from_dir(dir)?;
    let layout = Layout {
        architecture: "bert",
        num_layers: cfg.num_hidden_layers,
        dim: cfg.hidden_size,
        // [CLS] and [SEP] take two of the learned positions.
        max_residues: Some(cfg.max_position_embeddings - 2),
    };
    let encoder = Encoder::load(dir, name, opts, layout, &vocab.source, |ckpt, vb| {
        // BertForMaskedLM / BertForPreTraining keep the encoder under `bert.`.
        let vb = if ckpt.contains("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        BertModel::load(vb, &cfg)
    })?;
    Ok(ProtBertEmbedder { encoder, vocab })
}

impl PaddedEncoder for BertModel {
    fn hidden_state(&self, input_ids: &Tensor, key_bias: &Tensor, state: usize) -> candle_core::Result<Tensor> {
        self.forward(input_ids, key_bias, state)
    }

    fn use_bf16_products(&mut self) -> candle_core::Result<()> {
        BertModel::use_bf16_products(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_vocab_wraps_residues_and_maps_rare_ones() {
        let vocab = BertVocab::builtin();
        assert_eq!(vocab.encode("LAGU"), vec![2, 5, 6, 7, 25, 3]);
        assert_eq!(vocab.encode("ZOBX"), vec![2, 25, 25, 25, 25, 3]);
        // J is not in ProtBert's vocabulary.
        assert_eq!(vocab.encode("J"), vec![2, 1, 3]);
    }

    #[test]
    fn lower_casing_vocab_follows_tokenizer_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("vocab.txt"),
            "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nk\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"do_lower_case": true}"#).unwrap();
        let vocab = BertVocab::from_dir(dir.path()).unwrap();
        assert_eq!(vocab.encode("AKM"), vec![2, 5, 6, 1, 3]);
        std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"do_lower_case": false}"#).unwrap();
        let vocab = BertVocab::from_dir(dir.path()).unwrap();
        assert_eq!(vocab.encode("AK"), vec![2, 1, 1, 3]);
    }
}
