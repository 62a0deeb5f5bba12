//! Classifiers over per-protein vectors, behind linfa-style [`Fit`] / [`Predict`]
//! traits: hyper-parameters are checked before fitting and every RNG is seeded.

use crate::io::vocab::LabelVocab;
use crate::vectors::VectorSet;

pub mod ensemble;
pub mod knn;
pub mod mlp;
pub mod prune;
pub mod saved;

pub use ensemble::{KnnEnsemble, KnnEnsembleParams, MlpEnsemble, MlpEnsembleParams};
pub use knn::{Knn, KnnParams};
pub use mlp::{Mlp, MlpParams};
pub use saved::{ClassifierKind, SavedClassifier};

/// One query's answer: the predicted class (an index into the [`LabelVocab`]),
/// its score, the runners-up, and for neighbour methods the nearest training
/// example.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub class: usize,
    /// Higher is more confident; its meaning is the classifier's (vote share, softmax probability, ...).
    pub score: f32,
    /// Best classes with scores, best first, including `class`.
    pub top: Vec<(usize, f32)>,
    /// Index into the training set and Euclidean distance of the nearest training vector (kNN only).
    pub nearest: Option<(usize, f32)>,
}

impl Prediction {
    /// The prediction of a classifier without neighbours: the first of `top` (best first,
    /// not empty) is the class and its score.
    pub fn from_top(top: Vec<(usize, f32)>) -> Self {
        Prediction {
            class: top[0].0,
            score: top[0].1,
            top,
            nearest: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("invalid hyper-parameter: {0}")]
    InvalidParams(String),
    #[error("training data: {0}")]
    Data(String),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    /// A classifier file.
    #[error(transparent)]
    File(#[from] crate::file_error::FileError),
    #[error(transparent)]
    Shard(#[from] crate::cache::shard::ShardError),
    #[error(transparent)]
    Vocab(#[from] crate::io::vocab::VocabError),
    #[error("the classifier was trained on vectors of embedder {expected}, but these come from {found}")]
    EmbedderMismatch { expected: String, found: String },
}

/// Fitting: checked hyper-parameters plus labelled training vectors (and an
/// optional labelled dev set for early stopping) give a fitted model.
pub trait Fit {
    type Model: Predict;
    fn fit(&self, train: &VectorSet, dev: Option<&VectorSet>, vocab: &LabelVocab)
        -> Result<Self::Model, ClassifyError>;
}

/// Prediction for every row of `queries`, in order.
pub trait Predict {
    fn predict(&self, queries: &VectorSet) -> Result<Vec<Prediction>, ClassifyError>;
}

/// Class index of every training vector; unlabelled vectors or families missing
/// from the vocabulary are an error naming the vector.
pub fn class_indices(set: &VectorSet, vocab: &LabelVocab) -> Result<Vec<u32>, ClassifyError> {
    set.ids
        .iter()
        .zip(&set.families)
        .map(|(id, family)| {
            let family = family
                .as_ref()
                .ok_or_else(|| ClassifyError::Data(format!("vector {id} has no family label")))?;
            vocab.index_of(family).map(|i| i as u32).ok_or_else(|| {
                ClassifyError::Data(format!(
                    "vector {id}: family {} is not in the label vocabulary",
                    family.accession
                ))
            })
        })
        .collect()
}

/// Rejects NaN and infinite values, naming the first offending row.
pub fn check_finite(data: &[f32], dim: usize, what: &str) -> Result<(), ClassifyError> {
    if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
        return Err(ClassifyError::Data(format!(
            "{what} vector {} holds a non-finite value",
            pos / dim.max(1)
        )));
    }
    Ok(())
}

/// Checks query vectors before prediction: the training dimension and finite values
/// (the error names the first bad row).
pub fn check_queries(queries: &VectorSet, dim: usize) -> Result<(), ClassifyError> {
    if queries.dim != dim {
        return Err(ClassifyError::Data(format!(
            "query vectors have dimension {}, the classifier was trained on {dim}",
            queries.dim
        )));
    }
    check_finite(&queries.data, dim, "query")
}

/// The compute device in hyper-parameters. It is not saved (the loader picks
/// one) and two handles are equal when they name the same device.
#[derive(Debug, Clone)]
pub struct ComputeDevice(pub candle_core::Device);

impl Default for ComputeDevice {
    fn default() -> Self {
        ComputeDevice(candle_core::Device::Cpu)
    }
}

impl PartialEq for ComputeDevice {
    fn eq(&self, other: &Self) -> bool {
        self.0.same_device(&other.0)
    }
}

/// The device classifiers compute on: the first CUDA device when protfam is built
/// with the `cuda` feature and one is present, else the CPU.
pub fn default_device() -> candle_core::Device {
    #[cfg(feature = "cuda")]
    if let Ok(dev) = candle_core::Device::new_cuda(0) {
        return dev;
    }
    candle_core::Device::Cpu
}
