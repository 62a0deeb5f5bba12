//! Trained classifiers on disk, and the one type (`SavedClassifier`) that
//! `train`, `evaluate`, `annotate` and `info` pass around.
//!
//! A classifier directory holds:
//! - `classifier.json`: format version, kind, hyper-parameters, the
//!   [`EmbedderSpec`] of the embedder whose vectors it was trained on, a digest
//!   of the training data, and for MLPs the per-epoch log of every member;
//! - `labels.json`: the [`LabelVocab`] (class index -> family);
//! - `weights.safetensors`: kNN training vectors (`train.vectors`, f32 `(n, dim)`)
//!   with their classes (`train.labels`, u32) and, for ensembles, each row's
//!   member (`ensemble.member`, u32); MLP layers as `layers.{i}.weight` `(out, in)`
//!   and `layers.{i}.bias` (ensembles: `members.{m}.layers...`), and the
//!   optional input scaler `scaler.mean` / `scaler.scale`;
//! - `train_ids.txt` (kNN kinds): the id of every training row, one a line, so a
//!   nearest neighbour can be named.
//!
//! Every tensor of `weights.safetensors` has its SHA-256 in the file's
//! `__metadata__` (`sha256.<tensor>`, as the embedding cache's shards), and so
//! do `labels.json` and `train_ids.txt` (`file_sha256.<file>`); [`SavedClassifier::load`]
//! and [`SavedClassifier::verify`] recompute them, so a damaged or edited file is
//! an error naming the file and tensor, never a silently wrong label.
//!
//! Loading gives bit-identical predictions: every tensor is stored as the f32
//! bytes it was trained to, and derived state (kNN centring) is recomputed by the
//! same code. Predicting with vectors of another embedder is an error.

use crate::file_error::FileError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ensemble::{EnsembleMode, KnnEnsemble, KnnEnsembleParams, MlpEnsemble, MlpEnsembleParams};
use super::knn::{Knn, KnnParams};
use super::mlp::{EpochLog, Mlp, MlpParams, Scaler};
use super::{class_indices, ClassifyError, ComputeDevice, Fit, Predict, Prediction};
use crate::cache::shard::{sha256_hex, write_shard, ShardFile, TensorData};
use crate::embedder::EmbedderSpec;
use crate::io::vocab::LabelVocab;
use crate::vectors::VectorSet;

/// Version of the directory layout written by [`SavedClassifier::save`]
/// (2: `weights.safetensors` carries a SHA-256 per tensor and of `labels.json`
/// and `train_ids.txt`; version 1 had no checksums and is not read).
pub const FORMAT_VERSION: u32 = 2;

/// `format` metadata value of a classifier's `weights.safetensors`.
pub const WEIGHTS_FORMAT: &str = "protfam-classifier-weights/2";
/// Metadata key prefix of the checksum of a companion file (`file_sha256.labels.json`).
pub const FILE_CHECKSUM_PREFIX: &str = "file_sha256.";

/// The classifier names of `train --classifier` and `evaluate --classifiers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum ClassifierKind {
    Knn,
    KnnEnsemble,
    Mlp,
    MlpEnsemble,
    MlpEnsembleFull,
}

impl ClassifierKind {
    pub const ALL: [ClassifierKind; 5] = [
        ClassifierKind::Knn,
        ClassifierKind::KnnEnsemble,
        ClassifierKind::Mlp,
        ClassifierKind::MlpEnsemble,
        ClassifierKind::MlpEnsembleFull,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            ClassifierKind::Knn => "knn",
            ClassifierKind::KnnEnsemble => "knn-ensemble",
            ClassifierKind::Mlp => "mlp",
            ClassifierKind::MlpEnsemble => "mlp-ensemble",
            ClassifierKind::MlpEnsembleFull => "mlp-ensemble-full",
        }
    }

    /// Whether predictions carry a nearest training neighbour.
    pub fn is_neighbour_method(&self) -> bool {
        matches!(self, ClassifierKind::Knn | ClassifierKind::KnnEnsemble)
    }
}

