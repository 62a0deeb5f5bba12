//! Classifier benchmarks against scikit-learn, measured in the same run on the
//! same vectors (`make bench`; needs python3 with numpy and scikit-learn):
//!
//! 1. 1-NN prediction on the bundled clustered split: protfam's blocked exact kNN
//!    vs `KNeighborsClassifier(n_neighbors=1, algorithm="brute")`; prints the
//!    speed ratio and compares every prediction (target: >= 3x, identical); fit
//!    times of both sides are printed too (ours builds the pruning projection).
//! 2. MLP training per epoch vs `MLPClassifier` with the same architecture,
//!    solver and batch size (target: >= 3x at an equal or lower test error).
//!
//! Vectors: `PROTFAM_BENCH_MODEL` (default `unirep1900`) from the embedding
//! cache; when that model is not available, amino-acid + dipeptide composition
//! vectors (a real but weak embedding) so the bench still runs, with a note.
//! `PROTFAM_BENCH_EPOCHS` (default 5) and `PROTFAM_BENCH_SEEDS` (default 3) set
//! the MLP runs of both sides; each epoch is timed on its own and the ratio is
//! of the median epochs (timings on a shared VM drift), the test errors are
//! compared as means over the seeds (one seed's error moves by about a point);
//! `PROTFAM_BENCH_ONLY=knn` or `mlp` runs one of the two.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use protfam::classify::mlp::{Activation, BatchSize, MlpParams};
use protfam::classify::{class_indices, Fit, KnnParams, Predict};
use protfam::experiment::{CacheSource, VectorSource};
use protfam::io::vocab::LabelVocab;
use protfam::vectors::VectorSet;

fn write_npy_f32(path: &Path, rows: usize, cols: usize, data: &[f32]) {
    write_npy(
        path,
        "<f4",
        &format!("({rows}, {cols})"),
        &data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
    );
}

fn write_npy_i64(path: &Path, data: &[i64]) {
    write_npy(
        path,
        "<i8",
        &format!("({},)", data.len()),
        &data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
    );
}

fn write_npy(path: &Path, descr: &str, shape: &str, bytes: &[u8]) {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.write_all(bytes).unwrap();
}

fn read_npy_i64(path: &Path) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + header_len]);
    assert!(header.contains("'<i8'"), "unexpected npy dtype: {header}");
    bytes[10 + header_len..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn peer(script: &str, args: &[String]) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches/peers")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("peer prints one JSON line")
}

