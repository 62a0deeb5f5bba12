//! Evaluation of classifiers on a Pfam split: train on `train` (with `dev` for
//! early stopping), predict `test`, and report the paper's Table-1 metrics
//! (error rate, errors, weighted precision / recall / F1 by scikit-learn's
//! definitions, train and predict seconds) plus the error rate by
//! training-family size (1, 2-4, 5-9, 10-49, 50+), the few-shot view.
//!
//! Reports go to `<report_dir>/<split>/`:
//! - `evaluate.json`: a list of [`ReportRow`] objects (the format `baseline` and
//!   `compare` share); rows from earlier runs for other embedding/classifier
//!   pairs are kept, a rerun of a pair replaces its row;
//! - `evaluate.csv` and `evaluate.md`: the same table for people;
//! - `predictions/<embedding>__<classifier>.csv`: one line per test query
//!   (id, true family, predicted family, score, nearest training id and distance).
//!
//! Where vectors come from is a [`VectorSource`] (the embedding cache in the CLI).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::cache::atomic::write_bytes_atomic;
use crate::classify::saved::{ClassifierParams, SavedClassifier};
use crate::classify::{ClassifyError, Prediction};
use crate::embedder::EmbedderSpec;
use crate::metrics::{bins_seen, ReportRow, CSV_SCALAR_COLUMNS, SIZE_BINS};
use crate::vectors::VectorSet;

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{model}: {message}")]
    Vectors { model: String, message: String },
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> EvaluateError {
    EvaluateError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Gives the labelled vectors of one part (`train`, `dev`, `test`) of a split for one model.
pub trait VectorSource {
    fn vectors(&mut self, model: &str, part: &str) -> Result<(EmbedderSpec, VectorSet), EvaluateError>;
}

/// One test query's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRow {
    pub id: String,
    pub true_family: String,
    pub true_accession: String,
    /// Empty when nothing was predicted.
    pub predicted: String,
    pub predicted_accession: String,
    pub score: f32,
    pub nearest_id: String,
    pub nearest_distance: Option<f32>,
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
) -> Result<Evaluation, EvaluateError> {
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

/// Writes the predictions CSV of one pair.
pub fn write_predictions(path: &Path, rows: &[PredictionRow]) -> Result<(), EvaluateError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    crate::atomic::write_atomic(path, |out| {
        let mut w = csv::Writer::from_writer(out);
        for r in rows {
            w.serialize(r).map_err(std::io::Error::other)?;
        }
        w.flush()
    })
    .map_err(|e| io_err(path, e))
}

/// Reads a predictions CSV written by [`write_predictions`].
pub fn read_predictions(path: &Path) -> Result<Vec<PredictionRow>, EvaluateError> {
    let mut r = csv::Reader::from_path(path).map_err(|e| io_err(path, e))?;
    r.deserialize()
        .collect::<Result<Vec<PredictionRow>, _>>()
        .map_err(|e| io_err(path, e))
}

/// File name stem of a pair's outputs.
pub fn pair_stem(embedding: &str, classifier: &str) -> String {
    let clean = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!("{}__{}", clean(embedding), clean(classifier))
}

/// Where a split's report files go.
#[derive(Debug, Clone)]
pub struct ReportPaths {
    pub dir: PathBuf,
}

impl ReportPaths {
    pub fn new(report_dir: &Path, split: &str) -> Self {
        ReportPaths {
            dir: report_dir.join(split),
        }
    }
    pub fn json(&self) -> PathBuf {
        self.dir.join("evaluate.json")
    }
    pub fn csv(&self) -> PathBuf {
        self.dir.join("evaluate.csv")
    }
    pub fn markdown(&self) -> PathBuf {
        self.dir.join("evaluate.md")
    }
    pub fn predictions(&self, embedding: &str, classifier: &str) -> PathBuf {
        self.dir
            .join("predictions")
            .join(format!("{}.csv", pair_stem(embedding, classifier)))
    }
}

/// Reads a report JSON (a list of rows).
pub fn read_report(path: &Path) -> Result<Vec<ReportRow>, EvaluateError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    serde_json::from_str(&text).map_err(|e| io_err(path, format!("not a list of report rows: {e}")))
}

/// Merges `new` rows into the split's `evaluate.json` (same embedding + classifier
/// replaces) and rewrites the JSON, CSV and Markdown reports; returns all rows.
pub fn write_report(paths: &ReportPaths, new: &[ReportRow]) -> Result<Vec<ReportRow>, EvaluateError> {
    std::fs::create_dir_all(&paths.dir).map_err(|e| io_err(&paths.dir, e))?;
    let mut rows = if paths.json().exists() {
        read_report(&paths.json())?
    } else {
        Vec::new()
    };
    for row in new {
        match rows
            .iter_mut()
            .find(|r| r.embedding == row.embedding && r.classifier == row.classifier)
        {
            Some(old) => *old = row.clone(),
            None => rows.push(row.clone()),
        }
    }
    let json = serde_json::to_string_pretty(&rows).map_err(|e| io_err(&paths.json(), e))?;
    write_text(&paths.json(), &json)?;
    write_text(&paths.csv(), &csv_table(&rows))?;
    write_text(
        &paths.markdown(),
        &format!("{}\n{}", markdown_table(&rows), markdown_size_table(&rows)),
    )?;
    Ok(rows)
}

fn write_text(path: &Path, text: &str) -> Result<(), EvaluateError> {
    write_bytes_atomic(path, text.as_bytes()).map_err(|e| io_err(path, e))
}