impl std::fmt::Display for ClassifierKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ClassifierKind {
    type Err = ClassifyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClassifierKind::ALL
            .into_iter()
            .find(|k| k.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = ClassifierKind::ALL.iter().map(|k| k.name()).collect();
                ClassifyError::InvalidParams(format!("unknown classifier {s:?}; known: {}", names.join(", ")))
            })
    }
}

/// Hyper-parameters of any classifier kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "params", rename_all = "kebab-case")]
pub enum ClassifierParams {
    Knn(KnnParams),
    KnnEnsemble(KnnEnsembleParams),
    Mlp(MlpParams),
    MlpEnsemble(MlpEnsembleParams),
}

impl ClassifierParams {
    /// The paper's defaults for a kind.
    pub fn defaults(kind: ClassifierKind) -> Self {
        match kind {
            ClassifierKind::Knn => ClassifierParams::Knn(KnnParams::default()),
            ClassifierKind::KnnEnsemble => ClassifierParams::KnnEnsemble(KnnEnsembleParams::default()),
            ClassifierKind::Mlp => ClassifierParams::Mlp(MlpParams::default()),
            ClassifierKind::MlpEnsemble => ClassifierParams::MlpEnsemble(MlpEnsembleParams::disjoint()),
            ClassifierKind::MlpEnsembleFull => ClassifierParams::MlpEnsemble(MlpEnsembleParams::full()),
        }
    }

    pub fn kind(&self) -> ClassifierKind {
        match self {
            ClassifierParams::Knn(_) => ClassifierKind::Knn,
            ClassifierParams::KnnEnsemble(_) => ClassifierKind::KnnEnsemble,
            ClassifierParams::Mlp(_) => ClassifierKind::Mlp,
            ClassifierParams::MlpEnsemble(p) if p.mode == EnsembleMode::Full => ClassifierKind::MlpEnsembleFull,
            ClassifierParams::MlpEnsemble(_) => ClassifierKind::MlpEnsemble,
        }
    }

    /// Name for reports: the kind, plus non-default neighbour settings (`knn-k3-distance`).
    pub fn label(&self) -> String {
        let knn = match self {
            ClassifierParams::Knn(p) => Some(p),
            ClassifierParams::KnnEnsemble(p) => Some(&p.knn),
            _ => None,
        };
        let mut label = self.kind().name().to_string();
        if let Some(p) = knn {
            if p.k != 1 {
                label.push_str(&format!("-k{}", p.k));
            }
            if p.weighting == crate::classify::knn::Weighting::Distance {
                label.push_str("-distance");
            }
        }
        label
    }

    /// Sets the compute device of every part.
    pub fn set_device(&mut self, device: &Device) {
        match self {
            ClassifierParams::Knn(p) => p.device = ComputeDevice(device.clone()),
            ClassifierParams::KnnEnsemble(p) => p.knn.device = ComputeDevice(device.clone()),
            ClassifierParams::Mlp(p) => p.device = ComputeDevice(device.clone()),
            ClassifierParams::MlpEnsemble(p) => p.mlp.device = ComputeDevice(device.clone()),
        }
    }

    /// Trains the classifier.
    pub fn fit(&self, train: &VectorSet, dev: Option<&VectorSet>, vocab: &LabelVocab) -> Result<Model, ClassifyError> {
        Ok(match self {
            ClassifierParams::Knn(p) => Model::Knn(p.fit(train, dev, vocab)?),
            ClassifierParams::KnnEnsemble(p) => Model::KnnEnsemble(p.fit(train, dev, vocab)?),
            ClassifierParams::Mlp(p) => Model::Mlp(p.fit(train, dev, vocab)?),
            ClassifierParams::MlpEnsemble(p) => Model::MlpEnsemble(p.fit(train, dev, vocab)?),
        })
    }
}

/// A fitted classifier of any kind.
#[derive(Debug, Clone)]
pub enum Model {
    Knn(Knn),
    KnnEnsemble(KnnEnsemble),
    Mlp(Mlp),
    MlpEnsemble(MlpEnsemble),
}

