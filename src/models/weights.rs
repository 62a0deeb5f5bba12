//! Weight files of a Hugging Face-layout model directory, the one loader behind
//! ESM, T5 and BERT: finding them (`model.safetensors`, sharded
//! `model.safetensors.index.json`, `pytorch_model.bin` or its sharded index; PyTorch
//! zips are read lazily with `candle_core::pickle`), checking names and shapes
//! against what a config expects (so a bad checkpoint fails with the file and
//! tensor named), a Candle [`VarBuilder`] over them that checks every shape the
//! model asks for, and the SHA-256 digest that identifies the model's numbers in
//! [`crate::embedder::EmbedderSpec`].
//!
//! LayerNorm parameters are found under either naming HF has used:
//! `LayerNorm.weight`/`LayerNorm.bias` (hub checkpoints) or
//! `LayerNorm.gamma`/`LayerNorm.beta` (what transformers 5 writes, and old
//! TF-converted checkpoints).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

struct Inner {
    files: Vec<PathBuf>,
    readers: Vec<Reader>,
    index: HashMap<String, TensorEntry>,
    /// The file named in errors about missing tensors: the single weight file or the shard index.
    described_by: PathBuf,
    /// The `config.json` next to the weights, named as the source of the shapes a model asks for.
    config: PathBuf,
    /// The first failure met while a model pulled tensors through the [`VarBuilder`], kept with
    /// its file and tensor: Candle's error type can only carry it as text.
    failure: Mutex<Option<ModelError>>,
}

/// The weight files of one model directory with an index of every tensor in them.
/// Cloning is cheap (the files stay open once), so a [`VarBuilder`] can own one
/// while the loader keeps another to ask about names and failures.
#[derive(Clone)]
pub struct Checkpoint {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("files", &self.inner.files)
            .field("tensors", &self.inner.index.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// The weight files in `dir`, in the order HF prefers them (safetensors first), and the
/// file that describes them (the single weight file or the shard index).
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

/// Opens one weight file and adds its tensors (names, shapes; no data) to `index`
/// as file number `file`. A name already indexed from an earlier shard keeps its
/// first place.
fn open_reader(path: &Path, file: usize, index: &mut HashMap<String, TensorEntry>) -> Result<Reader, ModelError> {
    let is_st = path.extension().is_some_and(|e| e == "safetensors");
    if is_st {
        // SAFETY: the file is memory-mapped read-only; we never write to it, and a concurrent
        // writer would be a user error that the safetensors header checks partly catch.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }
            .map_err(|e| file_err(path, format!("not a readable safetensors file: {e}")))?;
        for (name, view) in st.tensors() {
            let dtype = DType::try_from(view.dtype()).map_err(|e| ModelError::Tensor {
                path: path.to_path_buf(),
                tensor: name.clone(),
                message: e.to_string(),
            })?;
            let shape = view.shape().to_vec();
            index.entry(name).or_insert(TensorEntry { file, shape, dtype });
        }
        Ok(Reader::Safetensors(st))
    } else {
        let pth = candle_core::pickle::PthTensors::new(path, None).map_err(|e| {
            file_err(
                path,
                format!(
                    "not a readable PyTorch zip checkpoint ({e}); pre-1.6 legacy pickles are not supported, \
                     convert it once with `torch.save(torch.load(f), f)` or to model.safetensors"
                ),
            )
        })?;
        for (name, info) in pth.tensor_infos() {
            index.entry(name.clone()).or_insert(TensorEntry {
                file,
                shape: info.layout.shape().dims().to_vec(),
                dtype: info.dtype,
            });
        }
        Ok(Reader::Pth(pth))
    }
}

impl Checkpoint {
    /// Opens the weight files of `dir` and indexes their tensors (names, shapes; no data is read).
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let (files, described_by) = weight_files(dir)?;
        let mut readers = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            readers.push(open_reader(path, i, &mut index)?);
        }
        tracing::debug!(
            files = files.len(),
            tensors = index.len(),
            "indexed checkpoint in {}",
            dir.display()
        );
        Ok(Checkpoint {
            inner: Arc::new(Inner {
                files,
                readers,
                index,
                described_by,
                config: dir.join("config.json"),
                failure: Mutex::new(None),
            }),
        })
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.inner.files
    }

    pub fn len(&self) -> usize {
        self.inner.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.index.is_empty()
    }

