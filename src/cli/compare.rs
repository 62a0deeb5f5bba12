//! `protfam compare` (to be written).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CompareArgs {}

pub fn run(_args: CompareArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`protfam compare` is not available yet")
}
