//! `protfam annotate`: predict the Pfam family of every sequence of a FASTA
//! file (or Stockholm / Pfam CSV; `-` is standard input, gzip is read) with a
//! trained classifier of either family, and say `no confident family` where the
//! calibrated threshold is not met (see [`protfam::annotate`]).
//!
//! Also `protfam calibrate`: (re)calibrates a classifier directory's abstention
//! threshold on the dev part of its split; `protfam train` runs it after saving.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use protfam::annotate::{self, Calibration, InputItem};
use protfam::classifier::{load_embedder_for, TrainedClassifier};
use protfam::dataset::Split;
use protfam::embedder::Embedder;
use protfam::io::input::SequenceReader;
use protfam::io::{alphabet, Record};
use protfam::pipeline::{EmbedOptions, WorkShard};
use protfam::shard::{PartContext, Placement, RecordSelection};

use super::context::{CacheArgs, ModelArgs};

/// Output format of `protfam annotate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Tsv,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct AnnotateArgs {
    /// Classifier directory written by `protfam train`.
    #[arg(help_heading = "Input", long, value_name = "DIR")]
    pub classifier: PathBuf,
    /// Input sequences: FASTA (or Stockholm / Pfam CSV shard), plain or gzip; `-` reads standard input.
    #[arg(
        value_name = "INPUT",
        required_unless_present = "input_flag",
        conflicts_with = "input_flag"
    )]
    pub input: Option<PathBuf>,
    /// Input sequences (the same as the positional INPUT).
    #[arg(help_heading = "Input", short = 'i', long = "input", value_name = "FILE")]
    pub input_flag: Option<PathBuf>,
    /// Output file (default: standard output).
    #[arg(help_heading = "Output", short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(help_heading = "Output", long, value_enum, default_value_t = OutputFormat::Tsv)]
    pub format: OutputFormat,
    /// Families listed per sequence: the best plus this many minus one runners-up.
    #[arg(help_heading = "Output", long, default_value_t = 3)]
    pub top_k: usize,
    /// Precision the abstention threshold is calibrated for. When it differs
    /// from the stored calibration's, the threshold is recalibrated on the dev
    /// part of the classifier's split (not saved; use `protfam calibrate` to store it).
    #[arg(help_heading = "Confidence", long)]
    pub min_precision: Option<f64>,
    /// Exit with status 0 even when some records were invalid (they are always reported and skipped).
    #[arg(help_heading = "Input", long)]
    pub lenient: bool,
    #[command(flatten)]
    pub parts: PartArgs,
    /// Residues per embedding batch (default: the model's own).
    #[arg(help_heading = "Model and device", long)]
    pub batch_tokens: Option<usize>,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub models: ModelArgs,
}

/// One task of a job array over the input records (`annotate`, `domains scan`):
/// its share and where its part goes, for the `merge` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct PartArgs {
    /// Only share K of N of the records (record i belongs to share i mod N, K from 0): one task
    /// of a job array. Writes `part-K-of-N.jsonl` to --part-dir for the `merge` subcommand.
    #[arg(
        help_heading = "Job array",
        long,
        value_name = "K/N",
        requires = "part_dir",
        conflicts_with = "output"
    )]
    pub shard: Option<WorkShard>,
    /// Directory the part of --shard is written to (shared by all tasks).
    #[arg(help_heading = "Job array", long, value_name = "DIR", requires = "shard")]
    pub part_dir: Option<PathBuf>,
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
    #[arg(help_heading = "Output", short, long)]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(help_heading = "Output", long, value_enum, default_value_t = OutputFormat::Tsv)]
    pub format: OutputFormat,
    /// Exit with status 0 even when some records were invalid.
    #[arg(help_heading = "Input", long)]
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
    let merged = protfam::shard::merge_parts(&args.part_dir)?;
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

impl AnnotateArgs {
    fn input(&self) -> &Path {
        self.input_flag
            .as_deref()
            .or(self.input.as_deref())
            .expect("clap requires one input")
    }
}

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// Classifier directory written by `protfam train`.
    #[arg(help_heading = "Input", long, value_name = "DIR")]
    pub classifier: PathBuf,
    /// Dataset root holding `<split>/dev/` (default: the one the classifier was trained on).
    #[arg(help_heading = "Data", long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Split directory name (default: the one the classifier was trained on).
    #[arg(help_heading = "Data", long)]
    pub split: Option<String>,
    /// Precision the threshold must reach on dev.
    #[arg(help_heading = "Confidence", long, default_value_t = 0.95)]
    pub min_precision: f64,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub models: ModelArgs,
}

