//! Weight files of a Hugging Face-layout model directory: finding them
//! (`model.safetensors`, sharded `model.safetensors.index.json`, `pytorch_model.bin`
//! or its sharded index), checking names and shapes against what a config
//! expects before anything is loaded (so a bad checkpoint fails with the file
//! and tensor named), a Candle [`VarBuilder`] over them, and the SHA-256 digest
//! that identifies the model's numbers in [`crate::embedder::EmbedderSpec`].
//!
//! LayerNorm parameters are found under either naming HF has used:
//! `LayerNorm.weight`/`LayerNorm.bias` (hub checkpoints) or
//! `LayerNorm.gamma`/`LayerNorm.beta` (what transformers 5 writes, and old
//! TF-converted checkpoints).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ModelError;

/// Where one tensor lives and its shape on disk.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub file: usize,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

enum Reader {
    Safetensors(candle_core::safetensors::MmapedSafetensors),
    Pth(candle_core::pickle::PthTensors),
}

/// The weight files of one model directory with an index of every tensor in them.
pub struct Checkpoint {
    files: Vec<PathBuf>,
    readers: Vec<Reader>,
    index: HashMap<String, TensorEntry>,
    /// The file named in errors about missing tensors: the single weight file or the shard index.
    described_by: PathBuf,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("files", &self.files)
            .field("tensors", &self.index.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// The weight files in `dir`, in the order HF prefers them (safetensors first).
pub fn weight_files(dir: &Path) -> Result<(Vec<PathBuf>, PathBuf), ModelError> {
    let single_st = dir.join("model.safetensors");
    if single_st.is_file() {
        return Ok((vec![single_st.clone()], single_st));
    }
    for index_name in ["model.safetensors.index.json", "pytorch_model.bin.index.json"] {
        let index_path = dir.join(index_name);
        if index_path.is_file() {
            let text = fs::read_to_string(&index_path).map_err(|e| file_err(&index_path, e))?;
            let index: ShardIndex = serde_json::from_str(&text).map_err(|e| ModelError::File {
                path: index_path.clone(),
                message: format!("bad shard index: {e}"),
            })?;
            let mut shards: Vec<String> = index.weight_map.into_values().collect();
            shards.sort();
            shards.dedup();
            let files: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
            if let Some(missing) = files.iter().find(|f| !f.is_file()) {
                return Err(ModelError::File {
                    path: missing.clone(),
                    message: format!("shard listed in {} is missing", index_path.display()),
                });
            }
            return Ok((files, index_path));
        }
    }
    let single_bin = dir.join("pytorch_model.bin");
    if single_bin.is_file() {
        return Ok((vec![single_bin.clone()], single_bin));
    }
    Err(ModelError::File {
        path: dir.to_path_buf(),
        message: "no weights: expected model.safetensors, pytorch_model.bin or a sharded index \
                  (model.safetensors.index.json / pytorch_model.bin.index.json)"
            .into(),
    })
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl Checkpoint {
    /// Opens the weight files of `dir` and indexes their tensors (names, shapes; no data is read).
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let (files, described_by) = weight_files(dir)?;
        let mut readers = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            let is_st = path.extension().is_some_and(|e| e == "safetensors");
            let reader = if is_st {
                // SAFETY: the file is memory-mapped read-only; we never write to it, and a concurrent
                // writer would be a user error that the safetensors header checks partly catch.
                let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }
                    .map_err(|e| file_err(path, format!("not a readable safetensors file: {e}")))?;
                for (name, view) in st.tensors() {
                    let dtype = DType::try_from(view.dtype()).map_err(|e| ModelError::Tensor {
                        path: path.clone(),
                        tensor: name.clone(),
                        message: e.to_string(),
                    })?;
                    index.insert(
                        name,
                        TensorEntry {
                            file: i,
                            shape: view.shape().to_vec(),
                            dtype,
                        },
                    );
                }
                Reader::Safetensors(st)
            } else {
                let pth = candle_core::pickle::PthTensors::new(path, None)
                    .map_err(|e| file_err(path, format!("not a readable PyTorch zip checkpoint: {e}")))?;
                for (name, info) in pth.tensor_infos() {
                    let entry = TensorEntry {
                        file: i,
                        shape: info.layout.shape().dims().to_vec(),
                        dtype: info.dtype,
                    };
                    index.insert(name.clone(), entry);
                }
                Reader::Pth(pth)
            };
            readers.push(reader);
        }
        tracing::debug!(
            files = files.len(),
            tensors = index.len(),
            "indexed checkpoint in {}",
            dir.display()
        );
        Ok(Checkpoint {
            files,
            readers,
            index,
            described_by,
        })
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Tensor names in the checkpoint, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.index.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The stored name for `name`, trying the LayerNorm `gamma`/`beta` aliases.
    pub fn resolve(&self, name: &str) -> Option<&str> {
        if let Some((k, _)) = self.index.get_key_value(name) {
            return Some(k.as_str());
        }
        let alias = layer_norm_alias(name)?;
        self.index.get_key_value(&alias).map(|(k, _)| k.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }

    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.resolve(name).and_then(|k| self.index.get(k))
    }

    /// Checks that every `(name, shape)` is present with that shape; the error names the file
    /// holding the tensor (or the checkpoint file for a missing one), the tensor, and `why`,
    /// the config setting the shape comes from.
    pub fn check(&self, expected: &[(String, Vec<usize>)], config: &Path) -> Result<(), ModelError> {
        for (name, shape) in expected {
            match self.entry(name) {
                None => {
                    return Err(ModelError::Tensor {
                        path: self.described_by.clone(),
                        tensor: name.clone(),
                        message: format!(
                            "missing from the checkpoint ({} tensors; is {} the right config for these weights?)",
                            self.index.len(),
                            config.display()
                        ),
                    })
                }
                Some(entry) if &entry.shape != shape => {
                    return Err(ModelError::Tensor {
                        path: self.files[entry.file].clone(),
                        tensor: name.clone(),
                        message: format!(
                            "shape {:?} in the checkpoint, but {} implies {:?}",
                            entry.shape,
                            config.display(),
                            shape
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// A [`VarBuilder`] reading (lazily) from these files, converting to `dtype` on `device`.
    pub fn var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }

    fn load(&self, name: &str) -> candle_core::Result<Tensor> {
        let Some(key) = self.resolve(name) else {
            candle_core::bail!("tensor {name} not found in {}", self.described_by.display())
        };
        let entry = &self.index[key];
        let path = &self.files[entry.file];
        let loaded = match &self.readers[entry.file] {
            Reader::Safetensors(st) => st.load(key, &Device::Cpu),
            Reader::Pth(pth) => pth.get(key).and_then(|t| {
                t.ok_or_else(|| candle_core::Error::Msg(format!("tensor {key} vanished from {}", path.display())))
            }),
        };
        loaded.map_err(|e| candle_core::Error::Msg(format!("{}: tensor {key}: {e}", path.display())))
    }
}

fn layer_norm_alias(name: &str) -> Option<String> {
    if let Some(stem) = name.strip_suffix("LayerNorm.weight") {
        Some(format!("{stem}LayerNorm.gamma"))
    } else {
        name.strip_suffix("LayerNorm.bias")
            .map(|stem| format!("{stem}LayerNorm.beta"))
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
        let tensor = self.get_unchecked(name, dtype, dev)?;
        if tensor.shape() != &s {
            candle_core::bail!(
                "{}: tensor {name}: shape {:?} in the checkpoint, expected {:?}",
                self.described_by.display(),
                tensor.dims(),
                s.dims()
            )
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}

/// The files whose bytes determine a model's numbers: config, tokenizer files and weights.
pub fn model_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let (mut files, index) = weight_files(dir)?;
    if index.extension().is_some_and(|e| e == "json") {
        files.push(index);
    }
    for extra in ["config.json", "vocab.txt", "spiece.model", "tokenizer.json"] {
        let p = dir.join(extra);
        if p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

const DIGEST_SIDECAR: &str = ".protfam-digests.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct DigestCache {
    files: BTreeMap<String, CachedDigest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CachedDigest {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

fn stat(path: &Path) -> Result<(u64, u128), ModelError> {
    let meta = fs::metadata(path).map_err(|e| file_err(path, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok((meta.len(), mtime))
}

/// SHA-256 of one file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut file = fs::File::open(path).map_err(|e| file_err(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| file_err(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Hex SHA-256 identifying a model directory's numbers: a digest over `name sha256` lines of
/// [`model_files`]. Each file's digest is cached in `dir/.protfam-digests.json`, keyed by size
/// and modification time, so multi-gigabyte checkpoints are hashed once, not on every run. An
/// unwritable directory only costs re-hashing.
pub fn model_digest(dir: &Path) -> Result<String, ModelError> {
    let files = model_files(dir)?;
    let sidecar = dir.join(DIGEST_SIDECAR);
    let mut cache: DigestCache = fs::read_to_string(&sidecar)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut changed = false;
    let mut outer = Sha256::new();
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (size, mtime_ns) = stat(path)?;
        let digest = match cache.files.get(&name) {
            Some(c) if c.size == size && c.mtime_ns == mtime_ns => c.sha256.clone(),
            _ => {
                let started = std::time::Instant::now();
                let sha256 = sha256_file(path)?;
                tracing::debug!("hashed {} ({size} bytes) in {:.1?}", path.display(), started.elapsed());
                cache.files.insert(
                    name.clone(),
                    CachedDigest {
                        size,
                        mtime_ns,
                        sha256: sha256.clone(),
                    },
                );
                changed = true;
                sha256
            }
        };
        outer.update(format!("{name} {digest}\n").as_bytes());
    }
    if changed {
        let text = serde_json::to_string_pretty(&cache).expect("digest cache serialises");
        if let Err(e) = fs::write(&sidecar, text) {
            tracing::debug!("cannot cache weight digests in {}: {e}", sidecar.display());
        }
    }
    Ok(hex::encode(outer.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_aliases() {
        assert_eq!(
            layer_norm_alias("a.LayerNorm.weight").as_deref(),
            Some("a.LayerNorm.gamma")
        );
        assert_eq!(
            layer_norm_alias("a.LayerNorm.bias").as_deref(),
            Some("a.LayerNorm.beta")
        );
        assert_eq!(layer_norm_alias("a.layer_norm.weight"), None);
    }

    #[test]
    fn digest_is_cached_and_follows_content() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
        t.save_safetensors("w", dir.path().join("model.safetensors")).unwrap();
        fs::write(dir.path().join("config.json"), "{}").unwrap();
        let d1 = model_digest(dir.path()).unwrap();
        assert!(dir.path().join(DIGEST_SIDECAR).is_file());
        assert_eq!(model_digest(dir.path()).unwrap(), d1);
        // Different content (and so size/mtime) gives a different digest.
        fs::write(dir.path().join("config.json"), "{\"a\": 1}").unwrap();
        assert_ne!(model_digest(dir.path()).unwrap(), d1);
    }

    #[test]
    fn missing_weights_name_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = Checkpoint::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("no weights") && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
    }
}