impl Predict for Model {
    fn predict(&self, queries: &VectorSet) -> Result<Vec<Prediction>, ClassifyError> {
        match self {
            Model::Knn(m) => m.predict(queries),
            Model::KnnEnsemble(m) => m.predict(queries),
            Model::Mlp(m) => m.predict(queries),
            Model::MlpEnsemble(m) => m.predict(queries),
        }
    }
}

impl Model {
    /// Per-member training logs of MLP kinds (empty for kNN).
    pub fn training_logs(&self) -> Vec<MemberLog> {
        let log = |m: &Mlp| MemberLog {
            seed: m.params.seed,
            best_epoch: m.best_epoch,
            epochs: m.epochs.clone(),
        };
        match self {
            Model::Mlp(m) => vec![log(m)],
            Model::MlpEnsemble(e) => e.members.iter().map(log).collect(),
            _ => Vec::new(),
        }
    }
}

/// What the training data was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// Hex SHA-256 over the training ids, labels and vector bytes ([`training_digest`]).
    pub digest: String,
    pub n: usize,
    pub dim: usize,
    pub n_classes: usize,
    /// Free-form origin, e.g. `pfam35-uniprot20k/clustered_split/train`.
    #[serde(default)]
    pub source: String,
    /// Seconds spent fitting.
    #[serde(default)]
    pub seconds: f64,
}

/// Training log of one MLP (ensemble member).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberLog {
    pub seed: u64,
    pub best_epoch: usize,
    pub epochs: Vec<EpochLog>,
}

/// Contents of `classifier.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMeta {
    pub format_version: u32,
    /// `knn`, `knn-ensemble`, `mlp`, `mlp-ensemble` or `mlp-ensemble-full`.
    pub classifier: ClassifierKind,
    #[serde(flatten)]
    pub params: ClassifierParams,
    pub embedder: EmbedderSpec,
    pub training: TrainingInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub training_log: Vec<MemberLog>,
    /// Abstention calibration, written by `annotate`'s calibration step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<serde_json::Value>,
    pub created_by: String,
}

/// A trained classifier with everything needed to use it on new vectors.
#[derive(Debug, Clone)]
pub struct SavedClassifier {
    pub meta: ClassifierMeta,
    pub vocab: LabelVocab,
    pub model: Model,
    /// Training row ids (kNN kinds), for naming nearest neighbours.
    pub train_ids: Vec<String>,
}

/// SHA-256 over the dimension, then every row's id, family accession and f32 bytes.
pub fn training_digest(set: &VectorSet) -> String {
    let mut h = Sha256::new();
    h.update((set.dim as u64).to_le_bytes());
    for i in 0..set.len() {
        h.update(set.ids[i].as_bytes());
        h.update([0]);
        h.update(
            set.families[i]
                .as_ref()
                .map(|f| f.accession.as_str())
                .unwrap_or("")
                .as_bytes(),
        );
        h.update([0]);
        for v in set.row(i) {
            h.update(v.to_le_bytes());
        }
    }
    hex::encode(h.finalize())
}

impl SavedClassifier {
    /// Trains a classifier and wraps it with its metadata.
    pub fn train(
        params: &ClassifierParams,
        embedder: &EmbedderSpec,
        train: &VectorSet,
        dev: Option<&VectorSet>,
        source: &str,
    ) -> Result<SavedClassifier, ClassifyError> {
        if train.dim != embedder.dim {
            return Err(ClassifyError::Data(format!(
                "training vectors have dimension {}, embedder {} makes {}",
                train.dim, embedder.name, embedder.dim
            )));
        }
        let vocab = LabelVocab::from_families(train.families.iter().flatten());
        class_indices(train, &vocab)?;
        let started = std::time::Instant::now();
        let model = params.fit(train, dev, &vocab)?;
        let seconds = started.elapsed().as_secs_f64();
        let meta = ClassifierMeta {
            format_version: FORMAT_VERSION,
            classifier: params.kind(),
            params: params.clone(),
            embedder: embedder.clone(),
            training: TrainingInfo {
                digest: training_digest(train),
                n: train.len(),
                dim: train.dim,
                n_classes: vocab.len(),
                source: source.to_string(),
                seconds,
            },
            training_log: model.training_logs(),
            calibration: None,
            created_by: format!("protfam {}", env!("CARGO_PKG_VERSION")),
        };
        let train_ids = if params.kind().is_neighbour_method() {
            train.ids.clone()
        } else {
            Vec::new()
        };
        Ok(SavedClassifier {
            meta,
            vocab,
            model,
            train_ids,
        })
    }

