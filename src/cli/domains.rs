//! `protfam domains`: every Pfam domain of whole proteins (see [`protfam::domains`]).
//!
//! - `domains scan --classifier DIR INPUT`: calls with envelopes, scores and
//!   calibrated confidence as TSV, JSON or GFF3 (streamed in input order; a
//!   file output appears atomically when complete). With `--shard K/N
//!   --part-dir DIR` one task of a job array: proteins K, K+N, ... into its part.
//! - `domains merge PART_DIR`: the parts of the N tasks, in input order, byte
//!   for byte the output of one `domains scan` (see [`protfam::shard`]).
//! - `domains calibrate --classifier DIR`: chooses the scan settings and the
//!   score cut for a target precision on the dev proteins of the bundled
//!   `full_length/` set (or any FASTA + truth TSV) and stores them with the classifier.
//! - `domains evaluate --classifier DIR`: the test proteins scored beside
//!   `hmmscan` (its cut fitted on the same dev proteins), tune and test side by side.
//!
//! Only `residue-knn` classifiers call domains: the residue store gives the spans.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use protfam::annotate::InputItem;
use protfam::baseline::BaselineOptions;
use protfam::classifier::load_embedder_for;
use protfam::domains::eval::{recall_at_precision, DomainCalibration, DomainMetrics, Truth};
use protfam::domains::output::{DomainFormat, DomainWriter, FormattedProtein};
use protfam::domains::scan::{DomainScanner, ScanParams, SearchedProtein};
use protfam::domains::{hmmer, ProteinDomains};
use protfam::embedder::Embedder;
use protfam::io::input::SequenceReader;
use protfam::io::{alphabet, Record};
use protfam::residue::ResidueKnn;
use protfam::shard::{PartContext, RecordSelection};

use super::annotate::PartArgs;
use super::context::{DataArgs, ModelArgs};

#[derive(Debug, clap::Subcommand)]
pub enum DomainsCommand {
    /// Call every domain of whole proteins (TSV, JSON or GFF3).
    Scan(ScanArgs),
    /// Merge the parts of `domains scan --shard K/N` tasks into the output one scan writes.
    Merge(MergeArgs),
    /// Fit the scan settings and the confidence cut on dev proteins; stored with the classifier.
    Calibrate(CalibrateArgs),
    /// Score the test proteins beside hmmscan and write the report.
    Evaluate(EvaluateArgs),
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// A `residue-knn` classifier directory written by `protfam train`.
    #[arg(help_heading = "Input", long, value_name = "DIR")]
    pub classifier: PathBuf,
    /// Whole proteins: FASTA (plain or gzip; `-` reads standard input).
    #[arg(
        value_name = "INPUT",
        required_unless_present = "input_flag",
        conflicts_with = "input_flag"
    )]
    pub input: Option<PathBuf>,
    /// The same as the positional INPUT.
    #[arg(help_heading = "Input", short = 'i', long = "input", value_name = "FILE")]
    pub input_flag: Option<PathBuf>,
    /// Output file (default: standard output).
    #[arg(help_heading = "Output", short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format: tsv, json or gff3.
    #[arg(help_heading = "Output", long, default_value = "tsv")]
    pub format: DomainFormat,
    /// Also write the calls below the confidence cut (with `confident` false).
    #[arg(help_heading = "Output", long)]
    pub all_calls: bool,
    /// Skip invalid records (reported on stderr) instead of stopping.
    #[arg(help_heading = "Input", long)]
    pub lenient: bool,
    #[command(flatten)]
    pub parts: PartArgs,
    #[command(flatten)]
    pub models: ModelArgs,
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The --part-dir of the `domains scan --shard` tasks.
    #[arg(value_name = "PART_DIR")]
    pub part_dir: PathBuf,
    /// Output file (default: standard output); the format is the tasks' --format.
    #[arg(help_heading = "Output", short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Where the tuning (dev) and test proteins are.
