//! `protfam info` (to be written).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct InfoArgs {}

pub fn run(_args: InfoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`protfam info` is not available yet")
}
