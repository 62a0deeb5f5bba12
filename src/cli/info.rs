//! `protfam info <dir>`: what a saved classifier of either family holds — kind,
//! hyper-parameters, embedder identity, training data, per-epoch log, residue
//! store, calibration — without loading its weights ([`protfam::classifier::describe`]).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Classifier directory written by `protfam train` (or `evaluate --save-classifiers`).
    pub dir: PathBuf,
    /// Print the directory's own JSON description as it is.
    #[arg(long)]
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
