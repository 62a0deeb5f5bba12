//! `protfam evaluate`: train and test every requested embedding x classifier pair
//! on a split and print the Table-1-style report (see [`crate::evaluate`]).

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;

use super::residue::ResidueKnnArgs;
use super::train::{ClassifierArgs, DataArgs};
use crate::classify::saved::{ClassifierKind, ClassifierParams};
use crate::embedder::{Embedder, EmbedderSpec};
use crate::evaluate::{markdown_size_table, markdown_table, EvaluateConfig, EvaluateError, ReportPaths, VectorSource};
use crate::metrics::ReportRow;
use crate::residue::ResidueKnnParams;
use crate::vectors::VectorSet;

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Embedding models, comma separated (registry names or model directories).
    #[arg(long, value_delimiter = ',', default_values_t = ["unirep1900".to_string(), "onehot".to_string()])]
    pub models: Vec<String>,
    /// Classifiers, comma separated: knn, knn-ensemble, mlp, mlp-ensemble, mlp-ensemble-full,
    /// residue-knn (residue-level retrieval, dev-tuned defaults), residue-knn-simple (the simple vote).
    #[arg(long, value_delimiter = ',', default_values_t = ["knn".to_string(), "knn-ensemble".to_string(), "mlp".to_string(), "mlp-ensemble".to_string()])]
    pub classifiers: Vec<String>,
    /// Baselines to run on the same split and add to the report: hmm, blast.
    #[arg(long, value_delimiter = ',')]
    pub baselines: Vec<String>,
    /// Cache of the baselines' HMM / BLAST databases.
    #[arg(long, default_value = "data/baselines")]
    pub baseline_work_dir: std::path::PathBuf,
    /// Directory for evaluate.{json,csv,md} and per-query predictions (under `<split>/`).
    #[arg(long, default_value = "data/reports")]
    pub report_dir: std::path::PathBuf,
    /// Also save every trained classifier under this directory (`<split>/<embedding>__<classifier>/`).
    #[arg(long)]
    pub save_classifiers: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub params: ClassifierArgs,
    #[command(flatten)]
    pub residue: super::residue::ResidueKnnArgs,
}

/// Labelled vectors of the split's parts from the embedding models, loaded once per model.
pub struct CacheSource {
    data: DataArgs,
    device: candle_core::Device,
    embedders: HashMap<String, Box<dyn Embedder>>,
}

impl CacheSource {
    pub fn new(data: &DataArgs, device: candle_core::Device) -> Self {
        CacheSource {
            data: data.clone(),
            device,
            embedders: HashMap::new(),
        }
    }
}

impl VectorSource for CacheSource {
    fn vectors(&mut self, model: &str, part: &str) -> Result<(EmbedderSpec, VectorSet), EvaluateError> {
        let vec_err = |message: String| EvaluateError::Vectors {
            model: model.to_string(),
            message,
        };
        if !self.embedders.contains_key(model) {
            let opts = crate::models::LoadOptions {
                device: self.device.clone(),
                models_dir: self.data.models_dir.clone(),
                ..Default::default()
            };
            let embedder = crate::models::load(model, &opts).map_err(|e| vec_err(e.to_string()))?;
            self.embedders.insert(model.to_string(), embedder);
        }
        let embedder = self.embedders[model].as_ref();
        let cache = crate::cache::Cache::new(&self.data.cache);
        let bar = super::progress_bar(0, "sequences");
        bar.set_message(format!("{model} {part}"));
        let opts = crate::pipeline::EmbedOptions {
            progress: bar.clone(),
            ..Default::default()
        };
        let set = crate::pipeline::load_vectors(embedder, &cache, &self.data.data, &self.data.split, part, &opts)
            .map_err(|e| vec_err(e.to_string()))?;
        bar.finish_and_clear();
        Ok((embedder.spec().clone(), set))
    }
}