#[derive(Debug, Clone, clap::Args)]
pub struct FullLengthArgs {
    /// Whole proteins to tune on [default: <data>/full_length/dev.fasta].
    #[arg(help_heading = "Input", long, value_name = "FILE")]
    pub dev_fasta: Option<PathBuf>,
    /// Their domains [default: <data>/full_length/dev_domains.tsv].
    #[arg(help_heading = "Input", long, value_name = "FILE")]
    pub dev_truth: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
}

impl FullLengthArgs {
    fn file(&self, given: &Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
        match given {
            Some(path) => Ok(path.clone()),
            None => Ok(self.data.root()?.join("full_length").join(name)),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// A `residue-knn` classifier directory.
    #[arg(help_heading = "Input", long, value_name = "DIR")]
    pub classifier: PathBuf,
    /// Precision the confident calls must reach on the dev proteins.
    #[arg(help_heading = "Confidence", long, default_value_t = 0.9)]
    pub min_precision: f64,
    /// Keep the scan settings as given instead of choosing shift and gap costs on dev.
    #[arg(help_heading = "Confidence", long)]
    pub no_tune: bool,
    #[command(flatten)]
    pub scan: ScanFlags,
    #[command(flatten)]
    pub full_length: FullLengthArgs,
    #[command(flatten)]
    pub models: ModelArgs,
}

/// Scan settings that are given rather than tuned.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Scan")]
pub struct ScanFlags {
    /// Search every N-th residue of the proteins (a multiple of the store's stride).
    #[arg(long, default_value_t = ScanParams::default().search_stride)]
    pub search_stride: usize,
    /// Window length in residues; each window nominates its own candidates.
    #[arg(long, default_value_t = ScanParams::default().window)]
    pub window: usize,
    /// Training domains aligned per window.
    #[arg(long, default_value_t = ScanParams::default().window_candidates)]
    pub window_candidates: usize,
}

impl ScanFlags {
    fn params(&self) -> ScanParams {
        ScanParams {
            search_stride: self.search_stride,
            window: self.window,
            window_candidates: self.window_candidates,
            ..ScanParams::default()
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// A `residue-knn` classifier directory (calibrated first when it has no domain calibration).
    #[arg(help_heading = "Input", long, value_name = "DIR")]
    pub classifier: PathBuf,
    /// Whole proteins to report on [default: <data>/full_length/test.fasta].
    #[arg(help_heading = "Input", long, value_name = "FILE")]
    pub test_fasta: Option<PathBuf>,
    /// Their domains [default: <data>/full_length/test_domains.tsv].
    #[arg(help_heading = "Input", long, value_name = "FILE")]
    pub test_truth: Option<PathBuf>,
    /// Precision of the dev-fitted cuts (protfam and hmmscan alike).
    #[arg(help_heading = "Confidence", long, default_value_t = 0.9)]
    pub min_precision: f64,
    #[command(flatten)]
    pub scan: ScanFlags,
    /// Leave out the hmmscan baseline.
    #[arg(help_heading = "Baseline", long)]
    pub no_hmmer: bool,
    /// Where the HMM database is cached (shared with `protfam baseline`).
    #[arg(
        help_heading = "Baseline",
        long,
        value_name = "DIR",
        default_value = "data/baselines"
    )]
    pub work_dir: PathBuf,
    /// Report directory (`domains.md`, `domains.json`, the calls of each method).
    #[arg(
        help_heading = "Output",
        short,
        long,
        value_name = "DIR",
        default_value = "data/reports/domains"
    )]
    pub output: PathBuf,
    #[command(flatten)]
    pub full_length: FullLengthArgs,
    #[command(flatten)]
    pub models: ModelArgs,
}

pub fn run(cmd: DomainsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DomainsCommand::Scan(args) => run_scan(args),
        DomainsCommand::Merge(args) => run_merge(args),
        DomainsCommand::Calibrate(args) => run_calibrate(args).map(|_| ExitCode::SUCCESS),
        DomainsCommand::Evaluate(args) => run_evaluate(args),
    }
}

