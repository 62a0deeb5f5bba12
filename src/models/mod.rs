//! Embedding models: the registry of known models, loading by registry name or
//! from a Hugging Face-layout directory, and one file per architecture.
//!
//! `config.json`'s `model_type` picks the architecture for HF directories
//! (`esm`, `t5`, `bert`); UniRep, NEAR and one-hot have their own layouts.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::embedder::Embedder;

pub mod bert;
mod checkpoint;
pub mod esm;
pub mod near;
pub mod onehot;
pub mod registry;
pub mod t5;
pub mod unirep;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model {0:?}: not a registry name (see `protfam models list`) nor a directory")]
    UnknownModel(String),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: tensor {tensor}: {message}")]
    Tensor { path: PathBuf, tensor: String, message: String },
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Other(String),
}

/// Settings that apply to every model when loading.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    /// Compute dtype; f32 on CPU.
    pub dtype: DType,
    /// Hidden layer to take residue embeddings from (negative counts from the end); `None` = last.
    pub layer: Option<i64>,
    /// Where registry models live (`models/` by default).
    pub models_dir: PathBuf,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { device: Device::Cpu, dtype: DType::F32, layer: None, models_dir: PathBuf::from("models") }
    }
}

/// Loads an embedder from a registry name (`unirep1900`, `esm2_t12_35M`, ...)
/// or a path to a model directory.
pub fn load(model: &str, opts: &LoadOptions) -> Result<Box<dyn Embedder>, ModelError> {
    let path = Path::new(model);
    if path.is_dir() {
        return load_dir(path, None, opts);
    }
    let entry = registry::lookup(model).ok_or_else(|| ModelError::UnknownModel(model.to_string()))?;
    registry::load_entry(entry, opts)
}

/// Loads a Hugging Face-layout directory, dispatching on `config.json`'s `model_type`.
pub fn load_dir(dir: &Path, name: Option<&str>, opts: &LoadOptions) -> Result<Box<dyn Embedder>, ModelError> {
    let _ = (dir, name, opts);
    Err(ModelError::Other("HF directory loading is not written yet".into()))
}
