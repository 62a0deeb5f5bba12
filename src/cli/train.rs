//! `protfam train`: fit one classifier on a split's cached embeddings and save it
//! to a directory (see [`crate::classify::saved`]). Also holds the classifier
//! hyper-parameter flags that `evaluate` shares.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::classify::ensemble::EnsembleMode;
use crate::classify::knn::Weighting;
use crate::classify::mlp::{Activation, BatchSize};
use crate::classify::saved::{ClassifierKind, ClassifierParams, SavedClassifier};
use crate::evaluate::VectorSource;

/// Classifier hyper-parameters; unset flags keep the paper's defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct ClassifierArgs {
    /// Neighbours of kNN and kNN-ensemble members.
    #[arg(long, default_value_t = 1)]
    pub k: usize,
    /// kNN vote: `uniform` (majority) or `distance` (inverse-distance weighted).
    #[arg(long, default_value = "uniform", value_parser = ["uniform", "distance"])]
    pub weighting: String,
    /// Ensemble size (default: 10 for knn-ensemble and mlp-ensemble, 5 for mlp-ensemble-full).
    #[arg(long)]
    pub members: Option<usize>,
    /// Seed of shuffles, ensemble splits and MLP initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// MLP hidden layer sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [500usize, 100, 100, 1000])]
    pub hidden: Vec<usize>,
    /// MLP hidden activation: `identity` (the paper's) or `relu`.
    #[arg(long, default_value = "identity", value_parser = ["identity", "relu"])]
    pub activation: String,
    /// MLP maximum epochs.
    #[arg(long, default_value_t = 25)]
    pub epochs: usize,
    /// MLP early-stopping patience in epochs without dev improvement.
    #[arg(long, default_value_t = 10)]
    pub patience: usize,
    /// MLP mini-batch as a fraction of the training set (the paper's 1% "partial fits").
    #[arg(long, default_value_t = 0.01)]
    pub batch_fraction: f64,
    /// MLP mini-batch as a fixed number of rows (overrides --batch-fraction).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// MLP Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// MLP L2 penalty (scikit-learn's alpha).
    #[arg(long, default_value_t = 1e-4)]
    pub alpha: f64,
    /// Standardise MLP inputs (per-dimension mean and standard deviation of the training vectors).
    #[arg(long)]
    pub standardize: bool,
}

impl ClassifierArgs {
    /// Hyper-parameters of `kind` from these flags, on `device`.
    pub fn params(&self, kind: ClassifierKind, device: &candle_core::Device) -> anyhow::Result<ClassifierParams> {
        let mut params = ClassifierParams::defaults(kind);
        let weighting = if self.weighting == "distance" {
            Weighting::Distance
        } else {
            Weighting::Uniform
        };
        let batch = match self.batch_size {
            Some(rows) => BatchSize::Rows(rows),
            None => BatchSize::Fraction(self.batch_fraction),
        };
        let activation = if self.activation == "relu" {
            Activation::Relu
        } else {
            Activation::Identity
        };
        match &mut params {
            ClassifierParams::Knn(p) => {
                p.k = self.k;
                p.weighting = weighting;
                p.check()?;
            }
            ClassifierParams::KnnEnsemble(p) => {
                p.knn.k = self.k;
                p.knn.weighting = weighting;
                p.seed = self.seed;
                p.members = self.members.unwrap_or(p.members);
                p.knn.check()?;
            }
            ClassifierParams::Mlp(p)
            | ClassifierParams::MlpEnsemble(crate::classify::MlpEnsembleParams { mlp: p, .. }) => {
                p.hidden = self.hidden.clone();
                p.activation = activation;
                p.max_epochs = self.epochs;
                p.patience = self.patience;
                p.batch = batch;
                p.learning_rate = self.learning_rate;
                p.alpha = self.alpha;
                p.standardize = self.standardize;
                p.seed = self.seed;
                p.check()?;
            }
        }
        if let ClassifierParams::MlpEnsemble(e) = &mut params {
            e.seed = self.seed;
            e.members = self.members.unwrap_or(e.members);
            if e.members < 2 {
                anyhow::bail!("--members must be at least 2");
            }
            debug_assert!(kind != ClassifierKind::MlpEnsembleFull || e.mode == EnsembleMode::Full);
        }
        params.set_device(device);
        Ok(params)
    }
}

