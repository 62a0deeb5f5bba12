//! Residue search cost against store size (`make bench`): exact search and the
//! IVF index (`--residue-index ivf`, default parameters) on stores of 1/8,
//! 1/4, 1/2 and all of NEAR's clustered training store, from the same
//! embedded sample of the test part, in one run.
//!
//! The smaller stores are store parts (`residue search --store-part 0/N`: the
//! shards `0 mod N`, about 1/N of the training sequences), each with the IVF
//! index of its own rows, built once beside the store (about a minute each on
//! 2 cores) and timed apart from the search. Printed: the table (rows, seconds
//! per 1,000 query residues for each side, the IVF's rows compared per query
//! residue, the share of queries whose family is that store's exact search's),
//! the growth exponent of each side over the 8x range (1 is linear), and the
//! extrapolation of both to Pfam 32's training part with the arithmetic
//! shown. The plot goes to `data/reports/bench/residue_scaling.{svg,png}`.
//!
//! Needs the NEAR model (`make models`) and its residue store (built here when
//! missing: about 20 min on 2 cores). `PROTFAM_BENCH_QUERIES` (default 100)
//! sets the sample, `PROTFAM_BENCH_RUNS` (default 3) the runs of the IVF
//! side (the median is printed); exact search runs once per store.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/near.rs"]
mod near;

use std::path::Path;
use std::time::Instant;

use near::{env_usize, median, near_setup, Setup};
use protfam::pipeline::WorkShard;
use protfam::plot::{log_log_lines, Series};
use protfam::residue::classifier::{QueryHits, QueryResidues};
use protfam::residue::ivf::IvfIndex;
use protfam::residue::search::{exact_top_k_of_part, SearchOptions};
use protfam::residue::{IndexKind, ResidueKnn, ResidueKnnParams};

/// Pfam 32's clustered training part, in training domains (the figure:
/// about 80x the bundled split's 16,114), and its test part in multiples of
/// the bundled test part's query residues.
const PFAM32_TRAIN_DOMAINS: f64 = 1.3e6;
const PFAM32_TEST_RESIDUES_PER_BUNDLED: f64 = 17.0;

/// One store size's measurements.
struct Point {
    parts: usize,
    rows: usize,
    exact_s: f64,
    ivf_s: f64,
    ivf_build_s: f64,
    ivf_rows_compared: f64,
    same_family: f64,
}

