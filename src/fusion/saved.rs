//! `residue-knn-tuned` and `hybrid` as trained classifiers for `train` and
//! `annotate`: the fitted [`FusionModel`] (fit on the tune split), the
//! `residue-knn` of the training part it annotates with, and (for `hybrid`)
//! that part's HMM database; plus the out-of-fold tune answers that the
//! abstention cut for a target precision is fit on.
//!
//! Saved form: `learned.json` (model, out-of-fold tune answers, HMM database
//! path) and the `residue-knn` in `residue/` (which references its store by
//! path, as a saved `residue-knn` does).

use crate::file_error::FileError;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::run::{FusionOptions, FusionRunError, Sources, TuneFit};
use super::{FeatureSet, FusionModel};
use crate::annotate::{Calibration, Statistic};
use crate::baseline::hmm::HmmerTools;
use crate::baseline::BaselineOptions;
use crate::classify::Prediction;
use crate::dataset::Split;
use crate::embedder::Embedder;
use crate::io::Record;
use crate::metrics::{coverage_at, precision_cut};
use crate::residue::{ResidueError, ResidueKnn};

/// File of the saved form in a classifier directory.
pub const SAVED_FILE: &str = "learned.json";
/// Subdirectory of the saved `residue-knn`.
const RESIDUE_DIR: &str = "residue";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedLearned {
    classifier: String,
    model: FusionModel,
    /// The HMM database directory (hybrid only).
    hmm_database: Option<PathBuf>,
    /// How its HMM searches run: `hmmsearch --max`, and the HMMER programs'
    /// directory when they were not on `PATH` at training.
    #[serde(default)]
    hmm_max: bool,
    #[serde(default)]
    hmm_tool_dir: Option<PathBuf>,
    /// The tune part the model was fit on.
    tune_source: String,
    tune_answers: Vec<(f64, bool)>,
}

/// A fitted learned classifier, ready to annotate.
pub struct LearnedClassifier {
    pub model: FusionModel,
    pub sources: Sources,
    pub tune_source: String,
    /// Out-of-fold tune answers (confidence, right?), for the abstention cut.
    pub tune_answers: Vec<(f64, bool)>,
    /// The options its HMM searches run with (the ones it was fit with).
    pub hmm_search: BaselineOptions,
}

impl LearnedClassifier {
    /// Fits `set` on `opts.tune_split` (under `split`'s root) and attaches the
    /// sources trained on `split`'s own training part.
    pub fn fit(
        set: FeatureSet,
        split: &Split,
        embedder: &dyn Embedder,
        opts: &FusionOptions,
    ) -> Result<LearnedClassifier, FusionRunError> {
        let tune_split = super::run::open_tune_split(split, opts)?;
        let tune = super::run::gather(&tune_split, &[("test", "tune")], embedder, opts)?.remove(0);
        let TuneFit { model, out_of_fold, .. } = super::run::fit_on_tune(set, &tune, opts)?;
        let tune_answers = tune
            .queries
            .iter()
            .zip(&out_of_fold)
            .map(|(q, p)| (p.confidence, p.family.is_some() && p.family == q.truth))
            .collect();
        let mut sources = Sources::fit(split, embedder, opts)?;
        if set == FeatureSet::Residue {
            sources.hmm = None; // transfer learning alone: annotate never runs HMMER
        }
        Ok(LearnedClassifier {
            model,
            sources,
            tune_source: tune_split.part_label("test"),
            tune_answers,
            hmm_search: opts.baseline.clone(),
        })
    }

