//! `protfam baseline` (to be written).

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum BaselineCommand {
    /// Not available yet.
    Pending,
}

pub fn run(_cmd: BaselineCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`protfam baseline` is not available yet")
}
