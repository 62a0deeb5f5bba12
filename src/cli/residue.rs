//! `protfam residue`: build the per-residue store, evaluate `residue-knn` on a
//! split, tune its scoring on the dev part, and measure the HNSW index's
//! recall against exact search. [`ResidueKnnArgs`] holds the classifier's
//! flags, shared with `train` / `evaluate` / `annotate` / `compare`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::embedder::Embedder;
use crate::residue::eval::{self, TuneGrid};
use crate::residue::search::{exact_top_k, recall_at_k, ApproxIndex, ApproxOptions, SearchOptions};
use crate::residue::{Aggregate, IndexKind, ResidueKnn, ResidueKnnParams, ScoreParams};

/// Flags of the `residue-knn` classifier (defaults: the dev-tuned settings).
#[derive(Debug, Clone, clap::Args)]
pub struct ResidueKnnArgs {
    /// Keep every N-th training residue in the store.
    #[arg(long)]
    pub residue_stride: Option<usize>,
    /// Search every N-th query residue (default 1, or --residue-stride when that is given).
    #[arg(long)]
    pub residue_query_stride: Option<usize>,
    /// Nearest training residues per query residue that vote.
    #[arg(long)]
    pub residue_top_k: Option<usize>,
    /// Ignore hits below this cosine similarity.
    #[arg(long)]
    pub min_similarity: Option<f32>,
    /// Strength of the diagonal-consistency bonus (0 = plain similarity vote).
    #[arg(long)]
    pub diagonal_weight: Option<f32>,
    /// Offsets (query pos - target pos) within this many residues agree.
    #[arg(long)]
    pub diagonal_band: Option<u32>,
    /// Agreeing hits beyond this many add nothing more.
    #[arg(long)]
    pub diagonal_cap: Option<u32>,
    /// Pool votes per family or per best training sequence (family|sequence).
    #[arg(long)]
    pub residue_aggregate: Option<Aggregate>,
    /// Training sequences per query aligned to it in the second stage (0 = vote scores only).
    #[arg(long)]
    pub align_candidates: Option<usize>,
    /// Alignment match score: cosine similarity minus this.
    #[arg(long)]
    pub align_shift: Option<f32>,
    /// Alignment cost of the first residue of a gap.
    #[arg(long)]
    pub align_gap_open: Option<f32>,
    /// Alignment cost of each further residue of a gap.
    #[arg(long)]
    pub align_gap_extend: Option<f32>,
    /// Weight of the alignment score beside the vote score.
    #[arg(long)]
    pub align_weight: Option<f32>,
    /// Predict no family when the best family score (share of the query explained) is below this.
    #[arg(long)]
    pub residue_min_score: Option<f32>,
    /// Exact blocked search or approximate HNSW (exact|hnsw).
    #[arg(long)]
    pub residue_index: Option<IndexKind>,
    /// The simple vote: stride 2 both sides, top-1, no diagonal term (other flags still apply on top).
    #[arg(long)]
    pub simple_vote: bool,
    /// Root directory of residue stores.
    #[arg(long, default_value = "data/residue")]
    pub residue_store: PathBuf,
    /// Embedding models the residue classifiers of `evaluate` / `compare` run
    /// with, comma separated (default: the same as --models).
    #[arg(long, value_delimiter = ',')]
    pub residue_models: Vec<String>,
}

