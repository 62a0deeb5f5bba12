//! One experiment on a split: a plan of embedding models x pooled-vector
//! classifiers, residue-level classifiers on residue models, and the HMM /
//! BLAST baselines, run with the run cache. `protfam evaluate` and
//! `protfam compare` both call [`run`]; `compare` then only renders.
//!
//! Every classifier trains on `train` (with `dev` for early stopping) and
//! predicts `test`; each finished row goes into the split's report
//! (`<report_dir>/<split>/evaluate.{json,csv,md}`, see [`crate::report`]) and
//! the run cache at once, so a run stopped during a later (possibly hour-long)
//! row keeps every row it finished. With [`Plan::reuse`] rows already in the run
//! cache for the same embedder, settings and data are taken from it instead of
//! computed again.
//!
//! The split is read once ([`Split`]); where pooled vectors come from is a
//! [`VectorSource`] ([`CacheSource`]: the embedding cache, embedding what it lacks).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use crate::baseline::{self, BaselineError, BaselineKind, BaselineOptions, BaselinePrediction};
use crate::cache::Cache;
use crate::classifier::{ClassifierError, ClassifierPlan};
use crate::classify::saved::{ClassifierParams, SavedClassifier};
use crate::classify::{ClassifyError, Prediction};
use crate::dataset::{DatasetError, Split};
use crate::embedder::{Embedder, EmbedderSpec};
use crate::metrics::ReportRow;
use crate::models::{LoadOptions, ModelError};
use crate::pipeline::PipelineError;
use crate::report::runs::RunCache;
use crate::report::{self, pair_stem, write_predictions, PredictionRow, ReportError, ReportPaths};
use crate::residue::{ResidueError, ResidueKnnParams};
use crate::vectors::VectorSet;

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    #[error(transparent)]
    Classifier(Box<ClassifierError>),
    #[error(transparent)]
    Residue(#[from] ResidueError),
    #[error(transparent)]
    Learned(#[from] crate::fusion::run::FusionRunError),
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("{model}: embedding")]
    Pipeline {
        model: String,
        #[source]
        source: Box<PipelineError>,
    },
    #[error("cannot load model {model:?}")]
    Model {
        model: String,
        #[source]
        source: ModelError,
    },
    #[error("{model}: {message}")]
    Vectors { model: String, message: String },
    #[error("{0} needs the split's records and embedders, which this vector source does not give")]
    NeedsSplit(String),
}

impl From<ClassifierError> for ExperimentError {
    fn from(e: ClassifierError) -> Self {
        ExperimentError::Classifier(Box::new(e))
    }
}

/// Gives the labelled vectors of one part (`train`, `dev`, `test`) of a split
/// for one model, and where it can, the embedders and the split itself
/// (residue classifiers and baselines need those).
pub trait VectorSource {
    fn vectors(&mut self, model: &str, part: &str) -> Result<(EmbedderSpec, VectorSet), ExperimentError>;

    /// The embedder of `model`.
    fn embedder(&mut self, model: &str) -> Result<&dyn Embedder, ExperimentError> {
        Err(ExperimentError::NeedsSplit(format!("residue classifiers on {model}")))
    }

    /// The split the vectors come from.
    fn split(&self) -> Option<&Split> {
        None
    }
}

/// Vectors of a split's parts from the embedding cache (what it lacks is
/// embedded and cached), each model loaded once.
pub struct CacheSource<'a> {
    split: &'a Split,
    cache: Cache,
    load: LoadOptions,
    embedders: HashMap<String, Box<dyn Embedder>>,
}

impl<'a> CacheSource<'a> {
    pub fn new(split: &'a Split, cache: Cache, load: LoadOptions) -> Self {
        CacheSource {
            split,
            cache,
            load,
            embedders: HashMap::new(),
        }
    }
}