    pub fn kind(&self) -> ClassifierKind {
        self.meta.classifier
    }

    /// Predicts the queries after checking they come from this classifier's embedder.
    pub fn predict(&self, embedder: &EmbedderSpec, queries: &VectorSet) -> Result<Vec<Prediction>, ClassifyError> {
        if embedder != &self.meta.embedder {
            return Err(ClassifyError::EmbedderMismatch {
                expected: self.meta.embedder.key(),
                found: embedder.key(),
            });
        }
        self.model.predict(queries)
    }

    /// Writes the classifier directory (files are written under temporary names and renamed).
    pub fn save(&self, dir: &Path) -> Result<(), ClassifyError> {
        std::fs::create_dir_all(dir).map_err(FileError::io(dir))?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        let cpu = Device::Cpu;
        let put_mlp = |prefix: &str, m: &Mlp, tensors: &mut HashMap<String, Tensor>| -> Result<(), ClassifyError> {
            for (i, (w, b)) in m.layers.iter().enumerate() {
                tensors.insert(format!("{prefix}layers.{i}.weight"), w.to_device(&cpu)?);
                tensors.insert(format!("{prefix}layers.{i}.bias"), b.to_device(&cpu)?);
            }
            if let Some(s) = &m.scaler {
                tensors.insert(format!("{prefix}scaler.mean"), Tensor::new(s.mean.as_slice(), &cpu)?);
                tensors.insert(format!("{prefix}scaler.scale"), Tensor::new(s.scale.as_slice(), &cpu)?);
            }
            Ok(())
        };
        match &self.model {
            // The kNN pruning projection is not saved: `Knn::from_parts` rebuilds it
            // from the vectors with a fixed seed, and it never changes an answer.
            Model::Knn(k) => {
                tensors.insert(
                    "train.vectors".into(),
                    Tensor::from_slice(k.train_vectors(), (k.len(), k.dim()), &cpu)?,
                );
                tensors.insert("train.labels".into(), Tensor::new(k.labels(), &cpu)?);
            }
            Model::KnnEnsemble(e) => {
                let n = e.len();
                let dim = e.members[0].dim();
                let mut data = vec![0f32; n * dim];
                let mut labels = vec![0u32; n];
                let mut member = vec![0u32; n];
                for (m, (rows, knn)) in e.parts.iter().zip(&e.members).enumerate() {
                    for (local, &row) in rows.iter().enumerate() {
                        data[row * dim..(row + 1) * dim]
                            .copy_from_slice(&knn.train_vectors()[local * dim..(local + 1) * dim]);
                        labels[row] = knn.labels()[local];
                        member[row] = m as u32;
                    }
                }
                tensors.insert("train.vectors".into(), Tensor::from_vec(data, (n, dim), &cpu)?);
                tensors.insert("train.labels".into(), Tensor::new(labels.as_slice(), &cpu)?);
                tensors.insert("ensemble.member".into(), Tensor::new(member.as_slice(), &cpu)?);
            }
            Model::Mlp(m) => put_mlp("", m, &mut tensors)?,
            Model::MlpEnsemble(e) => {
                for (i, m) in e.members.iter().enumerate() {
                    put_mlp(&format!("members.{i}."), m, &mut tensors)?;
                }
            }
        }
        // Companion files first, so the weights' checksums describe files on disk.
        let labels_path = dir.join("labels.json");
        self.vocab.save(&labels_path)?;
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("format".to_string(), WEIGHTS_FORMAT.to_string());
        let labels_bytes = std::fs::read(&labels_path).map_err(FileError::io(&labels_path))?;
        metadata.insert(format!("{FILE_CHECKSUM_PREFIX}labels.json"), sha256_hex(&labels_bytes));
        let ids_path = dir.join("train_ids.txt");
        if !self.train_ids.is_empty() {
            let mut text = self.train_ids.join("\n");
            text.push('\n');
            crate::atomic::write_bytes_atomic(&ids_path, text.as_bytes()).map_err(FileError::io(&ids_path))?;
            metadata.insert(
                format!("{FILE_CHECKSUM_PREFIX}train_ids.txt"),
                sha256_hex(text.as_bytes()),
            );
        }
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        let mut data = Vec::with_capacity(names.len());
        for name in names {
            let t = &tensors[name];
            let shape = t.dims().to_vec();
            data.push(match t.dtype() {
                DType::F32 => TensorData::f32(name, shape, &t.flatten_all()?.to_vec1::<f32>()?),
                DType::U32 => TensorData::u32(name, shape, &t.flatten_all()?.to_vec1::<u32>()?),
                other => {
                    return Err(FileError::invalid(dir, format!("tensor {name}: unexpected dtype {other:?}")).into())
                }
            });
        }
        // Every tensor is 4-byte wide, so the name order keeps them aligned.
        let weights = dir.join("weights.safetensors");
        write_shard(&weights, &data, &metadata).map_err(ClassifyError::Shard)?;
        self.save_meta(dir)
    }

