//! `protfam embed` (to be written).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {}

pub fn run(_args: EmbedArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`protfam embed` is not available yet")
}
