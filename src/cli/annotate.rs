//! `protfam annotate` (to be written).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct AnnotateArgs {}

pub fn run(_args: AnnotateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`protfam annotate` is not available yet")
}