impl VectorSource for CacheSource<'_> {
    fn vectors(&mut self, model: &str, part: &str) -> Result<(EmbedderSpec, VectorSet), ExperimentError> {
        self.embedder(model)?;
        let embedder = self.embedders[model].as_ref();
        let bar = crate::progress::bar(0, "sequences");
        bar.set_message(format!("{model} {part}"));
        let opts = crate::pipeline::EmbedOptions {
            progress: bar.clone(),
            ..Default::default()
        };
        let set = crate::pipeline::load_vectors(embedder, &self.cache, self.split, part, &opts).map_err(|source| {
            ExperimentError::Pipeline {
                model: model.to_string(),
                source: Box::new(source),
            }
        })?;
        bar.finish_and_clear();
        Ok((embedder.spec().clone(), set))
    }

    fn embedder(&mut self, model: &str) -> Result<&dyn Embedder, ExperimentError> {
        if !self.embedders.contains_key(model) {
            let embedder = crate::models::load(model, &self.load).map_err(|source| ExperimentError::Model {
                model: model.to_string(),
                source,
            })?;
            self.embedders.insert(model.to_string(), embedder);
        }
        Ok(self.embedders[model].as_ref())
    }

    fn split(&self) -> Option<&Split> {
        Some(self.split)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Split name (reports go to `<report_dir>/<split>/`).
    pub split: String,
    /// Embedding models of the pooled-vector classifiers.
    pub models: Vec<String>,
    pub classifiers: Vec<ClassifierParams>,
    /// Embedding models of the residue classifiers.
    pub residue_models: Vec<String>,
    pub residue_classifiers: Vec<ResidueKnnParams>,
    /// Learned combinations (`residue-knn-tuned`, `hybrid`), fit on `tune_split`.
    pub learned: Vec<crate::fusion::FeatureSet>,
    /// The tuning split they are fit on (under the same dataset root).
    pub tune_split: String,
    /// The `residue-knn` whose evidence they combine.
    pub learned_residue: ResidueKnnParams,
    /// Root of residue stores.
    pub residue_store: PathBuf,
    pub baselines: Vec<BaselineKind>,
    pub baseline_options: BaselineOptions,
    pub report_dir: PathBuf,
    /// Save every trained pooled-vector classifier under `<dir>/<split>/<embedding>__<classifier>/`.
    pub save_classifiers: Option<PathBuf>,
    /// Free-form description of the data for the saved classifiers (`root/split/train`).
    pub source: String,
    /// Record every row here (and with `reuse`, take rows from it).
    pub run_cache: Option<RunCache>,
    /// Take rows the run cache already holds for the same embedder, settings and data.
    pub reuse: bool,
}

impl Plan {
    /// An empty plan for `split` writing under `report_dir`.
    pub fn new(split: &str, report_dir: impl Into<PathBuf>) -> Self {
        let report_dir = report_dir.into();
        Plan {
            split: split.to_string(),
            models: Vec::new(),
            classifiers: Vec::new(),
            residue_models: Vec::new(),
            residue_classifiers: Vec::new(),
            learned: Vec::new(),
            tune_split: "tune_split".to_string(),
            learned_residue: ResidueKnnParams::default(),
            residue_store: PathBuf::from("data/residue"),
            baselines: Vec::new(),
            baseline_options: BaselineOptions::new("data/baselines"),
            save_classifiers: None,
            source: String::new(),
            run_cache: None,
            reuse: false,
            report_dir,
        }
    }

    /// Adds a classifier of either family to the plan.
    pub fn add_classifier(&mut self, classifier: ClassifierPlan) {
        match classifier {
            ClassifierPlan::Vector(p) => self.classifiers.push(p),
            ClassifierPlan::Residue(p) => self.residue_classifiers.push(p),
            ClassifierPlan::Learned { set, residue } => {
                if !self.learned.contains(&set) {
                    self.learned.push(set)
                }
                self.learned_residue = residue;
            }
        }
    }
}

/// What [`run`] did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Every row of the plan (reused or computed): baselines, residue, then pooled-vector rows.
    pub rows: Vec<ReportRow>,
    pub reused: usize,
    pub computed: usize,
}

/// Rows kept as they finish: into the report, the run cache and the summary.
struct Keeper<'a> {
    plan: &'a Plan,
    paths: ReportPaths,
    digest: Option<String>,
    summary: RunSummary,
}

