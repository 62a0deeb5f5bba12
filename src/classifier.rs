//! One type for every trained classifier, whichever family it belongs to: the
//! pooled-vector classifiers of [`crate::classify`] (1-NN, kNN ensembles, MLPs)
//! and residue-level retrieval ([`crate::residue`], `residue-knn`). Commands
//! parse a classifier name with [`ClassifierName`], build its hyper-parameters
//! as a [`ClassifierPlan`], train it into a [`TrainedClassifier`], and then load,
//! predict, calibrate and describe it without asking which family it is: that
//! question is answered here, and only here.

use crate::file_error::FileError;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::annotate::{self, AnnotateError, Calibration, Outcome};
use crate::baseline::BaselineOptions;
use crate::cache::Cache;
use crate::classify::saved::{ClassifierKind, ClassifierParams, SavedClassifier};
use crate::classify::{ClassifyError, Prediction};
use crate::dataset::{DatasetError, Split};
use crate::embedder::{Embedder, EmbedderSpec};
use crate::fusion::run::FusionOptions;
use crate::fusion::saved::LearnedClassifier;
use crate::fusion::FeatureSet;
use crate::io::vocab::LabelVocab;
use crate::io::Record;
use crate::models::{LoadOptions, ModelError};
use crate::pipeline::{EmbedOptions, PipelineError};
use crate::residue::{ResidueError, ResidueKnn, ResidueKnnParams};

#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("unknown classifier {name:?}{}; known: {}", .suggestion.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default(), ClassifierName::ALL.join(", "))]
    UnknownName { name: String, suggestion: Option<String> },
    #[error("{}: not a classifier directory (no classifier.json or {}; train one with `protfam train`)", .0.display(), crate::residue::classifier::SAVED_FILE)]
    NotAClassifier(PathBuf),
    #[error(
        "embedder {name} loaded here ({here}) differs from the one the classifier was trained with ({trained}): different weights or settings"
    )]
    EmbedderMismatch {
        name: String,
        here: String,
        trained: String,
    },
    #[error("cannot load the classifier's embedder {name:?}")]
    Model {
        name: String,
        #[source]
        source: ModelError,
    },
    #[error(transparent)]
    Learned(#[from] crate::fusion::run::FusionRunError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Vector(#[from] ClassifyError),
    #[error(transparent)]
    Residue(#[from] ResidueError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Annotate(#[from] AnnotateError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

/// The metadata file of a saved pooled-vector classifier ([`SavedClassifier::save`]).
const VECTOR_META_FILE: &str = "classifier.json";

/// Which residue-knn settings a residue classifier name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidueVariant {
    /// `residue-knn`: the tuned defaults (vote + alignment).
    Tuned,
    /// `residue-knn-simple`: stride 2 both sides, top-1, no diagonal term.
    SimpleVote,
}

/// A classifier name as `train`, `evaluate`, `compare` and `annotate` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassifierName {
    Vector(ClassifierKind),
    Residue(ResidueVariant),
    /// `residue-knn-tuned` and `hybrid`: learned combinations fit on the tune split.
    Learned(FeatureSet),
}

impl ClassifierName {
    /// Every name, in the order help texts list them.
    pub const ALL: [&'static str; 9] = [
        "knn",
        "knn-ensemble",
        "mlp",
        "mlp-ensemble",
        "mlp-ensemble-full",
        "residue-knn",
        "residue-knn-simple",
        crate::fusion::RESIDUE_TUNED,
        crate::fusion::HYBRID,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            ClassifierName::Vector(k) => k.name(),
            ClassifierName::Residue(ResidueVariant::Tuned) => crate::residue::classifier::NAME,
            ClassifierName::Residue(ResidueVariant::SimpleVote) => "residue-knn-simple",
            ClassifierName::Learned(set) => set.name(),
        }
    }

    /// Works on residues (residue-knn and the learned combinations of its evidence).
    pub fn is_residue(&self) -> bool {
        matches!(self, ClassifierName::Residue(_) | ClassifierName::Learned(_))
    }
}

