//! `protfam report <dir>`: renders a split's report directory again (the one
//! `evaluate` and `compare` write) without running anything: the headline with
//! its paired test on the kept predictions, and the tables. `--summary` prints the
//! short table that `make readme-results` puts into the README, so the README's
//! figures are the report's and never typed by hand.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use protfam::report::{self, ReportPaths};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A split's report directory, e.g. `data/reports/clustered_split` (it holds `evaluate.json`).
    pub dir: PathBuf,
    /// Only the headline and a short table (method, errors, error %, 95% CI).
    #[arg(help_heading = "Output", long)]
    pub summary: bool,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let paths = ReportPaths { dir: args.dir.clone() };
    let rows = report::read_report(&paths.json()).with_context(|| {
        format!(
            "no report in {} (run `make evaluate`, or `protfam evaluate -o DIR` and pass DIR/<split>)",
            args.dir.display()
        )
    })?;
    anyhow::ensure!(!rows.is_empty(), "{}: the report has no rows", paths.json().display());
    println!("{}\n", paths.headline(&rows));
    if args.summary {
        print!("{}", report::summary_table(&rows));
    } else {
        println!("{}", report::markdown_table(&rows));
        print!("{}", report::markdown_size_table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}