    /// Rewrites only `classifier.json` (e.g. after adding a calibration).
    pub fn save_meta(&self, dir: &Path) -> Result<(), ClassifyError> {
        let json = serde_json::to_string_pretty(&self.meta)
            .map_err(FileError::unreadable(dir, "serialising the classifier metadata"))?;
        let path = dir.join("classifier.json");
        crate::atomic::write_bytes_atomic(&path, json.as_bytes()).map_err(FileError::io(&path))?;
        Ok(())
    }

    /// Reads only `classifier.json`.
    pub fn load_meta(dir: &Path) -> Result<ClassifierMeta, ClassifyError> {
        let path = dir.join("classifier.json");
        let text = std::fs::read_to_string(&path).map_err(FileError::io(&path))?;
        let meta: ClassifierMeta = serde_json::from_str(&text).map_err(FileError::unreadable(&path, "invalid JSON"))?;
        if meta.format_version == 1 {
            return Err(FileError::invalid(
                &path,
                "format version 1, written by a protfam without weight checksums; \
                 retrain it with `protfam train` (this protfam reads version 2)",
            )
            .into());
        }
        if meta.format_version != FORMAT_VERSION {
            return Err(FileError::invalid(
                &path,
                format!(
                    "format version {} (this protfam reads {FORMAT_VERSION})",
                    meta.format_version
                ),
            )
            .into());
        }
        if meta.params.kind() != meta.classifier {
            return Err(FileError::invalid(
                &path,
                format!("classifier {} does not match its parameters", meta.classifier),
            )
            .into());
        }
        Ok(meta)
    }

    /// Checks a classifier directory without loading the model: `classifier.json`
    /// parses, `weights.safetensors` is complete and every tensor, `labels.json` and
    /// `train_ids.txt` match their SHA-256. Errors name the file and the tensor.
    pub fn verify(dir: &Path) -> Result<ClassifierMeta, ClassifyError> {
        let meta = Self::load_meta(dir)?;
        verify_weights(dir, meta.classifier.is_neighbour_method())?;
        Ok(meta)
    }

