//! `protfam info <dir>`: what a saved classifier of either family holds — kind,
//! hyper-parameters, embedder identity, training data, per-epoch log, residue
//! store, calibration ([`protfam::classifier::describe`]) — and whether its files
//! are intact: every weight tensor's SHA-256 is recomputed, and a missing,
//! truncated or damaged file makes `info` fail.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Classifier directory written by `protfam train` (or `evaluate --save-classifiers`).
    pub dir: PathBuf,
    /// Print the directory's own JSON description as it is.
    #[arg(help_heading = "Output", long)]
    pub json: bool,
}

pub fn run(args: InfoArgs) -> anyhow::Result<ExitCode> {
    if args.json {
        println!("{}", protfam::classifier::describe_json(&args.dir)?);
    } else {
        print!("{}", protfam::classifier::describe(&args.dir)?);
    }
    Ok(ExitCode::SUCCESS)
}
