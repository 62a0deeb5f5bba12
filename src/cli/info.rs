//! `protfam info <dir>`: what a saved classifier holds — kind, hyper-parameters,
//! embedder identity, training data, per-epoch log — and whether its files are
//! intact: every weight tensor's SHA-256 is recomputed (without building the
//! model), and a missing, truncated or damaged file makes `info` fail.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::classify::saved::SavedClassifier;

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Classifier directory written by `protfam train` (or `evaluate --save-classifiers`).
    pub dir: PathBuf,
    /// Print classifier.json as it is.
    #[arg(long)]
    pub json: bool,
}

/// Human-readable summary of a classifier directory.
pub fn describe(dir: &std::path::Path) -> anyhow::Result<String> {
    use std::fmt::Write;
    if crate::residue::ResidueKnn::is_saved_in(dir) {
        return describe_residue(dir);
    }
    let meta = SavedClassifier::verify(dir)?;
    let mut s = String::new();
    writeln!(s, "classifier: {}", meta.classifier)?;
    writeln!(s, "directory: {}", dir.display())?;
    writeln!(s, "created by: {}", meta.created_by)?;
    writeln!(
        s,
        "integrity: weights.safetensors and labels.json match their SHA-256 checksums"
    )?;
    let params = serde_json::to_value(&meta.params)?;
    writeln!(s, "hyper-parameters: {}", params.get("params").unwrap_or(&params))?;
    let e = &meta.embedder;
    writeln!(
        s,
        "embedder: {} ({}, dim {}, {} pooling, layer {}, dtype {}, max residues {}) key {}",
        e.name,
        e.architecture,
        e.dim,
        e.pooling,
        e.layer.map(|l| l.to_string()).unwrap_or("last".into()),
        e.dtype,
        e.max_residues.map(|m| m.to_string()).unwrap_or("-".into()),
        e.key()
    )?;
    writeln!(s, "embedder weights digest: {}", e.weights_digest)?;
    let t = &meta.training;
    writeln!(
        s,
        "training data: {} vectors, {} families, dim {}, from {} ({:.1} s to fit)",
        t.n, t.n_classes, t.dim, t.source, t.seconds
    )?;
    writeln!(s, "training data digest: {}", t.digest)?;
    for (m, log) in meta.training_log.iter().enumerate() {
        writeln!(s, "MLP {} (seed {}): best epoch {}", m, log.seed, log.best_epoch)?;
        writeln!(s, "  epoch  train loss  dev error (%)  seconds")?;
        for ep in &log.epochs {
            let dev = ep.dev_error.map(|d| format!("{:.2}", 100.0 * d)).unwrap_or("-".into());
            let mark = if ep.epoch == log.best_epoch { " *" } else { "" };
            writeln!(
                s,
                "  {:>5}  {:>10.4}  {:>13}  {:>7.2}{mark}",
                ep.epoch, ep.train_loss, dev, ep.seconds
            )?;
        }
    }
    describe_calibration(&mut s, dir, &meta.training.digest)?;
    for f in SavedClassifier::files(dir) {
        let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        writeln!(s, "file: {} ({size} bytes)", f.display())?;
    }
    Ok(s)
}

/// Summary of a saved `residue-knn`: its settings, the store it references and the calibration.
fn describe_residue(dir: &std::path::Path) -> anyhow::Result<String> {
    use std::fmt::Write;
    let path = dir.join(crate::residue::classifier::SAVED_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let saved: crate::residue::classifier::SavedResidueKnn =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut s = String::new();
    writeln!(s, "classifier: {} ({})", saved.classifier, saved.params.label())?;
    writeln!(s, "directory: {}", dir.display())?;
    writeln!(s, "hyper-parameters: {}", serde_json::to_string(&saved.params)?)?;
    let e = &saved.embedder;
    writeln!(
        s,
        "embedder: {} ({}, dim {}) key {}",
        e.name,
        e.architecture,
        e.dim,
        e.key()
    )?;
    writeln!(s, "embedder weights digest: {}", e.weights_digest)?;
    writeln!(s, "training data: {}", saved.source)?;
    let store = match crate::residue::ResidueStore::open(&saved.store_dir) {
        Ok(store) => format!(
            "{} sequences, {} residue rows x {}, {:.1} MiB on disk",
            store.sequences.len(),
            store.n_rows(),
            store.dim(),
            store.disk_bytes() as f64 / (1024.0 * 1024.0)
        ),
        Err(e) => anyhow::bail!("{}: residue store unusable: {e}", dir.display()),
    };
    writeln!(s, "residue store: {} ({store})", saved.store_dir.display())?;
    describe_calibration(&mut s, dir, &saved.store_data_digest)?;
    Ok(s)
}

fn describe_calibration(s: &mut String, dir: &std::path::Path, training_digest: &str) -> anyhow::Result<()> {
    use std::fmt::Write;
    match crate::annotate::Calibration::load(dir)? {
        Some(c) => {
            writeln!(s, "abstention calibration: {}", c.describe())?;
            if !c.training_digest.is_empty() && c.training_digest != training_digest {
                writeln!(
                    s,
                    "  warning: calibrated for another training run of this directory; ignored by annotate"
                )?;
            }
            writeln!(s, "  calibrated on: {}", c.source)?;
            for cand in &c.candidates {
                let chosen = if cand.statistic == c.statistic { " (chosen)" } else { "" };
                writeln!(
                    s,
                    "  {}: threshold {}, dev precision {}, dev coverage {:.1}%{chosen}",
                    cand.statistic,
                    cand.threshold.map(|t| format!("{t:.6}")).unwrap_or("none".into()),
                    cand.precision
                        .map(|p| format!("{:.1}%", 100.0 * p))
                        .unwrap_or("-".into()),
                    100.0 * cand.coverage
                )?;
            }
        }
        None => writeln!(
            s,
            "abstention calibration: none (run `protfam calibrate --classifier {}`)",
            dir.display()
        )?,
    }
    Ok(())
}

pub fn run(args: InfoArgs) -> anyhow::Result<ExitCode> {
    if args.json && crate::residue::ResidueKnn::is_saved_in(&args.dir) {
        print!(
            "{}",
            std::fs::read_to_string(args.dir.join(crate::residue::classifier::SAVED_FILE))?
        );
    } else if args.json {
        let meta = SavedClassifier::verify(&args.dir)?;
        println!("{}", serde_json::to_string_pretty(&meta)?);
    } else {
        print!("{}", describe(&args.dir)?);
    }
    Ok(ExitCode::SUCCESS)
}
