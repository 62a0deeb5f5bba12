//! `protfam annotate`: predict the Pfam family of every sequence of a FASTA
//! file (or Stockholm / Pfam CSV; `-` is standard input, gzip is read) with a
//! trained classifier, and say `no confident family` where the calibrated
//! threshold is not met (see [`crate::annotate`]).
//!
//! Also `protfam calibrate`: (re)calibrates a classifier directory's abstention
//! threshold on the dev part of its split; `protfam train` runs it after saving.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::annotate::{self, Calibration, InputItem};
use crate::cache::Cache;
use crate::classify::saved::SavedClassifier;
use crate::embedder::{Embedder, EmbedderSpec};
use crate::io::input::SequenceReader;
use crate::io::{alphabet, Record};
use crate::pipeline::{self, EmbedOptions, WorkShard};
use crate::shard::{PartContext, Placement, RecordSelection};

/// Output format of `protfam annotate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Tsv,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct AnnotateArgs {
    /// Classifier directory written by `protfam train`.
    #[arg(long)]
    pub classifier: PathBuf,
    /// Input sequences: FASTA (or Stockholm / Pfam CSV shard), plain or gzip; `-` reads standard input.
    pub input: PathBuf,
    /// Output file (default: standard output).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Tsv)]
    pub format: OutputFormat,
    /// Families listed per sequence: the best plus this many minus one runners-up.
    #[arg(long, default_value_t = 3)]
    pub top_k: usize,
    /// Precision the abstention threshold is calibrated for. When it differs
    /// from the stored calibration's, the threshold is recalibrated on the dev
    /// part of the classifier's split (not saved; use `protfam calibrate` to store it).
    #[arg(long)]
    pub min_precision: Option<f64>,
    /// Exit with status 0 even when some records were invalid (they are always reported and skipped).
    #[arg(long)]
    pub lenient: bool,
    /// Annotate only share K of N of the records (record i belongs to share i mod N, K from 0):
    /// one task of a job array. Writes `part-K-of-N.jsonl` to --part-dir for `protfam annotate merge`.
    #[arg(long, value_name = "K/N", requires = "part_dir", conflicts_with = "output")]
    pub shard: Option<WorkShard>,
    /// Directory the part of --shard is written to (shared by all tasks).
    #[arg(long, requires = "shard")]
    pub part_dir: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `protfam annotate [ARGS] INPUT` or `protfam annotate merge PART_DIR`.
///
/// Parsed by hand: clap's derive cannot make the annotate flags (some of them
/// required) optional only when the `merge` subcommand is given.
#[derive(Debug)]
pub struct AnnotateCommand {
    pub action: Option<AnnotateAction>,
    pub args: Option<AnnotateArgs>,
}

impl clap::FromArgMatches for AnnotateCommand {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        if matches.subcommand_name().is_some() {
            Ok(AnnotateCommand {
                action: Some(<AnnotateAction as clap::FromArgMatches>::from_arg_matches(matches)?),
                args: None,
            })
        } else {
            Ok(AnnotateCommand {
                action: None,
                args: Some(<AnnotateArgs as clap::FromArgMatches>::from_arg_matches(matches)?),
            })
        }
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for AnnotateCommand {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = <AnnotateArgs as clap::Args>::augment_args(cmd);
        <AnnotateAction as clap::Subcommand>::augment_subcommands(cmd)
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum AnnotateAction {
    /// Merge the parts of `annotate --shard K/N` tasks into the output one
    /// process would have written (input order); refuses while a part is missing or damaged.
    Merge(MergeArgs),
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The --part-dir of the tasks.
    pub part_dir: PathBuf,
    /// Output file (default: standard output).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Tsv)]
    pub format: OutputFormat,
    /// Exit with status 0 even when some records were invalid.
    #[arg(long)]
    pub lenient: bool,
}

/// Runs `annotate` or `annotate merge`.
pub fn run_command(cmd: AnnotateCommand) -> anyhow::Result<ExitCode> {
    match (cmd.action, cmd.args) {
        (Some(AnnotateAction::Merge(merge)), _) => run_merge(merge),
        (None, Some(args)) => run(args),
        (None, None) => bail!("give --classifier DIR and an INPUT file (or `protfam annotate merge PART_DIR`)"),
    }
}

/// `annotate merge`: the parts' rows in input order, written as `annotate` writes them.
fn run_merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let merged = crate::shard::merge_parts(&args.part_dir)?;
    eprintln!(
        "merged {} parts of {} ({} records)",
        merged.parts, merged.header.input, merged.header.input_records
    );
    write_rows(
        args.output.as_deref(),
        args.format,
        args.lenient,
        &merged.rows,
        merged.header.duplicate_ids,
        started,
    )
}

/// Settings shared by `annotate` and `calibrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Embedding cache directory (vectors already there are reused).
    #[arg(long, default_value = crate::cache::DEFAULT_DIR)]
    pub cache: PathBuf,
    /// Directory of model weights.
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
    /// Residues per embedding batch (default: the model's own).
    #[arg(long)]
    pub batch_tokens: Option<usize>,
    /// Compute on the CPU even when a CUDA device is available.
    #[arg(long)]
    pub cpu: bool,
}

