//! `protfam evaluate` (to be written).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {}

pub fn run(_args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`protfam evaluate` is not available yet")
}
