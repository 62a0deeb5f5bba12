//! `protfam embed`: embed a Pfam split or a FASTA file into the cache, and
//! optionally into one safetensors file.
//!
//! ```text
//! protfam embed --model unirep1900 --data ../shared/data/pfam35-uniprot20k --split clustered_split
//! protfam embed --model onehot --input proteins.fa.gz --output proteins.safetensors
//! protfam embed --model unirep1900 --data $DATA --shard $SLURM_ARRAY_TASK_ID/8 --cache cache-$SLURM_ARRAY_TASK_ID
//! ```
//!
//! The `--output` file holds one F32 tensor `embeddings` (N x D, input order)
//! and, in its metadata, `ids` (JSON list of record ids), `families` (JSON list
//! of `family_id` or null, for Pfam input), `model` and `spec` (the embedder
//! identity as JSON).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use protfam::cache::shard::{self, TensorData};
use protfam::cache::Cache;
use protfam::embedder::Embedder;
use protfam::io::{ReadError, Record};
use protfam::models::{self, LoadOptions};
use protfam::pipeline::{self, EmbedOptions, EmbedSummary, Keep, WorkShard};

use super::context::{CacheArgs, ModelArgs};
use protfam::vectors::VectorSet;

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// Model: a registry name (`protfam models list`) or a model directory.
    #[arg(help_heading = "Model and device", short = 'm', long, default_value = "unirep1900")]
    pub model: String,
    #[command(flatten)]
    pub input: InputArgs,
    /// Also write the vectors in input order to this safetensors file (tensor `embeddings`, metadata `ids`).
    #[arg(help_heading = "Output", long, short)]
    pub output: Option<PathBuf>,
    /// Also write the run summaries (one per part or file) as JSON to this file.
    #[arg(help_heading = "Output", long)]
    pub summary_json: Option<PathBuf>,
    #[command(flatten)]
    pub common: EmbedCommon,
}

/// What to embed: parts of a Pfam split, or a FASTA file (`embed`, `cache export`).
#[derive(Debug, Clone, clap::Args)]
pub struct InputArgs {
    /// Root of a Pfam split dataset (`<root>/<split>/<part>/data-*`)
    /// [default: $PROTFAM_DATA, else the bundled pfam35-uniprot20k].
    #[arg(help_heading = "Input", long, value_name = "DIR", conflicts_with = "fasta")]
    pub data: Option<PathBuf>,
    /// Split under --data.
    #[arg(help_heading = "Input", long, default_value = "clustered_split")]
    pub split: String,
    /// Parts of the split, comma-separated.
    #[arg(
        help_heading = "Input",
        long,
        value_delimiter = ',',
        default_value = "train,dev,test"
    )]
    pub parts: Vec<String>,
    /// FASTA file to embed instead of a split (`-` reads standard input; gzip is recognised).
    #[arg(
        help_heading = "Input",
        short = 'i',
        long = "input",
        alias = "fasta",
        value_name = "FILE"
    )]
    pub fasta: Option<PathBuf>,
}

impl InputArgs {
    /// Resolves `--data/--split/--parts` or `--input` (with $PROTFAM_DATA as the default root).
    pub fn resolve(&self) -> anyhow::Result<Input> {
        if let Some(path) = &self.fasta {
            return Ok(Input::Fasta(path.clone()));
        }
        let root = protfam::dataset::find_root(self.data.as_deref()).context("give --data DIR or --input FILE")?;
        for part in &self.parts {
            if !protfam::io::pfam_csv::PARTS.contains(&part.as_str()) {
                bail!("unknown part {part:?}: use train, dev, test");
            }
        }
        Ok(Input::Split {
            root,
            split: self.split.clone(),
            parts: self.parts.clone(),
        })
    }
}

