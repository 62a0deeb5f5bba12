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
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Global")]
    pub verbose: u8,
    /// Worker threads for every parallel step (embedding, search, training,
    /// baseline tool processes) [default: all cores; also $RAYON_NUM_THREADS].
    #[arg(long, global = true, value_name = "N", help_heading = "Global")]
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

/// Hidden flags that are old spellings of a flag with a value, with that
/// replacement. Every other old spelling is a hidden clap alias, and its
/// replacement is the flag it aliases ([`old_spellings_in`]).
const OLD_FLAGS: &[(&str, &str)] = &[("cpu", "--device cpu")];

/// The old spellings (hidden aliases and [`OLD_FLAGS`]) among `args`, a command
/// line without the program name, in order, each with the spelling that
/// replaces it in the subcommand the line runs. They keep old scripts working
/// for one release, with a warning, and are removed in the next. Words after
/// `--` are values, not flags.
fn old_spellings_in<I, S>(cli: &clap::Command, args: I) -> Vec<(String, String)>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = cli;
    let mut found = Vec::new();
    for arg in args {
        let Some(arg) = arg.as_ref().to_str() else { continue };
        if arg == "--" {
            break;
        }
        let Some(flag) = arg.strip_prefix("--") else {
            // A subcommand name takes the search one level down (a value that
            // happens to spell one is harmless: only its flags are looked up).
            if let Some(sub) = cmd.find_subcommand(arg) {
                cmd = sub;
            }
            continue;
        };
        let name = flag.split_once('=').map_or(flag, |(name, _)| name);
        for a in cmd.get_arguments() {
            let aliased = a.get_all_aliases().unwrap_or_default().contains(&name)
                && !a.get_visible_aliases().unwrap_or_default().contains(&name);
            if aliased {
                let long = a.get_long().unwrap_or(name);
                let new = match a.get_short() {
                    Some(short) => format!("-{short}/--{long}"),
                    None => format!("--{long}"),
                };
                found.push((format!("--{name}"), new));
            } else if a.get_long() == Some(name) && a.is_hide_set() {
                if let Some((_, new)) = OLD_FLAGS.iter().find(|(old, _)| *old == name) {
                    found.push((format!("--{name}"), new.to_string()));
                }
            }
        }
    }
    found
}

/// Parses the process arguments and runs the chosen subcommand.
pub fn run() -> anyhow::Result<ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // One clap command, built once, serves the old-spelling lookup and the parse.
    let mut command = <Cli as clap::CommandFactory>::command();
    command.build();
    let old = old_spellings_in(&command, args.iter().skip(1));
    let say = |(old, new): &(String, String)| {
        format!(
            "`{old}` is the old spelling of `{new}`; it still works in this release and will be removed in the next"
        )
    };
    let parsed = command
        .try_get_matches_from_mut(&args)
        .and_then(|matches| <Cli as clap::FromArgMatches>::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and parse errors end here, before logging starts: a
            // script's old spelling is still worth its word.
            for spelling in &old {
                eprintln!("warning: {}", say(spelling));
            }
            e.exit()
        }
    };
    init_logging(cli.verbose);
    for spelling in &old {
        tracing::warn!("{}", say(spelling));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option of every subcommand, as `path --flag` for those `help` lists
    /// under the generic "Options:" heading (only `--help` and `--version` belong there).
    fn ungrouped_options(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !arg.is_positional() && !builtin && !arg.is_hide_set() && arg.get_help_heading().is_none() {
                out.push(format!("{path} --{}", arg.get_long().unwrap_or(arg.get_id().as_str())));
            }
        }
        for sub in cmd.get_subcommands() {
            ungrouped_options(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    /// The old spellings `line` (a command line after `protfam`) uses, with their replacements.
    fn old_spellings(line: &str) -> Vec<(String, String)> {
        let mut cmd = Cli::command();
        cmd.build();
        old_spellings_in(&cmd, line.split_whitespace())
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn old_spellings_are_named_with_the_replacement_of_the_subcommand_they_are_used_in() {
        assert_eq!(
            old_spellings("embed --fasta a.fa --out=x --cpu"),
            pairs(&[("--fasta", "-i/--input"), ("--cpu", "--device cpu")]),
            "embed has no --out alias: clap rejects it itself"
        );
        assert_eq!(
            old_spellings("evaluate --report-dir r --baseline-work-dir w"),
            pairs(&[("--report-dir", "-o/--output"), ("--baseline-work-dir", "--work-dir")])
        );
        assert_eq!(
            old_spellings("residue evaluate --out clf --report-dir=r"),
            pairs(&[("--out", "--save-classifier"), ("--report-dir", "-o/--output")])
        );
        assert_eq!(
            old_spellings("cache export --out p"),
            pairs(&[("--out", "-o/--output")])
        );
        // compare's --out is its own flag; words after `--` are not flags.
        assert!(old_spellings("compare --out figures --output r").is_empty());
        assert!(old_spellings("train --output d -- --out").is_empty());
        assert!(old_spellings("train --outer --output d").is_empty());
    }

    #[test]
    fn every_option_of_every_command_sits_under_a_named_help_section() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut ungrouped = Vec::new();
        ungrouped_options(&cmd, "protfam", &mut ungrouped);
        assert!(
            ungrouped.is_empty(),
            "options under the generic heading: {ungrouped:#?}"
        );
    }
}
