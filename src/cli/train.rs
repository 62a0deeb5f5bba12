//! `protfam train`: fit one classifier on a split's cached embeddings and save it
//! to a directory (see [`protfam::classify::saved`]). Also holds the classifier
//! hyper-parameter flags that `evaluate` shares.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use protfam::classifier::{ClassifierName, ClassifierPlan, TrainContext, TrainedClassifier};
use protfam::classify::ensemble::EnsembleMode;
use protfam::classify::knn::Weighting;
use protfam::classify::mlp::{Activation, BatchSize};
use protfam::classify::saved::{ClassifierKind, ClassifierParams};
use protfam::pipeline::EmbedOptions;

use super::context::{CacheArgs, DataArgs, ModelArgs};
use super::residue::ResidueKnnArgs;

/// Classifier hyper-parameters; unset flags keep the paper's defaults.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "kNN and MLP")]
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
    #[arg(long, value_delimiter = ',', default_value = "500,100,100,1000")]
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
            | ClassifierParams::MlpEnsemble(protfam::classify::MlpEnsembleParams { mlp: p, .. }) => {
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

/// The hyper-parameters of classifier `name` from the flags: the one place where
/// raw classifier flags become a [`ClassifierPlan`].
pub fn classifier_plan(
    name: ClassifierName,
    params: &ClassifierArgs,
    residue: &ResidueKnnArgs,
    device: &candle_core::Device,
) -> anyhow::Result<ClassifierPlan> {
    Ok(match name {
        ClassifierName::Vector(kind) => ClassifierPlan::Vector(params.params(kind, device)?),
        ClassifierName::Residue(variant) => ClassifierPlan::Residue(residue.params_for(variant)?),
        ClassifierName::Learned(set) => ClassifierPlan::Learned {
            set,
            residue: residue.params()?,
        },
    })
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Embedding model (registry name or model directory).
    #[arg(help_heading = "Model and device", short = 'm', long)]
    pub model: String,
    /// Classifier: knn, knn-ensemble, mlp, mlp-ensemble, mlp-ensemble-full,
    /// residue-knn or residue-knn-simple (residue-level retrieval; saves a reference to its residue store),
    /// residue-knn-tuned or hybrid (residue-knn's evidence, with the HMM's for hybrid, combined by a
    /// model fit on --tune-split; saves references to the residue store and HMM database).
    #[arg(help_heading = "Classifier", long, default_value = "knn")]
    pub classifier: String,
    /// Output directory for the trained classifier.
    #[arg(
        help_heading = "Output",
        short = 'o',
        long = "output",
        alias = "out",
        value_name = "DIR"
    )]
    pub output: PathBuf,
    /// Precision the abstention threshold is calibrated for on dev (`protfam annotate` says
    /// `no confident family` below it); stored as `calibration.json` in the output directory.
    #[arg(help_heading = "Classifier", long, default_value_t = 0.95)]
    pub min_precision: f64,
    /// Do not calibrate the abstention threshold after training.
    #[arg(help_heading = "Classifier", long)]
    pub no_calibrate: bool,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub models: ModelArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub params: ClassifierArgs,
    #[command(flatten)]
    pub residue: ResidueKnnArgs,
    /// Cache of HMM databases (hybrid).
    #[arg(
        help_heading = "Classifier",
        long,
        value_name = "DIR",
        default_value = "data/baselines"
    )]
    pub work_dir: PathBuf,
    /// Split (under the same dataset root) residue-knn-tuned and hybrid are fit and calibrated on.
    #[arg(help_heading = "Classifier", long, default_value = "tune_split")]
    pub tune_split: String,
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let name: ClassifierName = args.classifier.parse()?;
    let load = args.models.load_options()?;
    let plan = classifier_plan(name, &args.params, &args.residue, &load.device)?;
    let split = args.data.open()?;
    let embedder =
        protfam::models::load(&args.model, &load).with_context(|| format!("cannot load model {:?}", args.model))?;
    let cache = args.cache.open();
    let ctx = TrainContext {
        split: &split,
        cache: &cache,
        residue_store: &args.residue.residue_store,
        baseline_work_dir: &args.work_dir,
        tune_split: &args.tune_split,
        // The residue store shows its own progress; an idle second reporter would only log 0/0.
        progress: if matches!(plan, ClassifierPlan::Residue(_) | ClassifierPlan::Learned { .. }) {
            protfam::progress::hidden()
        } else {
            protfam::progress::bar(0, "sequences")
        },
    };
    let started = Instant::now();
    let classifier = TrainedClassifier::train(&plan, embedder.as_ref(), &ctx)
        .with_context(|| format!("training {name} on {}", embedder.spec().name))?;
    ctx.progress.finish_and_clear();
    classifier
        .save(&args.output)
        .with_context(|| format!("saving to {}", args.output.display()))?;
    println!(
        "trained {} on {} {} training sequences ({} families) in {:.1} s; saved to {}",
        classifier.name(),
        split.records("train")?.len(),
        embedder.spec().name,
        classifier.vocab().len(),
        started.elapsed().as_secs_f64(),
        args.output.display()
    );
    if !args.no_calibrate {
        let opts = EmbedOptions {
            progress: protfam::progress::bar(0, "sequences"),
            ..Default::default()
        };
        let calibration = classifier
            .calibrate_on_split(embedder.as_ref(), &cache, &split, args.min_precision, &opts)
            .context("calibrating the abstention threshold on dev (pass --no-calibrate to skip)")?;
        opts.progress.finish_and_clear();
        calibration.save(&args.output)?;
        println!("abstention calibration: {}", calibration.describe());
    }
    for (m, log) in classifier.training_log().iter().enumerate() {
        if let Some(last) = log.epochs.last() {
            println!(
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