impl std::fmt::Display for ClassifierName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ClassifierName {
    type Err = ClassifierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(kind) = ClassifierKind::ALL.into_iter().find(|k| k.name() == s) {
            return Ok(ClassifierName::Vector(kind));
        }
        match s {
            "residue-knn" => Ok(ClassifierName::Residue(ResidueVariant::Tuned)),
            "residue-knn-simple" => Ok(ClassifierName::Residue(ResidueVariant::SimpleVote)),
            crate::fusion::RESIDUE_TUNED => Ok(ClassifierName::Learned(FeatureSet::Residue)),
            crate::fusion::HYBRID => Ok(ClassifierName::Learned(FeatureSet::Hybrid)),
            _ => Err(ClassifierError::UnknownName {
                name: s.to_string(),
                suggestion: crate::suggest::closest(s, &ClassifierName::ALL).map(str::to_string),
            }),
        }
    }
}

/// Hyper-parameters of a classifier of either family.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassifierPlan {
    Vector(ClassifierParams),
    Residue(ResidueKnnParams),
    /// A learned classifier and the `residue-knn` whose evidence it combines.
    Learned {
        set: FeatureSet,
        residue: ResidueKnnParams,
    },
}

impl ClassifierPlan {
    /// The label report rows carry (`knn`, `mlp-ensemble`, `residue-knn`, ...).
    pub fn label(&self) -> String {
        match self {
            ClassifierPlan::Vector(p) => p.label(),
            ClassifierPlan::Residue(p) => p.label(),
            ClassifierPlan::Learned { set, .. } => set.name().to_string(),
        }
    }
}

/// A trained classifier of either family.
pub enum TrainedClassifier {
    Vector(SavedClassifier),
    Residue(ResidueKnn),
    /// Boxed: it holds a residue classifier plus its fitted model, far larger than the others.
    Learned(Box<LearnedClassifier>),
}

/// Where a classifier trains and what it may reuse.
pub struct TrainContext<'a> {
    pub split: &'a Split,
    /// Embedding cache (pooled vectors).
    pub cache: &'a Cache,
    /// Root of residue stores (residue-knn).
    pub residue_store: &'a Path,
    /// Cache of HMM databases (hybrid).
    pub baseline_work_dir: &'a Path,
    /// Split (under the same root) the learned classifiers are fit on.
    pub tune_split: &'a str,
    /// Progress of embedding the training data.
    pub progress: indicatif::ProgressBar,
}

impl TrainedClassifier {
    /// Trains `plan` on the split's `train` part (`dev` for MLP early stopping).
    pub fn train(plan: &ClassifierPlan, embedder: &dyn Embedder, ctx: &TrainContext) -> Result<Self, ClassifierError> {
        let source = ctx.split.part_label("train");
        match plan {
            ClassifierPlan::Vector(params) => {
                let opts = EmbedOptions {
                    progress: ctx.progress.clone(),
                    ..Default::default()
                };
                let train = crate::pipeline::load_vectors(embedder, ctx.cache, ctx.split, "train", &opts)?;
                let dev = crate::pipeline::load_vectors(embedder, ctx.cache, ctx.split, "dev", &opts)?;
                let classifier = SavedClassifier::train(params, embedder.spec(), &train, Some(&dev), &source)?;
                Ok(TrainedClassifier::Vector(classifier))
            }
            ClassifierPlan::Residue(params) => {
                let train = ctx.split.records("train")?;
                let vocab = LabelVocab::from_families(train.iter().filter_map(|r| r.family.as_ref()));
                let mut knn = params.fit(embedder, &train, &vocab, ctx.residue_store)?;
                knn.source = source;
                Ok(TrainedClassifier::Residue(knn))
            }
            ClassifierPlan::Learned { set, residue } => {
                let mut opts = FusionOptions::new(ctx.residue_store, BaselineOptions::new(ctx.baseline_work_dir));
                opts.tune_split = ctx.tune_split.to_string();
                opts.residue = residue.clone();
                Ok(TrainedClassifier::Learned(Box::new(LearnedClassifier::fit(
                    *set, ctx.split, embedder, &opts,
                )?)))
            }
        }
    }

