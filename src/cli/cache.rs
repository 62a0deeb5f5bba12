//! `protfam cache`: inspect (`stats`), check (`verify`), combine (`merge`)
//! and export (`export`) the embedding cache.
//!
//! ```text
//! protfam cache stats --cache data/cache
//! protfam cache merge cache-0 cache-1 cache-2 --into data/cache
//! protfam cache export --model unirep1900 --data $DATA --split clustered_split --parts test --output data/export/test
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::embed::{embed_input, EmbedCommon, InputArgs};
use protfam::cache::{self, atomic, Cache};
use protfam::vectors::VectorSet;

#[derive(Debug, clap::Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum CacheCommand {
    /// Vectors, dimension, shards and bytes per cached model.
    Stats {
        /// Embedding cache directory.
        #[arg(help_heading = "Embedding cache", long, default_value = cache::DEFAULT_DIR)]
        cache: PathBuf,
        /// Print JSON instead of a table.
        #[arg(help_heading = "Output", long)]
        json: bool,
    },
    /// Recompute every shard's checksums; damaged shards are moved to `corrupt/`.
    Verify {
        /// Embedding cache directory.
        #[arg(help_heading = "Embedding cache", long, default_value = cache::DEFAULT_DIR)]
        cache: PathBuf,
    },
    /// Copy the vectors of other caches (e.g. of `--shard K/N` workers) into one.
    Merge {
        /// Caches to read.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        /// Cache to add them to (created if missing).
        #[arg(help_heading = "Output", long)]
        into: PathBuf,
    },
    /// Write the vectors of a dataset or FASTA file to `<out>.npy` (f32, N x D,
    /// input order) and `<out>.ids.tsv` (id, family_id, family_accession),
    /// embedding whatever the cache lacks.
    Export {
        /// Model: a registry name or a model directory.
        #[arg(help_heading = "Model and device", short = 'm', long, default_value = "unirep1900")]
        model: String,
        #[command(flatten)]
        input: InputArgs,
        /// Output prefix.
        #[arg(
            help_heading = "Output",
            short = 'o',
            long = "output",
            alias = "out",
            value_name = "PREFIX"
        )]
        out: PathBuf,
        #[command(flatten)]
        common: EmbedCommon,
    },
}

pub fn run(cmd: CacheCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CacheCommand::Stats { cache, json } => stats(&cache, json),
        CacheCommand::Verify { cache } => verify(&cache),
        CacheCommand::Merge { sources, into } => {
            let sources: Vec<&Path> = sources.iter().map(PathBuf::as_path).collect();
            let reports = cache::merge(&sources, &Cache::new(&into), 4096)?;
            for r in &reports {
                println!(
                    "{} ({}): {} vectors added, {} already present",
                    r.name, r.key, r.added, r.present
                );
                for p in &r.problems {
                    eprintln!("  {p}");
                }
            }
            let problems: usize = reports.iter().map(|r| r.problems.len()).sum();
            if reports.is_empty() {
                println!(
                    "no cached models found in {}",
                    sources
                        .iter()
                        .map(|s| s.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            // Damaged source shards were skipped: the merge is incomplete.
            Ok(if problems == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        CacheCommand::Export {
            model,
            input,
            out,
            common,
        } => {
            let input = input.resolve()?;
            input.check()?;
            let opts = common.pipeline_options()?;
            let embedder = common.load_model(&model)?;
            let cache = common.cache.open();
            let (vectors, _) = embed_input(embedder.as_ref(), &input, &cache, opts, true)?;
            let vectors = vectors.expect("collected");
            let (npy, tsv) = export(&vectors, &out)?;
            println!(
                "wrote {} vectors of dimension {} to {} and {}",
                vectors.len(),
                vectors.dim,
                npy.display(),
                tsv.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn stats(root: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let cache = Cache::new(root);
    let models = cache.models()?;
    let stats: Vec<cache::ModelStats> = models.iter().map(|m| m.stats()).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(ExitCode::SUCCESS);
    }
    if stats.is_empty() {
        println!("{}: empty cache", root.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:<10} {:>7} {:>10} {:>7} {:>12} {:>8}",
        "model key", "arch", "dim", "vectors", "shards", "MiB", "corrupt"
    );
    for s in &stats {
        println!(
            "{:<32} {:<10} {:>7} {:>10} {:>7} {:>12.1} {:>8}",
            s.key,
            s.architecture,
            s.dim,
            s.vectors,
            s.shards,
            s.bytes as f64 / (1024.0 * 1024.0),
            s.quarantined
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(root: &Path) -> anyhow::Result<ExitCode> {
    let mut bad = 0;
    for r in Cache::new(root).verify()? {
        println!(
            "{}: {} shards checked, {} vectors, {} problems",
            r.key,
            r.checked,
            r.vectors,
            r.problems.len()
        );
        for p in &r.problems {
            println!("  {p}");
        }
        bad += r.problems.len();
    }
    Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Writes `<prefix>.npy` (little-endian f32, C order, N x D) and
/// `<prefix>.ids.tsv` (header `id  family_id  family_accession`), atomically.
pub fn export(vectors: &VectorSet, prefix: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let base = prefix.as_os_str().to_string_lossy().into_owned();
    let npy = PathBuf::from(format!("{base}.npy"));
    let tsv = PathBuf::from(format!("{base}.ids.tsv"));
    if let Some(dir) = npy.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    atomic::write_atomic(&npy, |w| write_npy_f32(w, vectors.len(), vectors.dim, &vectors.data))
        .with_context(|| format!("cannot write {}", npy.display()))?;
    atomic::write_atomic(&tsv, |w| {
        writeln!(w, "id\tfamily_id\tfamily_accession")?;
        for (id, family) in vectors.ids.iter().zip(&vectors.families) {
            let (f, a) = family
                .as_ref()
                .map(|f| (f.family_id.as_str(), f.accession.as_str()))
                .unwrap_or(("", ""));
            writeln!(w, "{id}\t{f}\t{a}")?;
        }
        Ok(())
    })
    .with_context(|| format!("cannot write {}", tsv.display()))?;
    Ok((npy, tsv))
}

/// NPY format 1.0: magic, header dict padded to a multiple of 64 bytes, data.
pub fn write_npy_f32(w: &mut impl Write, rows: usize, cols: usize, data: &[f32]) -> std::io::Result<()> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    for v in data {
        w.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_is_readable_by_npyz() {
        let mut buf = Vec::new();
        let data: Vec<f32> = (0..6).map(|i| i as f32 - 2.5).collect();
        write_npy_f32(&mut buf, 2, 3, &data).unwrap();
        assert_eq!((buf.len() - data.len() * 4) % 64, 0);
        let npy = npyz::NpyFile::new(&buf[..]).unwrap();
        assert_eq!(npy.shape(), &[2, 3]);
        let back: Vec<f32> = npy.into_vec().unwrap();
        assert_eq!(back, data);
    }
}
