//! Baselines without transfer learning, measured with the real tools on the
//! same split as the embedding classifiers: profile HMMs (HMMER, "TopHMM")
//! and BLAST (BLAST+ `blastp`, top hit).
//!
//! [`run_baseline`] reads a Pfam split, builds (or reuses) the baseline's
//! database from the training part, searches every test sequence and scores
//! the predictions with the same metrics as `protfam evaluate`
//! ([`crate::metrics`]); [`write_reports`] writes the shared JSON report
//! format (classifier `hmm` / `blast`, embedding `none`) plus CSV and a
//! per-sequence prediction table. A test sequence without any hit counts as
//! an error.
//!
//! Databases are cached under the work directory in `<kind>-<key>/`, where
//! the key digests the training data, the recipe and the tool version; a
//! re-run with the same training data reuses them. Builds happen in
//! `<kind>-<key>.partial/` and are renamed into place only when complete; an
//! interrupted HMM build keeps the family profiles already built.
//!
//! ```no_run
//! use protfam::baseline::{run_baseline, BaselineKind, BaselineOptions};
//! let opts = BaselineOptions::new("data/baselines");
//! let (row, predictions) = run_baseline(BaselineKind::Hmm, "data/pfam".as_ref(), "clustered_split", &opts)?;
//! println!("HMM error rate: {:.1}% on {} test sequences", 100.0 * row.error_rate, predictions.len());
//! # Ok::<(), protfam::baseline::BaselineError>(())
//! ```

pub mod blast;
pub mod data;
pub mod hmm;
pub(crate) mod search;
pub mod tools;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic::write_bytes_atomic;
use crate::io::{Family, ReadError};
use crate::metrics::ReportRow;

pub use data::{TestSet, TrainingSet};

/// Which baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaselineKind {
    /// One HMMER profile per family, best-scoring profile wins.
    Hmm,
    /// BLAST+ `blastp` against the training sequences, top hit's family wins.
    Blast,
}

impl BaselineKind {
    pub const ALL: [BaselineKind; 2] = [BaselineKind::Hmm, BaselineKind::Blast];

    /// The classifier name in reports (`hmm`, `blast`).
    pub fn name(self) -> &'static str {
        match self {
            BaselineKind::Hmm => "hmm",
            BaselineKind::Blast => "blast",
        }
    }

    /// Files of a complete cached database that `dir` lacks.
    fn missing_database_files(self, dir: &Path) -> Vec<String> {
        let files: &[&str] = match self {
            BaselineKind::Hmm => &[
                hmm::DATABASE,
                hmm::MODEL_INDEX,
                "pfam.hmm.h3m",
                "pfam.hmm.h3i",
                "pfam.hmm.h3f",
                "pfam.hmm.h3p",
            ],
            // Large databases come in volumes listed by an alias file instead.
            BaselineKind::Blast if dir.join("train.pal").is_file() => &["train.pal"],
            BaselineKind::Blast => &["train.pin", "train.phr", "train.psq"],
        };
        files
            .iter()
            .filter(|f| !dir.join(f).is_file())
            .map(|f| f.to_string())
            .collect()
    }

    fn recipe(self) -> String {
        match self {
            BaselineKind::Hmm => hmm::recipe(),
            BaselineKind::Blast => blast::recipe(),
        }
    }
}

impl fmt::Display for BaselineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BaselineKind {
    type Err = BaselineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hmm" | "hmmer" => Ok(BaselineKind::Hmm),
            "blast" | "blastp" => Ok(BaselineKind::Blast),
            other => Err(BaselineError::Options(format!(
                "unknown baseline {other:?} (expected `hmm` or `blast`)"
            ))),
        }
    }
}

