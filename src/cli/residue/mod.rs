//! `protfam residue`: build the per-residue store, evaluate `residue-knn` on a
//! split, tune its scoring on the dev part, and measure the HNSW index's
//! recall against exact search. The classifier's own flags are in [`args`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use protfam::embedder::Embedder;
use protfam::residue::eval::{self, TuneGrid};
use protfam::residue::index::{Quantization, ResidueIndex};
use protfam::residue::ivf::IvfIndex;
use protfam::residue::search::{recall_at_k, ApproxIndex, ApproxOptions};
use protfam::residue::shortlist::{shortlisted_top_k, SequenceMeans, ShortlistParams};
use protfam::residue::{Aggregate, IndexKind, ResidueKnn, ResidueKnnParams, ResidueStore, ScoreParams};

use super::context::{DataArgs, ModelArgs};

pub mod args;
pub use args::ResidueKnnArgs;

/// Which split and which residue embedder a `residue` subcommand works on.
#[derive(Debug, Clone, clap::Args)]
pub struct ResidueTarget {
    /// Embedding model (registry name or model directory).
    #[arg(help_heading = "Model and device", short = 'm', long, default_value = "near")]
    pub model: String,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub models: ModelArgs,
}

impl ResidueTarget {
    pub fn load_embedder(&self) -> anyhow::Result<Box<dyn Embedder>> {
        protfam::models::load(&self.model, &self.models.load_options()?)
            .with_context(|| format!("cannot load model {:?}", self.model))
    }

    /// Every record of one part of the split.
    pub fn records(&self, part: &str) -> anyhow::Result<Vec<protfam::io::Record>> {
        Ok(self.data.open()?.records(part)?.as_ref().clone())
    }