impl CommonArgs {
    pub fn device(&self) -> candle_core::Device {
        if self.cpu {
            candle_core::Device::Cpu
        } else {
            crate::classify::default_device()
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// Classifier directory written by `protfam train`.
    #[arg(long)]
    pub classifier: PathBuf,
    /// Dataset root holding `<split>/dev/` (default: the one the classifier was trained on).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Split directory name (default: the one the classifier was trained on).
    #[arg(long)]
    pub split: Option<String>,
    /// Precision the threshold must reach on dev.
    #[arg(long, default_value_t = 0.95)]
    pub min_precision: f64,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The dataset root and split a classifier was trained on, from its recorded
/// source `<root>/<split>/train`.
pub fn training_split(classifier: &SavedClassifier) -> Option<(PathBuf, String)> {
    split_of_source(&classifier.meta.training.source)
}

/// `(root, split)` of a recorded training source `<root>/<split>/train`.
pub fn split_of_source(source: &str) -> Option<(PathBuf, String)> {
    let split_dir = Path::new(source).parent()?;
    let split = split_dir.file_name()?.to_str()?.to_string();
    Some((split_dir.parent()?.to_path_buf(), split))
}

impl CalibrateArgs {
    /// The dev split to calibrate on: `--data` / `--split`, each defaulting to
    /// the classifier's own training split (`trained`).
    pub fn dev_split(&self, trained: Option<(PathBuf, String)>) -> anyhow::Result<(PathBuf, String)> {
        match (&self.data, &self.split, trained) {
            (Some(root), Some(split), _) => Ok((root.clone(), split.clone())),
            (data, split, Some((root, trained_split))) => {
                Ok((data.clone().unwrap_or(root), split.clone().unwrap_or(trained_split)))
            }
            _ => bail!("the classifier does not record its training split: pass --data and --split"),
        }
    }
}

/// Loads the classifier's embedder with the settings it was trained with.
pub fn load_embedder(classifier: &SavedClassifier, common: &CommonArgs) -> anyhow::Result<Box<dyn Embedder>> {
    load_embedder_for(&classifier.meta.embedder, common)
}

/// Loads the embedder described by `spec` and checks that it is the same one
/// (weights digest and settings), so vectors never mix across embedders.
pub fn load_embedder_for(spec: &EmbedderSpec, common: &CommonArgs) -> anyhow::Result<Box<dyn Embedder>> {
    let dtype = match spec.dtype.as_str() {
        "f16" => candle_core::DType::F16,
        "bf16" => candle_core::DType::BF16,
        _ => candle_core::DType::F32,
    };
    let opts = crate::models::LoadOptions {
        device: common.device(),
        dtype,
        layer: spec.layer,
        models_dir: common.models_dir.clone(),
    };
    let embedder = crate::models::load(&spec.name, &opts)
        .with_context(|| format!("cannot load the classifier's embedder {:?}", spec.name))?;
    if embedder.spec() != spec {
        bail!(
            "embedder {} loaded here ({}) differs from the one the classifier was trained with ({}): different weights or settings",
            spec.name,
            embedder.spec().key(),
            spec.key()
        );
    }
    Ok(embedder)
}

/// Calibrates `classifier` on the dev part of `<root>/<split>` (vectors from the cache).
pub fn calibrate_on_dev(
    classifier: &SavedClassifier,
    embedder: &dyn Embedder,
    cache: &Cache,
    root: &Path,
    split: &str,
    min_precision: f64,
) -> anyhow::Result<Calibration> {
    let opts = EmbedOptions {
        progress: super::progress_bar(0, "sequences"),
        ..Default::default()
    };
    let dev = pipeline::load_vectors(embedder, cache, root, split, "dev", &opts)
        .with_context(|| format!("embedding the dev part of {}", root.join(split).display()))?;
    opts.progress.finish_and_clear();
    let predictions = classifier.predict(embedder.spec(), &dev)?;
    let truth: Vec<Option<usize>> = dev
        .families
        .iter()
        .map(|f| {
            f.as_ref()
                .and_then(|f| classifier.vocab.index_of_accession(&f.accession))
        })
        .collect();
    let source = root.join(split).join("dev").display().to_string();
    let mut calibration = annotate::calibrate(&predictions, &truth, min_precision, &source)?;
    calibration.training_digest = classifier.meta.training.digest.clone();
    Ok(calibration)
}

/// The classifier's stored calibration, unless it belongs to another training run.
pub fn stored_calibration(dir: &Path, classifier: &SavedClassifier) -> anyhow::Result<Option<Calibration>> {
    stored_calibration_for(dir, &classifier.meta.training.digest)
}

/// The calibration stored in `dir`, unless it was made for other training data
/// than `training_digest` (a residue store's data digest, for `residue-knn`).
pub fn stored_calibration_for(dir: &Path, training_digest: &str) -> anyhow::Result<Option<Calibration>> {
    let Some(c) = Calibration::load(dir)? else {
        return Ok(None);
    };
    if !c.training_digest.is_empty() && c.training_digest != training_digest {
        tracing::warn!(
            "{}: calibrated for another training run of this directory; ignored (run `protfam calibrate`)",
            Calibration::path(dir).display()
        );
        return Ok(None);
    }
    Ok(Some(c))
}

pub fn run_calibrate(args: CalibrateArgs) -> anyhow::Result<ExitCode> {
    if crate::residue::ResidueKnn::is_saved_in(&args.classifier) {
        return super::residue::run_calibrate(args);
    }
    let classifier = SavedClassifier::load(&args.classifier, &args.common.device())
        .with_context(|| format!("loading classifier {}", args.classifier.display()))?;
    let (root, split) = args.dev_split(training_split(&classifier))?;
    let embedder = load_embedder(&classifier, &args.common)?;
    let cache = Cache::new(&args.common.cache);
    let calibration = calibrate_on_dev(
        &classifier,
        embedder.as_ref(),
        &cache,
        &root,
        &split,
        args.min_precision,
    )?;
    let path = calibration.save(&args.classifier)?;
    eprintln!("calibration: {}", calibration.describe());
    eprintln!("saved to {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Records read from the input, with the rows for those that could not be used.
struct Input {
    items: Vec<InputItem>,
    records: Vec<Record>,
    duplicates: usize,
    name: String,
    /// With `--shard`: where the kept records sit in the whole input.
    placement: Option<Placement>,
}

impl Input {
    /// Keeps only this task's share of the records (`--shard`).
    fn select(self, shard: Option<WorkShard>) -> Self {
        let Some(shard) = shard else { return self };
        let selection = RecordSelection::select(self.items, self.records, shard);
        Input {
            items: selection.items,
            records: selection.records,
            placement: Some(selection.placement),
            ..self
        }
    }
}

/// What must be the same in every task of a sharded run, besides the input.
fn part_settings(args: &AnnotateArgs, training_digest: &str, calibration: Option<&Calibration>) -> serde_json::Value {
    serde_json::json!({
        "classifier": std::fs::canonicalize(&args.classifier).unwrap_or_else(|_| args.classifier.clone()),
        "training_digest": training_digest,
        "calibration": calibration,
        "top_k": args.top_k,
        "protfam": env!("CARGO_PKG_VERSION"),
    })
}

fn read_input(path: &Path) -> anyhow::Result<Input> {
    let name = if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    let mut reader = SequenceReader::open(path, None)?;
    let mut items = Vec::new();
    let mut records = Vec::new();
    for (n, item) in reader.by_ref().enumerate() {
        match item {
            Ok(record) => match alphabet::check(&record.sequence) {
                Ok(()) if record.sequence.is_empty() => items.push(InputItem::Invalid {
                    id: record.id.clone(),
                    message: format!("{name}: record {}: empty sequence", record.id),
                }),
                Ok(()) => {
                    items.push(InputItem::Valid {
                        id: record.id.clone(),
                        length: record.sequence.len(),
                        note: String::new(),
                    });
                    records.push(record);
                }
                Err(message) => items.push(InputItem::Invalid {
                    id: record.id.clone(),
                    message: format!("{name}: record {}: {message}", record.id),
                }),
            },
            Err(e) if e.is_skippable() => {
                let id = e.record.clone().unwrap_or_else(|| format!("record {}", n + 1));
                items.push(InputItem::Invalid {
                    id,
                    message: e.to_string(),
                });
            }
            Err(e) => return Err(e).context("cannot read the input; nothing was annotated"),
        }
    }
    let duplicates = reader.duplicates().to_vec();
    // Every repeat of an id (not its first occurrence) gets a note.
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for item in &mut items {
        let (id, note) = match item {
            InputItem::Valid { id, note, .. } => (id.clone(), Some(note)),
            InputItem::Invalid { id, .. } => (id.clone(), None),
        };
        let count = seen.entry(id.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            if let (Some(note), Some(d)) = (note, duplicates.iter().find(|d| d.id == id)) {
                *note = format!("duplicate id (first at line {})", d.first_line);
            }
        }
    }
    Ok(Input {
        items,
        records,
        duplicates: duplicates.len(),
        name,
        placement: None,
    })
}

pub fn run(args: AnnotateArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    if crate::residue::ResidueKnn::is_saved_in(&args.classifier) {
        return run_residue(args, started);
    }
    let classifier = SavedClassifier::load(&args.classifier, &args.common.device())
        .with_context(|| format!("loading classifier {}", args.classifier.display()))?;
    let embedder = load_embedder(&classifier, &args.common)?;
    let cache = Cache::new(&args.common.cache);
    let mut calibration = stored_calibration(&args.classifier, &classifier)?;
    if let Some(target) = args.min_precision {
        if calibration
            .as_ref()
            .is_none_or(|c| (c.target_precision - target).abs() > 1e-12)
        {
            let (root, split) = training_split(&classifier).context(
                "--min-precision needs the classifier's training split to recalibrate, and none is recorded",
            )?;
            let c = calibrate_on_dev(&classifier, embedder.as_ref(), &cache, &root, &split, target)?;
            eprintln!("recalibrated for precision {target}: {}", c.describe());
            calibration = Some(c);
        }
    }
    match &calibration {
        Some(c) => tracing::info!("abstention: {}", c.describe()),
        None => eprintln!(
            "warning: {} has no calibration; every answer is marked confident (run `protfam calibrate --classifier {}`)",
            args.classifier.display(),
            args.classifier.display()
        ),
    }

    let mut input = read_input(&args.input)?.select(args.shard);
    report_input_problems(&input);
    let opts = EmbedOptions {
        batch_tokens: args.common.batch_tokens,
        progress: super::progress_bar(input.records.len() as u64, "sequences"),
        ..Default::default()
    };
    let n_valid = input.records.len();
    let (vectors, embed_summary) = if n_valid == 0 {
        (
            crate::vectors::VectorSet {
                dim: embedder.spec().dim,
                ..Default::default()
            },
            None,
        )
    } else {
        let mut model_cache = cache.open_model(embedder.spec())?;
        let (v, s) = pipeline::embed_with_cache(
            embedder.as_ref(),
            std::mem::take(&mut input.records).into_iter().map(Ok),
            &input.name,
            &mut model_cache,
            &opts,
        )?;
        (v, Some(s))
    };
    opts.progress.finish_and_clear();
    if vectors.len() != n_valid {
        bail!("internal: {} vectors for {n_valid} valid records", vectors.len());
    }
    if let Some(s) = &embed_summary {
        tracing::info!("embedding: {s}");
    }
    let predictions = if n_valid == 0 {
        Vec::new()
    } else {
        classifier.predict(embedder.spec(), &vectors)?
    };
    let rows = annotate::annotations(
        &input.items,
        &predictions,
        &classifier.vocab,
        &classifier.train_ids,
        calibration.as_ref(),
        args.top_k,
    );
    let settings = part_settings(&args, &classifier.meta.training.digest, calibration.as_ref());
    finish(&args, &rows, &input, settings, started)
}

/// Writes the rows (atomically to `-o`, or as this task's part with `--shard`,
/// else to stdout), prints the summary and picks the exit status.
fn finish(
    args: &AnnotateArgs,
    rows: &[annotate::Annotation],
    input: &Input,
    settings: serde_json::Value,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    if let (Some(shard), Some(dir), Some(placement)) = (args.shard, &args.part_dir, &input.placement) {
        let context = PartContext {
            shard,
            input: &input.name,
            duplicate_ids: input.duplicates,
            settings,
        };
        let path = crate::shard::write_part(dir, &context, placement, rows)?;
        eprintln!("part {shard}: {} of {} records -> {}", rows.len(), placement.input_records, path.display());
        return exit_status(rows, input.duplicates, started, args.lenient);
    }
    write_rows(args.output.as_deref(), args.format, args.lenient, rows, input.duplicates, started)
}

/// Writes the rows (atomically to `output`, else to stdout), prints the summary and picks the exit status.
fn write_rows(
    output: Option<&Path>,
    format: OutputFormat,
    lenient: bool,
    rows: &[annotate::Annotation],
    duplicates: usize,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let write = |out: &mut dyn Write| -> std::io::Result<()> {
        match format {
            OutputFormat::Tsv => annotate::write_tsv(out, rows),
            OutputFormat::Json => annotate::write_json(out, rows),
        }
    };
    match output {
        Some(path) => crate::cache::atomic::write_atomic(path, |file| write(file))
            .with_context(|| format!("writing {}", path.display()))?,
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            write(&mut lock).context("writing to standard output")?;
        }
    }
    exit_status(rows, duplicates, started, lenient)
}

/// Prints the summary; status 2 when records were invalid, unless `lenient`.
fn exit_status(
    rows: &[annotate::Annotation],
    duplicates: usize,
    started: Instant,
    lenient: bool,
) -> anyhow::Result<ExitCode> {
    let summary = annotate::summarise(rows, duplicates, started.elapsed().as_secs_f64());
    eprintln!("{summary}");
    if summary.invalid > 0 && !lenient {
        eprintln!(
            "{} invalid record(s) were reported and skipped; exit status 2 (pass --lenient for 0)",
            summary.invalid
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// Says on stderr which records were skipped and how many ids repeat.
fn report_input_problems(input: &Input) {
    for item in &input.items {
        if let InputItem::Invalid { message, .. } = item {
            eprintln!("invalid record skipped: {message}");
        }
    }
    if input.duplicates > 0 {
        eprintln!(
            "{}: {} duplicate id(s); every record is annotated, repeats are noted",
            input.name, input.duplicates
        );
    }
}

/// `annotate` with a saved `residue-knn`: residue matrices instead of pooled
/// vectors, the same output rows. Queries it cannot answer (no searchable
/// residue, no hit, best score under its `min_score`) are `no confident family`
/// with the reason in the note, whatever the calibration says.
fn run_residue(args: AnnotateArgs, started: Instant) -> anyhow::Result<ExitCode> {
    let knn = crate::residue::ResidueKnn::load(&args.classifier)
        .with_context(|| format!("loading classifier {}", args.classifier.display()))?;
    let embedder = load_embedder_for(knn.store.spec(), &args.common)?;
    let mut calibration = stored_calibration_for(&args.classifier, &knn.store.manifest.plan.data_digest)?;
    if let Some(target) = args.min_precision {
        if calibration
            .as_ref()
            .is_none_or(|c| (c.target_precision - target).abs() > 1e-12)
        {
            let (root, split) = split_of_source(&knn.source).context(
                "--min-precision needs the classifier's training split to recalibrate, and none is recorded",
            )?;
            let c = super::residue::calibrate_on_dev(&knn, embedder.as_ref(), &root, &split, target)?;
            eprintln!("recalibrated for precision {target}: {}", c.describe());
            calibration = Some(c);
        }
    }
    if calibration.is_none() {
        eprintln!(
            "warning: {} has no calibration; every answer is marked confident (run `protfam calibrate --classifier {}`)",
            args.classifier.display(),
            args.classifier.display()
        );
    }
    let input = read_input(&args.input)?.select(args.shard);
    report_input_problems(&input);
    let predictions = if input.records.is_empty() {
        Vec::new()
    } else {
        knn.predict(embedder.as_ref(), &input.records)?
    };
    // Abstentions without any family still need a row; they get a placeholder
    // prediction whose family fields are blanked below.
    let ranked: Vec<crate::classify::Prediction> = predictions
        .iter()
        .map(|p| {
            p.to_ranked().unwrap_or(crate::classify::Prediction {
                class: 0,
                score: 0.0,
                top: Vec::new(),
                nearest: None,
            })
        })
        .collect();
    let mut rows = annotate::annotations(
        &input.items,
        &ranked,
        &knn.vocab,
        &knn.train_ids(),
        calibration.as_ref(),
        args.top_k,
    );
    let valid_rows = rows.iter_mut().filter(|r| r.annotation != annotate::INVALID_RECORD);
    for (row, p) in valid_rows.zip(&predictions) {
        let Some(reason) = &p.abstained else { continue };
        row.confident = false;
        row.annotation = annotate::NO_CONFIDENT_FAMILY.to_string();
        if p.top.is_empty() {
            row.family_id.clear();
            row.family_accession.clear();
            row.score = None;
        }
        row.note = if row.note.is_empty() {
            reason.clone()
        } else {
            format!("{}; {reason}", row.note)
        };
    }
    let settings = part_settings(&args, &knn.store.manifest.plan.data_digest, calibration.as_ref());
    finish(&args, &rows, &input, settings, started)
}
