//! `protfam evaluate`: train and test every requested embedding x classifier pair
//! on a split and print the Table-1-style report (see [`crate::evaluate`]).

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;

use super::train::{ClassifierArgs, DataArgs};
use crate::classify::saved::ClassifierKind;
use crate::embedder::{Embedder, EmbedderSpec};
use crate::evaluate::{markdown_size_table, markdown_table, EvaluateConfig, EvaluateError, ReportPaths, VectorSource};
use crate::metrics::ReportRow;
use crate::vectors::VectorSet;

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Embedding models, comma separated (registry names or model directories).
    #[arg(long, value_delimiter = ',', default_values_t = ["unirep1900".to_string(), "onehot".to_string()])]
    pub models: Vec<String>,
    /// Classifiers, comma separated: knn, knn-ensemble, mlp, mlp-ensemble, mlp-ensemble-full.
    #[arg(long, value_delimiter = ',', default_values_t = ["knn".to_string(), "knn-ensemble".to_string(), "mlp".to_string(), "mlp-ensemble".to_string()])]
    pub classifiers: Vec<String>,
    /// Baselines to run on the same split and add to the report: hmm, blast.
    #[arg(long, value_delimiter = ',')]
    pub baselines: Vec<String>,
    /// Directory for evaluate.{json,csv,md} and per-query predictions (under `<split>/`).
    #[arg(long, default_value = "data/reports")]
    pub report_dir: std::path::PathBuf,
    /// Also save every trained classifier under this directory (`<split>/<embedding>__<classifier>/`).
    #[arg(long)]
    pub save_classifiers: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub params: ClassifierArgs,
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
        let records = crate::io::pfam_csv::read_part(&self.data.data, &self.data.split, part)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| vec_err(e.to_string()))?;
        let mut set = VectorSet {
            dim: embedder.spec().dim,
            ..Default::default()
        };
        let bar = super::progress_bar(records.len() as u64, "sequences");
        bar.set_message(format!("{model} {part}"));
        for chunk in records.chunks(64) {
            let seqs: Vec<&str> = chunk.iter().map(|r| r.sequence.as_str()).collect();
            let vectors = embedder.embed_pooled(&seqs).map_err(|e| vec_err(e.to_string()))?;
            for (r, v) in chunk.iter().zip(vectors) {
                set.push(r.id.clone(), r.family.clone(), &v);
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok((embedder.spec().clone(), set))
    }
}

/// Runs one baseline on the split and returns its report row.
fn run_baseline(name: &str, _args: &EvaluateArgs) -> anyhow::Result<ReportRow> {
    anyhow::bail!("baseline {name:?} is not available in this build (known after the baseline merge: hmm, blast)")
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let device = args.data.device();
    let kinds = args
        .classifiers
        .iter()
        .map(|c| c.parse::<ClassifierKind>())
        .collect::<Result<Vec<_>, _>>()?;
    let classifiers = kinds
        .iter()
        .map(|&k| args.params.params(k, &device))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let baseline_rows = args
        .baselines
        .iter()
        .map(|b| run_baseline(b, &args))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = EvaluateConfig {
        split: args.data.split.clone(),
        models: args.models.clone(),
        classifiers,
        report_dir: args.report_dir.clone(),
        save_classifiers: args.save_classifiers.clone(),
        source: format!("{}/train", args.data.source_label()),
    };
    let mut source = CacheSource::new(&args.data, device);
    let rows = crate::evaluate::run(&config, &mut source, &baseline_rows).context("evaluation failed")?;
    println!("{}", markdown_table(&rows));
    println!("{}", markdown_size_table(&rows));
    let paths = ReportPaths::new(&args.report_dir, &args.data.split);
    eprintln!(
        "report: {} (also .csv, .md); per-query predictions in {}",
        paths.json().display(),
        paths.dir.join("predictions").display()
    );
    Ok(ExitCode::SUCCESS)
}