    pub fn name(&self) -> &'static str {
        self.model.set.name()
    }

    pub fn knn(&self) -> &ResidueKnn {
        &self.sources.knn
    }

    /// The abstention calibration for `min_precision`, from the out-of-fold tune answers.
    pub fn calibration(&self, min_precision: f64) -> Calibration {
        // Predictions carry their probability as f32, so the cut is fit on the same
        // rounding: an answer exactly at the cut must not fall below it in `annotate`.
        let answers: Vec<(f64, bool)> = self
            .tune_answers
            .iter()
            .map(|&(confidence, right)| (confidence as f32 as f64, right))
            .collect();
        let cut = precision_cut(&answers, min_precision);
        let (coverage, precision) = cut.map_or((0.0, 0.0), |c| coverage_at(&answers, c));
        let right = answers.iter().filter(|a| a.1).count();
        let accepted = cut.map_or(0, |c| answers.iter().filter(|a| a.0 >= c).count());
        Calibration {
            candidates: vec![crate::annotate::Candidate {
                statistic: Statistic::Score,
                threshold: cut,
                precision: cut.map(|_| precision),
                coverage,
                accepted,
            }],
            statistic: Statistic::Score,
            threshold: cut,
            target_precision: min_precision,
            dev_precision: cut.map(|_| precision),
            dev_coverage: coverage,
            dev_n: answers.len(),
            dev_accuracy: right as f64 / answers.len().max(1) as f64,
            source: format!("{} (out of fold)", self.tune_source),
            training_digest: self.knn().store.manifest.plan.data_digest.clone(),
        }
    }

    /// Every query's candidates ranked by probability (the first is the answer,
    /// its probability the score); `None` when a query has no candidate at all.
    pub fn predict(
        &self,
        embedder: &dyn Embedder,
        records: &[Record],
    ) -> Result<Vec<Option<Prediction>>, FusionRunError> {
        let hits = self.knn().search_records(embedder, records)?;
        let (queries, _) = self.sources.evidence(records, &hits, &self.hmm_search)?;
        let vocab = &self.knn().vocab;
        Ok(queries
            .iter()
            .map(|q| {
                let top: Vec<(usize, f32)> = self
                    .model
                    .probabilities(q)
                    .into_iter()
                    .filter_map(|(accession, p)| vocab.index_of_accession(&accession).map(|c| (c, p as f32)))
                    .collect();
                (!top.is_empty()).then(|| Prediction::from_top(top))
            })
            .collect())
    }

    pub fn save(&self, dir: &Path) -> Result<(), ResidueError> {
        std::fs::create_dir_all(dir).map_err(FileError::io(dir))?;
        self.knn().save(&dir.join(RESIDUE_DIR))?;
        let hmm_database = match &self.sources.hmm {
            Some((d, _)) => Some(std::fs::canonicalize(d).map_err(FileError::io(d))?),
            None => None,
        };
        let saved = SavedLearned {
            classifier: self.name().to_string(),
            model: self.model.clone(),
            hmm_database,
            hmm_max: self.hmm_search.hmm_max,
            hmm_tool_dir: self.hmm_search.tool_dir.clone(),
            tune_source: self.tune_source.clone(),
            tune_answers: self.tune_answers.clone(),
        };
        let path = dir.join(SAVED_FILE);
        let json = serde_json::to_vec_pretty(&saved).expect("saved form serialises");
        crate::atomic::write_bytes_atomic(&path, &json).map_err(FileError::io(&path))?;
        Ok(())
    }

    /// Loads a saved learned classifier; its residue store and HMM database must still exist.
    pub fn load(dir: &Path) -> Result<LearnedClassifier, FusionRunError> {
        let path = dir.join(SAVED_FILE);
        let bytes = std::fs::read(&path).map_err(FileError::io(&path))?;
        let saved: SavedLearned =
            serde_json::from_slice(&bytes).map_err(FileError::unreadable(&path, "not a saved learned classifier"))?;
        let model = &saved.model;
        let d = model.feature_names.len();
        if saved.classifier != model.set.name()
            || model.feature_names != model.set.feature_names()
            || model.mean.len() != d
            || model.scale.len() != d
            || model.weights.len() != d
            || !model
                .weights
                .iter()
                .chain(&model.mean)
                .chain(&model.scale)
                .all(|v| v.is_finite())
            || model.scale.iter().any(|&s| s <= 0.0)
        {
            return Err(
                FileError::invalid(&path, "damaged model: its features, weights and scales do not match").into(),
            );
        }
        let knn = ResidueKnn::load(&dir.join(RESIDUE_DIR))?;
        let hmm = match (&saved.hmm_database, model.set) {
            (Some(db), FeatureSet::Hybrid) => {
                if !db.join(crate::baseline::hmm::DATABASE).is_file() {
                    return Err(FileError::invalid(&path, format!("its HMM database {} is gone", db.display())).into());
                }
                Some((db.clone(), HmmerTools::find(saved.hmm_tool_dir.as_deref())?))
            }
            (None, FeatureSet::Hybrid) => {
                return Err(FileError::invalid(&path, "a hybrid without its HMM database").into())
            }
            _ => None,
        };
        let mut hmm_search = BaselineOptions::new(saved.hmm_database.as_ref().and_then(|d| d.parent()).unwrap_or(dir));
        hmm_search.hmm_max = saved.hmm_max;
        hmm_search.tool_dir = saved.hmm_tool_dir;
        Ok(LearnedClassifier {
            model: saved.model,
            sources: Sources::of(knn, hmm),
            tune_source: saved.tune_source,
            tune_answers: saved.tune_answers,
            hmm_search,
        })
    }

    /// What `protfam info` prints: the model, what it was fit on, and its sources.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let knn = self.knn();
        let _ = writeln!(s, "classifier: {}", self.name());
        let _ = writeln!(
            s,
            "fit on: {} ({} queries with a rival candidate; L2 {})",
            self.tune_source, self.model.fit_queries, self.model.l2
        );
        let _ = writeln!(s, "embedder: {}", knn.store.spec().name);
        let _ = writeln!(s, "trained on: {}", knn.source);
        let _ = writeln!(
            s,
            "residue store: {} ({} rows)",
            knn.store.dir.display(),
            knn.store.n_rows()
        );
        if let Some((db, _)) = &self.sources.hmm {
            let max = if self.hmm_search.hmm_max {
                ", hmmsearch --max"
            } else {
                ""
            };
            let _ = writeln!(s, "HMM database: {}{max}", db.display());
        }
        let _ = writeln!(s, "families: {}", knn.vocab.len());
        for (name, w) in self.model.feature_names.iter().zip(&self.model.weights) {
            let _ = writeln!(s, "weight {name}: {w:+.3}");
        }
        s
    }

    pub fn is_saved_in(dir: &Path) -> bool {
        dir.join(SAVED_FILE).is_file()
    }
}
