//! The learned combinations run end to end on a dataset: gather
//! `residue-knn`'s and the profile HMM's evidence for the tune split's test
//! part (where the models are fit) and for the evaluated split's dev and test
//! parts (where they are measured), then report every method on all three
//! side by side: errors, errors by training-family size, and coverage at
//! target precisions with the cuts fit on tune.
//!
//! Each split trains its own `residue-knn` store and HMM database from its
//! own training part (the tune split's training part excludes its held-out
//! clusters), so no part is ever searched against itself. The expensive
//! residue searches are cached beside the stores ([`search_part_cached`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{cross_fit, Candidate, FeatureSet, FusedPrediction, FusionError, FusionModel};
use super::{HmmEvidence, QueryEvidence, ResidueEvidence, CANDIDATES_PER_SOURCE};
use crate::baseline::hmm::HmmerTools;
use crate::baseline::{self, BaselineError, BaselineOptions, TestSet};
use crate::dataset::{DatasetError, Split};
use crate::embedder::Embedder;
use crate::io::vocab::LabelVocab;
use crate::io::Record;
use crate::metrics::{coverage_at, precision_cut, ReportRow, SizeBinError};
use crate::residue::classifier::QueryHits;
use crate::residue::eval::search_part_cached;
use crate::residue::{ResidueError, ResidueKnn, ResidueKnnParams};