/// Parses a comma-separated list such as `hmm,blast` (as `--baselines` takes it).
pub fn parse_kinds(list: &str) -> Result<Vec<BaselineKind>, BaselineError> {
    let mut kinds = Vec::new();
    for part in list.split(',').filter(|p| !p.trim().is_empty()) {
        let kind: BaselineKind = part.parse()?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

/// How to run a baseline.
#[derive(Debug, Clone)]
pub struct BaselineOptions {
    /// Where databases are cached (`<kind>-<key>/` below it).
    pub work_dir: PathBuf,
    /// Parallel tool processes; 0 means the process's worker threads (all cores unless `--threads`).
    pub threads: usize,
    /// Directory holding the HMMER / BLAST+ programs; `None` searches `PATH`.
    pub tool_dir: Option<PathBuf>,
    /// HMM only: `hmmsearch --max` (no acceleration filters; slower, every sequence gets a best profile).
    pub hmm_max: bool,
    /// Show progress bars (they hide themselves anyway when stderr is not a terminal).
    pub progress: bool,
}

impl BaselineOptions {
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        BaselineOptions {
            work_dir: work_dir.into(),
            threads: 0,
            tool_dir: None,
            hmm_max: false,
            progress: true,
        }
    }

    /// The number of parallel workers actually used.
    pub fn thread_count(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            // The process's worker count (`--threads`), by default all cores.
            rayon::current_num_threads()
        }
    }

    fn pool(&self) -> Result<rayon::ThreadPool, BaselineError> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.thread_count())
            .build()
            .map_err(|e| BaselineError::Options(format!("cannot start {} worker threads: {e}", self.thread_count())))
    }

    /// Work items per tool process: about eight chunks per worker so the
    /// progress bar moves and slow chunks balance out.
    fn chunk_size(&self, items: usize) -> usize {
        let chunks = (self.thread_count() * 8).max(1);
        items.div_ceil(chunks).max(1)
    }

    fn progress_bar(&self, len: u64, unit: &str) -> indicatif::ProgressBar {
        if self.progress {
            crate::progress::bar(len, unit)
        } else {
            indicatif::ProgressBar::hidden()
        }
    }
}

/// A baseline's answer for one test sequence: the family of its best hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Family accession (version stripped).
    pub accession: String,
    /// Bit score (HMMER full-sequence score, BLAST bit score).
    pub score: f64,
    pub evalue: f64,
}

impl Hit {
    /// Higher score wins, then lower E-value, then the smaller accession.
    fn beats(&self, other: &Hit) -> bool {
        (other.score, -other.evalue, &self.accession) < (self.score, -self.evalue, &other.accession)
    }
}

/// One test sequence's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselinePrediction {
    /// The test record's `sequence_name`.
    pub name: String,
    pub truth: Family,
    /// `None` when no family reported a hit.
    pub predicted: Option<Family>,
    pub score: Option<f64>,
    pub evalue: Option<f64>,
}

impl BaselinePrediction {
    pub fn is_correct(&self) -> bool {
        self.predicted
            .as_ref()
            .is_some_and(|p| p.accession == self.truth.accession)
    }
}

/// Everything one baseline run produced.
#[derive(Debug, Clone)]
pub struct BaselineRun {
    pub kind: BaselineKind,
    pub split: String,
    /// The report row (classifier `hmm`/`blast`, embedding `none`).
    pub row: ReportRow,
    /// One per test sequence, in test-file order.
    pub predictions: Vec<BaselinePrediction>,
    /// The cached database directory used.
    pub database_dir: PathBuf,
    /// Whether the database came from the cache.
    pub reused_database: bool,
    /// The tool version recorded with the database.
    pub tool_version: String,
}

/// Baseline failures; each names the file, family or program concerned.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error("{0}")]
    Data(String),
    #[error("family {family} ({accession}): {message}")]
    Alignment {
        family: String,
        accession: String,
        message: String,
    },
    #[error("family {family} ({accession}): {source}")]
    Family {
        family: String,
        accession: String,
        source: Box<BaselineError>,
    },
    #[error("`{tool}` not found in {searched}: {hint}")]
    MissingTool {
        tool: String,
        searched: String,
        hint: String,
    },
    #[error("`{tool}` failed: {message}\n  command: {command}")]
    ToolFailed {
        tool: String,
        command: String,
        message: String,
    },
    #[error("{path}:{line}: {message}")]
    Parse { path: String, line: usize, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Options(String),
}

/// The adapter every baseline file operation maps its `io::Error` through.
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> BaselineError {
    BaselineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a cached database directory records about itself; its presence marks the build complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub kind: BaselineKind,
    pub training_digest: String,
    pub recipe: String,
    pub tool_version: String,
    pub families: usize,
    pub sequences: usize,
    pub build_seconds: f64,
    pub protfam_version: String,
}

/// The file that marks a complete cache directory.
pub const MANIFEST: &str = "manifest.json";

/// The cache directory of a baseline's database for given training data.
pub fn database_dir(work_dir: &Path, kind: BaselineKind, training_digest: &str, tool_version: &str) -> PathBuf {
    let mut key = Sha256::new();
    for part in [kind.name(), training_digest, &kind.recipe(), tool_version] {
        key.update(part.as_bytes());
        key.update([0u8]);
    }
    work_dir.join(format!("{}-{}", kind.name(), &hex::encode(key.finalize())[..16]))
}