/// Options shared by every command that embeds (`embed`, `cache export`).
#[derive(Debug, Clone, clap::Args)]
pub struct EmbedCommon {
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Residues per batch, padding included (default: the model's own).
    #[arg(help_heading = "Model and device", long)]
    pub batch_tokens: Option<usize>,
    /// Hidden layer to pool (negative counts from the end; default the last).
    #[arg(help_heading = "Model and device", long, allow_hyphen_values = true)]
    pub layer: Option<i64>,
    /// Skip and report unreadable or invalid records instead of stopping at the first.
    #[arg(help_heading = "Input", long)]
    pub lenient: bool,
    /// Embed only share K of N (K from 0), chosen by sequence hash: one worker of a job array.
    #[arg(help_heading = "Job array", long, value_name = "K/N")]
    pub shard: Option<WorkShard>,
    #[command(flatten)]
    pub models: ModelArgs,
    /// Write new vectors to the cache every this many vectors...
    #[arg(help_heading = "Embedding cache", long, default_value_t = 4096)]
    pub flush_rows: usize,
    /// ...or this many seconds, whichever comes first.
    #[arg(help_heading = "Embedding cache", long, default_value_t = 30.0)]
    pub flush_seconds: f64,
}

impl EmbedCommon {
    /// Loads the model with these settings.
    pub fn load_model(&self, model: &str) -> anyhow::Result<Box<dyn Embedder>> {
        let opts = LoadOptions {
            layer: self.layer,
            ..self.models.load_options()?
        };
        models::load(model, &opts).with_context(|| format!("cannot load model {model:?}"))
    }

    pub fn pipeline_options(&self) -> anyhow::Result<EmbedOptions> {
        if self.flush_rows == 0 || self.flush_seconds.is_nan() || self.flush_seconds <= 0.0 {
            bail!("--flush-rows and --flush-seconds must be positive");
        }
        if self.batch_tokens == Some(0) {
            bail!("--batch-tokens must be positive");
        }
        Ok(EmbedOptions {
            batch_tokens: self.batch_tokens,
            lenient: self.lenient,
            shard: self.shard,
            flush_rows: self.flush_rows,
            flush_interval: Duration::from_secs_f64(self.flush_seconds),
            ..EmbedOptions::default()
        })
    }
}

/// Where records come from: split parts or one FASTA file.
#[derive(Debug, Clone)]
pub enum Input {
    Split {
        root: PathBuf,
        split: String,
        parts: Vec<String>,
    },
    Fasta(PathBuf),
}

impl Input {
    /// Fails early (before a model is loaded) if a part or file does not exist.
    pub fn check(&self) -> anyhow::Result<()> {
        match self {
            Input::Split { root, split, parts } => {
                for part in parts {
                    protfam::io::pfam_csv::shard_paths(root, split, part)?;
                }
            }
            Input::Fasta(path) => {
                if path.as_os_str() != "-" && !path.is_file() {
                    bail!("{}: no such file", path.display());
                }
            }
        }
        Ok(())
    }

    /// (source name, record stream) pairs, one per part or file.
    #[allow(clippy::type_complexity)]
    pub fn sources(&self) -> anyhow::Result<Vec<(String, Box<dyn Iterator<Item = Result<Record, ReadError>>>)>> {
        match self {
            Input::Split { root, split, parts } => parts
                .iter()
                .map(|part| {
                    let reader = protfam::io::pfam_csv::read_part(root, split, part)?;
                    let boxed: Box<dyn Iterator<Item = Result<Record, ReadError>>> = Box::new(reader);
                    Ok((root.join(split).join(part).display().to_string(), boxed))
                })
                .collect(),
            Input::Fasta(path) => {
                let reader = protfam::io::fasta::open(path)?;
                let name = reader.name().to_string();
                let boxed: Box<dyn Iterator<Item = Result<Record, ReadError>>> = Box::new(reader);
                Ok(vec![(name, boxed)])
            }
        }
    }

