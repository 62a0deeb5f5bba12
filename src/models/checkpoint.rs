//! Weight files of a Hugging Face-layout model directory, behind a Candle
//! `VarBuilder` that checks every tensor's shape and reports failures with the
//! file and the tensor name.
//!
//! Supported layouts, in order of preference: `model.safetensors`, sharded
//! `model.safetensors.index.json`, `pytorch_model.bin` (PyTorch zip format,
//! read lazily with `candle_core::pickle`), sharded `pytorch_model.bin.index.json`.
//! Old checkpoints that name LayerNorm parameters `gamma`/`beta` are read too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::ModelError;

enum Source {
    Safetensors(candle_core::safetensors::MmapedSafetensors),
    Pth(candle_core::pickle::PthTensors),
}

impl Source {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        match self {
            Source::Safetensors(st) => st.get(name).ok().map(|view| view.shape().to_vec()),
            Source::Pth(pth) => pth.tensor_infos().get(name).map(|info| info.layout.dims().to_vec()),
        }
    }

    fn load(&self, name: &str, device: &Device) -> candle_core::Result<Tensor> {
        match self {
            Source::Safetensors(st) => st.load(name, device),
            Source::Pth(pth) => match pth.get(name)? {
                Some(tensor) => tensor.to_device(device),
                None => candle_core::bail!("tensor {name} vanished from the file"),
            },
        }
    }

    fn names(&self) -> Vec<String> {
        match self {
            Source::Safetensors(st) => st.tensors().into_iter().map(|(name, _)| name).collect(),
            Source::Pth(pth) => pth.tensor_infos().keys().cloned().collect(),
        }
    }
}

struct Inner {
    /// What error messages name when a tensor is missing: the single weight file or the shard index.
    origin: PathBuf,
    files: Vec<PathBuf>,
    sources: Vec<Source>,
    /// Tensor name -> index into `files`/`sources`.
    index: HashMap<String, usize>,
    /// The first load failure, kept with its file and tensor so the loader can report it structurally.
    failure: Mutex<Option<ModelError>>,
}

/// The weight files of one model directory.
#[derive(Clone)]
pub(crate) struct Checkpoint {
    inner: Arc<Inner>,
}