/// The pressed HMM database of `data`'s training part (built once, then reused
/// from `opts.work_dir`), for callers that run their own HMMER search on it
/// (`hmmscan` in domain annotation). Returns its directory and the training set.
pub fn hmm_database(
    data: &crate::dataset::Split,
    opts: &BaselineOptions,
) -> Result<(PathBuf, hmm::HmmerTools, TrainingSet), BaselineError> {
    let tools = hmm::HmmerTools::find(opts.tool_dir.as_deref())?;
    let tool_version = tools.hmmbuild.version();
    let train = TrainingSet::from_records(&data.records("train")?, &data.part_label("train"))?;
    let dir = database_dir(&opts.work_dir, BaselineKind::Hmm, &train.digest, &tool_version);
    let (manifest, reused) = ensure_database(&dir, BaselineKind::Hmm, &train, &tool_version, |partial| {
        hmm::build_database(&train, partial, &tools, opts)
    })?;
    tracing::info!(
        "{} HMM database {} (built in {:.1} s)",
        if reused { "reusing" } else { "built" },
        dir.display(),
        manifest.build_seconds
    );
    Ok((dir, tools, train))
}

/// Runs one baseline on `<root>/<split>`: build or reuse the database from
/// the training part, search the test part, score the predictions.
/// `train_seconds` is the database build time (recorded in the cache when
/// reused), `predict_seconds` the search time. Predictions are in test-file order.
pub fn run_baseline(
    kind: BaselineKind,
    root: &Path,
    split: &str,
    opts: &BaselineOptions,
) -> Result<(ReportRow, Vec<BaselinePrediction>), BaselineError> {
    let split = crate::dataset::Split::open(root, split)?;
    run_baseline_detailed(kind, &split, opts).map(|run| (run.row, run.predictions))
}

/// [`run_baseline`], also saying which database was used and whether it came from the cache.
pub fn run_baseline_detailed(
    kind: BaselineKind,
    data: &crate::dataset::Split,
    opts: &BaselineOptions,
) -> Result<BaselineRun, BaselineError> {
    let (root, split) = (data.root(), data.name());
    // Find the tools before reading anything, so a missing install fails at once.
    enum Tools {
        Hmm(hmm::HmmerTools),
        Blast(blast::BlastTools),
    }
    let tools = match kind {
        BaselineKind::Hmm => Tools::Hmm(hmm::HmmerTools::find(opts.tool_dir.as_deref())?),
        BaselineKind::Blast => Tools::Blast(blast::BlastTools::find(opts.tool_dir.as_deref())?),
    };
    let tool_version = match &tools {
        Tools::Hmm(t) => t.hmmbuild.version(),
        Tools::Blast(t) => t.blastp.version(),
    };
    let train = TrainingSet::from_records(&data.records("train")?, &data.part_label("train"))?;
    let test = TestSet::from_records(&data.records("test")?, &data.part_label("test"))?;
    tracing::info!(
        "{kind} baseline on {}/{split}: {} training sequences in {} families, {} test sequences, {} workers",
        root.display(),
        train.sequences.len(),
        train.families.len(),
        test.names.len(),
        opts.thread_count()
    );

    let dir = database_dir(&opts.work_dir, kind, &train.digest, &tool_version);
    let (manifest, reused) = ensure_database(&dir, kind, &train, &tool_version, |partial| match &tools {
        Tools::Hmm(t) => hmm::build_database(&train, partial, t, opts),
        Tools::Blast(t) => blast::build_database(&train, partial, t),
    })?;
    if reused {
        tracing::info!(
            "reusing {kind} database {} (built in {:.1} s)",
            dir.display(),
            manifest.build_seconds
        );
    } else {
        tracing::info!(
            "built {kind} database {} in {:.1} s",
            dir.display(),
            manifest.build_seconds
        );
    }

    let started = Instant::now();
    let hits = match &tools {
        Tools::Hmm(t) => hmm::search(&dir, &test, t, opts)?,
        Tools::Blast(t) => blast::search(&dir, &train, &test, t, opts)?,
    };
    let predict_seconds = started.elapsed().as_secs_f64();

    let families: std::collections::BTreeMap<&str, &Family> = train
        .families
        .iter()
        .map(|f| (f.family.accession.as_str(), &f.family))
        .collect();
    let predictions: Vec<BaselinePrediction> = hits
        .into_iter()
        .enumerate()
        .map(|(i, hit)| BaselinePrediction {
            name: test.names[i].clone(),
            truth: test.truth[i].clone(),
            predicted: hit.as_ref().map(|h| {
                families
                    .get(h.accession.as_str())
                    .map(|f| (*f).clone())
                    .unwrap_or_else(|| Family::new("", &h.accession))
            }),
            score: hit.as_ref().map(|h| h.score),
            evalue: hit.as_ref().map(|h| h.evalue),
        })
        .collect();
    let row = report_row(kind, &predictions, &train, manifest.build_seconds, predict_seconds);
    Ok(BaselineRun {
        kind,
        split: split.to_string(),
        row,
        predictions,
        database_dir: dir,
        reused_database: reused,
        tool_version,
    })
}