impl Keeper<'_> {
    /// A cached row of `embedder_key` + `label`, when the plan reuses rows.
    fn cached(&mut self, embedder_key: &str, label: &str) -> Option<ReportRow> {
        if !self.plan.reuse {
            return None;
        }
        let runs = self.plan.run_cache.as_ref()?;
        let run = runs.get(embedder_key, label, &self.plan.split, self.digest.as_deref())?;
        tracing::info!("{label}: reusing {}", runs.path(embedder_key, label).display());
        self.summary.reused += 1;
        // Into the report too; a failure there loses nothing (the row stays cached).
        if let Err(e) = report::write_report(&self.paths, std::slice::from_ref(&run.row)) {
            tracing::warn!("cannot merge a reused row into the report: {e}");
        }
        self.summary.rows.push(run.row.clone());
        Some(run.row)
    }

    fn keep(&mut self, embedder_key: &str, row: ReportRow) -> Result<(), ExperimentError> {
        if let Some(runs) = &self.plan.run_cache {
            runs.record(
                embedder_key,
                &self.plan.split,
                self.digest.as_deref().unwrap_or(""),
                &row,
            )?;
        }
        report::write_report(&self.paths, std::slice::from_ref(&row))?;
        self.summary.computed += 1;
        self.summary.rows.push(row);
        Ok(())
    }
}

/// Runs the plan: baselines, residue classifiers, then every model x pooled-vector classifier.
pub fn run(plan: &Plan, source: &mut dyn VectorSource) -> Result<RunSummary, ExperimentError> {
    let digest = match (&plan.run_cache, source.split()) {
        (Some(_), Some(split)) => Some(split.digest()?),
        _ => None,
    };
    let mut keeper = Keeper {
        plan,
        paths: ReportPaths::new(&plan.report_dir, &plan.split),
        digest,
        summary: RunSummary::default(),
    };
    for &kind in &plan.baselines {
        run_baseline(kind, source, &mut keeper)?;
    }
    if !plan.residue_classifiers.is_empty() {
        for model in &plan.residue_models {
            run_residue(model, source, &mut keeper)?;
        }
    }
    if !plan.learned.is_empty() {
        let model = plan.residue_models.first().map_or("near", String::as_str);
        run_learned(model, source, &mut keeper)?;
    }
    if !plan.classifiers.is_empty() {
        for model in &plan.models {
            run_vectors(model, source, &mut keeper)?;
        }
    }
    Ok(keeper.summary)
}

fn run_baseline(kind: BaselineKind, source: &mut dyn VectorSource, keeper: &mut Keeper) -> Result<(), ExperimentError> {
    if keeper.cached("none", kind.name()).is_some() {
        return Ok(());
    }
    let split = source
        .split()
        .ok_or_else(|| ExperimentError::NeedsSplit(format!("the {kind} baseline")))?;
    tracing::info!("running the {kind} baseline on {}", split.dir().display());
    let run = baseline::run_baseline_detailed(kind, split, &keeper.plan.baseline_options)?;
    baseline::write_reports(
        &keeper.plan.report_dir,
        kind,
        &keeper.plan.split,
        &run.row,
        &run.predictions,
    )?;
    write_predictions(
        &keeper.paths.predictions(&run.row.embedding, &run.row.classifier),
        &baseline_prediction_rows(&run.predictions),
    )?;
    keeper.keep("none", run.row)
}

/// A baseline's answers in the predictions format every method shares (its
/// score is the bit score of the best hit; it has no nearest training example).
pub fn baseline_prediction_rows(predictions: &[BaselinePrediction]) -> Vec<PredictionRow> {
    predictions
        .iter()
        .map(|p| PredictionRow {
            id: p.name.clone(),
            true_family: p.truth.family_id.clone(),
            true_accession: p.truth.accession.clone(),
            predicted: p.predicted.as_ref().map(|f| f.family_id.clone()).unwrap_or_default(),
            predicted_accession: p.predicted.as_ref().map(|f| f.accession.clone()).unwrap_or_default(),
            score: p.score.unwrap_or(0.0) as f32,
            nearest_id: String::new(),
            nearest_distance: None,
        })
        .collect()
}