    /// Loads the classifier saved in `dir`, whichever family it is.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ClassifierError> {
        if LearnedClassifier::is_saved_in(dir) {
            Ok(TrainedClassifier::Learned(Box::new(LearnedClassifier::load(dir)?)))
        } else if ResidueKnn::is_saved_in(dir) {
            Ok(TrainedClassifier::Residue(ResidueKnn::load(dir)?))
        } else if dir.join(VECTOR_META_FILE).is_file() {
            Ok(TrainedClassifier::Vector(SavedClassifier::load(dir, device)?))
        } else {
            Err(ClassifierError::NotAClassifier(dir.to_path_buf()))
        }
    }

    /// Saves into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ClassifierError> {
        match self {
            TrainedClassifier::Vector(c) => c.save(dir)?,
            TrainedClassifier::Residue(k) => k.save(dir)?,
            TrainedClassifier::Learned(l) => l.save(dir)?,
        }
        Ok(())
    }

    /// The classifier's name (`knn`, `residue-knn`, ...).
    pub fn name(&self) -> String {
        match self {
            TrainedClassifier::Vector(c) => c.kind().name().to_string(),
            TrainedClassifier::Residue(k) => k.params.label(),
            TrainedClassifier::Learned(l) => l.name().to_string(),
        }
    }

    /// The embedder its training data came from; queries must come from the same.
    pub fn embedder_spec(&self) -> &EmbedderSpec {
        match self {
            TrainedClassifier::Vector(c) => &c.meta.embedder,
            TrainedClassifier::Residue(k) => k.store.spec(),
            TrainedClassifier::Learned(l) => l.knn().store.spec(),
        }
    }

    pub fn vocab(&self) -> &LabelVocab {
        match self {
            TrainedClassifier::Vector(c) => &c.vocab,
            TrainedClassifier::Residue(k) => &k.vocab,
            TrainedClassifier::Learned(l) => &l.knn().vocab,
        }
    }

    /// Training ids, indexed like [`Prediction::nearest`].
    pub fn train_ids(&self) -> Vec<String> {
        match self {
            TrainedClassifier::Vector(c) => c.train_ids.clone(),
            TrainedClassifier::Residue(k) => k.train_ids(),
            TrainedClassifier::Learned(l) => l.knn().train_ids(),
        }
    }

    /// Per-member training logs (MLPs; empty for classifiers trained in one pass).
    pub fn training_log(&self) -> &[crate::classify::saved::MemberLog] {
        match self {
            TrainedClassifier::Vector(c) => &c.meta.training_log,
            TrainedClassifier::Residue(_) | TrainedClassifier::Learned(_) => &[],
        }
    }

    /// Digest of the training data (a calibration belongs to one training run).
    pub fn training_digest(&self) -> &str {
        match self {
            TrainedClassifier::Vector(c) => &c.meta.training.digest,
            TrainedClassifier::Residue(k) => &k.store.manifest.plan.data_digest,
            TrainedClassifier::Learned(l) => &l.knn().store.manifest.plan.data_digest,
        }
    }

    /// Where the training data came from (`<root>/<split>/train`; empty when unknown).
    pub fn training_source(&self) -> &str {
        match self {
            TrainedClassifier::Vector(c) => &c.meta.training.source,
            TrainedClassifier::Residue(k) => &k.source,
            TrainedClassifier::Learned(l) => &l.knn().source,
        }
    }

    /// `(root, split)` of the recorded training source.
    pub fn training_split(&self) -> Option<(PathBuf, String)> {
        split_of_source(self.training_source())
    }

    /// Predicts every record (one [`Outcome`] each, in order). Pooled vectors
    /// go through the embedding cache; residue-knn embeds residues itself.
    pub fn predict_records(
        &self,
        embedder: &dyn Embedder,
        cache: &Cache,
        records: &[Record],
        source: &str,
        opts: &EmbedOptions,
    ) -> Result<Vec<Outcome>, ClassifierError> {
        check_embedder(self.embedder_spec(), embedder.spec())?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            TrainedClassifier::Vector(c) => {
                let (vectors, summary) =
                    crate::pipeline::embed_to_vectors(embedder, records.iter().cloned().map(Ok), source, cache, opts)?;
                tracing::info!("embedding: {summary}");
                let predictions = c.predict(embedder.spec(), &vectors)?;
                Ok(predictions
                    .into_iter()
                    .map(|p| Outcome {
                        prediction: Some(p),
                        abstained: None,
                    })
                    .collect())
            }
            TrainedClassifier::Residue(k) => {
                let predictions = k.predict(embedder, records)?;
                Ok(predictions
                    .into_iter()
                    .map(|p| Outcome {
                        prediction: p.to_ranked(),
                        abstained: p.abstained,
                    })
                    .collect())
            }
            TrainedClassifier::Learned(l) => {
                let predictions = l.predict(embedder, records)?;
                Ok(predictions
                    .into_iter()
                    .map(|p| Outcome {
                        abstained: p
                            .is_none()
                            .then(|| "no candidate family from residue-knn or the HMM".to_string()),
                        prediction: p,
                    })
                    .collect())
            }
        }
    }

    /// Calibrates the abstention threshold on `dev` records for `min_precision`.
    /// Dev queries with no family at all cannot be thresholded and are left out.
    pub fn calibrate(
        &self,
        embedder: &dyn Embedder,
        cache: &Cache,
        dev: &[Record],
        source: &str,
        min_precision: f64,
        opts: &EmbedOptions,
    ) -> Result<Calibration, ClassifierError> {
        if let TrainedClassifier::Learned(l) = self {
            // Calibrated where it was fit: on its out-of-fold tune answers, not on dev.
            return Ok(l.calibration(min_precision));
        }
        let outcomes = self.predict_records(embedder, cache, dev, source, opts)?;
        let (ranked, truth): (Vec<Prediction>, Vec<Option<usize>>) = dev
            .iter()
            .zip(outcomes)
            .filter_map(|(record, o)| {
                let truth = record
                    .family
                    .as_ref()
                    .and_then(|f| self.vocab().index_of_accession(&f.accession));
                o.prediction.map(|p| (p, truth))
            })
            .unzip();
        let mut calibration = annotate::calibrate(&ranked, &truth, min_precision, source)?;
        calibration.training_digest = self.training_digest().to_string();
        Ok(calibration)
    }

    /// [`calibrate`](Self::calibrate) on the dev part of a split.
    pub fn calibrate_on_split(
        &self,
        embedder: &dyn Embedder,
        cache: &Cache,
        split: &Split,
        min_precision: f64,
        opts: &EmbedOptions,
    ) -> Result<Calibration, ClassifierError> {
        let dev = split.records("dev")?;
        self.calibrate(embedder, cache, &dev, &split.part_label("dev"), min_precision, opts)
    }

    /// The calibration stored in `dir`, unless it was made for another training run.
    pub fn stored_calibration(&self, dir: &Path) -> Result<Option<Calibration>, ClassifierError> {
        let Some(c) = Calibration::load(dir)? else {
            return Ok(None);
        };
        if !c.training_digest.is_empty() && c.training_digest != self.training_digest() {
            tracing::warn!(
                "{}: calibrated for another training run of this directory; ignored (run `protfam calibrate`)",
                Calibration::path(dir).display()
            );
            return Ok(None);
        }
        Ok(Some(c))
    }
}

