//! `protfam compare`: the experiment of `evaluate` (rows the run cache holds
//! for the same embedder, settings and data are reused), rendered as one
//! comparison with tables, plots and an HTML report (see [`protfam::report::html`]).

use std::path::PathBuf;
use std::process::ExitCode;

use protfam::report;

use super::evaluate::ExperimentArgs;

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
    /// Directory for the comparison files (default: `<report dir>/<split>/compare`).
    #[arg(help_heading = "Output", long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Recompute every evaluation and baseline instead of reusing cached ones.
    #[arg(help_heading = "Methods", long)]
    pub rerun: bool,
}

pub fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let (split, mut plan) = args.experiment.plan()?;
    plan.reuse = !args.rerun;
    let summary = args.experiment.run(&split, &plan)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| plan.report_dir.join(&plan.split).join("compare"));
    let title = format!(
        "{} ({})",
        split
            .root()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        plan.split
    );
    let kept = report::ReportPaths::new(&plan.report_dir, &plan.split);
    let provenance = report::html::Provenance::of_this_run(format!(
        "{}, {} (content digest {})",
        split.root().display(),
        plan.split,
        split.digest()?
    ));
    let files = report::html::write_comparison(&out, &title, &summary.rows, |r| kept.kept_predictions(r), &provenance)?;
    println!("{}\n", kept.headline(&summary.rows));
    println!("{}", report::markdown_table(&summary.rows));
    println!(
        "Error rate (%) by training-family size\n\n{}",
        report::markdown_size_table(&summary.rows)
    );
    eprintln!(
        "{} evaluation(s) run, {} reused from {}",
        summary.computed,
        summary.reused,
        plan.run_cache
            .as_ref()
            .map(|r| r.dir.display().to_string())
            .unwrap_or_default()
    );
    eprintln!(
        "comparison: {}\n  tables: {} {} {}\n  plots: {} {} {} {}",
        files.html.display(),
        files.markdown.display(),
        files.csv.display(),
        files.json.display(),
        files.bars_svg.display(),
        files.bars_png.display(),
        files.sizes_svg.display(),
        files.sizes_png.display()
    );
    Ok(ExitCode::SUCCESS)
}