    /// Loads a classifier directory, computing on `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<SavedClassifier, ClassifyError> {
        let mut meta = Self::load_meta(dir)?;
        verify_weights(dir, meta.classifier.is_neighbour_method())?;
        meta.params.set_device(device);
        let labels_path = dir.join("labels.json");
        let vocab = LabelVocab::load(&labels_path)?;
        if vocab.len() != meta.training.n_classes {
            return Err(FileError::invalid(
                &labels_path,
                format!(
                    "{} families, classifier.json says {}",
                    vocab.len(),
                    meta.training.n_classes
                ),
            )
            .into());
        }
        let weights_path = dir.join("weights.safetensors");
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .map_err(FileError::unreadable(&weights_path, "weights"))?;
        let get = |name: &str| tensor(&tensors, &weights_path, name);
        let wrong =
            |name: &str, e: candle_core::Error| FileError::unreadable(&weights_path, format!("tensor {name}"))(e);
        let (n, dim, n_classes) = (meta.training.n, meta.training.dim, meta.training.n_classes);
        let load_mlp = |prefix: &str, p: &MlpParams, log: Option<&MemberLog>| -> Result<Mlp, ClassifyError> {
            let mut layers = Vec::new();
            let mut fan_in = dim;
            let mut sizes = p.hidden.clone();
            sizes.push(n_classes);
            for (i, &out) in sizes.iter().enumerate() {
                let (wn, bn) = (format!("{prefix}layers.{i}.weight"), format!("{prefix}layers.{i}.bias"));
                let w = get(&wn)?;
                let b = get(&bn)?;
                if w.dims() != [out, fan_in] || b.dims() != [out] {
                    return Err(FileError::invalid(
                        &weights_path,
                        format!("{wn} is {:?}, expected [{out}, {fan_in}]", w.dims()),
                    )
                    .into());
                }
                layers.push((w.to_device(device)?, b.to_device(device)?));
                fan_in = out;
            }
            let scaler = match (
                tensors.get(&format!("{prefix}scaler.mean")),
                tensors.get(&format!("{prefix}scaler.scale")),
            ) {
                (Some(m), Some(s)) => Some(Scaler {
                    mean: m.to_vec1()?,
                    scale: s.to_vec1()?,
                }),
                _ if p.standardize => {
                    return Err(FileError::invalid(&weights_path, format!("missing tensor {prefix}scaler.mean")).into())
                }
                _ => None,
            };
            Ok(Mlp {
                params: p.clone(),
                dim,
                n_classes,
                layers,
                scaler,
                epochs: log.map(|l| l.epochs.clone()).unwrap_or_default(),
                best_epoch: log.map(|l| l.best_epoch).unwrap_or(0),
            })
        };
        let model = match &meta.params {
            ClassifierParams::Knn(p) => {
                let (data, labels) = knn_data(&tensors, &weights_path, n, dim)?;
                Model::Knn(Knn::from_parts(p.clone(), n_classes, dim, data, labels)?)
            }
            ClassifierParams::KnnEnsemble(p) => {
                let (data, labels) = knn_data(&tensors, &weights_path, n, dim)?;
                let member = get("ensemble.member")?
                    .to_vec1::<u32>()
                    .map_err(|e| wrong("ensemble.member", e))?;
                let mut parts = vec![Vec::new(); p.members];
                for (row, &m) in member.iter().enumerate() {
                    parts
                        .get_mut(m as usize)
                        .ok_or_else(|| {
                            FileError::invalid(&weights_path, format!("ensemble.member {m} >= {}", p.members))
                        })?
                        .push(row);
                }
                Model::KnnEnsemble(KnnEnsemble::from_parts(
                    p.clone(),
                    n_classes,
                    dim,
                    &data,
                    &labels,
                    parts,
                )?)
            }
            ClassifierParams::Mlp(p) => Model::Mlp(load_mlp("", p, meta.training_log.first())?),
            ClassifierParams::MlpEnsemble(p) => {
                let members = (0..p.members)
                    .map(|i| {
                        let mp = MlpParams {
                            seed: p.seed.wrapping_add(i as u64),
                            ..p.mlp.clone()
                        };
                        load_mlp(&format!("members.{i}."), &mp, meta.training_log.get(i))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Model::MlpEnsemble(MlpEnsemble {
                    params: p.clone(),
                    members,
                })
            }
        };
        let ids_path = dir.join("train_ids.txt");
        let train_ids = if meta.classifier.is_neighbour_method() {
            let text = std::fs::read_to_string(&ids_path).map_err(FileError::io(&ids_path))?;
            let ids: Vec<String> = text.lines().map(str::to_string).collect();
            if ids.len() != n {
                return Err(FileError::invalid(&ids_path, format!("{} ids, expected {n}", ids.len())).into());
            }
            ids
        } else {
            Vec::new()
        };
        Ok(SavedClassifier {
            meta,
            vocab,
            model,
            train_ids,
        })
    }

    /// The directory layout's file names, for listings.
    pub fn files(dir: &Path) -> Vec<PathBuf> {
        ["classifier.json", "labels.json", "weights.safetensors", "train_ids.txt"]
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| p.exists())
            .collect()
    }
}