    /// The first `limit` records of one part (all without a limit).
    pub fn records_up_to(&self, part: &str, limit: Option<usize>) -> anyhow::Result<Vec<protfam::io::Record>> {
        let mut records = self.records(part)?;
        if let Some(n) = limit {
            records.truncate(n);
        }
        Ok(records)
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ResidueCommand {
    /// Build (or finish) the per-residue store of one part of a split.
    Build {
        #[command(flatten)]
        split: ResidueTarget,
        #[arg(help_heading = "Data", long, default_value = "train")]
        part: String,
        #[command(flatten)]
        knn: ResidueKnnArgs,
        /// Build only store shards K mod N (one task of a job array; no manifest). Finish with --merge.
        #[arg(help_heading = "Job array", long, value_name = "K/N", conflicts_with = "merge")]
        shard: Option<protfam::pipeline::WorkShard>,
        /// After the --shard tasks: check every store shard is there (embeds nothing) and write the manifest.
        #[arg(help_heading = "Job array", long)]
        merge: bool,
        /// Input sequences per store shard: the unit of resumption and of a --shard task's work
        /// (a store started with another value keeps its own).
        #[arg(help_heading = "Residue store", long, value_name = "N", default_value_t = protfam::residue::StoreConfig::default().shard_sequences)]
        sequences_per_shard: usize,
    },
    /// Train on `train`, predict `test` (or --part), print and save the report (JSON) and the
    /// per-query predictions (CSV) beside it.
    Evaluate {
        #[command(flatten)]
        split: ResidueTarget,
        #[arg(help_heading = "Data", long, default_value = "test")]
        part: String,
        #[command(flatten)]
        knn: ResidueKnnArgs,
        /// Only the first N query sequences (quick checks).
        #[arg(help_heading = "Data", long)]
        limit: Option<usize>,
        /// Where the JSON report and the predictions CSV go.
        #[arg(
            help_heading = "Output",
            short = 'o',
            long = "output",
            alias = "report-dir",
            value_name = "DIR",
            default_value = "data/reports"
        )]
        report_dir: PathBuf,
        /// Save the fitted classifier here (a directory `protfam annotate` reads).
        #[arg(help_heading = "Output", long, alias = "out", value_name = "DIR")]
        save_classifier: Option<PathBuf>,
        /// Score the merged hits of the N tasks of `residue search --store-part K/N` (from
        /// --hits-dir) instead of searching.
        #[arg(help_heading = "Job array", long, value_name = "N")]
        store_parts: Option<usize>,
        /// Directory of the store-part hits (`residue search --hits-dir`).
        #[arg(help_heading = "Job array", long, default_value = "data/residue/parts")]
        hits_dir: PathBuf,
    },
    /// One task of a search split over the store (a job array, e.g. Slurm `--array=0-3` with
    /// `--store-part $SLURM_ARRAY_TASK_ID/4`): searches --part against store shards K mod N only
    /// (exactly, or with `--residue-index ivf` through an IVF index of those rows alone) and saves
    /// its hits; `residue evaluate --store-parts N` merges and scores them (for exact search,
    /// equal to one search over the whole store).
    Search {
        #[command(flatten)]
        split: ResidueTarget,
        #[arg(help_heading = "Data", long, default_value = "test")]
        part: String,
        #[command(flatten)]
        knn: ResidueKnnArgs,
        /// This task's part of the store's shards.
        #[arg(help_heading = "Job array", long, value_name = "K/N")]
        store_part: protfam::pipeline::WorkShard,
        /// Only the first N query sequences (quick checks; give the same to evaluate).
        #[arg(help_heading = "Data", long)]
        limit: Option<usize>,
        /// Where the part's hits go (`hits-K-of-N.safetensors`).
        #[arg(help_heading = "Job array", long, default_value = "data/residue/parts")]
        hits_dir: PathBuf,
    },
    /// Grid-search the scoring parameters on the dev part (never test); prints the best settings.
    Tune {
        #[command(flatten)]
        split: ResidueTarget,
        #[command(flatten)]
        knn: ResidueKnnArgs,
        /// Hits searched per residue (the largest top-k tried).
        #[arg(help_heading = "Grid", long, default_value_t = 10)]
        search_k: usize,
        /// JSON file for all tried settings.
        #[arg(
            help_heading = "Output",
            short = 'o',
            long = "output",
            alias = "out",
            value_name = "FILE",
            default_value = "data/reports/residue-tuning.json"
        )]
        out: PathBuf,
        /// Keep the searched dev hits in this file and reuse them when it matches (same store,
        /// dev part, strides and --search-k), so re-tuning skips the search.
        #[arg(help_heading = "Grid", long)]
        hits_cache: Option<PathBuf>,
        /// Only the alignment grid, on top of the vote settings given by the classifier flags.
        #[arg(help_heading = "Grid", long)]
        align_only: bool,
        /// Alignment grid: candidates per query.
        #[arg(help_heading = "Grid", long, value_delimiter = ',')]
        grid_align_candidates: Vec<usize>,
        /// Alignment grid: similarity shifts.
        #[arg(help_heading = "Grid", long, value_delimiter = ',')]
        grid_align_shift: Vec<f32>,
        /// Alignment grid: gap open costs.
        #[arg(help_heading = "Grid", long, value_delimiter = ',')]
        grid_align_gap_open: Vec<f32>,
        /// Alignment grid: gap extension costs.
        #[arg(help_heading = "Grid", long, value_delimiter = ',')]
        grid_align_gap_extend: Vec<f32>,
        /// Alignment grid: weights of the alignment score.
        #[arg(help_heading = "Grid", long, value_delimiter = ',')]
        grid_align_weight: Vec<f32>,
    },
    /// Recall of the shortlist and the approximate indexes against exact
    /// search on a sample of one part's sequences: of the residue neighbours
    /// (recall@1, recall@k) and of the final family (the share of queries
    /// whose predicted family is the exact search's), with search time, build
    /// time and index size.
    Recall {
        #[command(flatten)]
        split: ResidueTarget,
        #[command(flatten)]
        knn: ResidueKnnArgs,
        /// Part the queries come from: choose settings on dev (or tune_split), confirm on test.
        #[arg(help_heading = "Data", long, default_value = "dev")]
        part: String,
        /// Query sequences sampled evenly from the part (0: all of them).
        #[arg(help_heading = "Data", long, default_value_t = 100)]
        queries: usize,
        /// Neighbours compared per query residue (at least the classifier's search k is searched).
        #[arg(help_heading = "Indexes compared", long, default_value_t = 10)]
        k: usize,
        /// IVF probes (nearest lists searched per query residue) to measure, comma separated (the index
        /// with --ivf-lists lists is built once and saved).
        #[arg(
            help_heading = "Indexes compared",
            long,
            default_value = "16,32,64,128",
            value_delimiter = ','
        )]
        probes: Vec<usize>,
        /// IVF second-stage sizes (training sequences per query window searched exactly) to measure with
        /// each probe count, comma separated.
        #[arg(
            help_heading = "Indexes compared",
            long,
            default_value = "0,128,256",
            value_delimiter = ','
        )]
        refine: Vec<usize>,
        /// Shortlist sizes (training sequences per query window) to measure, comma separated.
        #[arg(help_heading = "Indexes compared", long, value_delimiter = ',')]
        shortlists: Vec<usize>,
        /// usearch quantisations to measure, comma separated (i8, bf16, f16, f32; none by default: each graph
        /// is built once and saved, which takes minutes per million rows).
        #[arg(help_heading = "Indexes compared", long, value_delimiter = ',')]
        quantizations: Vec<Quantization>,
        /// usearch search list lengths (ef) to measure, comma separated.
        #[arg(
            help_heading = "Indexes compared",
            long,
            default_value = "32,64,128",
            value_delimiter = ','
        )]
        efs: Vec<usize>,
        /// instant-distance HNSW ef (construction and search) to measure, comma separated (none by default: it builds in memory, slowly).
        #[arg(help_heading = "Indexes compared", long, value_delimiter = ',')]
        hnsw_ef: Vec<usize>,
    },
}