/// Loads the embedder `spec` describes (its dtype and layer; device and model
/// directory from `base`) and checks that it is the same one (weights digest
/// and settings), so vectors never mix across embedders.
pub fn load_embedder_for(spec: &EmbedderSpec, base: &LoadOptions) -> Result<Box<dyn Embedder>, ClassifierError> {
    let dtype = match spec.dtype.as_str() {
        "f16" => candle_core::DType::F16,
        "bf16" => candle_core::DType::BF16,
        _ => candle_core::DType::F32,
    };
    let opts = LoadOptions {
        dtype,
        layer: spec.layer,
        ..base.clone()
    };
    let embedder = crate::models::load(&spec.name, &opts).map_err(|source| ClassifierError::Model {
        name: spec.name.clone(),
        source,
    })?;
    check_embedder(spec, embedder.spec())?;
    Ok(embedder)
}

fn check_embedder(trained: &EmbedderSpec, here: &EmbedderSpec) -> Result<(), ClassifierError> {
    if trained != here {
        return Err(ClassifierError::EmbedderMismatch {
            name: trained.name.clone(),
            here: here.key(),
            trained: trained.key(),
        });
    }
    Ok(())
}

/// `(root, split)` of a recorded training source `<root>/<split>/train`.
pub fn split_of_source(source: &str) -> Option<(PathBuf, String)> {
    let split_dir = Path::new(source).parent()?;
    let split = split_dir.file_name()?.to_str()?.to_string();
    Some((split_dir.parent()?.to_path_buf(), split))
}