    /// Tensor names in the checkpoint, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.inner.index.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The stored name for `name`, trying the LayerNorm `gamma`/`beta` aliases.
    pub fn resolve(&self, name: &str) -> Option<&str> {
        self.inner.resolve(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }

    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.resolve(name).and_then(|k| self.inner.index.get(k))
    }

    /// Checks that every `(name, shape)` is present with that shape; the error names the file
    /// holding the tensor (or the checkpoint file for a missing one), the tensor, and `config`,
    /// where the shape comes from.
    pub fn check(&self, expected: &[(String, Vec<usize>)], config: &Path) -> Result<(), ModelError> {
        for (name, shape) in expected {
            self.inner.verify(name, Some(shape), config)?;
        }
        Ok(())
    }

    /// A [`VarBuilder`] reading (lazily) from these files, converting to `dtype` on `device`.
    /// Every shape the model asks for is checked against the index before data is read.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// Turns a Candle error from model construction into the structured failure (file +
    /// tensor) recorded when a tensor was missing, mis-shaped or unreadable, when there is one.
    pub fn explain(&self, err: candle_core::Error) -> ModelError {
        match self.inner.failure.lock().expect("failure lock").take() {
            Some(recorded) => recorded,
            None => file_err(&self.inner.described_by, err),
        }
    }
}

impl Inner {
    fn resolve(&self, name: &str) -> Option<&str> {
        if let Some((k, _)) = self.index.get_key_value(name) {
            return Some(k.as_str());
        }
        let alias = layer_norm_alias(name)?;
        self.index.get_key_value(&alias).map(|(k, _)| k.as_str())
    }

    /// The stored name and entry of `name`, or an error naming the file, the tensor and
    /// `config` when it is missing or (with `expected`) has another shape.
    fn verify(
        &self,
        name: &str,
        expected: Option<&[usize]>,
        config: &Path,
    ) -> Result<(&str, &TensorEntry), ModelError> {
        let Some(key) = self.resolve(name) else {
            return Err(ModelError::Tensor {
                path: self.described_by.clone(),
                tensor: name.to_string(),
                message: format!(
                    "missing from the checkpoint ({} tensors; is {} the right config for these weights?)",
                    self.index.len(),
                    config.display()
                ),
            });
        };
        let entry = &self.index[key];
        match expected {
            Some(shape) if entry.shape.as_slice() != shape => Err(ModelError::Tensor {
                path: self.files[entry.file].clone(),
                tensor: name.to_string(),
                message: format!(
                    "shape {:?} in the checkpoint, but {} implies {:?}",
                    entry.shape,
                    config.display(),
                    shape
                ),
            }),
            _ => Ok((key, entry)),
        }
    }

    /// Keeps the first structured failure for [`Checkpoint::explain`] and hands Candle its text.
    fn record(&self, err: ModelError) -> candle_core::Error {
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
        let (key, entry) = self
            .verify(name, expected.map(Shape::dims), &self.config)
            .map_err(|err| self.record(err))?;
        let path = &self.files[entry.file];
        let loaded = match &self.readers[entry.file] {
            Reader::Safetensors(st) => st.load(key, device),
            Reader::Pth(pth) => pth.get(key).and_then(|t| match t {
                Some(tensor) => tensor.to_device(device),
                None => candle_core::bail!("tensor {key} vanished from the file"),
            }),
        };
        loaded.and_then(|t| t.to_dtype(dtype)).map_err(|e| {
            self.record(ModelError::Tensor {
                path: path.clone(),
                tensor: name.to_string(),
                message: format!("cannot read: {e}"),
            })
        })
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
        self.inner.fetch(name, Some(&s), dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.inner.fetch(name, None, dtype, dev)
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
        if let Err(e) = crate::atomic::write_bytes_atomic(&sidecar, text.as_bytes()) {
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
        assert!(
            text.contains("model.safetensors") && text.contains("a.LayerNorm.weight") && text.contains("[2, 3]"),
            "{text}"
        );

        let err = vb.get(4, "b.weight").unwrap_err();
        let text = ckpt.explain(err).to_string();
        assert!(
            text.contains("model.safetensors") && text.contains("b.weight") && text.contains("missing"),
            "{text}"
        );

        let expected = [("a.LayerNorm.weight".to_string(), vec![3, 2])];
        let text = ckpt
            .check(&expected, &dir.path().join("config.json"))
            .unwrap_err()
            .to_string();
        assert!(text.contains("[2, 3]") && text.contains("[3, 2]"), "{text}");
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