fn vectors() -> (String, VectorSet, VectorSet, VectorSet) {
    let model = std::env::var("PROTFAM_BENCH_MODEL").unwrap_or_else(|_| "unirep1900".into());
    let loaded = (|| -> Result<_, Box<dyn std::error::Error>> {
        let split = protfam::dataset::Split::open(common::data_root(), "clustered_split")?;
        let cache = protfam::cache::Cache::new(std::env::var("PROTFAM_CACHE").unwrap_or_else(|_| "data/cache".into()));
        let load = protfam::models::LoadOptions {
            device: protfam::classify::default_device(),
            models_dir: PathBuf::from(std::env::var("PROTFAM_MODELS").unwrap_or_else(|_| "models".into())),
            ..Default::default()
        };
        let mut source = CacheSource::new(&split, cache, load);
        Ok((
            source.vectors(&model, "train")?.1,
            source.vectors(&model, "dev")?.1,
            source.vectors(&model, "test")?.1,
        ))
    })();
    match loaded {
        Ok((train, dev, test)) => (model, train, dev, test),
        Err(e) => {
            println!("note: {model} vectors unavailable ({e}); using composition vectors instead");
            let part = |p| common::part_vectors("clustered_split", p);
            ("composition".into(), part("train"), part("dev"), part("test"))
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let (model, train, dev, test) = vectors();
    let vocab = LabelVocab::from_families(train.families.iter().flatten());
    let labels = class_indices(&train, &vocab).unwrap();
    let test_labels: Vec<i64> = test
        .families
        .iter()
        .map(|f| f.as_ref().and_then(|f| vocab.index_of(f)).map_or(-1, |i| i as i64))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    write_npy_f32(&dir.path().join("train_x.npy"), train.len(), train.dim, &train.data);
    write_npy_i64(
        &dir.path().join("train_y.npy"),
        &labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
    );
    write_npy_f32(&dir.path().join("test_x.npy"), test.len(), test.dim, &test.data);
    write_npy_i64(&dir.path().join("test_y.npy"), &test_labels);
    println!(
        "vectors: {model}, train {} x {}, test {}, {} families, threads {}",
        train.len(),
        train.dim,
        test.len(),
        vocab.len(),
        rayon::current_num_threads()
    );

    let only = std::env::var("PROTFAM_BENCH_ONLY").unwrap_or_default();
    if only != "mlp" {
        bench_knn(&dir, &train, &test, &vocab, &test_labels);
    }
    if only != "knn" {
        bench_mlp(&dir, &train, &test, &vocab, &test_labels);
    }
    let _ = dev;
}

fn bench_knn(dir: &tempfile::TempDir, train: &VectorSet, test: &VectorSet, vocab: &LabelVocab, test_labels: &[i64]) {
    let repeats = 3;
    let t = Instant::now();
    let knn = KnnParams::default().fit(train, None, vocab).unwrap();
    let fit_seconds = t.elapsed().as_secs_f64();
    let mut best = f64::INFINITY;
    let mut preds = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        preds = knn.predict(test).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    let sk = peer("knn_peer.py", &[dir.path().display().to_string(), repeats.to_string()]);
    let sk_seconds = sk["predict_seconds"].as_f64().unwrap();
    let sk_fit = sk["fit_seconds"].as_f64().unwrap();
    let (_, stats) = knn.kneighbors_with_stats(test, 1).unwrap();
    let sk_pred = read_npy_i64(&dir.path().join("sklearn_pred.npy"));
    let sk_nb = read_npy_i64(&dir.path().join("sklearn_neighbour.npy"));
    let same_class = preds
        .iter()
        .zip(&sk_pred)
        .filter(|(p, s)| p.class as i64 == **s)
        .count();
    let same_nb = preds
        .iter()
        .zip(&sk_nb)
        .filter(|(p, s)| p.nearest.unwrap().0 as i64 == **s)
        .count();
    let errors = preds
        .iter()
        .zip(test_labels)
        .filter(|(p, t)| p.class as i64 != **t)
        .count();
    println!(
        "1-NN predict: protfam {best:.3} s, scikit-learn {} brute {sk_seconds:.3} s, ratio {:.2}x; \
         identical predictions {same_class}/{} (same neighbour {same_nb}); test error {:.2}%",
        sk["sklearn"].as_str().unwrap_or("?"),
        sk_seconds / best,
        preds.len(),
        100.0 * errors as f64 / test.len() as f64
    );
    println!(
        "1-NN fit: protfam {fit_seconds:.3} s (projection dims {}, pruned search {}, {:.1} exact distances \
         per query of {}, {} queries handed to the blocked search), scikit-learn {sk_fit:.3} s; fit + predict: protfam {:.3} s, scikit-learn {:.3} s, \
         ratio {:.2}x",
        knn.params.proj_dim,
        stats.pruned,
        stats.exact_distances as f64 / test.len() as f64,
        train.len(),
        stats.blocked_queries,
        fit_seconds + best,
        sk_fit + sk_seconds,
        (sk_fit + sk_seconds) / (fit_seconds + best)
    );
    for (i, (p, (&s, &sn))) in preds.iter().zip(sk_pred.iter().zip(&sk_nb)).enumerate() {
        if p.class as i64 != s {
            let ours = p.nearest.unwrap();
            let d_sk: f64 = test
                .row(i)
                .iter()
                .zip(train.row(sn as usize))
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum();
            println!(
                "  differs at test row {i}: protfam neighbour {} (d={:.9}), scikit-learn neighbour {sn} (d={:.9})",
                ours.0,
                ours.1,
                d_sk.sqrt()
            );
        }
    }
}

fn bench_mlp(dir: &tempfile::TempDir, train: &VectorSet, test: &VectorSet, vocab: &LabelVocab, test_labels: &[i64]) {
    let setting = |name: &str, default: usize| -> usize {
        std::env::var(name).ok().and_then(|e| e.parse().ok()).unwrap_or(default)
    };
    let epochs = setting("PROTFAM_BENCH_EPOCHS", 5);
    let seeds = setting("PROTFAM_BENCH_SEEDS", 3) as u64;
    let params = MlpParams {
        max_epochs: epochs,
        activation: Activation::Identity,
        ..Default::default()
    };
    let batch = params.batch.rows(train.len());
    let (mut ours, mut our_errors) = (Vec::new(), Vec::new());
    for seed in 0..seeds {
        let mlp = MlpParams {
            batch: BatchSize::Rows(batch),
            seed,
            ..params.clone()
        }
        .fit(train, None, vocab)
        .unwrap();
        ours.extend(mlp.epochs.iter().map(|e| e.seconds));
        let wrong = mlp
            .predict(test)
            .unwrap()
            .iter()
            .zip(test_labels)
            .filter(|(p, t)| p.class as i64 != **t)
            .count();
        our_errors.push(wrong as f64 / test.len() as f64);
    }
    let hidden = params
        .hidden
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let sk = peer(
        "mlp_peer.py",
        &[
            dir.path().display().to_string(),
            epochs.to_string(),
            batch.to_string(),
            hidden.clone(),
            "identity".into(),
            seeds.to_string(),
        ],
    );
    let runs = sk["runs"].as_array().unwrap();
    let theirs: Vec<f64> = runs
        .iter()
        .flat_map(|r| {
            r["epoch_seconds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_f64().unwrap())
        })
        .collect();
    let their_errors: Vec<f64> = runs.iter().map(|r| r["test_error"].as_f64().unwrap()).collect();
    let (our_median, their_median) = (median(&ours), median(&theirs));
    println!(
        "MLP ({hidden}, identity, Adam, batch {batch}, {epochs} epochs x {seeds} seeds): median s/epoch \
         protfam {our_median:.3}, scikit-learn {their_median:.3}, ratio {:.2}x (means {:.3} vs {:.3}: {:.2}x); \
         test error (mean +- standard error over seeds) protfam {:.2} +- {:.2}%, scikit-learn {:.2} +- {:.2}%",
        their_median / our_median,
        mean(&ours),
        mean(&theirs),
        mean(&theirs) / mean(&ours),
        100.0 * mean(&our_errors),
        100.0 * standard_error(&our_errors),
        100.0 * mean(&their_errors),
        100.0 * standard_error(&their_errors)
    );
    println!(
        "  s/epoch: protfam {}; scikit-learn {}",
        seconds_list(&ours),
        seconds_list(&theirs)
    );
    println!(
        "  test error by seed (%): protfam {}; scikit-learn {}",
        percent_list(&our_errors),
        percent_list(&their_errors)
    );
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Standard error of the mean (0 for fewer than two values).
fn standard_error(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    let variance = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64;
    (variance / x.len() as f64).sqrt()
}

fn median(x: &[f64]) -> f64 {
    let mut sorted = x.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

fn seconds_list(x: &[f64]) -> String {
    x.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(" ")
}

fn percent_list(x: &[f64]) -> String {
    x.iter()
        .map(|e| format!("{:.2}", 100.0 * e))
        .collect::<Vec<_>>()
        .join(" ")
}