#[derive(Debug, thiserror::Error)]
pub enum FusionRunError {
    #[error(
        "the learned classifiers are fit on a tuning split, and there is none at {0} (the bundled data has `tune_split/`; \
         for other data build one like it from the training part: see the data README)"
    )]
    NoTuneSplit(PathBuf),
    #[error(transparent)]
    Fusion(#[from] FusionError),
    #[error(transparent)]
    Residue(#[from] ResidueError),
    #[error(transparent)]
    File(#[from] crate::file_error::FileError),
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

/// How the learned classifiers are fit and measured.
#[derive(Debug, Clone)]
pub struct FusionOptions {
    /// Name of the tuning split under the same dataset root.
    pub tune_split: String,
    /// The `residue-knn` whose evidence is combined.
    pub residue: ResidueKnnParams,
    pub store_root: PathBuf,
    pub baseline: BaselineOptions,
    /// L2 penalty of the conditional logit (on standardised features).
    pub l2: f64,
    /// Folds of the out-of-fold tune predictions the precision cuts are fit on.
    pub folds: usize,
    /// Target precisions of the calibration table.
    pub precisions: Vec<f64>,
}

impl FusionOptions {
    pub fn new(store_root: impl Into<PathBuf>, baseline: BaselineOptions) -> Self {
        FusionOptions {
            tune_split: "tune_split".into(),
            residue: ResidueKnnParams::default(),
            store_root: store_root.into(),
            baseline,
            l2: 1.0,
            folds: 5,
            precisions: vec![0.9, 0.95],
        }
    }
}

/// A query's answer (family, when any) and its confidence.
pub type Answer = (Option<String>, f64);

/// One part's evidence and the two sources' own answers.
pub struct PartEvidence {
    /// `tune`, `dev` or `test`.
    pub part: String,
    pub queries: Vec<QueryEvidence>,
    /// `residue-knn`'s fixed-weight answer and score per query.
    pub residue: Vec<Answer>,
    /// The HMM's best family and -log10 E-value per query.
    pub hmm: Vec<Answer>,
    /// Training domains per family accession (of this part's training set).
    pub train_sizes: BTreeMap<String, usize>,
    /// Fitting the sources this part was gathered with (residue store, HMM
    /// database), shared by the parts of one [`gather`].
    pub sources_seconds: f64,
    /// Embedding and searching the part's residues when the search ran (a cached
    /// search keeps the time it first took).
    pub search_seconds: f64,
    /// Scoring, aligning and HMM searches after the residue search.
    pub evidence_seconds: f64,
}

/// The two sources of evidence, trained on one training part: its
/// `residue-knn` and its HMM database.
pub struct Sources {
    pub knn: ResidueKnn,
    /// The HMM database directory and the tools to search it (`None`: residue evidence only).
    pub hmm: Option<(PathBuf, HmmerTools)>,
    /// Training domains per family accession.
    pub train_sizes: BTreeMap<String, usize>,
}

/// What a query's evidence says on its own: each source's answer and confidence.
pub struct Answers {
    /// `residue-knn`'s fixed-weight answer and score per query.
    pub residue: Vec<Answer>,
    /// The HMM's best family and -log10 E-value (per comparison) per query.
    pub hmm: Vec<Answer>,
}

impl Sources {
    /// Builds (or reopens) the residue store and HMM database of `split`'s training part.
    pub fn fit(split: &Split, embedder: &dyn Embedder, opts: &FusionOptions) -> Result<Sources, FusionRunError> {
        let train = split.records("train")?;
        let vocab = LabelVocab::from_families(train.iter().filter_map(|r| r.family.as_ref()));
        let mut knn = opts.residue.fit(embedder, &train, &vocab, &opts.store_root)?;
        knn.source = split.part_label("train");
        let (hmm_dir, hmm_tools, _) = baseline::hmm_database(split, &opts.baseline)?;
        Ok(Sources::of(knn, Some((hmm_dir, hmm_tools))))
    }

    /// The sources of a trained `residue-knn` (family sizes from its store) and an optional HMM database.
    pub fn of(knn: ResidueKnn, hmm: Option<(PathBuf, HmmerTools)>) -> Sources {
        let mut train_sizes: BTreeMap<String, usize> = BTreeMap::new();
        for s in &knn.store.sequences {
            if let Some(f) = &s.family {
                *train_sizes.entry(f.accession.clone()).or_default() += 1;
            }
        }
        Sources { knn, hmm, train_sizes }
    }

    /// Every query's candidates: `residue-knn`'s best families (from `hits`, the
    /// searched residues of `records`) and the HMM's, searched here.
    pub fn evidence(
        &self,
        records: &[Record],
        hits: &QueryHits,
        opts: &BaselineOptions,
    ) -> Result<(Vec<QueryEvidence>, Answers), FusionRunError> {
        let params = &self.knn.params.score;
        let evidence: Vec<_> = {
            use rayon::prelude::*;
            (0..records.len())
                .into_par_iter()
                .map(|q| self.knn.family_evidence(hits, q, params, true))
                .collect()
        };
        let hmm_hits = match &self.hmm {
            Some((dir, tools)) => {
                baseline::hmm::search_ranked(dir, &TestSet::of_sequences(records), tools, opts, CANDIDATES_PER_SOURCE)?
            }
            None => vec![Vec::new(); records.len()],
        };
        // hmmsearch's E-values count the whole query set as the database (`-Z`); divided by
        // its size they are per comparison, so parts of different sizes share one scale.
        let n_queries = records.len().max(1) as f64;
        let size_of = |accession: &str| self.train_sizes.get(accession).copied().unwrap_or(0);
        let mut queries = Vec::with_capacity(records.len());
        let mut answers = Answers {
            residue: Vec::new(),
            hmm: Vec::new(),
        };
        for ((record, (votes, families)), hits) in records.iter().zip(evidence).zip(hmm_hits) {
            // Without the alignment stage the votes are the whole evidence.
            let residue_evidence: Vec<(usize, ResidueEvidence)> = if families.is_empty() {
                votes
                    .ranked
                    .iter()
                    .map(|&(class, vote)| {
                        let e = ResidueEvidence {
                            score: vote,
                            vote,
                            alignment: 0.0,
                            second_alignment: 0.0,
                            aligned_members: 0,
                            enhanced_alignment: [0.0; 2],
                        };
                        (class, e)
                    })
                    .collect()
            } else {
                families
                    .iter()
                    .map(|e| {
                        let r = ResidueEvidence {
                            score: e.combined,
                            vote: e.vote,
                            alignment: e.alignment,
                            second_alignment: e.second_alignment,
                            aligned_members: e.aligned_members,
                            enhanced_alignment: e.enhanced_alignment,
                        };
                        (e.class, r)
                    })
                    .collect()
            };
            let accession = |class: usize| self.knn.vocab.family(class).accession.clone();
            answers.residue.push(
                residue_evidence
                    .first()
                    .map_or((None, 0.0), |(class, e)| (Some(accession(*class)), e.score as f64)),
            );
            let mut candidates: Vec<Candidate> = residue_evidence
                .into_iter()
                .take(CANDIDATES_PER_SOURCE)
                .map(|(class, e)| Candidate {
                    train_size: size_of(&accession(class)),
                    accession: accession(class),
                    residue: Some(e),
                    hmm: None,
                })
                .collect();
            answers.hmm.push(hits.first().map_or((None, f64::NEG_INFINITY), |h| {
                (Some(h.accession.clone()), -(h.evalue / n_queries).max(1e-300).log10())
            }));
            for h in hits {
                let evidence = HmmEvidence {
                    bits: h.score,
                    evalue: h.evalue / n_queries,
                };
                match candidates.iter_mut().find(|c| c.accession == h.accession) {
                    Some(c) => c.hmm = Some(evidence),
                    None => candidates.push(Candidate {
                        train_size: size_of(&h.accession),
                        accession: h.accession,
                        residue: None,
                        hmm: Some(evidence),
                    }),
                }
            }
            queries.push(QueryEvidence {
                id: record.id.clone(),
                truth: record.family.as_ref().map(|f| f.accession.clone()),
                candidates,
            });
        }
        Ok((queries, answers))
    }
}

/// Gathers the evidence of `parts` (`(part, label)`) of `split`, trained on its `train` part.
pub fn gather(
    split: &Split,
    parts: &[(&str, &str)],
    embedder: &dyn Embedder,
    opts: &FusionOptions,
) -> Result<Vec<PartEvidence>, FusionRunError> {
    let started = Instant::now();
    let sources = Sources::fit(split, embedder, opts)?;
    let sources_seconds = started.elapsed().as_secs_f64();
    let mut out = Vec::new();
    for &(part, label) in parts {
        let records: Vec<Record> = split.records(part)?.as_ref().clone();
        tracing::info!(
            "{label}: evidence of residue-knn and the HMM for {} queries",
            records.len()
        );
        let searched = search_part_cached(&sources.knn, embedder, &records)?;
        let started = Instant::now();
        let (queries, answers) = sources.evidence(&records, &searched.hits, &opts.baseline)?;
        out.push(PartEvidence {
            part: label.to_string(),
            queries,
            residue: answers.residue,
            hmm: answers.hmm,
            train_sizes: sources.train_sizes.clone(),
            sources_seconds,
            search_seconds: searched.embed_seconds + searched.search_seconds,
            evidence_seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok(out)
}

/// The tuning split named in `opts`, under `split`'s root; a clear error when it is not there.
pub fn open_tune_split(split: &Split, opts: &FusionOptions) -> Result<Split, FusionRunError> {
    let tune_dir = split.root().join(&opts.tune_split);
    if !tune_dir.is_dir() {
        return Err(FusionRunError::NoTuneSplit(tune_dir));
    }
    Ok(Split::open(split.root(), &opts.tune_split)?)
}

/// A learned model fit on the tune part's evidence, with the out-of-fold
/// predictions of that part (what the abstention cuts are fit on).
pub struct TuneFit {
    pub model: FusionModel,
    pub out_of_fold: Vec<FusedPrediction>,
    pub seconds: f64,
}

/// Fits `set` on `tune` and cross-fits it for out-of-fold answers.
pub fn fit_on_tune(set: FeatureSet, tune: &PartEvidence, opts: &FusionOptions) -> Result<TuneFit, FusionRunError> {
    let started = Instant::now();
    let model = FusionModel::fit(set, &tune.queries, opts.l2)?;
    let out_of_fold = cross_fit(set, &tune.queries, opts.l2, opts.folds)?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        "{}: fit on {} tune queries in {seconds:.1} s",
        set.name(),
        model.fit_queries
    );
    Ok(TuneFit {
        model,
        out_of_fold,
        seconds,
    })
}

/// Coverage at one target precision, with the cut fit on tune.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoverageAt {
    pub target_precision: f64,
    /// Confidence cut fit on tune (`None`: tune never reached the target).
    pub cut: Option<f64>,
    /// Share of the part's queries answered at the cut, and the precision of those answers.
    pub coverage: f64,
    pub precision: f64,
}

/// One method on one part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodResult {
    pub method: String,
    pub part: String,
    pub n: usize,
    pub errors: usize,
    pub error_rate: f64,
    pub by_family_size: Vec<SizeBinError>,
    pub coverage: Vec<CoverageAt>,
}

/// Everything `evaluate` reports about the learned classifiers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FusionReport {
    pub split: String,
    pub tune_split: String,
    /// Per method and part, in the order hmm, residue-knn, residue-knn-tuned, hybrid.
    pub results: Vec<MethodResult>,
    pub models: Vec<FusionModel>,
    /// Report rows of the evaluated test part (for the evaluate report).
    pub test_rows: Vec<ReportRow>,
    /// Every part's per-query evidence (written beside the report as JSON lines).
    #[serde(skip)]
    pub evidence: Vec<(String, Vec<QueryEvidence>)>,
    /// The learned classifiers' answers on the test part, per method (the predictions CSVs).
    #[serde(skip)]
    pub test_predictions: Vec<(String, Vec<crate::report::PredictionRow>)>,
}

/// Fits both learned classifiers on the tune split and measures every method on tune, dev and test.
pub fn run(split: &Split, embedder: &dyn Embedder, opts: &FusionOptions) -> Result<FusionReport, FusionRunError> {
    let tune_split = open_tune_split(split, opts)?;
    let mut parts = gather(&tune_split, &[("test", "tune")], embedder, opts)?;
    parts.extend(gather(split, &[("dev", "dev"), ("test", "test")], embedder, opts)?);
    let (tune, test) = (&parts[0], &parts[2]);
    // Seconds of a row: a learned classifier trains on the tune evidence (its sources,
    // search and scoring), its own fit and the sources it annotates with; it predicts
    // with the test part's search and evidence. The sources' rows train on nothing here.
    let predict_seconds = test.search_seconds + test.evidence_seconds;
    let learned_train_seconds = |fit_seconds: f64| {
        tune.sources_seconds + tune.search_seconds + tune.evidence_seconds + fit_seconds + test.sources_seconds
    };
    let mut row_seconds: BTreeMap<String, (f64, f64)> = BTreeMap::new();

    let mut results = Vec::new();
    let mut models = Vec::new();
    // Per method: each part's answers (family, confidence).
    let mut methods: Vec<(String, Vec<Vec<Answer>>)> = vec![
        ("hmm".into(), parts.iter().map(|p| p.hmm.clone()).collect()),
        (
            crate::residue::classifier::NAME.into(),
            parts.iter().map(|p| p.residue.clone()).collect(),
        ),
    ];
    for set in [FeatureSet::Residue, FeatureSet::Hybrid] {
        let TuneFit {
            model,
            out_of_fold,
            seconds,
        } = fit_on_tune(set, tune, opts)?;
        row_seconds.insert(
            set.name().to_string(),
            (learned_train_seconds(seconds), predict_seconds),
        );
        let as_answers = |p: Vec<FusedPrediction>| p.into_iter().map(|p| (p.family, p.confidence)).collect();
        let mut answers = vec![as_answers(out_of_fold)];
        for p in &parts[1..] {
            answers.push(as_answers(p.queries.iter().map(|q| model.predict(q)).collect()));
        }
        methods.push((set.name().to_string(), answers));
        models.push(model);
    }

    let mut test_rows = Vec::new();
    let mut test_predictions = Vec::new();
    // Family ids by accession, for the predictions tables.
    let family_ids: BTreeMap<String, String> = split
        .records("train")?
        .iter()
        .chain(split.records("test")?.iter())
        .filter_map(|r| r.family.as_ref())
        .map(|f| (f.accession.clone(), f.family_id.clone()))
        .collect();
    for (method, answers) in &methods {
        let correct = |p: &PartEvidence, a: &[Answer]| -> Vec<(f64, bool)> {
            p.queries
                .iter()
                .zip(a)
                .map(|(q, (family, confidence))| (*confidence, family.is_some() && *family == q.truth))
                .collect()
        };
        let tune_answers = correct(tune, &answers[0]);
        let cuts: Vec<(f64, Option<f64>)> = opts
            .precisions
            .iter()
            .map(|&target| (target, precision_cut(&tune_answers, target)))
            .collect();
        for (p, a) in parts.iter().zip(answers) {
            let truth: Vec<String> = p.queries.iter().map(|q| q.truth.clone().unwrap_or_default()).collect();
            let predicted: Vec<Option<String>> = a.iter().map(|(f, _)| f.clone()).collect();
            let (train_seconds, predict_seconds) = row_seconds.get(method).copied().unwrap_or((0.0, predict_seconds));
            let row = ReportRow::scored(
                &method_embedding(method, &embedder.spec().name),
                method,
                &truth,
                &predicted,
                &p.train_sizes,
                train_seconds,
                predict_seconds,
            );
            let scored = correct(p, a);
            let coverage = cuts
                .iter()
                .map(|&(target, cut)| {
                    let (coverage, precision) = cut.map_or((0.0, 0.0), |c| coverage_at(&scored, c));
                    CoverageAt {
                        target_precision: target,
                        cut,
                        coverage,
                        precision,
                    }
                })
                .collect();
            results.push(MethodResult {
                method: method.clone(),
                part: p.part.clone(),
                n: row.n,
                errors: row.errors,
                error_rate: row.error_rate,
                by_family_size: row.by_family_size.clone(),
                coverage,
            });
            if p.part == "test" && (method == super::RESIDUE_TUNED || method == super::HYBRID) {
                test_rows.push(row);
                let rows = p
                    .queries
                    .iter()
                    .zip(a)
                    .map(|(q, (family, confidence))| {
                        let truth = q.truth.clone().unwrap_or_default();
                        let predicted = family.clone().unwrap_or_default();
                        crate::report::PredictionRow {
                            id: q.id.clone(),
                            true_family: family_ids.get(&truth).cloned().unwrap_or_default(),
                            true_accession: truth,
                            predicted: family_ids.get(&predicted).cloned().unwrap_or_default(),
                            predicted_accession: predicted,
                            score: *confidence as f32,
                            nearest_id: String::new(),
                            nearest_distance: None,
                        }
                    })
                    .collect();
                test_predictions.push((method.clone(), rows));
            }
        }
    }
    Ok(FusionReport {
        split: split.name().to_string(),
        tune_split: opts.tune_split.clone(),
        results,
        models,
        test_rows,
        evidence: parts.into_iter().map(|p| (p.part, p.queries)).collect(),
        test_predictions,
    })
}

/// The embedding column of a method's report row (`<embedder>+hmm` for the hybrid).
fn method_embedding(method: &str, embedder: &str) -> String {
    match method {
        "hmm" => "none".to_string(),
        super::HYBRID => format!("{embedder}+hmm"),
        _ => embedder.to_string(),
    }
}

impl FusionReport {
    fn result(&self, method: &str, part: &str) -> Option<&MethodResult> {
        self.results.iter().find(|r| r.method == method && r.part == part)
    }

    fn methods(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for r in &self.results {
            if !seen.contains(&r.method.as_str()) {
                seen.push(&r.method);
            }
        }
        seen
    }

    /// The report as Markdown: errors on tune / dev / test, errors by
    /// training-family size, and the calibration table.
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let parts = ["tune", "dev", "test"];
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Learned classifiers on {} (fit on {}/test)\n\n\
             `tune` is out-of-fold for the learned rows (5 folds by true family); the HMM and \
             `residue-knn` rows are their fixed recipes. Errors (error rate) and the ratio to the HMM's errors on the same part.\n",
            self.split, self.tune_split
        );
        let _ = writeln!(s, "| method | tune | dev | test |\n|---|---:|---:|---:|");
        for m in self.methods() {
            let _ = write!(s, "| {m} |");
            for part in parts {
                match (self.result(m, part), self.result("hmm", part)) {
                    (Some(r), Some(h)) => {
                        let _ = write!(
                            s,
                            " {} / {} ({:.2}%, {:.2}x) |",
                            r.errors,
                            r.n,
                            100.0 * r.error_rate,
                            r.errors as f64 / h.errors.max(1) as f64
                        );
                    }
                    _ => s.push_str(" – |"),
                }
            }
            s.push('\n');
        }
        for part in ["tune", "test"] {
            let bins: Vec<String> = self
                .result("hmm", part)
                .map(|r| {
                    r.by_family_size
                        .iter()
                        .filter(|b| b.n > 0)
                        .map(|b| b.bin.clone())
                        .collect()
                })
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "\n## Errors by training-family size ({part})\n\n| method | {} |\n|---|{}",
                bins.iter()
                    .map(|b| {
                        let n = self
                            .result("hmm", part)
                            .and_then(|r| r.by_family_size.iter().find(|x| &x.bin == b))
                            .map_or(0, |x| x.n);
                        format!("{b} (n={n})")
                    })
                    .collect::<Vec<_>>()
                    .join(" | "),
                "---:|".repeat(bins.len())
            );
            for m in self.methods() {
                let Some(r) = self.result(m, part) else { continue };
                let cells: Vec<String> = bins
                    .iter()
                    .map(|b| {
                        r.by_family_size
                            .iter()
                            .find(|x| &x.bin == b)
                            .map_or("–".into(), |x| format!("{} ({:.1}%)", x.errors, 100.0 * x.error_rate))
                    })
                    .collect();
                let _ = writeln!(s, "| {m} | {} |", cells.join(" | "));
            }
        }
        let _ = writeln!(
            s,
            "\n## Calibration: coverage at a target precision, cut fit on tune\n\n\
             Confidence: HMM -log10 E-value; residue-knn its score; learned rows their probability. \
             Coverage = share of queries answered at the cut; precision = share of those answers right.\n\n\
             | method | target | cut | tune coverage / precision | dev coverage / precision | test coverage / precision |\n|---|---:|---:|---:|---:|---:|"
        );
        for m in self.methods() {
            let Some(tune) = self.result(m, "tune") else { continue };
            for (i, c) in tune.coverage.iter().enumerate() {
                let cell = |part: &str| {
                    self.result(m, part)
                        .and_then(|r| r.coverage.get(i))
                        .map_or("–".into(), |c| format!("{:.3} / {:.3}", c.coverage, c.precision))
                };
                let _ = writeln!(
                    s,
                    "| {m} | {:.2} | {} | {} | {} | {} |",
                    c.target_precision,
                    c.cut.map_or("none".into(), |v| format!("{v:.3}")),
                    cell("tune"),
                    cell("dev"),
                    cell("test")
                );
            }
        }
        let _ = writeln!(
            s,
            "\nClan confusions are not counted: no packaged source of Pfam clan membership is available to protfam here \
             (the bundled HMMs carry none)."
        );
        s
    }
}