/// Runs one baseline (HMMER or BLAST) on the split, writes its own report files
/// and returns its row for the combined table.
fn run_baseline(name: &str, args: &EvaluateArgs) -> anyhow::Result<ReportRow> {
    use crate::baseline::{run_baseline_detailed, write_reports, BaselineKind, BaselineOptions};
    let kind: BaselineKind = name.parse()?;
    let opts = BaselineOptions::new(&args.baseline_work_dir);
    let run = run_baseline_detailed(kind, &args.data.data, &args.data.split, &opts)
        .with_context(|| format!("{kind} baseline on {}", args.data.data.join(&args.data.split).display()))?;
    write_reports(&args.report_dir, kind, &args.data.split, &run.row, &run.predictions)?;
    Ok(run.row)
}

/// `--classifiers` split into the per-residue ones and the vector ones, each with the
/// parameters its flags give (`evaluate` and `compare` take the same list).
pub(super) fn classifier_params(
    names: &[String],
    residue: &ResidueKnnArgs,
    params: &ClassifierArgs,
    device: &candle_core::Device,
) -> anyhow::Result<(Vec<ResidueKnnParams>, Vec<ClassifierParams>)> {
    let (residue_names, vector_names): (Vec<&String>, Vec<&String>) =
        names.iter().partition(|c| super::residue::is_residue_classifier(c));
    let residue_params = residue_names
        .iter()
        .map(|n| residue.params_for(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let kinds = vector_names
        .iter()
        .map(|c| c.parse::<ClassifierKind>())
        .collect::<Result<Vec<_>, _>>()?;
    let vector_params = kinds
        .iter()
        .map(|&k| params.params(k, device))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((residue_params, vector_params))
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let device = args.data.device();
    let (residue_params, classifiers) = classifier_params(&args.classifiers, &args.residue, &args.params, &device)?;
    let data_digest = crate::compare::split_digest(&args.data.data, &args.data.split)?;
    let runs = crate::compare::RunCache::new(&args.report_dir, &args.data.split);
    let paths = ReportPaths::new(&args.report_dir, &args.data.split);
    let mut extra_rows = Vec::new();
    // Each finished row goes into the report and the run cache at once, so a
    // failure later in the run loses none of them.
    let mut keep = |embedder_key: &str, row: ReportRow| -> anyhow::Result<()> {
        runs.record(embedder_key, &args.data.split, &data_digest, &row)?;
        crate::evaluate::write_report(&paths, std::slice::from_ref(&row))?;
        extra_rows.push(row);
        Ok(())
    };
    for b in &args.baselines {
        keep("none", run_baseline(b, &args)?)?;
    }
    if !residue_params.is_empty() {
        for model in args.residue.models(&args.models) {
            let opts = crate::models::LoadOptions {
                device: device.clone(),
                models_dir: args.data.models_dir.clone(),
                ..Default::default()
            };
            let embedder = crate::models::load(model, &opts).with_context(|| format!("cannot load model {model:?}"))?;
            let reports = super::residue::evaluate_to_reports(
                embedder.as_ref(),
                &args.data.data,
                &args.data.split,
                &residue_params,
                &args.residue.residue_store,
                &args.report_dir,
            )?;
            for (report, params) in reports.into_iter().zip(&residue_params) {
                keep(&params.run_key(&embedder.spec().key()), report.row)?;
            }
        }
    }
    let config = EvaluateConfig {
        split: args.data.split.clone(),
        models: args.models.clone(),
        classifiers,
        report_dir: args.report_dir.clone(),
        save_classifiers: args.save_classifiers.clone(),
        source: format!("{}/train", args.data.source_label()),
        run_cache: Some((runs, data_digest)),
    };
    let mut source = CacheSource::new(&args.data, device);
    let rows = crate::evaluate::run(&config, &mut source, &extra_rows).context("evaluation failed")?;
    println!("{}", markdown_table(&rows));
    println!("{}", markdown_size_table(&rows));
    eprintln!(
        "report: {} (also .csv, .md); per-query predictions in {}",
        paths.json().display(),
        paths.dir.join("predictions").display()
    );
    Ok(ExitCode::SUCCESS)
}