/// Human-readable summary of a classifier directory, read without loading
/// weights: kind, hyper-parameters, embedder identity, training data, per-epoch
/// log, the residue store it references, and the calibration.
pub fn describe(dir: &Path) -> Result<String, ClassifierError> {
    let mut s = String::new();
    if LearnedClassifier::is_saved_in(dir) {
        let learned = LearnedClassifier::load(dir)?;
        s.push_str(&learned.describe());
        describe_calibration(&mut s, dir, &learned.knn().store.manifest.plan.data_digest)?;
        return Ok(s);
    }
    let training_digest = if ResidueKnn::is_saved_in(dir) {
        let saved = crate::residue::classifier::SavedResidueKnn::read(dir)?;
        // Its weights are the residue store: unusable (missing, damaged) is an error.
        crate::residue::ResidueStore::open(&saved.store_dir)?;
        describe_residue(&mut s, dir, &saved);
        saved.store_data_digest.clone()
    } else if dir.join(VECTOR_META_FILE).is_file() {
        // `info` is how a user checks a directory: the weights' checksums too.
        let meta = SavedClassifier::verify(dir)?;
        describe_vector(&mut s, dir, &meta);
        meta.training.digest.clone()
    } else {
        return Err(ClassifierError::NotAClassifier(dir.to_path_buf()));
    };
    describe_calibration(&mut s, dir, &training_digest)?;
    if !ResidueKnn::is_saved_in(dir) {
        for f in SavedClassifier::files(dir) {
            let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
            let _ = writeln!(s, "file: {} ({size} bytes)", f.display());
        }
    }
    Ok(s)
}

/// The classifier directory's own JSON description (`classifier.json` or `residue-knn.json`).
pub fn describe_json(dir: &Path) -> Result<String, ClassifierError> {
    if LearnedClassifier::is_saved_in(dir) {
        let path = dir.join(crate::fusion::saved::SAVED_FILE);
        let text = std::fs::read_to_string(&path).map_err(FileError::io(&path))?;
        Ok(text)
    } else if ResidueKnn::is_saved_in(dir) {
        let saved = crate::residue::classifier::SavedResidueKnn::read(dir)?;
        Ok(serde_json::to_string_pretty(&saved).expect("saved form serialises"))
    } else if dir.join(VECTOR_META_FILE).is_file() {
        let meta = SavedClassifier::verify(dir)?;
        Ok(serde_json::to_string_pretty(&meta).expect("metadata serialises"))
    } else {
        Err(ClassifierError::NotAClassifier(dir.to_path_buf()))
    }
}

fn describe_vector(s: &mut String, dir: &Path, meta: &crate::classify::saved::ClassifierMeta) {
    let _ = writeln!(s, "classifier: {}", meta.classifier);
    let _ = writeln!(s, "directory: {}", dir.display());
    let _ = writeln!(s, "created by: {}", meta.created_by);
    let _ = writeln!(
        s,
        "integrity: weights.safetensors and labels.json match their SHA-256 checksums"
    );
    let params = serde_json::to_value(&meta.params).unwrap_or_default();
    let _ = writeln!(s, "hyper-parameters: {}", params.get("params").unwrap_or(&params));
    let e = &meta.embedder;
    let _ = writeln!(
        s,
        "embedder: {} ({}, dim {}, {} pooling, layer {}, dtype {}, max residues {}) key {}",
        e.name,
        e.architecture,
        e.dim,
        e.pooling,
        e.layer.map(|l| l.to_string()).unwrap_or("last".into()),
        e.dtype,
        e.max_residues.map(|m| m.to_string()).unwrap_or("-".into()),
        e.key()
    );
    let _ = writeln!(s, "embedder weights digest: {}", e.weights_digest);
    let t = &meta.training;
    let _ = writeln!(
        s,
        "training data: {} vectors, {} families, dim {}, from {} ({:.1} s to fit)",
        t.n, t.n_classes, t.dim, t.source, t.seconds
    );
    let _ = writeln!(s, "training data digest: {}", t.digest);
    for (m, log) in meta.training_log.iter().enumerate() {
        let _ = writeln!(s, "MLP {} (seed {}): best epoch {}", m, log.seed, log.best_epoch);
        let _ = writeln!(s, "  epoch  train loss  dev error (%)  seconds");
        for ep in &log.epochs {
            let dev = ep.dev_error.map(|d| format!("{:.2}", 100.0 * d)).unwrap_or("-".into());
            let mark = if ep.epoch == log.best_epoch { " *" } else { "" };
            let _ = writeln!(
                s,
                "  {:>5}  {:>10.4}  {:>13}  {:>7.2}{mark}",
                ep.epoch, ep.train_loss, dev, ep.seconds
            );
        }
    }
}