/// The embedder, the training records, the fitted classifier and the fit time in seconds.
type Fitted = (Box<dyn Embedder>, Vec<protfam::io::Record>, ResidueKnn, f64);

fn fit(split: &ResidueTarget, knn: &ResidueKnnArgs, params: ResidueKnnParams) -> anyhow::Result<Fitted> {
    fit_as(split, knn, params, false)
}

/// [`fit`], or with `for_store_parts` the store only (no whole-store index:
/// [`ResidueKnnParams::fit_for_store_parts`]).
fn fit_as(
    split: &ResidueTarget,
    knn: &ResidueKnnArgs,
    params: ResidueKnnParams,
    for_store_parts: bool,
) -> anyhow::Result<Fitted> {
    let embedder = split.load_embedder()?;
    let train = split.records("train")?;
    let vocab = protfam::io::vocab::LabelVocab::from_families(train.iter().filter_map(|r| r.family.as_ref()));
    let started = Instant::now();
    let model = if for_store_parts {
        params.fit_for_store_parts(embedder.as_ref(), &train, &vocab, &knn.residue_store)?
    } else {
        params.fit(embedder.as_ref(), &train, &vocab, &knn.residue_store)?
    };
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
            sequences_per_shard,
        } => {
            let params = knn.params()?;
            let embedder = split.load_embedder()?;
            let records = split.records(&part)?;
            let config = protfam::residue::StoreConfig {
                stride: params.stride,
                shard_sequences: sequences_per_shard,
                batch_tokens: None,
            };
            let root = &knn.residue_store;
            if let Some(shard) = shard {
                let stats =
                    protfam::residue::ResidueStore::build_part(root, embedder.as_ref(), &records, &config, shard)?;
                println!(
                    "task {shard}: {} store shards reused, {} written, {} residues embedded in {:.1}s; finish with `residue build --merge`",
                    stats.shards_reused, stats.shards_written, stats.residues_embedded, stats.seconds
                );
                return Ok(ExitCode::SUCCESS);
            }
            let (store, stats) = if merge {
                protfam::residue::ResidueStore::merge_parts(root, embedder.as_ref(), &records, &config)?
            } else {
                protfam::residue::ResidueStore::build_or_open(root, embedder.as_ref(), &records, &config)?
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
            save_classifier,
            store_parts,
            hits_dir,
        } => {
            let params = knn.params()?;
            let (embedder, train, model, train_seconds) = fit_as(&split, &knn, params, store_parts.is_some())?;
            let test = split.records_up_to(&part, limit)?;
            let report = match store_parts {
                Some(parts) => {
                    let searched = eval::merge_store_parts(&model, &test, parts, &hits_dir)?;
                    eprintln!("merged the hits of {parts} store parts from {}", hits_dir.display());
                    eval::report(&model, &model.params, &searched, &train, &test, train_seconds)
                }
                None => eval::evaluate(&model, embedder.as_ref(), &train, &test, train_seconds)?,
            };
            print_report(&report, &split.data.split, &part);
            let path = report_dir.join(format!(
                "residue-knn-{}-{}-{}.json",
                embedder.spec().name,
                split.data.split,
                part
            ));
            protfam::report::write_file(&path, &serde_json::to_vec_pretty(&report)?)?;
            eprintln!("report written to {}", path.display());
            // Per query, in the one predictions format of every method (`evaluate`'s predictions/).
            let predictions = path.with_extension("predictions.csv");
            protfam::report::write_predictions(&predictions, &report.predictions)?;
            eprintln!("predictions written to {}", predictions.display());
            if let Some(dir) = save_classifier {
                model.save(&dir)?;
            }
        }
        ResidueCommand::Search {
            split,
            part,
            knn,
            store_part,
            limit,
            hits_dir,
        } => {
            let params = knn.params()?;
            let (embedder, _train, model, _) = fit_as(&split, &knn, params, true)?;
            let records = split.records_up_to(&part, limit)?;
            let path = eval::search_store_part(&model, embedder.as_ref(), &records, store_part, &hits_dir)?;
            println!("{}", path.display());
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
            let dev = split.records("dev")?;
            let hits_key = format!(
                "{}-q{}-k{}-{}",
                model.store.manifest.plan.key(),
                params.query_stride,
                search_k,
                protfam::residue::store::data_digest(&dev)
            );
            let cached = match &hits_cache {
                Some(path) => {
                    protfam::residue::classifier::QueryHits::load(path, &hits_key, dev.len(), model.store.n_rows())?
                }
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
            protfam::report::write_file(&out, &serde_json::to_vec_pretty(&results)?)?;
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
            part,
            queries,
            k,
            probes,
            refine,
            shortlists,
            quantizations,
            efs,
            hnsw_ef,
        } => {
            let params = knn.params()?;
            let (embedder, _train, model, _) = fit(&split, &knn, params.clone())?;
            let records = split.records(&part)?;
            // Every n-th sequence: a fixed, spread-out sample.
            let queries = if queries == 0 { records.len() } else { queries };
            let step = (records.len() / queries.max(1)).max(1);
            let sample: Vec<_> = records.iter().step_by(step).take(queries).cloned().collect();
            let store = &model.store;
            let search_k = k.max(params.search_k);
            // The exact reference search runs once per sample: its hits are kept beside the store
            // (as `evaluate` keeps them), so measuring other settings later costs only their search.
            let exact_params = ResidueKnnParams {
                index: IndexKind::Exact,
                search_k,
                ..params.clone()
            };
            let exact_knn = ResidueKnn::from_store(exact_params, ResidueStore::open(&store.dir)?, model.vocab.clone())?;
            let searched = eval::search_part_cached(&exact_knn, embedder.as_ref(), &sample)?;
            let exact_s = searched.search_seconds;
            let exact = searched.hits.table.clone();
            let residues = protfam::residue::classifier::QueryResidues {
                dim: searched.hits.dim,
                ranges: searched.hits.ranges.clone(),
                positions: searched.hits.positions.clone(),
                data: searched.hits.data.clone(),
            };
            drop(searched);
            let truth: Vec<Option<usize>> = sample
                .iter()
                .map(|r| r.family.as_ref().and_then(|f| model.vocab.index_of(f)))
                .collect();
            let families = |table: &protfam::residue::search::HitTable| -> Vec<Option<usize>> {
                let hits = protfam::residue::classifier::QueryHits::new(residues.clone(), table.clone());
                model
                    .predict_hits(&hits, &params.score, params.min_score)
                    .into_iter()
                    .map(|p| p.class)
                    .collect()
            };
            let errors =
                |pred: &[Option<usize>]| pred.iter().zip(&truth).filter(|(p, t)| p.is_none() || p != t).count();
            let exact_families = families(&exact);
            let row_bytes = store.disk_bytes() as f64 / store.n_rows().max(1) as f64;
            println!(
                "{} query sequences ({} residues) against {} store rows ({:.0} MiB, {row_bytes:.0} bytes per row)",
                sample.len(),
                residues.n_rows(),
                store.n_rows(),
                mib(store.disk_bytes())
            );
            println!();
            println!("| search | build s | search s | residues/s | recall@1 | recall@{k} | same family | errors | index MiB | bytes/row |");
            println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            println!(
                "| exact | – | {exact_s:.2} | {:.0} | 1.0000 | 1.0000 | 1.0000 | {} | – | – |",
                residues.n_rows() as f64 / exact_s.max(1e-9),
                errors(&exact_families)
            );
            let report =
                |name: String, build_s: f64, search_s: f64, table: &protfam::residue::search::HitTable, bytes: u64| {
                    let approx_families = families(table);
                    let same = approx_families
                        .iter()
                        .zip(&exact_families)
                        .filter(|(a, b)| a == b)
                        .count();
                    println!(
                    "| {name} | {build_s:.1} | {search_s:.2} | {:.0} | {:.4} | {:.4} | {:.4} | {} | {:.0} | {:.0} |",
                    residues.n_rows() as f64 / search_s.max(1e-9),
                    recall_at_k(&exact, table, 1),
                    recall_at_k(&exact, table, k),
                    same as f64 / sample.len().max(1) as f64,
                    errors(&approx_families),
                    mib(bytes),
                    bytes as f64 / store.n_rows().max(1) as f64
                );
                };
            if !probes.is_empty() {
                let mut ivf = IvfIndex::open_or_build(store, &params.ivf)?;
                let build_s = ivf.build_seconds();
                for &p in &probes {
                    ivf = ivf.with_probes(p);
                    let started = Instant::now();
                    let first = ivf.top_k(store, &residues.data, search_k, &indicatif::ProgressBar::hidden())?;
                    let first_s = started.elapsed().as_secs_f64();
                    for &sequences in &refine {
                        let started = Instant::now();
                        let table = protfam::residue::ivf::refine(
                            store,
                            &residues.data,
                            &residues.ranges,
                            first.clone(),
                            sequences,
                            params.ivf.window,
                            params.ivf.products,
                        );
                        report(
                            format!(
                                "ivf {} lists, {p} probes ({:.0} rows per residue), then {sequences} sequences per {}-residue window, {} products",
                                ivf.lists(),
                                ivf.expected_rows_compared(),
                                params.ivf.window,
                                params.ivf.products
                            ),
                            build_s,
                            first_s + started.elapsed().as_secs_f64(),
                            &table,
                            ivf.disk_bytes(),
                        );
                    }
                }
            }
            if !shortlists.is_empty() {
                let started = Instant::now();
                let means = SequenceMeans::from_store(store);
                let means_s = started.elapsed().as_secs_f64();
                for &sequences in &shortlists {
                    let shortlist = ShortlistParams {
                        sequences,
                        ..params.shortlist
                    };
                    let started = Instant::now();
                    let table = shortlisted_top_k(
                        &residues.data,
                        &residues.ranges,
                        store,
                        &means,
                        &shortlist,
                        search_k,
                        &indicatif::ProgressBar::hidden(),
                    )?;
                    let search_s = started.elapsed().as_secs_f64();
                    report(
                        format!("shortlist {sequences} sequences, window {}", shortlist.window),
                        means_s,
                        search_s,
                        &table,
                        means.bytes() as u64,
                    );
                }
            }
            for &quantization in &quantizations {
                for &ef in &efs {
                    let index_params = protfam::residue::index::IndexParams {
                        quantization,
                        expansion_search: ef,
                        ..params.usearch
                    };
                    let index = ResidueIndex::open_or_build(store, &index_params)?;
                    let started = Instant::now();
                    let table = index.top_k(store, &residues.data, search_k)?;
                    let search_s = started.elapsed().as_secs_f64();
                    report(
                        format!(
                            "usearch {quantization} M={} ef={ef} rescore {}",
                            index_params.connectivity, index_params.candidates
                        ),
                        index.build_seconds(),
                        search_s,
                        &table,
                        index.disk_bytes(),
                    );
                }
            }
            for &e in &hnsw_ef {
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
                let table = index.top_k(&residues.data, search_k);
                let search_s = started.elapsed().as_secs_f64();
                report(
                    format!("instant-distance hnsw ef={e} (in memory)"),
                    build_s,
                    search_s,
                    &table,
                    index.memory_bytes() as u64,
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
    println!("{}", eval::search_summary(r));
}
