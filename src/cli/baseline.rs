//! `protfam baseline hmm|blast`: the HMMER and BLAST baselines on a Pfam
//! split, printed as a Markdown table and written as JSON / CSV reports that
//! `protfam evaluate` and `protfam compare` read.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use protfam::baseline::{run_baseline_detailed, write_reports, BaselineKind, BaselineOptions};
use protfam::dataset::Split;
use protfam::report::{markdown_size_table, markdown_table};

use super::context::DataArgs;

#[derive(Debug, clap::Subcommand)]
pub enum BaselineCommand {
    /// Profile HMMs (HMMER): one per family from its training alignment; best-scoring profile wins.
    Hmm(BaselineArgs),
    /// BLAST+ blastp against the training sequences; the top hit's family wins.
    Blast(BaselineArgs),
    /// Both baselines, one after the other, in one table.
    All(BaselineArgs),
}

#[derive(Debug, clap::Args)]
pub struct BaselineArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Where the JSON / CSV reports go.
    #[arg(
        help_heading = "Output",
        short = 'o',
        long = "output",
        alias = "report-dir",
        value_name = "DIR",
        default_value = "data/reports"
    )]
    pub report_dir: PathBuf,
    /// Where the HMM / BLAST databases are cached (keyed by a digest of the training data).
    #[arg(help_heading = "Output", long, default_value = "data/baselines")]
    pub work_dir: PathBuf,
    /// Directory holding hmmbuild/hmmpress/hmmsearch or makeblastdb/blastp (default: search PATH).
    #[arg(help_heading = "Baseline", long)]
    pub tool_dir: Option<PathBuf>,
    /// HMM: run hmmsearch with --max (no acceleration filters; much slower, every sequence gets a best profile).
    #[arg(help_heading = "Baseline", long)]
    pub max: bool,
}

/// The validated form of [`BaselineArgs`].
struct BaselineConfig {
    data: Split,
    report_dir: PathBuf,
    options: BaselineOptions,
}

impl BaselineArgs {
    fn validate(self) -> anyhow::Result<BaselineConfig> {
        let data = self.data.open()?;
        let mut options = BaselineOptions::new(self.work_dir);
        options.tool_dir = self.tool_dir;
        options.hmm_max = self.max;
        Ok(BaselineConfig {
            data,
            report_dir: self.report_dir,
            options,
        })
    }
}

pub fn run(cmd: BaselineCommand) -> anyhow::Result<ExitCode> {
    let (kinds, args) = match cmd {
        BaselineCommand::Hmm(args) => (vec![BaselineKind::Hmm], args),
        BaselineCommand::Blast(args) => (vec![BaselineKind::Blast], args),
        BaselineCommand::All(args) => (BaselineKind::ALL.to_vec(), args),
    };
    let config = args.validate()?;
    let mut rows = Vec::new();
    for kind in kinds {
        let run = run_baseline_detailed(kind, &config.data, &config.options)
            .with_context(|| format!("{kind} baseline on {}", config.data.dir().display()))?;
        let written = write_reports(&config.report_dir, kind, config.data.name(), &run.row, &run.predictions)?;
        let no_hit = run.predictions.iter().filter(|p| p.predicted.is_none()).count();
        tracing::info!(
            "{kind}: {} errors in {} test sequences ({:.2}%), {no_hit} without any hit; {} database {} {}; reports: {}",
            run.row.errors,
            run.row.n,
            100.0 * run.row.error_rate,
            run.tool_version,
            if run.reused_database { "reused from" } else { "built in" },
            run.database_dir.display(),
            written
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        rows.push(run.row);
    }
    println!("{}", markdown_table(&rows));
    println!("{}", markdown_size_table(&rows));
    Ok(ExitCode::SUCCESS)
}