/// Scores predictions on family accessions, with error rates by training family size.
pub fn report_row(
    kind: BaselineKind,
    predictions: &[BaselinePrediction],
    train: &TrainingSet,
    train_seconds: f64,
    predict_seconds: f64,
) -> ReportRow {
    let truth: Vec<String> = predictions.iter().map(|p| p.truth.accession.clone()).collect();
    let predicted: Vec<Option<String>> = predictions
        .iter()
        .map(|p| p.predicted.as_ref().map(|f| f.accession.clone()))
        .collect();
    ReportRow::scored(
        "none",
        kind.name(),
        &truth,
        &predicted,
        &train.family_sizes(),
        train_seconds,
        predict_seconds,
    )
}

/// Returns the complete database in `dir`, building it first when absent.
fn ensure_database(
    dir: &Path,
    kind: BaselineKind,
    train: &TrainingSet,
    tool_version: &str,
    build: impl FnOnce(&Path) -> Result<(), BaselineError>,
) -> Result<(Manifest, bool), BaselineError> {
    let manifest_path = dir.join(MANIFEST);
    if manifest_path.exists() {
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| io_error(&manifest_path, e))?;
        match serde_json::from_str::<Manifest>(&text) {
            Ok(m) if m.training_digest == train.digest && m.kind == kind => {
                let missing = kind.missing_database_files(dir);
                if missing.is_empty() {
                    return Ok((m, true));
                }
                tracing::warn!(
                    "{}: database files missing ({}); rebuilding",
                    dir.display(),
                    missing.join(", ")
                );
            }
            Ok(_) => tracing::warn!(
                "{}: does not match the training data; rebuilding",
                manifest_path.display()
            ),
            Err(e) => tracing::warn!("{}: unreadable ({e}); rebuilding", manifest_path.display()),
        }
    }
    let partial = dir.with_extension("partial");
    std::fs::create_dir_all(&partial).map_err(|e| io_error(&partial, e))?;
    let started = Instant::now();
    build(&partial)?;
    let manifest = Manifest {
        kind,
        training_digest: train.digest.clone(),
        recipe: kind.recipe(),
        tool_version: tool_version.to_string(),
        families: train.families.len(),
        sequences: train.sequences.len(),
        build_seconds: started.elapsed().as_secs_f64(),
        protfam_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let json = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
    let partial_manifest = partial.join(MANIFEST);
    write_bytes_atomic(&partial_manifest, json.as_bytes()).map_err(|e| io_error(&partial_manifest, e))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    crate::atomic::rename_durable(&partial, dir).map_err(|e| io_error(dir, e))?;
    Ok((manifest, false))
}

/// Report file stem: `baseline-<kind>-<split>`.
pub fn report_stem(kind: BaselineKind, split: &str) -> String {
    format!("baseline-{}-{}", kind.name(), split.replace(['/', '\\'], "_"))
}