impl ResidueKnnArgs {
    /// Validated classifier parameters.
    pub fn params(&self) -> anyhow::Result<ResidueKnnParams> {
        let mut p = if self.simple_vote {
            ResidueKnnParams::simple_vote()
        } else {
            ResidueKnnParams::default()
        };
        if let Some(s) = self.residue_stride {
            p.stride = s;
            p.query_stride = s;
        }
        if let Some(s) = self.residue_query_stride {
            p.query_stride = s;
        }
        if let Some(k) = self.residue_top_k {
            p.score.top_k = k;
            p.search_k = k;
        }
        if let Some(v) = self.min_similarity {
            p.score.min_similarity = v;
        }
        if let Some(v) = self.diagonal_weight {
            p.score.diagonal_weight = v;
        }
        if let Some(v) = self.diagonal_band {
            p.score.diagonal_band = v;
        }
        if let Some(v) = self.diagonal_cap {
            p.score.diagonal_cap = v;
        }
        if let Some(v) = self.residue_aggregate {
            p.score.aggregate = v;
        }
        if let Some(v) = self.align_candidates {
            p.score.align.candidates = v;
        }
        if let Some(v) = self.align_shift {
            p.score.align.shift = v;
        }
        if let Some(v) = self.align_gap_open {
            p.score.align.gap_open = v;
        }
        if let Some(v) = self.align_gap_extend {
            p.score.align.gap_extend = v;
        }
        if let Some(v) = self.align_weight {
            p.score.align.weight = v;
        }
        if let Some(v) = self.residue_min_score {
            p.min_score = v;
        }
        if let Some(v) = self.residue_index {
            p.index = v;
        }
        p.validate()?;
        Ok(p)
    }
}

/// Classifier names that `train`, `evaluate` and `compare` hand to residue-level
/// retrieval instead of the pooled-vector classifiers: `residue-knn` (the
/// dev-tuned defaults, changed by the `--residue-*` flags) and
/// `residue-knn-simple` (the simple vote, the same flags on top).
pub const RESIDUE_CLASSIFIERS: [&str; 2] = [crate::residue::classifier::NAME, "residue-knn-simple"];

pub fn is_residue_classifier(name: &str) -> bool {
    RESIDUE_CLASSIFIERS.contains(&name.trim())
}

impl ResidueKnnArgs {
    /// The models residue classifiers run with: `--residue-models`, else `models`.
    pub fn models<'a>(&'a self, models: &'a [String]) -> &'a [String] {
        if self.residue_models.is_empty() {
            models
        } else {
            &self.residue_models
        }
    }

    /// Parameters for one of [`RESIDUE_CLASSIFIERS`].
    pub fn params_for(&self, name: &str) -> anyhow::Result<ResidueKnnParams> {
        let mut args = self.clone();
        args.simple_vote |= name.trim() == RESIDUE_CLASSIFIERS[1];
        args.params()
    }
}

/// Evaluates `residue-knn` under every setting of `params` on the test part of
/// `<root>/<split>` (store built or reused under `store_root`; settings with
/// the same strides share one search), and writes what `evaluate` writes for
/// every pair: the predictions CSV under `<report_dir>/<split>/predictions/`,
/// plus the residue report (search throughput, memory, store size) as
/// `residue/<embedding>__<label>.json`.
pub fn evaluate_to_reports(
    embedder: &dyn Embedder,
    root: &Path,
    split: &str,
    params: &[ResidueKnnParams],
    store_root: &Path,
    report_dir: &Path,
) -> anyhow::Result<Vec<eval::ResidueEvalReport>> {
    let labels: Vec<String> = params.iter().map(ResidueKnnParams::label).collect();
    eprintln!("evaluating {} + {} ...", embedder.spec().name, labels.join(", "));
    let reports = eval::evaluate_split(embedder, root, split, "test", params, store_root).with_context(|| {
        format!(
            "{} + {} on {}",
            embedder.spec().name,
            labels.join(", "),
            root.join(split).display()
        )
    })?;
    let paths = crate::evaluate::ReportPaths::new(report_dir, split);
    for report in &reports {
        let (embedding, label) = (&report.row.embedding, &report.row.classifier);
        crate::evaluate::write_predictions(&paths.predictions(embedding, label), &report.predictions)?;
        let path = paths
            .dir
            .join("residue")
            .join(format!("{}.json", crate::evaluate::pair_stem(embedding, label)));
        std::fs::create_dir_all(path.parent().expect("has a parent")).with_context(|| path.display().to_string())?;
        crate::cache::atomic::write_atomic(&path, |w| {
            std::io::Write::write_all(w, &serde_json::to_vec_pretty(report).expect("report serialises"))
        })
        .with_context(|| path.display().to_string())?;
        print_search_line(report);
    }
    Ok(reports)
}

