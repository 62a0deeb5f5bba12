//! `protfam data` (to be written).

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Not available yet.
    Pending,
}

pub fn run(_cmd: DataCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`protfam data` is not available yet")
}