fn run_residue(model: &str, source: &mut dyn VectorSource, keeper: &mut Keeper) -> Result<(), ExperimentError> {
    let plan = keeper.plan;
    let key = source.embedder(model)?.spec().key();
    let missing: Vec<ResidueKnnParams> = plan
        .residue_classifiers
        .iter()
        .filter(|p| keeper.cached(&p.run_key(&key), &p.label()).is_none())
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let split = source
        .split()
        .ok_or_else(|| ExperimentError::NeedsSplit("residue classifiers".into()))?;
    let (train, test) = (split.records("train")?, split.records("test")?);
    let embedder = source.embedder(model)?;
    let labels: Vec<String> = missing.iter().map(ResidueKnnParams::label).collect();
    tracing::info!("evaluating {} + {}", embedder.spec().name, labels.join(", "));
    let reports = crate::residue::eval::evaluate_split(embedder, &train, &test, &missing, &plan.residue_store)?;
    for (report, params) in reports.into_iter().zip(&missing) {
        let (embedding, label) = (&report.row.embedding, &report.row.classifier);
        write_predictions(&keeper.paths.predictions(embedding, label), &report.predictions)?;
        let path = keeper
            .paths
            .dir
            .join("residue")
            .join(format!("{}.json", pair_stem(embedding, label)));
        report::write_file(&path, &serde_json::to_vec_pretty(&report).expect("report serialises"))?;
        tracing::info!(
            "{embedding} + {label}: error {:.2}%; {}",
            100.0 * report.row.error_rate,
            crate::residue::eval::search_summary(&report)
        );
        keeper.keep(&params.run_key(&key), report.row)?;
    }
    Ok(())
}

/// Fits `residue-knn-tuned` and `hybrid` on the tune split with `model`'s residues and
/// measures them (and the HMM and `residue-knn` beside them) on tune, dev and test:
/// `<split>/learned.md` and `.json`, plus the test rows of the learned classifiers.
fn run_learned(model: &str, source: &mut dyn VectorSource, keeper: &mut Keeper) -> Result<(), ExperimentError> {
    let plan = keeper.plan;
    let (root, name) = source
        .split()
        .map(|s| (s.root().to_path_buf(), s.name().to_string()))
        .ok_or_else(|| ExperimentError::NeedsSplit("the learned classifiers".into()))?;
    let split = Split::open(root, name).map_err(crate::fusion::run::FusionRunError::from)?;
    let embedder = source.embedder(model)?;
    let mut opts = crate::fusion::run::FusionOptions::new(&plan.residue_store, plan.baseline_options.clone());
    opts.tune_split = plan.tune_split.clone();
    opts.residue = plan.learned_residue.clone();
    tracing::info!(
        "fitting {} on {} with {} residues",
        plan.learned.iter().map(|s| s.name()).collect::<Vec<_>>().join(", "),
        opts.tune_split,
        embedder.spec().name
    );
    let report = crate::fusion::run::run(&split, embedder, &opts)?;
    let markdown = report.markdown();
    report::write_file(&keeper.paths.dir.join("learned.md"), markdown.as_bytes())?;
    report::write_file(
        &keeper.paths.dir.join("learned.json"),
        &serde_json::to_vec_pretty(&report).expect("report serialises"),
    )?;
    for (part, queries) in &report.evidence {
        let mut lines = Vec::new();
        for q in queries {
            lines.extend(serde_json::to_vec(q).expect("evidence serialises"));
            lines.push(b'\n');
        }
        report::write_file(
            &keeper.paths.dir.join("learned-evidence").join(format!("{part}.jsonl")),
            &lines,
        )?;
    }
    tracing::info!("learned classifiers: {}", keeper.paths.dir.join("learned.md").display());
    for row in report.test_rows {
        if !plan.learned.iter().any(|s| s.name() == row.classifier) {
            continue;
        }
        if let Some((_, rows)) = report.test_predictions.iter().find(|(m, _)| *m == row.classifier) {
            write_predictions(&keeper.paths.predictions(&row.embedding, &row.classifier), rows)?;
        }
        let key = format!("{}-{}", embedder.spec().key(), row.classifier);
        keeper.keep(&key, row)?;
    }
    Ok(())
}