/// Calibrates the abstention threshold of a `residue-knn` on the dev part of
/// `<root>/<split>`, as `annotate` does for the pooled-vector classifiers:
/// on the family score or the cosine distance of the best residue hit.
/// Dev queries with no family at all (no searchable residue) cannot be
/// thresholded and are left out.
pub fn calibrate_on_dev(
    knn: &ResidueKnn,
    embedder: &dyn Embedder,
    root: &Path,
    split: &str,
    min_precision: f64,
) -> anyhow::Result<crate::annotate::Calibration> {
    let dev = eval::read_part(root, split, "dev")?;
    let predictions = knn
        .predict(embedder, &dev)
        .with_context(|| format!("predicting the dev part of {}", root.join(split).display()))?;
    let (ranked, truth): (Vec<_>, Vec<_>) = dev
        .iter()
        .zip(&predictions)
        .filter_map(|(record, p)| {
            let truth = record
                .family
                .as_ref()
                .and_then(|f| knn.vocab.index_of_accession(&f.accession));
            p.to_ranked().map(|p| (p, truth))
        })
        .unzip();
    let source = root.join(split).join("dev").display().to_string();
    let mut calibration = crate::annotate::calibrate(&ranked, &truth, min_precision, &source)?;
    calibration.training_digest = knn.store.manifest.plan.data_digest.clone();
    Ok(calibration)
}