fn tensor<'a>(tensors: &'a HashMap<String, Tensor>, path: &Path, name: &str) -> Result<&'a Tensor, ClassifyError> {
    tensors
        .get(name)
        .ok_or_else(|| FileError::invalid(path, format!("missing tensor {name}")).into())
}

/// The kNN training vectors and labels of a weights file, shape-checked.
fn knn_data(
    tensors: &HashMap<String, Tensor>,
    path: &Path,
    n: usize,
    dim: usize,
) -> Result<(Vec<f32>, Vec<u32>), ClassifyError> {
    let wrong = |name: &str, e: candle_core::Error| FileError::unreadable(path, format!("tensor {name}"))(e);
    let v = tensor(tensors, path, "train.vectors")?;
    if v.dims() != [n, dim] || v.dtype() != DType::F32 {
        return Err(FileError::invalid(
            path,
            format!(
                "train.vectors is {:?} {:?}, expected F32 [{n}, {dim}]",
                v.dtype(),
                v.dims()
            ),
        )
        .into());
    }
    let data = v
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| wrong("train.vectors", e))?;
    let labels = tensor(tensors, path, "train.labels")?
        .to_vec1::<u32>()
        .map_err(|e| wrong("train.labels", e))?;
    if labels.len() != n {
        return Err(FileError::invalid(path, format!("train.labels has {} rows, expected {n}", labels.len())).into());
    }
    Ok((data, labels))
}

/// Checks `weights.safetensors` (complete, every tensor's SHA-256) and the
/// checksums it holds of `labels.json` and (kNN kinds) `train_ids.txt`.
fn verify_weights(dir: &Path, neighbour_method: bool) -> Result<(), ClassifyError> {
    let weights = dir.join("weights.safetensors");
    if !weights.is_file() {
        return Err(FileError::invalid(&weights, "missing (the classifier directory is incomplete)").into());
    }
    let file = ShardFile::open(&weights).map_err(ClassifyError::Shard)?;
    if file.metadata().get("format").map(String::as_str) != Some(WEIGHTS_FORMAT) {
        return Err(FileError::invalid(
            &weights,
            "no checksums (not written by this protfam's `train`): retrain the classifier",
        )
        .into());
    }
    file.verify().map_err(ClassifyError::Shard)?;
    let mut companions = vec!["labels.json"];
    if neighbour_method {
        companions.push("train_ids.txt");
    }
    for name in companions {
        let path = dir.join(name);
        let expected = file
            .metadata()
            .get(&format!("{FILE_CHECKSUM_PREFIX}{name}"))
            .ok_or_else(|| FileError::invalid(&weights, format!("no checksum of {name}")))?;
        let bytes = std::fs::read(&path).map_err(FileError::io(&path))?;
        let actual = sha256_hex(&bytes);
        if &actual != expected {
            return Err(FileError::invalid(
                &path,
                format!("checksum mismatch: stored {expected} in weights.safetensors, computed {actual} (file damaged or edited)"),
            ).into());
        }
    }
    Ok(())
}
