//! `protfam compare`: evaluate (or reuse cached evaluations of) every embedding
//! model x classifier on a split, add the HMM / BLAST baselines, and write one
//! comparison with tables, plots and an HTML report (see [`crate::compare`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::train::ClassifierArgs;
use crate::baseline::{self, BaselineKind, BaselineOptions};
use crate::cache::Cache;
use crate::compare::{self, CachedRun, RunCache};
use crate::metrics::ReportRow;
use crate::pipeline::{self, EmbedOptions};

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Dataset root holding `<split>/{train,dev,test}/` (default: $PROTFAM_DATA or the bundled pfam35-uniprot20k).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Split directory name.
    #[arg(long, default_value = "clustered_split")]
    pub split: String,
    /// Embedding models, comma separated (registry names or model directories).
    #[arg(long, value_delimiter = ',', default_values_t = ["unirep1900".to_string(), "onehot".to_string()])]
    pub models: Vec<String>,
    /// Classifiers, comma separated: knn, knn-ensemble, mlp, mlp-ensemble, mlp-ensemble-full,
    /// residue-knn, residue-knn-simple.
    #[arg(long, value_delimiter = ',', default_values_t = ["knn".to_string(), "mlp".to_string()])]
    pub classifiers: Vec<String>,
    /// Baselines to add: hmm, blast (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub baselines: Vec<String>,
    /// Report directory: cached runs go to `<dir>/<split>/runs/`, the comparison to `<dir>/<split>/compare/`.
    #[arg(long, default_value = "data/reports")]
    pub report_dir: PathBuf,
    /// Directory for the comparison files (default: `<report-dir>/<split>/compare`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Recompute every evaluation and baseline instead of reusing cached ones.
    #[arg(long)]
    pub rerun: bool,
    /// Embedding cache directory.
    #[arg(long, default_value = crate::cache::DEFAULT_DIR)]
    pub cache: PathBuf,
    /// Directory of model weights.
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
    /// Where baseline databases are cached.
    #[arg(long, default_value = "data/baselines")]
    pub baseline_work_dir: PathBuf,
    /// Compute on the CPU even when a CUDA device is available.
    #[arg(long)]
    pub cpu: bool,
    #[command(flatten)]
    pub params: ClassifierArgs,
    #[command(flatten)]
    pub residue: super::residue::ResidueKnnArgs,
}