fn file_error(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn open_source(path: &Path) -> Result<Source, ModelError> {
    if !path.is_file() {
        return Err(file_error(path, "weight file not found"));
    }
    let is_safetensors = path.extension().is_some_and(|ext| ext == "safetensors");
    if is_safetensors {
        // SAFETY: the file is mapped read-only; like every safetensors reader we
        // assume it is not truncated while the model is alive.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }
            .map_err(|err| file_error(path, format!("not a readable safetensors file: {err}")))?;
        Ok(Source::Safetensors(st))
    } else {
        let pth = candle_core::pickle::PthTensors::new(path, None).map_err(|err| {
            file_error(
                path,
                format!(
                    "not a readable PyTorch zip checkpoint ({err}); pre-1.6 legacy pickles are not supported, \
                     convert it once with `torch.save(torch.load(f), f)` or to model.safetensors"
                ),
            )
        })?;
        Ok(Source::Pth(pth))
    }
}

/// Shard file names listed in a `*.index.json` (`weight_map` values), in first-seen order.
fn shard_files(index_path: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let text = std::fs::read_to_string(index_path).map_err(|err| file_error(index_path, err.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|err| file_error(index_path, format!("invalid JSON: {err}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| file_error(index_path, "no weight_map object"))?;
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = Vec::new();
    for value in map.values() {
        let name = value
            .as_str()
            .ok_or_else(|| file_error(index_path, "weight_map value is not a string"))?;
        let path = dir.join(name);
        if !files.contains(&path) {
            files.push(path);
        }
    }
    Ok(files)
}

impl Checkpoint {
    /// Finds and opens the weight files of `dir`.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let candidates = [
            ("model.safetensors", false),
            ("model.safetensors.index.json", true),
            ("pytorch_model.bin", false),
            ("pytorch_model.bin.index.json", true),
        ];
        let (origin, files) = candidates
            .iter()
            .map(|(name, sharded)| (dir.join(name), *sharded))
            .find(|(path, _)| path.is_file())
            .map(|(path, sharded)| {
                let files = if sharded {
                    shard_files(&path)?
                } else {
                    vec![path.clone()]
                };
                Ok::<_, ModelError>((path, files))
            })
            .transpose()?
            .ok_or_else(|| {
                file_error(
                    dir,
                    "no weights: expected model.safetensors, pytorch_model.bin or a sharded *.index.json",
                )
            })?;
        Self::from_files(origin, files)
    }

    fn from_files(origin: PathBuf, files: Vec<PathBuf>) -> Result<Self, ModelError> {
        let mut sources = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            let source = open_source(path)?;
            for name in source.names() {
                index.entry(name).or_insert(i);
            }
            sources.push(source);
        }
        Ok(Checkpoint {
            inner: Arc::new(Inner {
                origin,
                files,
                sources,
                index,
                failure: Mutex::new(None),
            }),
        })
    }

    /// Whether the checkpoint holds `name` (or its `gamma`/`beta` alias).
    pub fn contains(&self, name: &str) -> bool {
        self.inner.resolve(name).is_some()
    }

    /// A `VarBuilder` over all tensors: shapes are checked against what the
    /// model asks for, tensors converted to `dtype` and moved to `device`.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        let backend: Box<dyn SimpleBackend> = Box::new(self.clone());
        VarBuilder::from_backend(backend, dtype, device.clone())
    }

    /// Turns a Candle error from model construction into the recorded
    /// structured failure (file + tensor) when there is one.
    pub fn explain(&self, err: candle_core::Error) -> ModelError {
        match self.inner.failure.lock().expect("failure lock").take() {
            Some(recorded) => recorded,
            None => file_error(&self.inner.origin, err.to_string()),
        }
    }
}

impl Inner {
    fn resolve(&self, name: &str) -> Option<(String, usize)> {
        if let Some(&i) = self.index.get(name) {
            return Some((name.to_string(), i));
        }
        // TF-era BERT checkpoints name LayerNorm parameters gamma/beta (HF renames them on load).
        let alias = if let Some(stem) = name.strip_suffix("LayerNorm.weight") {
            format!("{stem}LayerNorm.gamma")
        } else if let Some(stem) = name.strip_suffix("LayerNorm.bias") {
            format!("{stem}LayerNorm.beta")
        } else {
            return None;
        };
        self.index.get(&alias).map(|&i| (alias, i))
    }

    fn fail(&self, path: &Path, tensor: &str, message: String) -> candle_core::Error {
        let err = ModelError::Tensor {
            path: path.to_path_buf(),
            tensor: tensor.to_string(),
            message,
        };
        let text = err.to_string();
        let mut slot = self.failure.lock().expect("failure lock");
        if slot.is_none() {
            *slot = Some(err);
        }
        candle_core::Error::Msg(text)
    }

    fn fetch(
        &self,
        name: &str,
        expected: Option<&Shape>,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let Some((stored, i)) = self.resolve(name) else {
            return Err(self.fail(&self.origin, name, "missing from the checkpoint".to_string()));
        };
        let path = &self.files[i];
        let source = &self.sources[i];
        if let Some(expected) = expected {
            let found = source.shape(&stored).unwrap_or_default();
            if found.as_slice() != expected.dims() {
                return Err(self.fail(
                    path,
                    name,
                    format!(
                        "shape mismatch: file has {found:?}, config.json implies {:?}",
                        expected.dims()
                    ),
                ));
            }
        }
        source
            .load(&stored, device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(|err| self.fail(path, name, format!("cannot read: {err}")))
    }
}

impl SimpleBackend for Checkpoint {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.inner.fetch(name, Some(&s), dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.inner.fetch(name, None, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.resolve(name).is_some()
    }
}

/// Reads and parses `dir/config.json`.
pub(crate) fn read_config<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<T, ModelError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|err| file_error(&path, format!("cannot read: {err}")))?;
    serde_json::from_str(&text).map_err(|err| file_error(&path, format!("invalid config: {err}")))
}

/// Fails unless `dir/config.json`'s `model_type` is `expected` (a missing key is accepted:
/// old Rostlab configs predate it).
pub(crate) fn check_model_type(dir: &Path, expected: &str) -> Result<(), ModelError> {
    let path = dir.join("config.json");
    let value: serde_json::Value = read_config(dir)?;
    match value.get("model_type").and_then(|v| v.as_str()) {
        Some(found) if found != expected => Err(file_error(
            &path,
            format!("model_type is {found:?}, expected {expected:?}"),
        )),
        _ => Ok(()),
    }
}

/// Index of the hidden state to return among `n_states` (embeddings + one per
/// layer), from a user's layer choice (negative counts from the end).
pub(crate) fn hidden_state_index(layer: Option<i64>, n_states: usize, config: &Path) -> Result<usize, ModelError> {
    let Some(layer) = layer else {
        return Ok(n_states - 1);
    };
    let n = n_states as i64;
    let index = if layer < 0 { n + layer } else { layer };
    if !(0..n).contains(&index) {
        return Err(file_error(
            config,
            format!(
                "layer {layer} out of range: the model has hidden states 0..={} (or -{n}..=-1)",
                n - 1
            ),
        ));
    }
    Ok(index as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_index_counts_from_both_ends() {
        let cfg = Path::new("config.json");
        assert_eq!(hidden_state_index(None, 7, cfg).unwrap(), 6);
        assert_eq!(hidden_state_index(Some(0), 7, cfg).unwrap(), 0);
        assert_eq!(hidden_state_index(Some(-1), 7, cfg).unwrap(), 6);
        assert_eq!(hidden_state_index(Some(-7), 7, cfg).unwrap(), 0);
        assert!(hidden_state_index(Some(7), 7, cfg).is_err());
        assert!(hidden_state_index(Some(-8), 7, cfg).is_err());
    }

    #[test]
    fn missing_and_mismatched_tensors_name_file_and_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let t = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        candle_core::safetensors::save(&HashMap::from([("a.LayerNorm.gamma".to_string(), t)]), &path).unwrap();
        let ckpt = Checkpoint::open(dir.path()).unwrap();
        assert!(ckpt.contains("a.LayerNorm.weight"));
        let vb = ckpt.var_builder(DType::F32, &Device::Cpu);
        assert!(vb.get((2, 3), "a.LayerNorm.weight").is_ok());

        let err = vb.get((3, 2), "a.LayerNorm.weight").unwrap_err();
        let text = ckpt.explain(err).to_string();
        assert!(text.contains("model.safetensors") && text.contains("a.LayerNorm.weight") && text.contains("[2, 3]"));

        let err = vb.get(4, "b.weight").unwrap_err();
        let text = ckpt.explain(err).to_string();
        assert!(text.contains("model.safetensors") && text.contains("b.weight") && text.contains("missing"));
    }
}