/// Where the labelled vectors of a split come from.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Dataset root holding `<split>/{train,dev,test}/data-*` shards.
    #[arg(long, default_value = "data/pfam35-uniprot20k")]
    pub data: PathBuf,
    /// Split directory name.
    #[arg(long, default_value = "clustered_split")]
    pub split: String,
    /// Embedding cache directory.
    #[arg(long, default_value = "data/cache")]
    pub cache: PathBuf,
    /// Directory of model weights.
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
    /// Compute on the CPU even when a CUDA device is available.
    #[arg(long)]
    pub cpu: bool,
}

impl DataArgs {
    pub fn device(&self) -> candle_core::Device {
        if self.cpu {
            candle_core::Device::Cpu
        } else {
            crate::classify::default_device()
        }
    }

    pub fn source_label(&self) -> String {
        // Absolute, so the recorded source still names the data from another directory.
        let root = std::fs::canonicalize(&self.data).unwrap_or_else(|_| self.data.clone());
        format!("{}/{}", root.display(), self.split)
    }
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Embedding model (registry name or model directory).
    #[arg(long)]
    pub model: String,
    /// Classifier: knn, knn-ensemble, mlp, mlp-ensemble, mlp-ensemble-full,
    /// residue-knn or residue-knn-simple (residue-level retrieval; saves a reference to its residue store).
    #[arg(long, default_value = "knn")]
    pub classifier: String,
    #[command(flatten)]
    pub params: ClassifierArgs,
    #[command(flatten)]
    pub residue: super::residue::ResidueKnnArgs,
    /// Output directory for the trained classifier.
    #[arg(long)]
    pub out: PathBuf,
    /// Precision the abstention threshold is calibrated for on dev (`protfam annotate` says
    /// `no confident family` below it); stored as `calibration.json` in the output directory.
    #[arg(long, default_value_t = 0.95)]
    pub min_precision: f64,
    /// Do not calibrate the abstention threshold after training.
    #[arg(long)]
    pub no_calibrate: bool,
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    if super::residue::is_residue_classifier(&args.classifier) {
        let min_precision = (!args.no_calibrate).then_some(args.min_precision);
        super::residue::train(
            &args.classifier,
            &args.model,
            &args.data,
            &args.residue,
            &args.out,
            min_precision,
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let kind: ClassifierKind = args.classifier.parse()?;
    let device = args.data.device();
    let params = args.params.params(kind, &device)?;
    let mut source = super::evaluate::CacheSource::new(&args.data, device);
    let (spec, train) = source.vectors(&args.model, "train")?;
    let (_, dev) = source.vectors(&args.model, "dev")?;
    let started = Instant::now();
    let classifier = SavedClassifier::train(
        &params,
        &spec,
        &train,
        Some(&dev),
        &format!("{}/train", args.data.source_label()),
    )
    .with_context(|| format!("training {kind} on {}", spec.name))?;
    classifier
        .save(&args.out)
        .with_context(|| format!("saving to {}", args.out.display()))?;
    eprintln!(
        "trained {kind} on {} {} vectors ({} families) in {:.1} s; saved to {}",
        train.len(),
        spec.name,
        classifier.vocab.len(),
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    if !args.no_calibrate {
        let common = super::annotate::CommonArgs {
            cache: args.data.cache.clone(),
            models_dir: args.data.models_dir.clone(),
            batch_tokens: None,
            cpu: args.data.cpu,
        };
        let embedder = super::annotate::load_embedder(&classifier, &common)?;
        let cache = crate::cache::Cache::new(&args.data.cache);
        let calibration = super::annotate::calibrate_on_dev(
            &classifier,
            embedder.as_ref(),
            &cache,
            &args.data.data,
            &args.data.split,
            args.min_precision,
        )
        .context("calibrating the abstention threshold on dev (pass --no-calibrate to skip)")?;
        calibration.save(&args.out)?;
        eprintln!("abstention calibration: {}", calibration.describe());
    }
    for (m, log) in classifier.meta.training_log.iter().enumerate() {
        if let Some(last) = log.epochs.last() {
            eprintln!(
                "  member {m}: {} epochs, best epoch {} (dev error {})",
                last.epoch,
                log.best_epoch,
                log.epochs
                    .get(log.best_epoch.saturating_sub(1))
                    .and_then(|e| e.dev_error)
                    .map(|e| format!("{:.2}%", 100.0 * e))
                    .unwrap_or("-".into())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
