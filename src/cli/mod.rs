//! Command-line interface: clap-derived raw arguments per subcommand, each
//! turned into a validated configuration by the subcommand's own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod annotate;
pub mod baseline;
pub mod cache;
pub mod compare;
pub mod context;
pub mod data;
pub mod domains;
pub mod embed;
pub mod evaluate;
pub mod info;
pub mod models;
pub mod report;
pub mod residue;
pub mod train;

/// Pfam family annotation of proteins by transfer learning from protein language models.
#[derive(Debug, Parser)]
#[command(name = "protfam", version, about, long_about = None)]
pub struct Cli {
    /// More log output (repeat for more); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Worker threads for every parallel step (embedding, search, training,
    /// baseline tool processes) [default: all cores; also $RAYON_NUM_THREADS].
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect datasets (Pfam split CSV shards).
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Embed sequences with a protein language model into the cache or a file.
    Embed(embed::EmbedArgs),
    /// Inspect, merge or export the embedding cache.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// List or fetch embedding models.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Train one classifier on cached embeddings.
    Train(train::TrainArgs),
    /// Train and test classifiers on a split and report error rates.
    Evaluate(evaluate::EvaluateArgs),
    /// Predict Pfam families for the sequences of a FASTA file.
    Annotate(annotate::AnnotateCommand),
    /// Calibrate a trained classifier's abstention threshold on the dev part of its split.
    Calibrate(annotate::CalibrateArgs),
    /// Compare embedding models and classifiers in one report with plots.
    Compare(compare::CompareArgs),
    /// Run the HMM (HMMER) or BLAST baseline on a split.
    #[command(subcommand)]
    Baseline(baseline::BaselineCommand),
    /// Residue-level retrieval (`residue-knn`): build the store, evaluate, tune, measure recall.
    #[command(subcommand)]
    Residue(residue::ResidueCommand),
    /// Every domain of whole proteins: scan, calibrate on dev, evaluate beside hmmscan.
    #[command(subcommand)]
    Domains(domains::DomainsCommand),
    /// Show what a trained classifier directory holds.
    Info(info::InfoArgs),
    /// Print a split's report again (headline with its paired test, tables) without running anything.
    Report(report::ReportArgs),
}

/// Parses the process arguments and runs the chosen subcommand.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if let Some(n) = cli.threads {
        anyhow::ensure!(n > 0, "--threads must be at least 1");
        // Candle sizes its own pools from the variable; rayon's global pool is ours.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| anyhow::anyhow!("cannot start {n} worker threads: {e}"))?;
    }
    match cli.command {
        Command::Data(cmd) => data::run(cmd),
        Command::Embed(args) => embed::run(args),
        Command::Cache(cmd) => cache::run(cmd),
        Command::Models(cmd) => models::run(cmd),
        Command::Train(args) => train::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Annotate(cmd) => annotate::run_command(cmd),
        Command::Calibrate(args) => annotate::run_calibrate(args),
        Command::Compare(args) => compare::run(args),
        Command::Baseline(cmd) => baseline::run(cmd),
        Command::Info(args) => info::run(args),
        Command::Report(args) => report::run(args),
        Command::Residue(cmd) => residue::run(cmd),
        Command::Domains(cmd) => domains::run(cmd),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "protfam=info",
        1 => "protfam=debug",
        _ => "protfam=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Escape codes only for a terminal: Slurm and CI logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