/// `protfam calibrate` for a saved `residue-knn`.
pub fn run_calibrate(args: super::annotate::CalibrateArgs) -> anyhow::Result<ExitCode> {
    let knn = ResidueKnn::load(&args.classifier)
        .with_context(|| format!("loading classifier {}", args.classifier.display()))?;
    let (root, split) = args.dev_split(super::annotate::split_of_source(&knn.source))?;
    let embedder = super::annotate::load_embedder_for(knn.store.spec(), &args.common)?;
    let calibration = calibrate_on_dev(&knn, embedder.as_ref(), &root, &split, args.min_precision)?;
    let path = calibration.save(&args.classifier)?;
    eprintln!("calibration: {}", calibration.describe());
    eprintln!("saved to {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `protfam train --classifier residue-knn[-simple]`: builds (or reuses) the
/// training store, saves the classifier (a reference to the store, its
/// settings and labels) into `out`, and unless `min_precision` is `None`
/// calibrates its abstention threshold on dev.
pub fn train(
    name: &str,
    model: &str,
    data: &super::train::DataArgs,
    knn_args: &ResidueKnnArgs,
    out: &Path,
    min_precision: Option<f64>,
) -> anyhow::Result<()> {
    let params = knn_args.params_for(name)?;
    let opts = crate::models::LoadOptions {
        device: data.device(),
        models_dir: data.models_dir.clone(),
        ..Default::default()
    };
    let embedder = crate::models::load(model, &opts).with_context(|| format!("cannot load model {model:?}"))?;
    let train = eval::read_part(&data.data, &data.split, "train")?;
    let vocab = crate::io::vocab::LabelVocab::from_families(train.iter().filter_map(|r| r.family.as_ref()));
    let started = Instant::now();
    let mut knn = params.fit(embedder.as_ref(), &train, &vocab, &knn_args.residue_store)?;
    knn.source = format!("{}/train", data.source_label());
    knn.save(out).with_context(|| format!("saving to {}", out.display()))?;
    eprintln!(
        "trained {} on {} {} training sequences ({} families, store {} with {} residue rows) in {:.1} s; saved to {}",
        params.label(),
        train.len(),
        embedder.spec().name,
        knn.vocab.len(),
        knn.store.dir.display(),
        knn.store.n_rows(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    if let Some(target) = min_precision {
        let calibration = calibrate_on_dev(&knn, embedder.as_ref(), &data.data, &data.split, target)
            .context("calibrating the abstention threshold on dev (pass --no-calibrate to skip)")?;
        calibration.save(out)?;
        eprintln!("abstention calibration: {}", calibration.describe());
    }
    Ok(())
}

/// Where a split lives and which embedder to use.
#[derive(Debug, Clone, clap::Args)]
pub struct SplitArgs {
    /// Embedding model (registry name or model directory).
    #[arg(long, default_value = "near")]
    pub model: String,
    /// Dataset root (Pfam split layout); defaults to $PROTFAM_DATA or the bundled data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value = "clustered_split")]
    pub split: String,
    /// Directory holding registry models.
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
}

impl SplitArgs {
    pub fn data_root(&self) -> PathBuf {
        if let Some(d) = &self.data {
            return d.clone();
        }
        if let Ok(d) = std::env::var("PROTFAM_DATA") {
            return PathBuf::from(d);
        }
        let sibling = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/pfam35-uniprot20k");
        if sibling.exists() {
            sibling
        } else {
            PathBuf::from("/work/shared/data/pfam35-uniprot20k")
        }
    }

    pub fn load_embedder(&self) -> anyhow::Result<Box<dyn Embedder>> {
        let opts = crate::models::LoadOptions {
            models_dir: self.models_dir.clone(),
            ..Default::default()
        };
        // NEAR loads from its directory directly (`models/near` or a path holding weights.npz),
        // whether or not the registry lists it.
        let near_dir = if self.model == "near" {
            self.models_dir.join("near")
        } else {
            PathBuf::from(&self.model)
        };
        if near_dir.join(crate::models::near::WEIGHTS_FILE).is_file() {
            let name = if self.model == "near" {
                "near"
            } else {
                self.model.as_str()
            };
            return crate::models::near::load_embedder(&near_dir, name, &opts)
                .with_context(|| format!("loading NEAR from {}", near_dir.display()));
        }
        crate::models::load(&self.model, &opts).with_context(|| format!("loading model {}", self.model))
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ResidueCommand {
    /// Build (or finish) the per-residue store of one part of a split.
    Build {
        #[command(flatten)]
        split: SplitArgs,
        #[arg(long, default_value = "train")]
        part: String,
        #[command(flatten)]
        knn: ResidueKnnArgs,
        /// Build only store shards K mod N (one task of a job array; no manifest). Finish with --merge.
        #[arg(long, value_name = "K/N", conflicts_with = "merge")]
        shard: Option<crate::pipeline::WorkShard>,
        /// After the --shard tasks: check every store shard is there (embeds nothing) and write the manifest.
        #[arg(long)]
        merge: bool,
    },
    /// Train on `train`, predict `test` (or --part), print and save the report.
    Evaluate {
        #[command(flatten)]
        split: SplitArgs,
        #[arg(long, default_value = "test")]
        part: String,
        #[command(flatten)]
        knn: ResidueKnnArgs,
        /// Only the first N query sequences (quick checks).
        #[arg(long)]
        limit: Option<usize>,
        /// Where the JSON report goes.
        #[arg(long, default_value = "data/reports")]
        report_dir: PathBuf,
        /// Save the fitted classifier here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Grid-search the scoring parameters on the dev part (never test); prints the best settings.
    Tune {
        #[command(flatten)]
        split: SplitArgs,
        #[command(flatten)]
        knn: ResidueKnnArgs,
        /// Hits searched per residue (the largest top-k tried).
        #[arg(long, default_value_t = 10)]
        search_k: usize,
        /// JSON file for all tried settings.
        #[arg(long, default_value = "data/reports/residue-tuning.json")]
        out: PathBuf,
        /// Keep the searched dev hits in this file and reuse them when it matches (same store,
        /// dev part, strides and --search-k), so re-tuning skips the search.
        #[arg(long)]
        hits_cache: Option<PathBuf>,
        /// Only the alignment grid, on top of the vote settings given by the classifier flags.
        #[arg(long)]
        align_only: bool,
        /// Alignment grid: candidates per query.
        #[arg(long, value_delimiter = ',')]
        grid_align_candidates: Vec<usize>,
        /// Alignment grid: similarity shifts.
        #[arg(long, value_delimiter = ',')]
        grid_align_shift: Vec<f32>,
        /// Alignment grid: gap open costs.
        #[arg(long, value_delimiter = ',')]
        grid_align_gap_open: Vec<f32>,
        /// Alignment grid: gap extension costs.
        #[arg(long, value_delimiter = ',')]
        grid_align_gap_extend: Vec<f32>,
        /// Alignment grid: weights of the alignment score.
        #[arg(long, value_delimiter = ',')]
        grid_align_weight: Vec<f32>,
    },
    /// Recall@k of the HNSW index against exact search on a sample of test residues.
    Recall {
        #[command(flatten)]
        split: SplitArgs,
        #[command(flatten)]
        knn: ResidueKnnArgs,
        /// Query sequences sampled from the test part.
        #[arg(long, default_value_t = 100)]
        queries: usize,
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// HNSW ef (construction and search), comma separated.
        #[arg(long, default_value = "100", value_delimiter = ',')]
        ef: Vec<usize>,
    },
}

/// The embedder, the training records, the fitted classifier and the fit time in seconds.
type Fitted = (Box<dyn Embedder>, Vec<crate::io::Record>, ResidueKnn, f64);

fn fit(split: &SplitArgs, knn: &ResidueKnnArgs, params: ResidueKnnParams) -> anyhow::Result<Fitted> {
    let embedder = split.load_embedder()?;
    let root = split.data_root();
    let train = eval::read_part(&root, &split.split, "train")?;
    let vocab = crate::io::vocab::LabelVocab::from_families(train.iter().filter_map(|r| r.family.as_ref()));
    let started = Instant::now();
    let model = params.fit(embedder.as_ref(), &train, &vocab, &knn.residue_store)?;
    Ok((embedder, train, model, started.elapsed().as_secs_f64()))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs a `protfam residue` subcommand.
pub fn run(cmd: ResidueCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ResidueCommand::Build {
            split,
            part,
            knn,
            shard,
            merge,
        } => {
            let params = knn.params()?;
            let embedder = split.load_embedder()?;
            let records = eval::read_part(&split.data_root(), &split.split, &part)?;
            let config = crate::residue::StoreConfig {
                stride: params.stride,
                shard_sequences: params.shard_sequences,
                batch_tokens: None,
            };
            let root = &knn.residue_store;
            if let Some(shard) = shard {
                let stats = crate::residue::ResidueStore::build_part(root, embedder.as_ref(), &records, &config, shard)?;
                println!(
                    "task {shard}: {} store shards reused, {} written, {} residues embedded in {:.1}s; finish with `residue build --merge`",
                    stats.shards_reused, stats.shards_written, stats.residues_embedded, stats.seconds
                );
                return Ok(ExitCode::SUCCESS);
            }
            let (store, stats) = if merge {
                crate::residue::ResidueStore::merge_parts(root, embedder.as_ref(), &records, &config)?
            } else {
                crate::residue::ResidueStore::build_or_open(root, embedder.as_ref(), &records, &config)?
            };
            println!(
                "{}: {} sequences, {} rows x {} (f16, {:.1} MiB); {} shards reused, {} written, {} residues embedded in {:.1}s ({:.0} residues/s); peak RSS {:.0} MiB",
                store.dir.display(),
                store.sequences.len(),
                store.n_rows(),
                store.dim(),
                mib(store.disk_bytes()),
                stats.shards_reused,
                stats.shards_written,
                stats.residues_embedded,
                stats.seconds,
                stats.residues_embedded as f64 / stats.seconds.max(1e-9),
                mib(eval::peak_rss_bytes())
            );
        }
        ResidueCommand::Evaluate {
            split,
            part,
            knn,
            limit,
            report_dir,
            out,
        } => {
            let params = knn.params()?;
            let (embedder, train, model, train_seconds) = fit(&split, &knn, params)?;
            let mut test = eval::read_part(&split.data_root(), &split.split, &part)?;
            if let Some(n) = limit {
                test.truncate(n);
            }
            let report = eval::evaluate(&model, embedder.as_ref(), &train, &test, train_seconds)?;
            print_report(&report, &split.split, &part);
            std::fs::create_dir_all(&report_dir).with_context(|| report_dir.display().to_string())?;
            let path = report_dir.join(format!(
                "residue-knn-{}-{}-{}.json",
                embedder.spec().name,
                split.split,
                part
            ));
            std::fs::write(&path, serde_json::to_vec_pretty(&report)?).with_context(|| path.display().to_string())?;
            eprintln!("report written to {}", path.display());
            if let Some(dir) = out {
                model.save(&dir)?;
            }
        }
        ResidueCommand::Tune {
            split,
            knn,
            search_k,
            out,
            hits_cache,
            align_only,
            grid_align_candidates,
            grid_align_shift,
            grid_align_gap_open,
            grid_align_gap_extend,
            grid_align_weight,
        } => {
            let mut params = knn.params()?;
            params.search_k = search_k;
            params.score.top_k = params.score.top_k.min(search_k);
            let (embedder, _train, model, _) = fit(&split, &knn, params.clone())?;
            let dev = eval::read_part(&split.data_root(), &split.split, "dev")?;
            let hits_key = format!(
                "{}-q{}-k{}-{}",
                model.store.manifest.plan.key(),
                params.query_stride,
                search_k,
                crate::residue::store::data_digest(&dev)
            );
            let cached = match &hits_cache {
                Some(path) => crate::residue::classifier::QueryHits::load(path, &hits_key)?,
                None => None,
            };
            let hits = match cached {
                Some(hits) => {
                    eprintln!(
                        "dev hits reused from {}",
                        hits_cache.as_ref().map_or(String::new(), |p| p.display().to_string())
                    );
                    hits
                }
                None => {
                    let started = Instant::now();
                    let hits = model.search_records(embedder.as_ref(), &dev)?;
                    eprintln!("dev searched in {:.1}s", started.elapsed().as_secs_f64());
                    if let Some(path) = &hits_cache {
                        hits.save(path, &hits_key)?;
                    }
                    hits
                }
            };
            let mut grid = TuneGrid::default();
            replace_unless_empty(&mut grid.align_candidates, grid_align_candidates);
            replace_unless_empty(&mut grid.align_shift, grid_align_shift);
            replace_unless_empty(&mut grid.align_gap_open, grid_align_gap_open);
            replace_unless_empty(&mut grid.align_gap_extend, grid_align_gap_extend);
            replace_unless_empty(&mut grid.align_weight, grid_align_weight);
            let started = Instant::now();
            let results = if align_only {
                eval::tune_settings(&model, &dev, &hits, grid.align_settings(&params.score))
            } else {
                eval::tune(&model, &dev, &hits, &grid)
            };
            eprintln!("scored in {:.1}s", started.elapsed().as_secs_f64());
            println!("| top_k | min_sim | aggregate | diag_weight | band | cap | align (cand/shift/open/extend/weight) | dev errors | dev error % |");
            println!("|---|---|---|---|---|---|---|---|---|");
            let simple = results
                .iter()
                .find(|r| r.params == ScoreParams::simple_vote() || is_simple(&r.params));
            for r in results.iter().take(15).chain(simple) {
                let p = &r.params;
                let align = if p.align.is_on() {
                    format!(
                        "{}/{}/{}/{}/{}",
                        p.align.candidates, p.align.shift, p.align.gap_open, p.align.gap_extend, p.align.weight
                    )
                } else {
                    "off".to_string()
                };
                println!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
                    p.top_k,
                    p.min_similarity,
                    p.aggregate,
                    p.diagonal_weight,
                    p.diagonal_band,
                    p.diagonal_cap,
                    align,
                    r.errors,
                    100.0 * r.error_rate
                );
            }
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&out, serde_json::to_vec_pretty(&results)?).with_context(|| out.display().to_string())?;
            eprintln!(
                "{} settings on {} dev sequences; all results in {}",
                results.len(),
                dev.len(),
                out.display()
            );
        }
        ResidueCommand::Recall {
            split,
            knn,
            queries,
            k,
            ef,
        } => {
            let params = knn.params()?;
            let (embedder, _train, model, _) = fit(&split, &knn, params.clone())?;
            let test = eval::read_part(&split.data_root(), &split.split, "test")?;
            // Every n-th test sequence: a fixed, spread-out sample.
            let step = (test.len() / queries.max(1)).max(1);
            let sample: Vec<_> = test.iter().step_by(step).take(queries).cloned().collect();
            let residues = crate::residue::classifier::QueryResidues::embed(
                embedder.as_ref(),
                &sample,
                params.query_stride,
                4096,
            )?;
            let store = &model.store;
            let started = Instant::now();
            let opts = SearchOptions {
                device: model.device.clone(),
                ..Default::default()
            };
            let exact = exact_top_k(
                &residues.data,
                store.dim(),
                store,
                k,
                &opts,
                &indicatif::ProgressBar::hidden(),
            )?;
            let exact_s = started.elapsed().as_secs_f64();
            println!(
                "exact: {} query residues x {} store rows in {:.2}s ({:.0} residues/s)",
                residues.n_rows(),
                store.n_rows(),
                exact_s,
                residues.n_rows() as f64 / exact_s
            );
            for &e in &ef {
                let started = Instant::now();
                let index = ApproxIndex::build(
                    store,
                    &ApproxOptions {
                        ef_construction: e,
                        ef_search: e,
                        seed: 42,
                    },
                );
                let build_s = started.elapsed().as_secs_f64();
                let started = Instant::now();
                let approx = index.top_k(&residues.data, k);
                let search_s = started.elapsed().as_secs_f64();
                println!(
                    "hnsw ef={e}: build {:.1}s, search {:.2}s ({:.0} residues/s), recall@1 {:.4}, recall@{k} {:.4}, index ~{:.0} MiB",
                    build_s,
                    search_s,
                    residues.n_rows() as f64 / search_s.max(1e-9),
                    recall_at_k(&exact, &approx, 1),
                    recall_at_k(&exact, &approx, k),
                    mib(index.memory_bytes() as u64)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A grid axis given on the command line replaces the default axis.
fn replace_unless_empty<T>(axis: &mut Vec<T>, given: Vec<T>) {
    if !given.is_empty() {
        *axis = given;
    }
}

fn is_simple(p: &ScoreParams) -> bool {
    p.top_k == 1
        && p.diagonal_weight == 0.0
        && p.aggregate == Aggregate::Family
        && p.min_similarity <= 0.0
        && !p.align.is_on()
}

/// The search figures the issue asks to see beside `hmmscan`'s time.
/// The search's size, speed and memory in one sentence.
fn search_summary(r: &eval::ResidueEvalReport) -> String {
    format!(
        "search: {} query residues of {} sequences vs {} store rows ({:.1} MiB f16 on disk, index {:.1} MiB) in {:.1}s = {:.0} residues/s; embedding {:.1}s; {:.1} sequences/s overall; peak RSS {:.0} MiB",
        r.query_residues,
        r.query_sequences,
        r.store_rows,
        mib(r.store_bytes),
        mib(r.index_bytes),
        r.search_seconds,
        r.residues_per_second,
        r.embed_seconds,
        r.sequences_per_second,
        mib(r.peak_rss_bytes)
    )
}

fn print_search_line(r: &eval::ResidueEvalReport) {
    eprintln!(
        "{} + {}: error {:.2}%; {}",
        r.row.embedding,
        r.row.classifier,
        100.0 * r.row.error_rate,
        search_summary(r)
    );
}

fn print_report(r: &eval::ResidueEvalReport, split: &str, part: &str) {
    let row = &r.row;
    println!("## residue-knn on {split}/{part} ({})", row.embedding);
    println!();
    println!("| method | embedding | error % | errors | precision | recall | F1 | train s | predict s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {:.2} | {}/{} | {:.4} | {:.4} | {:.4} | {:.1} | {:.1} |",
        row.classifier,
        row.embedding,
        100.0 * row.error_rate,
        row.errors,
        row.n,
        row.precision,
        row.recall,
        row.f1,
        row.train_seconds,
        row.predict_seconds
    );
    println!();
    println!("Error by training-family size:");
    println!();
    println!("| family size | n | errors | error % |");
    println!("|---|---|---|---|");
    for b in &row.by_family_size {
        println!("| {} | {} | {} | {:.2} |", b.bin, b.n, b.errors, 100.0 * b.error_rate);
    }
    println!();
    let p = &r.params;
    println!(
        "settings: stride {} / query stride {}, top-k {}, min similarity {}, diagonal weight {} band {} cap {}, aggregate {}, index {}; abstained {}",
        p.stride,
        p.query_stride,
        p.score.top_k,
        p.score.min_similarity,
        p.score.diagonal_weight,
        p.score.diagonal_band,
        p.score.diagonal_cap,
        p.score.aggregate,
        r.index,
        r.abstained
    );
    println!("{}", search_summary(r));
}
