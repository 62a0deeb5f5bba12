//! `protfam train` (to be written).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {}

pub fn run(_args: TrainArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`protfam train` is not available yet")
}
