//! Residue search benchmark (`make bench`): `residue-knn` with exact search,
//! with the IVF index (`--residue-index ivf`), and `hmmscan`, on the same evenly spread
//! sample of the bundled clustered test part, in one run.
//!
//! Each side is timed end to end from embedded queries: protfam's search plus
//! scoring (vote and alignment), hmmscan's search of the same sequences
//! against the per-family HMMs of the training part (databases built or reused
//! first, outside the timing). Printed: the median of the runs for each side,
//! the ratios against exact search and against hmmscan, errors and the share
//! of queries that get exact search's family, and index size per stored row
//! beside the store's.
//!
//! Needs the NEAR model (`make models`), the NEAR residue store of the
//! clustered training part (built here when missing: about 20 min on 2 cores)
//! and `hmmscan` (Debian `hmmer`). `PROTFAM_BENCH_QUERIES` (default 300; 0 =
//! the whole test part) sets the sample, `PROTFAM_BENCH_RUNS` (default 3) the
//! runs of the IVF and hmmscan sides, `PROTFAM_BENCH_EXACT_RUNS` (default 1:
//! exact search of 300 domains takes minutes) those of exact search.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/near.rs"]
mod near;

use std::path::Path;
use std::time::Instant;

use near::{env_usize, median, near_setup, Setup};
use protfam::baseline::data::TestSet;
use protfam::baseline::BaselineOptions;
use protfam::residue::classifier::{QueryHits, QueryResidues};
use protfam::residue::{IndexKind, ResidueKnn, ResidueKnnParams, ResidueStore};

/// Median seconds of `runs` calls of `f`, and the last call's result.
fn timed<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        last = Some(f());
        times.push(started.elapsed().as_secs_f64());
    }
    (median(times), last.expect("at least one run"))
}

fn main() {
    let queries = env_usize("PROTFAM_BENCH_QUERIES", 300);
    let runs = env_usize("PROTFAM_BENCH_RUNS", 3);
    let exact_runs = env_usize("PROTFAM_BENCH_EXACT_RUNS", 1);
    let Some(Setup {
        root,
        split,
        embedder,
        train,
        sample,
        vocab,
        store_root,
        ..
    }) = near_setup("residue_search", queries)
    else {
        return;
    };
    let ivf_params = ResidueKnnParams {
        index: IndexKind::Ivf,
        ..ResidueKnnParams::default()
    };
    let started = Instant::now();
    let ivf = ivf_params
        .fit(embedder.as_ref(), &train, &vocab, &store_root)
        .expect("store and IVF index");
    let ivf_open_s = started.elapsed().as_secs_f64();
    let exact_params = ResidueKnnParams {
        index: IndexKind::Exact,
        ..ivf_params.clone()
    };
    let exact = ResidueKnn::from_store(
        exact_params,
        ResidueStore::open(&ivf.store.dir).expect("the store just built"),
        vocab.clone(),
    )
    .expect("exact classifier");
    let residues = QueryResidues::embed(
        embedder.as_ref(),
        &sample,
        ivf_params.query_stride,
        embedder.default_batch_tokens(),
    )
    .expect("query embeddings");
    let truth: Vec<Option<usize>> = sample
        .iter()
        .map(|r| r.family.as_ref().and_then(|f| vocab.index_of(f)))
        .collect();
    let classify = |knn: &ResidueKnn| -> Vec<Option<usize>> {
        let table = knn.search(&residues).expect("search");
        let hits = QueryHits::new(residues.clone(), table);
        knn.predict_hits(&hits, &knn.params.score, knn.params.min_score)
            .into_iter()
            .map(|p| p.class)
            .collect()
    };
    let errors = |pred: &[Option<usize>]| pred.iter().zip(&truth).filter(|(p, t)| p.is_none() || p != t).count();

    println!(
        "residue_search: {} test domains ({} query residues) of {}/clustered_split, store of {} rows ({:.0} MiB, {:.0} bytes/row)",
        sample.len(),
        residues.n_rows(),
        root.display(),
        ivf.store.n_rows(),
        ivf.store.disk_bytes() as f64 / (1 << 20) as f64,
        ivf.store.disk_bytes() as f64 / ivf.store.n_rows().max(1) as f64
    );
    let (exact_s, exact_pred) = timed(exact_runs, || classify(&exact));
    let (ivf_s, ivf_pred) = timed(runs, || classify(&ivf));
    let same = ivf_pred.iter().zip(&exact_pred).filter(|(a, b)| a == b).count();

    // hmmscan on the same sequences, against the training part's family HMMs (built or reused first).
    let opts = BaselineOptions {
        progress: false,
        ..BaselineOptions::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/baselines"))
    };
    let hmm = protfam::baseline::hmm_database(&split, &opts).map(|(dir, tools, _)| (dir, tools));
    let hmm_row = match &hmm {
        Ok((dir, tools)) => {
            let set = TestSet::of_sequences(&sample);
            let (s, hits) = timed(runs, || {
                protfam::baseline::hmm::search(dir, &set, tools, &opts).expect("hmmscan")
            });
            let wrong = hits
                .iter()
                .zip(&sample)
                .filter(|(h, r)| match (h, &r.family) {
                    // Hit accessions have their version stripped.
                    (Some(h), Some(f)) => f.accession.split('.').next() != Some(h.accession.as_str()),
                    _ => true,
                })
                .count();
            Some((s, wrong))
        }
        Err(e) => {
            println!("hmmscan side skipped: {e}");
            None
        }
    };
    let per_row = |bytes: u64| bytes as f64 / ivf.store.n_rows().max(1) as f64;
    println!();
    println!("| search | median s | runs | errors | same family as exact | index bytes/row | vs exact | vs hmmscan |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let vs_hmm = |s: f64| match hmm_row {
        Some((h, _)) => format!("{:.1}x slower", s / h),
        None => "–".into(),
    };
    println!(
        "| protfam residue-knn, exact | {exact_s:.2} | {exact_runs} | {} | 1.000 | 0 | 1.0x | {} |",
        errors(&exact_pred),
        vs_hmm(exact_s)
    );
    println!(
        "| protfam residue-knn, ivf (index opened or built in {ivf_open_s:.1} s) | {ivf_s:.2} | {runs} | {} | {:.3} | {:.1} | {:.1}x faster | {} |",
        errors(&ivf_pred),
        same as f64 / sample.len().max(1) as f64,
        per_row(ivf.index_bytes()),
        exact_s / ivf_s,
        vs_hmm(ivf_s)
    );
    if let Some((s, wrong)) = hmm_row {
        println!("| hmmscan (per-family HMMs of the training part) | {s:.2} | {runs} | {wrong} | – | – | {:.1}x faster | 1.0x |", exact_s / s);
    }
    println!();
    println!(
        "targets: ivf >= 20x faster than exact with at most 0.5 points more error (here {:+.2} points); moonshot: within 10x of hmmscan",
        100.0 * (errors(&ivf_pred) as f64 - errors(&exact_pred) as f64) / sample.len().max(1) as f64
    );
}