    /// Number of records (for the progress bar), where cheap to know: not for standard input.
    pub fn count_records(&self) -> Option<u64> {
        match self {
            Input::Fasta(p) if p.as_os_str() == "-" => None,
            _ => {
                let mut total = 0u64;
                for (_, records) in self.sources().ok()? {
                    total += records.count() as u64;
                }
                Some(total)
            }
        }
    }
}

/// Embeds every source of `input`, printing one summary line per source;
/// returns the vectors (in input order) when `collect` is set.
pub fn embed_input(
    embedder: &dyn Embedder,
    input: &Input,
    cache: &Cache,
    mut opts: EmbedOptions,
    collect: bool,
) -> anyhow::Result<(Option<VectorSet>, Vec<EmbedSummary>)> {
    let total = input.count_records();
    let bar = protfam::progress::bar(total.unwrap_or(0), "sequences");
    if total.is_none() {
        // Standard input: no total to show, only the count and the rate.
        let template = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            "{spinner} [{elapsed_precise}] {pos} sequences ({per_sec}) {msg}"
        } else {
            "progress [{elapsed_precise}] {pos} sequences ({per_sec}) {msg}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
    }
    opts.progress = bar.clone();
    let mut model_cache = cache.open_model(embedder.spec())?;
    let mut all = collect.then(|| VectorSet {
        dim: embedder.spec().dim,
        ..Default::default()
    });
    let mut summaries = Vec::new();
    for (source, records) in input.sources()? {
        let result = if collect {
            pipeline::embed_into(embedder, records, &source, &mut model_cache, &opts, Keep::Vectors)
        } else {
            pipeline::embed_into(embedder, records, &source, &mut model_cache, &opts, Keep::Nothing)
        };
        let (vectors, summary) = match result {
            Ok(r) => r,
            Err(e) => {
                bar.abandon();
                return Err(e.into());
            }
        };
        bar.suspend(|| println!("{} {source}: {summary}", embedder.spec().name));
        for line in summary.problems.iter().take(20) {
            bar.suspend(|| eprintln!("  {line}"));
        }
        if summary.problems.len() > 20 {
            bar.suspend(|| eprintln!("  ... and {} more", summary.problems.len() - 20));
        }
        if let (Some(all), Some(v)) = (all.as_mut(), vectors) {
            all.ids.extend(v.ids);
            all.families.extend(v.families);
            all.data.extend(v.data);
        }
        summaries.push(summary);
    }
    bar.finish_and_clear();
    Ok((all, summaries))
}

/// Writes vectors as safetensors: `embeddings` (F32, N x D), metadata `ids`,
/// `families`, `model` and `spec`.
pub fn write_output(path: &Path, vectors: &VectorSet, embedder: &dyn Embedder) -> anyhow::Result<()> {
    let mut meta = BTreeMap::new();
    meta.insert("ids".to_string(), serde_json::to_string(&vectors.ids)?);
    if vectors.families.iter().any(Option::is_some) {
        let families: Vec<Option<&str>> = vectors
            .families
            .iter()
            .map(|f| f.as_ref().map(|f| f.family_id.as_str()))
            .collect();
        meta.insert("families".to_string(), serde_json::to_string(&families)?);
    }
    meta.insert("model".to_string(), embedder.spec().name.clone());
    meta.insert("spec".to_string(), serde_json::to_string(embedder.spec())?);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    shard::write_shard(
        path,
        &[TensorData::f32(
            "embeddings",
            vec![vectors.len(), vectors.dim],
            &vectors.data,
        )],
        &meta,
    )?;
    Ok(())
}

pub fn run(args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let input = args.input.resolve()?;
    input.check()?;
    let opts = args.common.pipeline_options()?;
    let embedder = args.common.load_model(&args.model)?;
    let cache = args.common.cache.open();
    tracing::info!(
        "embedding with {} (dim {}, cache {})",
        embedder.spec().name,
        embedder.spec().dim,
        cache.model_dir(embedder.spec()).display()
    );
    let (vectors, summaries) = embed_input(embedder.as_ref(), &input, &cache, opts, args.output.is_some())?;
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_vec_pretty(&summaries)?;
        protfam::atomic::write_bytes_atomic(path, &json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let (Some(path), Some(vectors)) = (&args.output, vectors) {
        write_output(path, &vectors, embedder.as_ref())?;
        println!(
            "wrote {} vectors of dimension {} to {}",
            vectors.len(),
            vectors.dim,
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
