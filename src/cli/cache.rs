//! `protfam cache` (to be written).

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// Not available yet.
    Pending,
}

pub fn run(_cmd: CacheCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`protfam cache` is not available yet")
}