fn main() {
    let queries = env_usize("PROTFAM_BENCH_QUERIES", 100);
    let runs = env_usize("PROTFAM_BENCH_RUNS", 3).max(1);
    let Some(Setup {
        root,
        embedder,
        train,
        test,
        sample,
        vocab,
        store_root,
        ..
    }) = near_setup("residue_scaling", queries.max(1))
    else {
        return;
    };
    let params = ResidueKnnParams {
        index: IndexKind::Exact,
        ..ResidueKnnParams::default()
    };
    let knn: ResidueKnn = params
        .fit(embedder.as_ref(), &train, &vocab, &store_root)
        .expect("residue store");
    let store = &knn.store;
    let residues = QueryResidues::embed(
        embedder.as_ref(),
        &sample,
        params.query_stride,
        embedder.default_batch_tokens(),
    )
    .expect("query embeddings");
    let ivf = ResidueKnnParams::default().ivf;
    let k = params.search_k;
    let hidden = indicatif::ProgressBar::hidden();
    let families = |table| -> Vec<Option<usize>> {
        let hits = QueryHits::new(residues.clone(), table);
        knn.predict_hits(&hits, &params.score, params.min_score)
            .into_iter()
            .map(|p| p.class)
            .collect()
    };
    let rows_per_sequence = store.n_rows() as f64 / store.sequences.len().max(1) as f64;
    println!(
        "residue_scaling: {} test domains ({} query residues) of {}/clustered_split; NEAR store of {} rows \
         ({:.1} rows per training sequence); ivf {:?}",
        sample.len(),
        residues.n_rows(),
        root.display(),
        store.n_rows(),
        rows_per_sequence,
        ivf
    );

    let mut points = Vec::new();
    for parts in [8, 4, 2, 1] {
        let part = WorkShard::new(0, parts).expect("a valid part");
        let rows: usize = store.blocks_of_part(1 << 30, part).iter().map(|(a, b)| b - a).sum();
        let started = Instant::now();
        let exact = exact_top_k_of_part(
            &residues.data,
            residues.dim,
            store,
            part,
            k,
            &SearchOptions::default(),
            &hidden,
        )
        .expect("exact search");
        let exact_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let index = IvfIndex::open_or_build_part(store, &ivf, part).expect("IVF index of the part");
        let ivf_build_s = if index.build_seconds() > 0.0 {
            index.build_seconds()
        } else {
            started.elapsed().as_secs_f64()
        };
        let mut times = Vec::new();
        let mut table = None;
        for _ in 0..runs {
            let started = Instant::now();
            let t = index
                .top_k_refined(
                    store,
                    &residues.data,
                    &residues.ranges,
                    k,
                    ivf.sequences,
                    ivf.window,
                    &hidden,
                )
                .expect("ivf search");
            times.push(started.elapsed().as_secs_f64());
            table = Some(t);
        }
        let exact_families = families(exact);
        let ivf_families = families(table.expect("at least one run"));
        let same = exact_families.iter().zip(&ivf_families).filter(|(a, b)| a == b).count();
        points.push(Point {
            parts,
            rows,
            exact_s,
            ivf_s: median(times),
            ivf_build_s,
            // Stage 1's expected comparisons plus stage 2's: every row of `sequences` sequences.
            ivf_rows_compared: index.expected_rows_compared() + ivf.sequences as f64 * rows_per_sequence,
            same_family: same as f64 / sample.len() as f64,
        });
    }

    let per_k = |s: f64| 1000.0 * s / residues.n_rows().max(1) as f64;
    println!();
    println!(
        "| store | rows | exact s / 1k query residues | ivf s / 1k query residues | ivf rows compared per residue | \
         exact / ivf | same family as exact | ivf index built in s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for p in &points {
        println!(
            "| 1/{} | {} | {:.3} | {:.3} | {:.0} | {:.1}x | {:.3} | {:.1} |",
            p.parts,
            p.rows,
            per_k(p.exact_s),
            per_k(p.ivf_s),
            p.ivf_rows_compared,
            p.exact_s / p.ivf_s,
            p.same_family,
            p.ivf_build_s
        );
    }
    let (small, full) = (&points[0], &points[points.len() - 1]);
    let exponent = |a: f64, b: f64| (b / a).ln() / (full.rows as f64 / small.rows as f64).ln();
    println!();
    println!(
        "growth over {:.1}x the rows (1 = linear): exact {:.2}, ivf {:.2}",
        full.rows as f64 / small.rows as f64,
        exponent(small.exact_s, full.exact_s),
        exponent(small.ivf_s, full.ivf_s)
    );

    // Pfam 32: exact search grows with the rows; the IVF index keeps its
    // probes and second stage, and grows its lists with the square root of the
    // rows (as FAISS advises), so stage 1 compares lists + probes x rows / lists.
    let rows_per_domain = store.n_rows() as f64 / train.len().max(1) as f64;
    let pfam_rows = PFAM32_TRAIN_DOMAINS * rows_per_domain;
    let scale = pfam_rows / full.rows as f64;
    let exact_per_residue = full.exact_s / residues.n_rows() as f64;
    let ivf_per_compared = full.ivf_s / (residues.n_rows() as f64 * full.ivf_rows_compared);
    let full_index = IvfIndex::open_or_build(store, &ivf).expect("IVF index");
    let pfam_lists = full_index.lists() as f64 * scale.sqrt();
    let pfam_compared =
        pfam_lists + ivf.probes as f64 * pfam_rows / pfam_lists + ivf.sequences as f64 * rows_per_sequence;
    let test_residues = PFAM32_TEST_RESIDUES_PER_BUNDLED
        * test
            .iter()
            .map(|r| r.sequence.len().div_ceil(params.query_stride))
            .sum::<usize>() as f64;
    let hours = |per_residue: f64| per_residue * test_residues / 3600.0;
    println!();
    println!("Pfam 32 (about {PFAM32_TRAIN_DOMAINS:.0} training domains, {test_residues:.0} test query residues):");
    println!(
        "  store rows: {PFAM32_TRAIN_DOMAINS:.0} domains x {rows_per_domain:.1} rows = {pfam_rows:.3e} ({scale:.1}x this store)"
    );
    println!(
        "  exact: {:.3e} s per query residue here x {scale:.1} = {:.3e} s; x {test_residues:.0} residues = {:.0} h on this machine",
        exact_per_residue,
        exact_per_residue * scale,
        hours(exact_per_residue * scale)
    );
    println!(
        "  ivf: {} lists x sqrt({scale:.1}) = {pfam_lists:.0} lists; compared per residue = {pfam_lists:.0} + {} probes x \
         {pfam_rows:.3e} / {pfam_lists:.0} + {} sequences x {rows_per_sequence:.1} rows = {pfam_compared:.0} \
         (here {:.0})",
        full_index.lists(),
        ivf.probes,
        ivf.sequences,
        full.ivf_rows_compared
    );
    println!(
        "  ivf: {ivf_per_compared:.3e} s per row compared here x {pfam_compared:.0} = {:.3e} s per query residue; \
         x {test_residues:.0} residues = {:.1} h on this machine ({:.0}x faster than exact)",
        ivf_per_compared * pfam_compared,
        hours(ivf_per_compared * pfam_compared),
        exact_per_residue * scale / (ivf_per_compared * pfam_compared)
    );

    let series = |name: &str, seconds: fn(&Point) -> f64| Series {
        name: name.into(),
        points: points.iter().map(|p| (p.rows as f64, per_k(seconds(p)))).collect(),
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/reports/bench");
    match log_log_lines(
        &[series("exact", |p| p.exact_s), series("ivf", |p| p.ivf_s)],
        ("stored residue rows", "search seconds per 1,000 query residues"),
        &dir,
        "residue_scaling",
        "residue-knn search cost against store size (NEAR, 2 cores)",
    ) {
        Ok((svg, png)) => println!("\nplot: {} {}", svg.display(), png.display()),
        Err(e) => println!("\nplot not written: {e}"),
    }
}
