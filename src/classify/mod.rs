//! Classifiers over per-protein vectors, behind linfa-style [`Fit`] / [`Predict`]
//! traits: hyper-parameters are checked before fitting and every RNG is seeded.

use crate::io::vocab::LabelVocab;
use crate::vectors::VectorSet;

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

#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("invalid hyper-parameter: {0}")]
    InvalidParams(String),
    #[error("training data: {0}")]
    Data(String),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
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
