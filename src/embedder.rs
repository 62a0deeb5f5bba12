//! The [`Embedder`] trait every protein language model implements, and what
//! identifies an embedder's output (for caching and for classifiers).
//!
//! An embedder turns raw residue strings into per-residue matrices; the
//! per-protein vector is, unless the model says otherwise, the mean over
//! residue positions only (never CLS/BOS/EOS/padding).

use serde::{Deserialize, Serialize};

/// How a per-protein vector is made from residue embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over residue positions.
    Mean,
    /// Fixed-length flattening (the one-hot baseline input).
    Flatten,
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Mean => "mean",
            Pooling::Flatten => "flatten",
        })
    }
}

/// Everything that determines an embedder's numbers. Two embedders with equal
/// specs give equal vectors, so the spec keys the cache and is stored with
/// every trained classifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct EmbedderSpec {
    /// Registry short name (`unirep1900`, `esm2_t12_35M`) or directory name.
    pub name: String,
    /// `esm`, `t5`, `bert`, `unirep`, `near` or `onehot`.
    pub architecture: String,
    /// Hex SHA-256 over the weight files (or over the settings, for weightless encoders).
    pub weights_digest: String,
    /// Length of the per-protein vector.
    pub dim: usize,
    /// Hidden layer the residue embeddings come from; `None` is the last.
    pub layer: Option<i64>,
    pub pooling: Pooling,
    /// Longest sequence (in residues) the model takes in one piece; longer ones are windowed.
    pub max_residues: Option<usize>,
    /// Compute dtype (`f32`, `f16`, `bf16`); part of the identity because it changes the numbers.
    pub dtype: String,
}

impl EmbedderSpec {
    /// A short stable key for file names: name plus the first 12 hex digits of a
    /// digest over the whole spec.
    pub fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).expect("spec serialises");
        let digest = hex::encode(Sha256::digest(&json));
        format!("{}-{}", self.name, &digest[..12])
    }
}

/// Per-residue embeddings of one sequence: `len` rows of `dim` floats, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ResidueMatrix {
    pub len: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl ResidueMatrix {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Mean over rows; a zero vector for an empty matrix.
    pub fn mean(&self) -> Vec<f32> {
        let mut out = vec![0f64; self.dim];
        for i in 0..self.len {
            for (o, v) in out.iter_mut().zip(self.row(i)) {
                *o += *v as f64;
            }
        }
        let n = self.len.max(1) as f64;
        out.into_iter().map(|v| (v / n) as f32).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("record {id}: {message}")]
    Record { id: String, message: String },
    #[error("model {model}: {source}")]
    Candle { model: String, source: candle_core::Error },
    #[error("model {model}: {message}")]
    Model { model: String, message: String },
}

/// A protein language model (or fixed encoder) that embeds raw sequences.
///
/// Inputs are validated upper-case residue strings (see [`crate::io::alphabet`]);
/// each model maps the ambiguous letters (B, Z, U, O, J, X) as its reference
/// implementation does. Outputs must not depend on how sequences are batched.
pub trait Embedder: Send + Sync {
    fn spec(&self) -> &EmbedderSpec;

    /// Per-residue embeddings, one matrix per input sequence, in input order.
    fn embed_residues(&self, batch: &[&str]) -> Result<Vec<ResidueMatrix>, EmbedError>;

    /// Per-protein vectors, one per input sequence, in input order.
    fn embed_pooled(&self, batch: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(self.embed_residues(batch)?.iter().map(ResidueMatrix::mean).collect())
    }

    /// A batch size, in residues, that keeps this model fast without exhausting memory.
    fn default_batch_tokens(&self) -> usize {
        4096
    }
}

/// Batches for an embedder: the indices of `lengths` sorted by length (padding
/// costs), cut into runs of at most `batch_tokens` residues (a longer sequence
/// forms a batch alone). Callers put the results back in input order.
pub fn length_sorted_batches(lengths: &[usize], batch_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut tokens = 0;
    for i in order {
        match batches.last_mut() {
            Some(batch) if tokens + lengths[i] <= batch_tokens => batch.push(i),
            _ => {
                batches.push(vec![i]);
                tokens = 0;
            }
        }
        tokens += lengths[i];
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_length_sorted_and_within_the_budget() {
        let lengths = [50, 10, 300, 20, 40];
        assert_eq!(
            length_sorted_batches(&lengths, 70),
            vec![vec![1, 3, 4], vec![0], vec![2]]
        );
        assert!(length_sorted_batches(&[], 10).is_empty());
    }
}