fn describe_residue(s: &mut String, dir: &Path, saved: &crate::residue::classifier::SavedResidueKnn) {
    let _ = writeln!(s, "classifier: {} ({})", saved.classifier, saved.params.label());
    let _ = writeln!(s, "directory: {}", dir.display());
    let _ = writeln!(
        s,
        "hyper-parameters: {}",
        serde_json::to_string(&saved.params).unwrap_or_default()
    );
    let e = &saved.embedder;
    let _ = writeln!(
        s,
        "embedder: {} ({}, dim {}) key {}",
        e.name,
        e.architecture,
        e.dim,
        e.key()
    );
    let _ = writeln!(s, "embedder weights digest: {}", e.weights_digest);
    let _ = writeln!(s, "training data: {}", saved.source);
    let store = match crate::residue::ResidueStore::open(&saved.store_dir) {
        Ok(store) => format!(
            "{} sequences, {} residue rows x {}, {:.1} MiB on disk",
            store.sequences.len(),
            store.n_rows(),
            store.dim(),
            store.disk_bytes() as f64 / (1024.0 * 1024.0)
        ),
        Err(e) => format!("unusable: {e}"),
    };
    let _ = writeln!(s, "residue store: {} ({store})", saved.store_dir.display());
}

fn describe_calibration(s: &mut String, dir: &Path, training_digest: &str) -> Result<(), ClassifierError> {
    match Calibration::load(dir)? {
        Some(c) => {
            let _ = writeln!(s, "abstention calibration: {}", c.describe());
            if !c.training_digest.is_empty() && c.training_digest != training_digest {
                let _ = writeln!(
                    s,
                    "  warning: calibrated for another training run of this directory; ignored by annotate"
                );
            }
            let _ = writeln!(s, "  calibrated on: {}", c.source);
            for cand in &c.candidates {
                let chosen = if cand.statistic == c.statistic { " (chosen)" } else { "" };
                let _ = writeln!(
                    s,
                    "  {}: threshold {}, dev precision {}, dev coverage {:.1}%{chosen}",
                    cand.statistic,
                    cand.threshold.map(|t| format!("{t:.6}")).unwrap_or("none".into()),
                    cand.precision
                        .map(|p| format!("{:.1}%", 100.0 * p))
                        .unwrap_or("-".into()),
                    100.0 * cand.coverage
                );
            }
        }
        None => {
            let _ = writeln!(
                s,
                "abstention calibration: none (run `protfam calibrate --classifier {}`)",
                dir.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_to_its_family() {
        for name in ClassifierName::ALL {
            let parsed: ClassifierName = name.parse().unwrap();
            assert_eq!(parsed.name(), name);
            assert_eq!(parsed.is_residue(), name.starts_with("residue") || name == "hybrid");
        }
    }

    #[test]
    fn unknown_names_list_all_and_suggest_the_nearest() {
        let err = "residue-kn".parse::<ClassifierName>().unwrap_err().to_string();
        assert!(err.contains("did you mean \"residue-knn\""), "{err}");
        for name in ClassifierName::ALL {
            assert!(err.contains(name), "{err} lacks {name}");
        }
        let err = "xyzzyplugh".parse::<ClassifierName>().unwrap_err().to_string();
        assert!(!err.contains("did you mean"), "{err}");
    }

    #[test]
    fn training_split_comes_from_the_recorded_source() {
        assert_eq!(
            split_of_source("data/pfam/clustered_split/train"),
            Some((PathBuf::from("data/pfam"), "clustered_split".to_string()))
        );
        assert_eq!(split_of_source(""), None);
    }
}