/// The CSV report: one line per row, size bins as `error_rate_<bin>` / `n_<bin>` columns.
pub fn csv_table(rows: &[ReportRow]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = CSV_SCALAR_COLUMNS.iter().map(|s| s.to_string()).collect();
    for (_, _, bin) in SIZE_BINS {
        header.push(format!("n_{bin}"));
        header.push(format!("error_rate_{bin}"));
    }
    w.write_record(&header).expect("in-memory CSV");
    for r in rows {
        let mut rec = r.csv_scalars();
        for (_, _, bin) in SIZE_BINS {
            match r.size_bin(bin) {
                Some(b) => {
                    rec.push(b.n.to_string());
                    rec.push(format!("{:.6}", b.error_rate));
                }
                None => rec.extend([String::new(), String::new()]),
            }
        }
        w.write_record(&rec).expect("in-memory CSV");
    }
    String::from_utf8(w.into_inner().expect("in-memory CSV")).expect("UTF-8 CSV")
}

/// The paper's Table 1 as Markdown.
pub fn markdown_table(rows: &[ReportRow]) -> String {
    let mut s = String::from(
        "| method | embedding | error rate (%) | errors | precision | recall | weighted F1 | train (s) | predict (s) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.2} | {} / {} | {:.4} | {:.4} | {:.4} | {:.1} | {:.2} |\n",
            r.classifier,
            r.embedding,
            100.0 * r.error_rate,
            r.errors,
            r.n,
            r.precision,
            r.recall,
            r.f1,
            r.train_seconds,
            r.predict_seconds
        ));
    }
    s
}

/// Error rate by training-family size as Markdown (`err% (n)` per bin).
pub fn markdown_size_table(rows: &[ReportRow]) -> String {
    let mut bins = bins_seen(rows);
    let order = |b: &String| {
        if b == "0" {
            0
        } else {
            1 + SIZE_BINS.iter().position(|x| x.2 == b).unwrap_or(99)
        }
    };
    bins.sort_by_key(order);
    let mut s = String::from("Error rate (%) by number of training examples of the true family (test items in brackets):\n\n| method | embedding |");
    for b in &bins {
        s.push_str(&format!(" {} |", if b == "0" { "absent" } else { b }));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---:|".repeat(bins.len()));
    s.push('\n');
    for r in rows {
        s.push_str(&format!("| {} | {} |", r.classifier, r.embedding));
        for b in &bins {
            let n = r.size_bin(b).map_or(0, |x| x.n);
            s.push_str(&format!(" {} ({n}) |", r.size_bin_percent(b)));
        }
        s.push('\n');
    }
    s
}

/// What to run.
#[derive(Debug, Clone)]
pub struct EvaluateConfig {
    pub split: String,
    pub models: Vec<String>,
    pub classifiers: Vec<ClassifierParams>,
    pub report_dir: PathBuf,
    /// Save every trained classifier under `<dir>/<split>/<embedding>__<classifier>/`.
    pub save_classifiers: Option<PathBuf>,
    /// Free-form description of the data for the saved classifiers (`root/split/train`).
    pub source: String,
    /// `compare`'s run cache and the split-data digest ([`crate::compare::split_digest`]):
    /// every pair evaluated is recorded there too, so `compare` reuses it.
    pub run_cache: Option<(crate::compare::RunCache, String)>,
}

/// Runs every model x classifier pair, writing its predictions and merging its
/// row into the report as each finishes, then `extra_rows` (e.g. baselines).
/// Returns the rows of this run.
pub fn run(
    config: &EvaluateConfig,
    source: &mut dyn VectorSource,
    extra_rows: &[ReportRow],
) -> Result<Vec<ReportRow>, EvaluateError> {
    let paths = ReportPaths::new(&config.report_dir, &config.split);
    let mut rows = Vec::new();
    // Residue-level classifiers come in `extra_rows`; with no pooled-vector
    // classifier there is nothing to embed or load here.
    let models: &[String] = if config.classifiers.is_empty() {
        &[]
    } else {
        &config.models
    };
    for model in models {
        let (spec, train) = source.vectors(model, "train")?;
        let (dev_spec, dev) = source.vectors(model, "dev")?;
        let (test_spec, test) = source.vectors(model, "test")?;
        if dev_spec != spec || test_spec != spec {
            return Err(EvaluateError::Vectors {
                model: model.clone(),
                message: "train, dev and test vectors come from different embedder settings".into(),
            });
        }
        for params in &config.classifiers {
            let kind = params.label();
            tracing::info!(embedding = %spec.name, classifier = %kind, n_train = train.len(), n_test = test.len(), "evaluating");
            let eval = evaluate_classifier(params, &spec, &train, Some(&dev), &test, &config.source)?;
            write_predictions(&paths.predictions(&spec.name, &kind), &eval.predictions)?;
            if let Some(dir) = &config.save_classifiers {
                eval.classifier
                    .save(&dir.join(&config.split).join(pair_stem(&spec.name, &kind)))?;
            }
            tracing::info!(
                embedding = %spec.name,
                classifier = %kind,
                error_rate = eval.row.error_rate,
                train_seconds = eval.row.train_seconds,
                predict_seconds = eval.row.predict_seconds,
                "evaluated"
            );
            if let Some((runs, digest)) = &config.run_cache {
                runs.record(&spec.key(), &config.split, digest, &eval.row)
                    .map_err(|e| EvaluateError::Io {
                        path: runs.dir.display().to_string(),
                        message: e.to_string(),
                    })?;
            }
            // Into the report at once: a run stopped during a later (possibly
            // hour-long) pair keeps every row it finished.
            write_report(&paths, std::slice::from_ref(&eval.row))?;
            rows.push(eval.row);
        }
    }
    rows.extend(extra_rows.iter().cloned());
    write_report(&paths, &rows)?;
    Ok(rows)
}