/// The dev split to calibrate on: `data` / `split`, each defaulting to the
/// classifier's own training split.
fn dev_split(classifier: &TrainedClassifier, data: Option<&Path>, split: Option<&str>) -> anyhow::Result<Split> {
    let (root, name) = match (data, split, classifier.training_split()) {
        (Some(root), Some(split), _) => (root.to_path_buf(), split.to_string()),
        (data, split, Some((root, trained))) => (
            data.map_or(root, Path::to_path_buf),
            split.map_or(trained, str::to_string),
        ),
        _ => bail!("the classifier does not record its training split: pass --data and --split"),
    };
    Split::open(&root, &name).with_context(|| {
        format!(
            "the classifier's dev split ({}); pass --data and --split where it moved",
            root.join(&name).display()
        )
    })
}

/// The classifier and its embedder, checked to be the one it was trained with.
fn load(dir: &Path, models: &ModelArgs) -> anyhow::Result<(TrainedClassifier, Box<dyn Embedder>)> {
    let opts = models.load_options()?;
    let classifier =
        TrainedClassifier::load(dir, &opts.device).with_context(|| format!("loading classifier {}", dir.display()))?;
    let embedder = load_embedder_for(classifier.embedder_spec(), &opts)?;
    Ok((classifier, embedder))
}

fn embed_options(batch_tokens: Option<usize>, records: u64) -> EmbedOptions {
    EmbedOptions {
        batch_tokens,
        progress: protfam::progress::bar(records, "sequences"),
        ..Default::default()
    }
}

pub fn run_calibrate(args: CalibrateArgs) -> anyhow::Result<ExitCode> {
    let (classifier, embedder) = load(&args.classifier, &args.models)?;
    let split = dev_split(&classifier, args.data.as_deref(), args.split.as_deref())?;
    let opts = embed_options(None, 0);
    let calibration =
        classifier.calibrate_on_split(embedder.as_ref(), &args.cache.open(), &split, args.min_precision, &opts)?;
    opts.progress.finish_and_clear();
    let path = calibration.save(&args.classifier)?;
    println!("calibration: {}", calibration.describe());
    println!("saved to {}", path.display());
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
    let input_path = args.input();
    if input_path.as_os_str() != "-" && !input_path.is_file() {
        bail!("{}: no such input file", input_path.display());
    }
    let (classifier, embedder) = load(&args.classifier, &args.models)?;
    let cache = args.cache.open();
    let mut calibration = classifier.stored_calibration(&args.classifier)?;
    if let Some(target) = args.min_precision {
        if calibration
            .as_ref()
            .is_none_or(|c| (c.target_precision - target).abs() > 1e-12)
        {
            let split = dev_split(&classifier, None, None)
                .context("--min-precision recalibrates on the classifier's training split")?;
            let opts = embed_options(args.batch_tokens, 0);
            let c = classifier.calibrate_on_split(embedder.as_ref(), &cache, &split, target, &opts)?;
            opts.progress.finish_and_clear();
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

    let input = read_input(input_path)?.select(args.parts.shard);
    report_input_problems(&input);
    let opts = embed_options(args.batch_tokens, input.records.len() as u64);
    let outcomes = classifier.predict_records(embedder.as_ref(), &cache, &input.records, &input.name, &opts)?;
    opts.progress.finish_and_clear();
    if outcomes.len() != input.records.len() {
        bail!(
            "internal: {} predictions for {} valid records",
            outcomes.len(),
            input.records.len()
        );
    }
    let rows = annotate::annotations(
        &input.items,
        &outcomes,
        classifier.vocab(),
        &classifier.train_ids(),
        calibration.as_ref(),
        args.top_k,
    );
    let settings = part_settings(&args, classifier.training_digest(), calibration.as_ref());
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
    if let (Some(shard), Some(dir), Some(placement)) = (args.parts.shard, &args.parts.part_dir, &input.placement) {
        let context = PartContext {
            shard,
            input: &input.name,
            duplicate_ids: input.duplicates,
            settings,
        };
        let path = protfam::shard::write_part(dir, &context, placement, rows)?;
        eprintln!(
            "part {shard}: {} of {} records -> {}",
            rows.len(),
            placement.input_records,
            path.display()
        );
        return exit_status(rows, input.duplicates, started, args.lenient);
    }
    write_rows(
        args.output.as_deref(),
        args.format,
        args.lenient,
        rows,
        input.duplicates,
        started,
    )
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
        Some(path) => protfam::atomic::write_atomic(path, |file| write(file))
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