fn run_vectors(model: &str, source: &mut dyn VectorSource, keeper: &mut Keeper) -> Result<(), ExperimentError> {
    let plan = keeper.plan;
    // The spec key of the cached rows needs the embedder only when rows may be reused.
    let key = if plan.reuse && plan.run_cache.is_some() {
        Some(source.embedder(model)?.spec().key())
    } else {
        None
    };
    let missing: Vec<&ClassifierParams> = plan
        .classifiers
        .iter()
        .filter(|p| key.as_ref().is_none_or(|k| keeper.cached(k, &p.label()).is_none()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let (spec, train) = source.vectors(model, "train")?;
    let (dev_spec, dev) = source.vectors(model, "dev")?;
    let (test_spec, test) = source.vectors(model, "test")?;
    if dev_spec != spec || test_spec != spec {
        return Err(ExperimentError::Vectors {
            model: model.to_string(),
            message: "train, dev and test vectors come from different embedder settings".into(),
        });
    }
    for params in missing {
        let kind = params.label();
        tracing::info!(embedding = %spec.name, classifier = %kind, n_train = train.len(), n_test = test.len(), "evaluating");
        let eval = evaluate_classifier(params, &spec, &train, Some(&dev), &test, &plan.source)?;
        write_predictions(&keeper.paths.predictions(&spec.name, &kind), &eval.predictions)?;
        if let Some(dir) = &plan.save_classifiers {
            eval.classifier
                .save(&dir.join(&plan.split).join(pair_stem(&spec.name, &kind)))?;
        }
        tracing::info!(
            embedding = %spec.name,
            classifier = %kind,
            error_rate = eval.row.error_rate,
            train_seconds = eval.row.train_seconds,
            predict_seconds = eval.row.predict_seconds,
            "evaluated"
        );
        keeper.keep(&spec.key(), eval.row)?;
    }
    Ok(())
}

/// The outcome of one embedding x classifier pair.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub row: ReportRow,
    pub predictions: Vec<PredictionRow>,
    pub classifier: SavedClassifier,
}

/// Number of training examples per family accession.
pub fn family_sizes(train: &VectorSet) -> BTreeMap<String, usize> {
    let mut sizes = BTreeMap::new();
    for f in train.families.iter().flatten() {
        *sizes.entry(f.accession.clone()).or_insert(0) += 1;
    }
    sizes
}

/// Trains `params` on `train` (dev for early stopping), predicts `test` and scores it.
pub fn evaluate_classifier(
    params: &ClassifierParams,
    spec: &EmbedderSpec,
    train: &VectorSet,
    dev: Option<&VectorSet>,
    test: &VectorSet,
    source: &str,
) -> Result<Evaluation, ExperimentError> {
    let started = Instant::now();
    let classifier = SavedClassifier::train(params, spec, train, dev, source)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let predictions = classifier.predict(spec, test)?;
    let predict_seconds = started.elapsed().as_secs_f64();
    let rows = prediction_rows(&classifier, test, &predictions);
    let row = score_rows(
        &spec.name,
        &params.label(),
        &rows,
        &family_sizes(train),
        train_seconds,
        predict_seconds,
    );
    Ok(Evaluation {
        row,
        predictions: rows,
        classifier,
    })
}

/// Pairs predictions with the truth and family names.
pub fn prediction_rows(
    classifier: &SavedClassifier,
    test: &VectorSet,
    predictions: &[Prediction],
) -> Vec<PredictionRow> {
    test.ids
        .iter()
        .zip(&test.families)
        .zip(predictions)
        .map(|((id, truth), p)| {
            let fam = classifier.vocab.family(p.class);
            let (nearest_id, nearest_distance) = match p.nearest {
                Some((i, d)) => (classifier.train_ids.get(i).cloned().unwrap_or_default(), Some(d)),
                None => (String::new(), None),
            };
            PredictionRow {
                id: id.clone(),
                true_family: truth.as_ref().map(|f| f.family_id.clone()).unwrap_or_default(),
                true_accession: truth.as_ref().map(|f| f.accession.clone()).unwrap_or_default(),
                predicted: fam.family_id.clone(),
                predicted_accession: fam.accession.clone(),
                score: p.score,
                nearest_id,
                nearest_distance,
            }
        })
        .collect()
}

/// Metrics and the family-size breakdown of prediction rows (labels are accessions).
pub fn score_rows(
    embedding: &str,
    classifier: &str,
    rows: &[PredictionRow],
    train_sizes: &BTreeMap<String, usize>,
    train_seconds: f64,
    predict_seconds: f64,
) -> ReportRow {
    let truth: Vec<String> = rows.iter().map(|r| r.true_accession.clone()).collect();
    let predicted: Vec<Option<String>> = rows
        .iter()
        .map(|r| (!r.predicted_accession.is_empty()).then(|| r.predicted_accession.clone()))
        .collect();
    ReportRow::scored(
        embedding,
        classifier,
        &truth,
        &predicted,
        train_sizes,
        train_seconds,
        predict_seconds,
    )
}