/// Writes `<stem>.json` (a list with the one [`ReportRow`], the format
/// `evaluate` and `compare` share), `<stem>.csv` (the same row) and
/// `<stem>-predictions.tsv` (one line per test sequence) into `report_dir`.
/// Each file is written under a temporary name and renamed into place.
pub fn write_reports(
    report_dir: &Path,
    kind: BaselineKind,
    split: &str,
    row: &ReportRow,
    predictions: &[BaselinePrediction],
) -> Result<Vec<PathBuf>, BaselineError> {
    std::fs::create_dir_all(report_dir).map_err(|e| io_error(report_dir, e))?;
    let stem = report_stem(kind, split);
    let json_path = report_dir.join(format!("{stem}.json"));
    let json = serde_json::to_string_pretty(&vec![row.clone()]).expect("report rows serialize");
    write_atomically(&json_path, json.as_bytes())?;
    let csv_path = report_dir.join(format!("{stem}.csv"));
    write_atomically(
        &csv_path,
        crate::report::csv_table(std::slice::from_ref(row)).as_bytes(),
    )?;
    let tsv_path = report_dir.join(format!("{stem}-predictions.tsv"));
    let mut tsv = String::from(
        "sequence_name\ttrue_accession\ttrue_family\tpredicted_accession\tpredicted_family\tscore\tevalue\tcorrect\n",
    );
    for p in predictions {
        let (acc, id) = p
            .predicted
            .as_ref()
            .map(|f| (f.accession.as_str(), f.family_id.as_str()))
            .unwrap_or(("", ""));
        tsv.push_str(&format!(
            "{}\t{}\t{}\t{acc}\t{id}\t{}\t{}\t{}\n",
            p.name,
            p.truth.accession,
            p.truth.family_id,
            p.score.map(|s| s.to_string()).unwrap_or_default(),
            p.evalue.map(|e| format!("{e:e}")).unwrap_or_default(),
            p.is_correct()
        ));
    }
    write_atomically(&tsv_path, tsv.as_bytes())?;
    Ok(vec![json_path, csv_path, tsv_path])
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BaselineError> {
    write_bytes_atomic(path, bytes).map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{error_by_family_size, score};

    #[test]
    fn kinds_parse_from_lists() {
        assert_eq!(
            parse_kinds("hmm,blast").unwrap(),
            vec![BaselineKind::Hmm, BaselineKind::Blast]
        );
        assert_eq!(
            parse_kinds("BLAST, hmm,blast").unwrap(),
            vec![BaselineKind::Blast, BaselineKind::Hmm]
        );
        let err = parse_kinds("hmm,psiblast").unwrap_err().to_string();
        assert!(err.contains("psiblast"), "{err}");
    }

    #[test]
    fn cache_key_changes_with_training_data_and_tool() {
        let w = Path::new("/w");
        let a = database_dir(w, BaselineKind::Hmm, "aaaa", "HMMER 3.3.2");
        assert_eq!(a, database_dir(w, BaselineKind::Hmm, "aaaa", "HMMER 3.3.2"));
        assert_ne!(a, database_dir(w, BaselineKind::Hmm, "aaab", "HMMER 3.3.2"));
        assert_ne!(a, database_dir(w, BaselineKind::Hmm, "aaaa", "HMMER 3.4"));
        assert_ne!(a, database_dir(w, BaselineKind::Blast, "aaaa", "HMMER 3.3.2"));
        assert!(a.file_name().unwrap().to_string_lossy().starts_with("hmm-"));
    }

    #[test]
    fn hit_order_is_score_then_evalue_then_accession() {
        let h = |a: &str, s: f64, e: f64| Hit {
            accession: a.into(),
            score: s,
            evalue: e,
        };
        assert!(h("PF2", 10.0, 1.0).beats(&h("PF1", 9.0, 0.1)));
        assert!(h("PF2", 10.0, 0.5).beats(&h("PF1", 10.0, 1.0)));
        assert!(h("PF1", 10.0, 1.0).beats(&h("PF2", 10.0, 1.0)));
        assert!(!h("PF2", 10.0, 1.0).beats(&h("PF1", 10.0, 1.0)));
    }

    #[test]
    fn csv_and_markdown_carry_every_row() {
        let truth = ["PF1", "PF1", "PF2"];
        let pred = [Some("PF1"), None, Some("PF2")];
        let mut row = ReportRow::new("none", "hmm", score(&truth, &pred), 1.5, 2.5);
        row.by_family_size = error_by_family_size(&truth, &pred, |_| 3);
        // One CSV and Markdown format for every report (crate::report); its size-bin
        // columns are `n_<bin>` / `error_rate_<bin>`.
        let csv = crate::report::csv_table(&[row.clone()]);
        assert!(csv.starts_with("embedding,classifier,n,errors,error_rate"), "{csv}");
        assert!(csv.contains("\nnone,hmm,3,1,0.333333,"), "{csv}");
        assert!(csv.contains("error_rate_2-4"), "{csv}");
        let md = crate::report::markdown_table(&[row.clone()]);
        assert!(md.contains("| none | hmm | 3 | 1 | 33.33 |"), "{md}");
        let sizes = crate::report::markdown_size_table(&[row]);
        assert!(sizes.contains("| 2-4 | 3 | 33.3 |"), "{sizes}");
    }
}
