//! `protfam models`: list the model registry (and which models are present
//! locally) and fetch Hugging Face checkpoints into the models directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use protfam::models::registry::{self, Source};

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// Show every known model: name, source, vector size, layers, parameters, licence, and
    /// whether its weights are present locally.
    List(ListArgs),
    /// Download Hugging Face models into <models-dir>/<name>/ (config, tokenizer, weights).
    Fetch(FetchArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Directory holding the models (one sub-directory per model).
    #[arg(help_heading = "Model and device", long, default_value = "models")]
    pub models_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Registry names of the models to download (see `protfam models list`).
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Directory holding the models (one sub-directory per model).
    #[arg(help_heading = "Model and device", long, default_value = "models")]
    pub models_dir: PathBuf,
    /// Git revision (branch, tag or commit) of the Hugging Face repository.
    #[arg(help_heading = "Model and device", long, default_value = "main")]
    pub revision: String,
    /// Download again even when a complete copy is present.
    #[arg(help_heading = "Model and device", long)]
    pub force: bool,
}

pub fn run(cmd: ModelsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelsCommand::List(args) => {
            print!("{}", list_table(&args.models_dir));
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Fetch(args) => {
            // Check every name before downloading anything.
            let entries = args
                .names
                .iter()
                .map(|n| {
                    registry::lookup(n)
                        .with_context(|| format!("unknown model {n:?}: see `protfam models list` for the names"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            for entry in entries {
                let dir = registry::fetch(entry, &args.models_dir, &args.revision, args.force)
                    .with_context(|| format!("fetching {}", entry.name))?;
                println!("{}\t{}", entry.name, dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The registry as an aligned text table, with a `local` column for `models_dir`.
pub fn list_table(models_dir: &std::path::Path) -> String {
    let header = ["name", "source", "dim", "layers", "params", "licence", "local"];
    let rows: Vec<[String; 7]> = registry::entries()
        .iter()
        .map(|e| {
            let local = match e.source {
                Source::Builtin => "built-in".to_string(),
                _ if registry::is_present(e, models_dir) => "yes".to_string(),
                Source::HuggingFace(_) => "no (protfam models fetch)".to_string(),
                Source::Package { .. } => "no (make models)".to_string(),
            };
            [
                e.name.to_string(),
                e.source.to_string(),
                e.dim.map_or("len x 21".to_string(), |d| d.to_string()),
                e.layers.to_string(),
                e.params.to_string(),
                e.licence.to_string(),
                local,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_model_and_presence() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("esm2_t6_8M");
        std::fs::create_dir_all(&local).unwrap();
        std::fs::write(local.join("config.json"), "{}").unwrap();
        std::fs::write(local.join("model.safetensors"), "x").unwrap();
        let table = list_table(dir.path());
        assert_eq!(table.lines().count(), registry::entries().len() + 1);
        let esm2 = table.lines().find(|l| l.starts_with("esm2_t6_8M ")).unwrap();
        assert!(esm2.contains("hf:facebook/esm2_t6_8M_UR50D") && esm2.contains("320") && esm2.ends_with("yes"));
        let t33 = table.lines().find(|l| l.starts_with("esm2_t33_650M ")).unwrap();
        assert!(t33.ends_with("no (protfam models fetch)"), "{t33}");
    }
}
