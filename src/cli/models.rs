//! `protfam models` (to be written).

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// Not available yet.
    Pending,
}

pub fn run(_cmd: ModelsCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`protfam models` is not available yet")
}
