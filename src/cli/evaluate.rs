//! `protfam evaluate` and `protfam compare`: one experiment on a split
//! ([`protfam::experiment`]) from the same flags ([`ExperimentArgs`]).
//! `evaluate` computes every row and prints the report tables; `compare` reuses
//! rows the run cache holds and renders the comparison (tables, plots, HTML).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use protfam::classifier::ClassifierName;
use protfam::dataset::Split;
use protfam::experiment::{CacheSource, Plan, RunSummary};
use protfam::report::runs::RunCache;
use protfam::report::{self, ReportPaths};

use super::context::{CacheArgs, DataArgs, ModelArgs};
use super::residue::ResidueKnnArgs;
use super::train::{classifier_plan, ClassifierArgs};

/// What an experiment runs, and where its outputs go.
#[derive(Debug, clap::Args)]
pub struct ExperimentArgs {
    /// Embedding models, comma separated (registry names or model directories).
    #[arg(
        help_heading = "Methods",
        short = 'm',
        long,
        value_delimiter = ',',
        default_value = "unirep1900,onehot"
    )]
    pub models: Vec<String>,
    /// Classifiers, comma separated: knn, knn-ensemble, mlp, mlp-ensemble, mlp-ensemble-full,
    /// residue-knn (residue-level retrieval, tuned defaults), residue-knn-simple (the simple vote),
    /// residue-knn-tuned (residue-knn's evidence combined by a model fit on --tune-split),
    /// hybrid (the same with the HMM baseline's evidence).
    #[arg(
        help_heading = "Methods",
        long,
        value_delimiter = ',',
        default_value = "knn,knn-ensemble,mlp,mlp-ensemble"
    )]
    pub classifiers: Vec<String>,
    /// Split (under the same dataset root) that residue-knn-tuned and hybrid are fit and
    /// calibrated on: built like the test part from the training part only.
    #[arg(help_heading = "Methods", long, default_value = "tune_split")]
    pub tune_split: String,
    /// Embedding models the residue classifiers run with, comma separated
    /// (default: the same as --models).
    #[arg(help_heading = "Methods", long, value_delimiter = ',')]
    pub residue_models: Vec<String>,
    /// Baselines to run on the same split and add to the report: hmm, blast.
    #[arg(help_heading = "Methods", long, value_delimiter = ',')]
    pub baselines: Vec<String>,
    /// Cache of the baselines' HMM / BLAST databases.
    #[arg(
        help_heading = "Output",
        long,
        value_name = "DIR",
        default_value = "data/baselines",
        alias = "baseline-work-dir"
    )]
    pub work_dir: PathBuf,
    /// Report directory: `<dir>/<split>/evaluate.{json,csv,md}`, per-query predictions, the run cache.
    #[arg(
        help_heading = "Output",
        short = 'o',
        long = "output",
        alias = "report-dir",
        value_name = "DIR",
        default_value = "data/reports"
    )]
    pub report_dir: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub params: ClassifierArgs,
    #[command(flatten)]
    pub residue: ResidueKnnArgs,
}

impl ExperimentArgs {
    /// The split and the plan these flags describe (rows not reused).
    pub fn plan(&self) -> anyhow::Result<(Split, Plan)> {
        let split = self.data.open()?;
        let device = self.model.device()?;
        let mut plan = Plan::new(split.name(), &self.report_dir);
        for name in &self.classifiers {
            let name: ClassifierName = name.parse()?;
            plan.add_classifier(classifier_plan(name, &self.params, &self.residue, &device)?);
        }
        plan.models = self.models.clone();
        plan.residue_models = if self.residue_models.is_empty() {
            self.models.clone()
        } else {
            self.residue_models.clone()
        };
        plan.residue_store = self.residue.residue_store.clone();
        plan.tune_split = self.tune_split.clone();
        plan.baselines = protfam::baseline::parse_kinds(&self.baselines.join(","))?;
        plan.baseline_options = protfam::baseline::BaselineOptions::new(&self.work_dir);
        plan.source = split.part_label("train");
        plan.run_cache = Some(RunCache::new(&self.report_dir, split.name()));
        Ok((split, plan))
    }

    /// Runs `plan` on `split` with vectors from the embedding cache.
    pub fn run(&self, split: &Split, plan: &Plan) -> anyhow::Result<RunSummary> {
        let mut source = CacheSource::new(split, self.cache.open(), self.model.load_options()?);
        protfam::experiment::run(plan, &mut source).context("evaluation failed")
    }
}

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
    /// Also save every trained pooled-vector classifier under this directory (`<split>/<embedding>__<classifier>/`).
    #[arg(help_heading = "Output", long, value_name = "DIR")]
    pub save_classifiers: Option<PathBuf>,
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let (split, mut plan) = args.experiment.plan()?;
    plan.save_classifiers = args.save_classifiers.clone();
    let summary = args.experiment.run(&split, &plan)?;
    let paths = ReportPaths::new(&plan.report_dir, &plan.split);
    println!("{}\n", paths.headline(&summary.rows));
    println!("{}", report::markdown_table(&summary.rows));
    println!("{}", report::markdown_size_table(&summary.rows));
    if !plan.learned.is_empty() {
        // Tune, dev and test side by side, and the calibration table.
        let learned = paths.dir.join("learned.md");
        let text = std::fs::read_to_string(&learned).with_context(|| format!("reading {}", learned.display()))?;
        println!("{text}");
    }
    eprintln!(
        "report: {} (also .csv, .md); per-query predictions in {}",
        paths.json().display(),
        paths.dir.join("predictions").display()
    );
    Ok(ExitCode::SUCCESS)
}