/// The classifier (which must be `residue-knn`) and its embedder.
fn load(dir: &Path, models: &ModelArgs) -> anyhow::Result<(ResidueKnn, Box<dyn Embedder>)> {
    if !ResidueKnn::is_saved_in(dir) {
        bail!(
            "{} is not a residue-knn classifier: only residue-knn calls domains \
             (train one with `protfam train --classifier residue-knn --model near`)",
            dir.display()
        );
    }
    let knn = ResidueKnn::load(dir).with_context(|| format!("loading classifier {}", dir.display()))?;
    let embedder = load_embedder_for(knn.store.spec(), &models.load_options()?)?;
    Ok((knn, embedder))
}

/// Reads whole proteins; invalid records stop the run unless `lenient` (then they are listed and skipped).
fn read_proteins(path: &Path, lenient: bool) -> anyhow::Result<Vec<Record>> {
    let name = path.display().to_string();
    let reader = SequenceReader::open(path, None).with_context(|| format!("reading {name}"))?;
    let mut records = Vec::new();
    let mut skipped = 0usize;
    for (n, item) in reader.reject_duplicates(true).enumerate() {
        let problem = match item {
            Ok(record) => match alphabet::check(&record.sequence) {
                Ok(()) if record.sequence.is_empty() => format!("{name}: record {}: empty sequence", record.id),
                Ok(()) => {
                    records.push(record);
                    continue;
                }
                Err(message) => format!("{name}: record {}: {message}", record.id),
            },
            Err(e) if e.is_skippable() => e.to_string(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {name} (record {})", n + 1)),
        };
        if !lenient {
            bail!("{problem} (pass --lenient to skip invalid records)");
        }
        eprintln!("skipped: {problem}");
        skipped += 1;
    }
    if records.is_empty() {
        bail!("{name}: no valid protein to scan ({skipped} skipped)");
    }
    Ok(records)
}

/// Embeds and searches `records` batch by batch (bounded memory) with a progress bar,
/// handing each batch's searched proteins to `each` in input order; ends with a speed line.
fn search_batches(
    scanner: &DomainScanner,
    records: &[Record],
    params: &ScanParams,
    mut each: impl FnMut(Vec<SearchedProtein>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let residues: u64 = records.iter().map(|r| r.sequence.len() as u64).sum();
    let bar = protfam::progress::bar(residues, "residues");
    let started = Instant::now();
    let mut done = 0usize;
    for range in scanner.batches(records) {
        let batch = &records[range];
        each(scanner.search(batch, params)?)?;
        done += batch.len();
        bar.inc(batch.iter().map(|r| r.sequence.len() as u64).sum());
        bar.set_message(format!("{done}/{} proteins", records.len()));
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "scanned {} proteins ({residues} residues) in {seconds:.1} s: {:.2} proteins/s, {:.0} residues/s",
        records.len(),
        records.len() as f64 / seconds.max(1e-9),
        residues as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// Calls the domains of `records` batch by batch, handing each batch's calls to `each` in input order.
fn scan_records(
    scanner: &DomainScanner,
    records: &[Record],
    params: &ScanParams,
    calibration: Option<&DomainCalibration>,
    mut each: impl FnMut(&[ProteinDomains]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    search_batches(scanner, records, params, |searched| {
        let mut calls = scanner.call_all(&searched, params);
        if let Some(c) = calibration {
            c.apply(&mut calls);
        }
        each(&calls)
    })
}

fn run_scan(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let input = args
        .input_flag
        .as_deref()
        .or(args.input.as_deref())
        .expect("clap requires an input");
    let (knn, embedder) = load(&args.classifier, &args.models)?;
    let calibration = DomainCalibration::load(&args.classifier)?;
    let params = match &calibration {
        Some(c) => c.params.clone(),
        None => {
            eprintln!(
                "warning: {} has no domain calibration (run `protfam domains calibrate`): \
                 default settings, no call is marked confident (use --all-calls to see them)",
                args.classifier.display()
            );
            ScanParams::default()
        }
    };
    let mut records = read_proteins(input, args.lenient)?;
    let scanner = DomainScanner::new(&knn, embedder.as_ref())?;
    if let (Some(shard), Some(dir)) = (args.parts.shard, &args.parts.part_dir) {
        // Positions count the proteins read (invalid ones skipped with --lenient alike in every task).
        let items = records
            .iter()
            .map(|r| InputItem::Valid {
                id: r.id.clone(),
                length: r.sequence.len(),
                note: String::new(),
            })
            .collect();
        let selection = RecordSelection::select(items, std::mem::take(&mut records), shard);
        let formatter = DomainWriter::new(std::io::sink(), args.format, args.all_calls)?;
        let mut rows = Vec::with_capacity(selection.records.len());
        if !selection.records.is_empty() {
            scan_records(&scanner, &selection.records, &params, calibration.as_ref(), |batch| {
                rows.extend(batch.iter().map(|p| FormattedProtein {
                    text: formatter.format_protein(p),
                    confident: p.confident().count(),
                }));
                Ok(())
            })?;
        }
        let context = PartContext {
            shard,
            input: &input.display().to_string(),
            duplicate_ids: 0,
            settings: serde_json::json!({
                "classifier": std::fs::canonicalize(&args.classifier).unwrap_or_else(|_| args.classifier.clone()),
                // The store's directory name holds its embedder, stride and training-data digest.
                "store": knn.store.dir.file_name().map(|n| n.to_string_lossy().into_owned()),
                "calibration": calibration.as_ref().map(|c| serde_json::to_value(c).unwrap_or_default()),
                "params": serde_json::to_value(&params).unwrap_or_default(),
                "format": args.format.name(),
                "all_calls": args.all_calls,
                "lenient": args.lenient,
                "protfam": env!("CARGO_PKG_VERSION"),
            }),
        };
        let path = protfam::shard::write_part(dir, &context, &selection.placement, &rows)?;
        eprintln!(
            "part {shard}: {} of {} proteins -> {}",
            rows.len(),
            selection.placement.input_records,
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (mut confident, mut proteins_with) = (0usize, 0usize);
    write_output(args.output.as_deref(), args.format, args.all_calls, |writer| {
        scan_records(&scanner, &records, &params, calibration.as_ref(), |batch| {
            for p in batch {
                let n = p.confident().count();
                confident += n;
                proteins_with += (n > 0) as usize;
                writer.write(p)?;
            }
            Ok(())
        })
    })?;
    eprintln!(
        "{confident} confident domains on {proteins_with} of {} proteins",
        records.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `domains merge`: the tasks' proteins in input order, written as one `domains scan` writes them.
fn run_merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let merged = protfam::shard::merge_parts::<FormattedProtein>(&args.part_dir)?;
    let settings = &merged.header.settings;
    let format: DomainFormat = settings["format"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{}: {e}", args.part_dir.display()))?;
    let all_calls = settings["all_calls"].as_bool().unwrap_or(false);
    write_output(args.output.as_deref(), format, all_calls, |writer| {
        for p in &merged.rows {
            writer.write_formatted(p)?;
        }
        Ok(())
    })?;
    let confident: usize = merged.rows.iter().map(|p| p.confident).sum();
    let proteins_with = merged.rows.iter().filter(|p| p.confident > 0).count();
    eprintln!(
        "merged {} parts of {}: {confident} confident domains on {proteins_with} of {} proteins",
        merged.parts,
        merged.header.input,
        merged.rows.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes domain calls through `fill` to `output` (atomically: the file appears when
/// complete) or to standard output.
fn write_output(
    output: Option<&Path>,
    format: DomainFormat,
    all_calls: bool,
    mut fill: impl FnMut(&mut DomainWriter<&mut dyn Write>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut write_all = |out: &mut dyn Write| -> anyhow::Result<()> {
        let mut writer = DomainWriter::new(out, format, all_calls)?;
        fill(&mut writer)?;
        writer.finish()?;
        Ok(())
    };
    match output {
        Some(path) => protfam::atomic::write_atomic_via_path(path, |tmp| -> anyhow::Result<()> {
            let file = std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut out = std::io::BufWriter::new(file);
            write_all(&mut out)?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            Ok(())
        })
        .with_context(|| format!("writing {}", path.display()))?,
        None => write_all(&mut std::io::stdout().lock())?,
    }
    Ok(())
}

/// The scan settings tried on dev: the match-score shift and the gap costs move the
/// envelope edges and how chance alignments score; the rest keeps its defaults.
fn tuning_grid(base: &ScanParams) -> Vec<ScanParams> {
    let mut grid = Vec::new();
    for shift in [0.15f32, 0.2] {
        for (open, extend) in [(0.5f32, 0.05f32), (1.0, 0.1)] {
            for vote_weight in [0.0f32, 1.0, 2.0] {
                grid.push(ScanParams {
                    shift,
                    gap_open: open,
                    gap_extend: extend,
                    vote_weight,
                    ..base.clone()
                });
            }
        }
    }
    grid
}

/// Searches every protein once (the costly part), for calling under several settings.
fn search_all(
    scanner: &DomainScanner,
    records: &[Record],
    params: &ScanParams,
) -> anyhow::Result<Vec<SearchedProtein>> {
    let mut out = Vec::with_capacity(records.len());
    search_batches(scanner, records, params, |batch| {
        out.extend(batch);
        Ok(())
    })?;
    Ok(out)
}

fn run_calibrate(args: CalibrateArgs) -> anyhow::Result<DomainCalibration> {
    anyhow::ensure!(
        args.min_precision > 0.0 && args.min_precision <= 1.0,
        "--min-precision must lie in (0, 1]"
    );
    let (knn, embedder) = load(&args.classifier, &args.models)?;
    calibrate(
        &knn,
        embedder.as_ref(),
        &args.classifier,
        &args.full_length,
        &args.scan.params(),
        args.min_precision,
        !args.no_tune,
    )
}

fn calibrate(
    knn: &ResidueKnn,
    embedder: &dyn Embedder,
    classifier_dir: &Path,
    full_length: &FullLengthArgs,
    base: &ScanParams,
    min_precision: f64,
    tune: bool,
) -> anyhow::Result<DomainCalibration> {
    let fasta = full_length.file(&full_length.dev_fasta, "dev.fasta")?;
    let truth_path = full_length.file(&full_length.dev_truth, "dev_domains.tsv")?;
    let truth = Truth::read(&truth_path)?;
    let records = read_proteins(&fasta, false)?;
    let scanner = DomainScanner::new(knn, embedder)?;
    let grid = if tune { tuning_grid(base) } else { vec![base.clone()] };
    let searched = search_all(&scanner, &records, &grid[0])?;
    let tuned_on = format!("{} + {}", fasta.display(), truth_path.display());
    let mut best: Option<DomainCalibration> = None;
    for params in &grid {
        let calls = scanner.call_all(&searched, params);
        let c = DomainCalibration::fit("scan", params, &calls, &truth, min_precision, &tuned_on);
        eprintln!(
            "  {}: cut {}, precision {:.3}, recall {:.3} (dev part {:.3}, train part {:.3})",
            params.describe(),
            c.cut.map_or("none".to_string(), |v| format!("{v:.1}")),
            c.tune_metrics.precision,
            c.tune_metrics.recall,
            c.tune_metrics.recall_of("dev"),
            c.tune_metrics.recall_of("train")
        );
        if best
            .as_ref()
            .is_none_or(|b| c.tune_metrics.recall > b.tune_metrics.recall)
        {
            best = Some(c);
        }
    }
    let best = best.expect("a non-empty grid");
    best.save(classifier_dir)?;
    eprintln!(
        "domain calibration ({}): cut {} at precision {min_precision}, saved to {}",
        best.params.describe(),
        best.cut.map_or("none".to_string(), |v| format!("{v:.1}")),
        classifier_dir.join(protfam::domains::eval::CALIBRATION_FILE).display()
    );
    Ok(best)
}

/// One report row.
struct Row {
    method: String,
    set: &'static str,
    metrics: DomainMetrics,
    cut: Option<f64>,
    seconds: Option<f64>,
}

fn run_evaluate(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let (knn, embedder) = load(&args.classifier, &args.models)?;
    let calibration = match DomainCalibration::load(&args.classifier)? {
        Some(c) if c.min_precision == args.min_precision => c,
        _ => {
            eprintln!(
                "calibrating on the dev proteins first (precision {})",
                args.min_precision
            );
            calibrate(
                &knn,
                embedder.as_ref(),
                &args.classifier,
                &args.full_length,
                &args.scan.params(),
                args.min_precision,
                true,
            )?
        }
    };
    let fl = &args.full_length;
    let test_fasta = fl.file(&args.test_fasta, "test.fasta")?;
    let test_truth = Truth::read(&fl.file(&args.test_truth, "test_domains.tsv")?)?;
    let records = read_proteins(&test_fasta, false)?;
    std::fs::create_dir_all(&args.output).with_context(|| format!("creating {}", args.output.display()))?;

    let scanner = DomainScanner::new(&knn, embedder.as_ref())?;
    let started = Instant::now();
    let mut protfam_calls: Vec<ProteinDomains> = Vec::with_capacity(records.len());
    scan_records(&scanner, &records, &calibration.params, Some(&calibration), |batch| {
        protfam_calls.extend_from_slice(batch);
        Ok(())
    })?;
    let protfam_seconds = started.elapsed().as_secs_f64();
    write_calls(&args.output.join("calls-protfam.tsv"), &protfam_calls)?;
    let method = format!("protfam residue-knn ({})", knn.store.spec().name);
    let mut rows = vec![
        Row {
            method: method.clone(),
            set: "dev",
            metrics: calibration.tune_metrics.clone(),
            cut: calibration.cut,
            seconds: None,
        },
        Row {
            method: method.clone(),
            set: "test",
            metrics: DomainMetrics::of(&protfam_calls, &test_truth),
            cut: calibration.cut,
            seconds: Some(protfam_seconds),
        },
    ];
    let mut hmm_test_precision = None;
    if !args.no_hmmer {
        let split = fl.data.open()?;
        let opts = BaselineOptions::new(&args.work_dir);
        let (db, _tools, train) = protfam::baseline::hmm_database(&split, &opts)?;
        let dev_fasta = fl.file(&fl.dev_fasta, "dev.fasta")?;
        let dev_truth_path = fl.file(&fl.dev_truth, "dev_domains.tsv")?;
        let dev_truth = Truth::read(&dev_truth_path)?;
        let dev_records = read_proteins(&dev_fasta, false)?;
        let dev_calls = hmmer::scan(&db, &train, &dev_records, &opts)?;
        let hmm_cal = DomainCalibration::fit(
            "hmmscan",
            &calibration.params,
            &dev_calls,
            &dev_truth,
            args.min_precision,
            &format!("{} + {}", dev_fasta.display(), dev_truth_path.display()),
        );
        let started = Instant::now();
        let mut test_calls = hmmer::scan(&db, &train, &records, &opts)?;
        let hmm_seconds = started.elapsed().as_secs_f64();
        hmm_cal.apply(&mut test_calls);
        write_calls(&args.output.join("calls-hmmscan.tsv"), &test_calls)?;
        let test_metrics = DomainMetrics::of(&test_calls, &test_truth);
        hmm_test_precision = Some(test_metrics.precision);
        rows.push(Row {
            method: "hmmscan (training-part HMMs)".into(),
            set: "dev",
            metrics: hmm_cal.tune_metrics.clone(),
            cut: hmm_cal.cut,
            seconds: None,
        });
        rows.push(Row {
            method: "hmmscan (training-part HMMs)".into(),
            set: "test",
            metrics: test_metrics,
            cut: hmm_cal.cut,
            seconds: Some(hmm_seconds),
        });
    }
    let n_test = records.len();
    let mut md = String::new();
    md.push_str("# Domain annotation of whole proteins\n\n");
    md.push_str(&format!(
        "Test: {} ({} proteins, {} labelled domains: {}). Cuts fitted on dev at precision {} \
         (protfam: {}).\n\n",
        test_fasta.display(),
        n_test,
        test_truth.domains.len(),
        test_truth
            .part_counts()
            .iter()
            .map(|(p, n)| format!("{n} in part {p}"))
            .collect::<Vec<_>>()
            .join(", "),
        args.min_precision,
        calibration.params.describe()
    ));
    md.push_str("| method | set | cut | calls | precision | recall remote (dev/test part) | recall seen (train part) | recall | F1 | proteins all right | median start / end error | proteins/s |\n");
    md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &rows {
        let m = &r.metrics;
        let remote = if r.set == "dev" {
            m.recall_of("dev")
        } else {
            m.recall_of("test")
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} of {} | {} / {} | {} |\n",
            r.method,
            r.set,
            r.cut.map_or("none".into(), |c| format!("{c:.1}")),
            m.calls,
            m.precision,
            remote,
            m.recall_of("train"),
            m.recall,
            m.f1,
            m.proteins_all_right,
            m.proteins,
            m.median_start_error,
            m.median_end_error,
            r.seconds
                .map_or("–".into(), |s| format!("{:.2}", m.proteins as f64 / s.max(1e-9)))
        ));
    }
    if let Some(p) = hmm_test_precision {
        let (recall, cut) = recall_at_precision(&protfam_calls, &test_truth, p, "test");
        let hmm_recall = rows
            .iter()
            .find(|r| r.set == "test" && r.method.starts_with("hmmscan"))
            .map_or(0.0, |r| r.metrics.recall_of("test"));
        md.push_str(&format!(
            "\nAt hmmscan's test precision ({p:.3}), protfam's best recall of remote (`test` part) domains over \
             score cuts is {recall:.3} (cut {}), hmmscan's {hmm_recall:.3}: {:.2}x. This line reads the \
             test curve at a precision, it fits nothing that the rows above use.\n",
            cut.map_or("none".into(), |c| format!("{c:.1}")),
            if hmm_recall > 0.0 {
                recall / hmm_recall
            } else {
                f64::NAN
            }
        ));
    }
    let json = serde_json::json!({
        "test_fasta": test_fasta,
        "min_precision": args.min_precision,
        "scan_params": calibration.params,
        "rows": rows.iter().map(|r| serde_json::json!({
            "method": r.method, "set": r.set, "cut": r.cut, "metrics": r.metrics, "seconds": r.seconds,
        })).collect::<Vec<_>>(),
    });
    let md_path = args.output.join("domains.md");
    protfam::atomic::write_bytes_atomic(&md_path, md.as_bytes())
        .with_context(|| format!("writing {}", md_path.display()))?;
    let json_path = args.output.join("domains.json");
    protfam::atomic::write_bytes_atomic(&json_path, serde_json::to_string_pretty(&json)?.as_bytes())
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("{md}");
    eprintln!("report: {} and {}", md_path.display(), json_path.display());
    Ok(ExitCode::SUCCESS)
}

fn write_calls(path: &Path, calls: &[ProteinDomains]) -> anyhow::Result<()> {
    protfam::atomic::write_atomic(path, |out| {
        let mut w = DomainWriter::new(out, DomainFormat::Tsv, true)?;
        for p in calls {
            w.write(p)?;
        }
        w.finish()?;
        Ok(())
    })
    .with_context(|| format!("writing {}", path.display()))
}