pub fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let root = match &args.data {
        Some(d) => d.clone(),
        None => super::default_data_root().context("no data root: pass --data <dir> or set PROTFAM_DATA")?,
    };
    anyhow::ensure!(
        root.join(&args.split).is_dir(),
        "{}: no such split directory",
        root.join(&args.split).display()
    );
    let device = if args.cpu {
        candle_core::Device::Cpu
    } else {
        crate::classify::default_device()
    };
    let (residue_params, classifiers) =
        super::evaluate::classifier_params(&args.classifiers, &args.residue, &args.params, &device)?;
    let baselines = if args.baselines.is_empty() {
        Vec::new()
    } else {
        baseline::parse_kinds(&args.baselines.join(","))?
    };
    let data_digest = compare::split_digest(&root, &args.split)?;
    let runs = RunCache::new(&args.report_dir, &args.split);
    let cache = Cache::new(&args.cache);
    let source = format!("{}/train", root.join(&args.split).display());
    let mut rows: Vec<ReportRow> = Vec::new();
    let (mut reused, mut computed) = (0usize, 0usize);

    let mut models = args.models.clone();
    if !residue_params.is_empty() {
        for m in args.residue.models(&args.models) {
            if !models.contains(m) {
                models.push(m.clone());
            }
        }
    }
    for model in &models {
        let opts = crate::models::LoadOptions {
            device: device.clone(),
            models_dir: args.models_dir.clone(),
            ..Default::default()
        };
        let embedder = crate::models::load(model, &opts).with_context(|| format!("cannot load model {model:?}"))?;
        let spec = embedder.spec().clone();
        let key = spec.key();
        let residue_here = if args.residue.models(&args.models).contains(model) {
            residue_params.as_slice()
        } else {
            &[]
        };
        // A cached run of this model is reused unless --rerun; what has none is computed below.
        let mut cached = |key: &str, label: &str| -> Option<ReportRow> {
            let run = (!args.rerun)
                .then(|| runs.get(key, label, &args.split, Some(&data_digest)))
                .flatten()?;
            tracing::info!("{} + {label}: reusing {}", spec.name, runs.path(key, label).display());
            reused += 1;
            Some(run.row)
        };
        let mut residue_missing = Vec::new();
        for params in residue_here {
            match cached(&params.run_key(&key), &params.label()) {
                Some(row) => rows.push(row),
                None => residue_missing.push(params.clone()),
            }
        }
        if !residue_missing.is_empty() {
            let reports = super::residue::evaluate_to_reports(
                embedder.as_ref(),
                &root,
                &args.split,
                &residue_missing,
                &args.residue.residue_store,
                &args.report_dir,
            )?;
            for (report, params) in reports.into_iter().zip(&residue_missing) {
                runs.record(&params.run_key(&key), &args.split, &data_digest, &report.row)?;
                computed += 1;
                rows.push(report.row);
            }
        }
        let mut missing = Vec::new();
        let vector_classifiers = if args.models.contains(model) {
            classifiers.as_slice()
        } else {
            &[]
        };
        for params in vector_classifiers {
            match cached(&key, &params.label()) {
                Some(row) => rows.push(row),
                None => missing.push(params),
            }
        }
        if missing.is_empty() {
            continue;
        }
        let load = |part: &str| -> anyhow::Result<_> {
            let opts = EmbedOptions {
                progress: super::progress_bar(0, "sequences"),
                ..Default::default()
            };
            let v = pipeline::load_vectors(embedder.as_ref(), &cache, &root, &args.split, part, &opts)
                .with_context(|| format!("{model}: embedding {}/{part}", args.split))?;
            opts.progress.finish_and_clear();
            Ok(v)
        };
        let (train, dev, test) = (load("train")?, load("dev")?, load("test")?);
        for params in missing {
            let label = params.label();
            eprintln!("evaluating {} + {label} ...", spec.name);
            let eval = crate::evaluate::evaluate_classifier(params, &spec, &train, Some(&dev), &test, &source)
                .with_context(|| format!("evaluating {} + {label}", spec.name))?;
            let run = CachedRun {
                embedder_key: key.clone(),
                classifier: label.clone(),
                split: args.split.clone(),
                training_digest: data_digest.clone(),
                row: eval.row.clone(),
            };
            runs.put(&run)?;
            let paths = crate::evaluate::ReportPaths::new(&args.report_dir, &args.split);
            crate::evaluate::write_predictions(&paths.predictions(&spec.name, &label), &eval.predictions)?;
            computed += 1;
            rows.push(eval.row);
        }
    }

    for kind in baselines {
        rows.push(baseline_row(
            kind,
            &root,
            &args,
            &data_digest,
            &runs,
            &mut reused,
            &mut computed,
        )?);
    }

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.report_dir.join(&args.split).join("compare"));
    let title = format!(
        "{} ({})",
        root.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        args.split
    );
    let files = compare::write_comparison(&out, &title, &rows)?;
    println!("{}", compare::markdown_table(&rows));
    println!(
        "Error rate (%) by training-family size\n\n{}",
        compare::markdown_size_table(&rows)
    );
    eprintln!(
        "{computed} evaluation(s) run, {reused} reused from {}",
        runs.dir.display()
    );
    eprintln!(
        "comparison: {}\n  tables: {} {} {}\n  plots: {} {} {} {}",
        files.html.display(),
        files.markdown.display(),
        files.csv.display(),
        files.json.display(),
        files.bars_svg.display(),
        files.bars_png.display(),
        files.sizes_svg.display(),
        files.sizes_png.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A baseline's row: cached by tool + split data, else run (its databases are cached by the baseline itself).
fn baseline_row(
    kind: BaselineKind,
    root: &Path,
    args: &CompareArgs,
    data_digest: &str,
    runs: &RunCache,
    reused: &mut usize,
    computed: &mut usize,
) -> anyhow::Result<ReportRow> {
    if !args.rerun {
        if let Some(run) = runs.get("none", kind.name(), &args.split, Some(data_digest)) {
            *reused += 1;
            return Ok(run.row);
        }
    }
    eprintln!("running the {kind} baseline ...");
    let opts = BaselineOptions::new(&args.baseline_work_dir);
    let (row, predictions) = baseline::run_baseline(kind, root, &args.split, &opts)
        .with_context(|| format!("{kind} baseline on {}", root.join(&args.split).display()))?;
    baseline::write_reports(&args.report_dir, kind, &args.split, &row, &predictions)?;
    runs.put(&CachedRun {
        embedder_key: "none".into(),
        classifier: kind.name().into(),
        split: args.split.clone(),
        training_digest: data_digest.to_string(),
        row: row.clone(),
    })?;
    *computed += 1;
    Ok(row)
}
