//! Exact blocked search against naive brute force, HNSW and usearch recall,
//! the saved usearch index's reuse and repair, and the
//! classifier's handling of short, X-only and empty queries, on small random
//! data.

use protfam::embedder::{EmbedError, Embedder, EmbedderSpec, Pooling, ResidueMatrix};
use protfam::io::vocab::LabelVocab;
use protfam::io::{Family, Record};
use protfam::pipeline::WorkShard;
use protfam::residue::eval::{merge_store_parts, part_hits_path, search_part, search_store_part};
use protfam::residue::index::{IndexParams, Quantization, ResidueIndex};
use protfam::residue::ivf::{refine, IvfIndex, IvfParams, Products};
use protfam::residue::search::{
    exact_top_k, exact_top_k_of_part, normalise_rows, recall_at_k, ApproxIndex, ApproxOptions, SearchOptions,
};
use protfam::residue::shortlist::{shortlisted_top_k, SequenceMeans, ShortlistParams};
use protfam::residue::{ResidueKnnParams, ResidueStore, StoreConfig};
use rand::{Rng, SeedableRng};

/// Seeded random residue vectors: each (sequence, position) gets its own stream.
struct RandomEncoder(EmbedderSpec);

impl RandomEncoder {
    fn new(dim: usize) -> Self {
        RandomEncoder(EmbedderSpec {
            name: "random".into(),
            architecture: "onehot".into(),
            weights_digest: "seed-7".into(),
            dim,
            layer: None,
            pooling: Pooling::Mean,
            max_residues: None,
            dtype: "f32".into(),
        })
    }
}

impl Embedder for RandomEncoder {
    fn spec(&self) -> &EmbedderSpec {
        &self.0
    }
    fn embed_residues(&self, batch: &[&str]) -> Result<Vec<ResidueMatrix>, EmbedError> {
        Ok(batch
            .iter()
            .map(|s| {
                let seed = s
                    .bytes()
                    .fold(7u64, |h, b| h.wrapping_mul(1_000_003).wrapping_add(b as u64));
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let data = (0..s.len() * self.0.dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                ResidueMatrix {
                    len: s.len(),
                    dim: self.0.dim,
                    data,
                }
            })
            .collect())
    }
}

fn random_records(n: usize, seed: u64) -> Vec<Record> {
    let letters = b"ACDEFGHIKLMNPQRSTVWY";
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let len = rng.gen_range(5..60);
            let seq: String = (0..len)
                .map(|_| letters[rng.gen_range(0..letters.len())] as char)
                .collect();
            let mut r = Record::new(format!("r{seed}-{i}"), seq);
            r.family = Some(Family::new(format!("fam{}", i % 5), &format!("PF0010{}", i % 5)));
            r
        })
        .collect()
}

#[test]
fn exact_search_equals_naive_brute_force() {
    let dim = 24;
    let encoder = RandomEncoder::new(dim);
    let dir = tempfile::tempdir().unwrap();
    let train = random_records(80, 1);
    let config = StoreConfig {
        stride: 1,
        shard_sequences: 7,
        batch_tokens: None,
    };
    let (store, _) = ResidueStore::build_or_open(dir.path(), &encoder, &train, &config).unwrap();
    // Stored rows as f64 (the f16 values the search sees).
    let mut all = Vec::new();
    for (a, b) in store.blocks(1 << 20) {
        all.extend(store.rows_f32(a, b, false).into_iter().map(f64::from));
    }
    let queries: Vec<f32> = {
        let m = encoder.embed_residues(&["MKVLAAGHKLRSTW"]).unwrap().remove(0);
        let mut q = m.data;
        normalise_rows(&mut q, dim);
        q
    };
    let k = 7;
    // Small blocks so that blocks, tiles and shard boundaries are all crossed.
    let opts = SearchOptions {
        target_block: 33,
        query_block: 5,
        ..Default::default()
    };
    let table = exact_top_k(&queries, dim, &store, k, &opts, &indicatif::ProgressBar::hidden()).unwrap();
    for (qi, q) in queries.chunks(dim).enumerate() {
        let mut sims: Vec<(f64, usize)> = all
            .chunks(dim)
            .enumerate()
            .map(|(r, t)| {
                let dot: f64 = q.iter().zip(t).map(|(a, b)| *a as f64 * b).sum();
                let norm: f64 = t.iter().map(|v| v * v).sum::<f64>().sqrt();
                (dot / norm, r)
            })
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let got = table.row(qi);
        assert_eq!(got.len(), k);
        for (hit, (sim, row)) in got.iter().zip(&sims) {
            assert_eq!(hit.row as usize, *row, "query {qi}");
            assert!((hit.similarity as f64 - sim).abs() < 1e-4);
        }
    }
    // HNSW on the same rows finds almost all exact neighbours at this size.
    let index = ApproxIndex::build(
        &store,
        &ApproxOptions {
            ef_construction: 200,
            ef_search: 200,
            seed: 1,
        },
    );
    let approx = index.top_k(&queries, k);
    assert!(recall_at_k(&table, &approx, k) > 0.9);
    assert!(recall_at_k(&table, &table, k) == 1.0);
}

#[test]
fn short_x_only_and_empty_queries_give_clear_answers() {
    let encoder = RandomEncoder::new(16);
    let dir = tempfile::tempdir().unwrap();
    let train = random_records(30, 2);
    let vocab = LabelVocab::from_families(train.iter().filter_map(|r| r.family.as_ref()));
    let params = ResidueKnnParams {
        stride: 3,
        query_stride: 3,
        ..Default::default()
    };
    let knn = params.fit(&encoder, &train, &vocab, dir.path()).unwrap();
    let queries = vec![
        Record::new("short", "MK"),        // shorter than the stride: one residue searched
        Record::new("x-only", "XXXXXXXX"), // nothing searchable
        Record::new("member", train[4].sequence.clone()),
        Record::new("ambiguous", "BZXUOJ"),
    ];
    let preds = knn.predict(&encoder, &queries).unwrap();
    assert_eq!(preds.len(), 4);
    assert_eq!(preds[0].n_query_residues, 1);
    assert!(preds[0].class.is_some());
    assert!(preds[0].abstained.is_none());
    for p in [&preds[1], &preds[3]] {
        assert_eq!(p.class, None);
        assert_eq!(p.n_query_residues, 0);
        assert!(p.abstained.as_deref().unwrap().contains("no searchable residue"));
        assert!(p.to_prediction().is_none());
    }
    // A training sequence finds itself: every residue matches with similarity ~1.
    let member = &preds[2];
    assert_eq!(member.class, vocab.index_of(train[4].family.as_ref().unwrap()));
    let member_hits = knn.search_records(&encoder, &queries[2..3]).unwrap();
    let plain = knn.predict_hits(&member_hits, &protfam::residue::ScoreParams::simple_vote(), 0.0);
    assert!(plain[0].score > 0.99, "score {}", plain[0].score);
    // Abstention by score threshold.
    let strict = ResidueKnnParams {
        min_score: 0.999,
        ..knn.params.clone()
    };
    let hits = knn.search_records(&encoder, &queries[..1]).unwrap();
    let out = knn.predict_hits(&hits, &strict.score, strict.min_score);
    assert!(out[0].class.is_none() && out[0].abstained.as_deref().unwrap().contains("below min_score"));

    // Save / load round trip gives the same predictions.
    let saved = tempfile::tempdir().unwrap();
    knn.save(saved.path()).unwrap();
    let loaded = protfam::residue::ResidueKnn::load(saved.path()).unwrap();
    assert_eq!(loaded.params, knn.params);
    assert_eq!(loaded.predict(&encoder, &queries).unwrap(), preds);
    // Queries from another embedder are refused.
    let other = RandomEncoder::new(8);
    assert!(loaded.predict(&other, &queries).is_err());
}

/// A store of random residues (stride 1) under `dir`.
fn random_store(dir: &std::path::Path, dim: usize, sequences: usize, seed: u64) -> ResidueStore {
    let config = StoreConfig {
        stride: 1,
        shard_sequences: 7,
        batch_tokens: None,
    };
    ResidueStore::build_or_open(dir, &RandomEncoder::new(dim), &random_records(sequences, seed), &config)
        .unwrap()
        .0
}

#[test]
fn usearch_index_finds_the_exact_neighbours_and_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = random_store(dir.path(), 16, 30, 11);
    let params = IndexParams {
        quantization: Quantization::F32,
        ..Default::default()
    };
    let index = ResidueIndex::open_or_build(&store, &params).unwrap();
    let mut queries = store.rows_f32(0, 50, false);
    normalise_rows(&mut queries, 16);
    let exact = exact_top_k(
        &queries,
        16,
        &store,
        5,
        &SearchOptions::default(),
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    let approx = index.top_k(&store, &queries, 5).unwrap();
    let recall = recall_at_k(&exact, &approx, 5);
    assert!(recall > 0.98, "recall {recall}");
    // Candidates are rescored exactly: every similarity is the exact one, and where the graph
    // found the exact best row (not always: the graph is built by parallel inserts, so a node
    // can end up poorly linked) it ranks first.
    let mut best_found = 0;
    for i in 0..50 {
        for hit in approx.row(i) {
            let row = store.rows_f32(hit.row as usize, hit.row as usize + 1, true);
            let sim: f32 = row.iter().zip(&queries[i * 16..(i + 1) * 16]).map(|(a, b)| a * b).sum();
            assert!((hit.similarity - sim).abs() < 1e-5);
        }
        if approx.row(i)[0].row == exact.row(i)[0].row {
            best_found += 1;
        }
    }
    assert!(
        best_found >= 48,
        "the exact best row ranks first for {best_found} of 50 queries"
    );
    let meta = std::fs::read_to_string(index.path().with_extension("json")).unwrap();
    let path = index.path().to_path_buf();
    drop(index);
    let again = ResidueIndex::open_or_build(&store, &params).unwrap();
    assert_eq!(again.path(), path);
    assert_eq!(std::fs::read_to_string(path.with_extension("json")).unwrap(), meta);
}

#[test]
fn a_damaged_usearch_index_is_rebuilt_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let store = random_store(dir.path(), 8, 20, 3);
    let params = IndexParams::default();
    let path = ResidueIndex::open_or_build(&store, &params)
        .unwrap()
        .path()
        .to_path_buf();
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 64].iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(&path, &bytes).unwrap();
    let rebuilt = ResidueIndex::open_or_build(&store, &params).unwrap();
    assert_ne!(std::fs::read(rebuilt.path()).unwrap(), bytes);
    let mut queries = store.rows_f32(0, 10, false);
    normalise_rows(&mut queries, 8);
    let hits = rebuilt.top_k(&store, &queries, 3).unwrap();
    assert_eq!(hits.row(0)[0].row, 0);
}

#[test]
fn other_graph_parameters_get_their_own_usearch_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = random_store(dir.path(), 8, 5, 5);
    let a = IndexParams::default();
    let b = IndexParams {
        quantization: Quantization::Bf16,
        ..a
    };
    assert_ne!(ResidueIndex::stem(&store, &a), ResidueIndex::stem(&store, &b));
    // Search-time parameters share the graph.
    let c = IndexParams {
        expansion_search: 200,
        candidates: 64,
        ..a
    };
    assert_eq!(ResidueIndex::stem(&store, &a), ResidueIndex::stem(&store, &c));
}

/// [`shortlisted_top_k`] without a progress bar.
fn shortlisted(
    queries: &[f32],
    ranges: &[(usize, usize)],
    store: &ResidueStore,
    means: &SequenceMeans,
    params: &ShortlistParams,
    k: usize,
) -> Result<protfam::residue::search::HitTable, protfam::residue::ResidueError> {
    shortlisted_top_k(
        queries,
        ranges,
        store,
        means,
        params,
        k,
        &indicatif::ProgressBar::hidden(),
    )
}

/// The exact top-`k` of unit `queries`: the reference the other searches are held to.
fn exact_search(queries: &[f32], dim: usize, store: &ResidueStore, k: usize) -> protfam::residue::search::HitTable {
    exact_top_k(
        queries,
        dim,
        store,
        k,
        &SearchOptions::default(),
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap()
}

/// Unit query rows of `sequences` with their row ranges, as the classifier holds them.
fn query_rows(encoder: &RandomEncoder, sequences: &[&str]) -> (Vec<f32>, Vec<(usize, usize)>) {
    let dim = encoder.spec().dim;
    let mut data = Vec::new();
    let mut ranges = Vec::new();
    for m in encoder.embed_residues(sequences).unwrap() {
        let first = data.len() / dim;
        data.extend(m.data);
        ranges.push((first, data.len() / dim));
    }
    normalise_rows(&mut data, dim);
    (data, ranges)
}

#[test]
fn a_shortlist_of_every_sequence_is_the_exact_search() {
    let dim = 24;
    let encoder = RandomEncoder::new(dim);
    let dir = tempfile::tempdir().unwrap();
    let store = random_store(dir.path(), dim, 60, 11);
    let means = SequenceMeans::from_store(&store);
    assert_eq!(means.n_sequences(), 60);
    // A long query (several windows), an empty one and a short one.
    let (queries, ranges) = query_rows(&encoder, &["MKVLAAGHKLRSTWQEDCYPNMKVLAAGHKLRSTWQ", "", "WWKLM"]);
    let k = 5;
    let exact = exact_search(&queries, dim, &store, k);
    let params = ShortlistParams {
        sequences: 60,
        window: 8,
    };
    let listed = shortlisted(&queries, &ranges, &store, &means, &params, k).unwrap();
    assert_eq!(listed.n_queries(), exact.n_queries());
    for i in 0..exact.n_queries() {
        let (a, b) = (exact.row(i), listed.row(i));
        assert_eq!(a.len(), k);
        assert_eq!(
            a.iter().map(|h| h.row).collect::<Vec<_>>(),
            b.iter().map(|h| h.row).collect::<Vec<_>>(),
            "query row {i}"
        );
        for (x, y) in a.iter().zip(b) {
            assert!((x.similarity - y.similarity).abs() < 1e-5);
        }
    }
    // More sequences than the store holds is the same search.
    let more = ShortlistParams {
        sequences: 1000,
        window: 8,
    };
    let again = shortlisted(&queries, &ranges, &store, &means, &more, k).unwrap();
    assert_eq!(
        again.hits.iter().map(|h| h.row).collect::<Vec<_>>(),
        listed.hits.iter().map(|h| h.row).collect::<Vec<_>>()
    );
}

#[test]
fn a_short_shortlist_searches_only_its_sequences_and_keeps_the_query_itself() {
    let dim = 24;
    let encoder = RandomEncoder::new(dim);
    let dir = tempfile::tempdir().unwrap();
    // The records random_store stores.
    let train = random_records(60, 12);
    let store = random_store(dir.path(), dim, 60, 12);
    let means = SequenceMeans::from_store(&store);
    // Two stored sequences of equal length, embedded apart and searched as one query of two
    // windows: each window's shortlist finds the sequence it came from.
    let (a, b) = (0..train.len())
        .flat_map(|i| (i + 1..train.len()).map(move |j| (i, j)))
        .find(|&(i, j)| train[i].sequence.len() == train[j].sequence.len())
        .expect("60 lengths in 5..60 repeat");
    let (first, second) = (&train[a].sequence, &train[b].sequence);
    let (queries, _) = query_rows(&encoder, &[first, second]);
    let ranges = vec![(0, queries.len() / dim)];
    let params = ShortlistParams {
        sequences: 2,
        window: first.len(),
    };
    let windows = protfam::residue::shortlist::windows(&ranges, params.window);
    assert_eq!(windows.len(), 2);
    let table = shortlisted(&queries, &ranges, &store, &means, &params, 1).unwrap();
    let home = |row: u32| store.sequences[store.row_sequence[row as usize] as usize].id.clone();
    let hits: Vec<String> = (0..table.n_queries()).map(|i| home(table.row(i)[0].row)).collect();
    // The rows of each half hit their own sequence (their own stored rows, f16 rounding aside).
    let own_first = hits[..first.len()].iter().filter(|s| **s == train[a].id).count();
    let own_second = hits[first.len()..].iter().filter(|s| **s == train[b].id).count();
    assert!(own_first * 10 >= first.len() * 7, "{own_first} of {}", first.len());
    assert!(own_second * 10 >= second.len() * 7, "{own_second} of {}", second.len());
    // Every hit lies in one of at most 2 sequences per window.
    for &(start, end) in &windows {
        let mut seen: Vec<String> = (start..end).map(|i| home(table.row(i)[0].row)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert!(seen.len() <= 2, "window {start}..{end} hit sequences {seen:?}");
    }
    // Parameters and ranges are checked.
    let bad = ShortlistParams {
        sequences: 0,
        window: 4,
    };
    assert!(shortlisted(&queries, &ranges, &store, &means, &bad, 1).is_err());
    let out_of_range = [(0usize, queries.len() / dim + 1)];
    assert!(shortlisted(&queries, &out_of_range, &store, &means, &params, 1).is_err());
}

#[test]
fn an_ivf_index_probing_every_list_is_the_exact_search() {
    let dim = 16;
    let encoder = RandomEncoder::new(dim);
    let dir = tempfile::tempdir().unwrap();
    let store = random_store(dir.path(), dim, 60, 21);
    // In f32 products the IVF search's similarities are exact search's (bf16 below).
    let params = IvfParams {
        lists: 16,
        probes: 16,
        sequences: 0,
        window: 8,
        products: Products::F32,
    };
    let index = IvfIndex::open_or_build(&store, &params).unwrap();
    assert_eq!(index.lists(), 16);
    let (queries, ranges) = query_rows(&encoder, &["MKVLAAGHKLRSTWQEDCYPN", "WWKLM"]);
    let k = 6;
    let exact = exact_search(&queries, dim, &store, k);
    let all_lists = index
        .top_k(&store, &queries, k, &indicatif::ProgressBar::hidden())
        .unwrap();
    let rows = |t: &protfam::residue::search::HitTable| t.hits.iter().map(|h| h.row).collect::<Vec<_>>();
    assert_eq!(rows(&all_lists), rows(&exact));
    for (a, b) in all_lists.hits.iter().zip(&exact.hits) {
        assert!((a.similarity - b.similarity).abs() < 1e-5);
    }
    // One probe finds less, but only exact similarities; the second stage (every row of the
    // sequences the first stage hit most) finds more, and more with more sequences.
    let narrow = index.with_probes(1);
    let one = narrow
        .top_k(&store, &queries, k, &indicatif::ProgressBar::hidden())
        .unwrap();
    assert!(recall_at_k(&exact, &one, k) < 1.0);
    for i in 0..one.n_queries() {
        for hit in one.row(i) {
            let exact_sim: f32 = {
                let row = store.rows_f32(hit.row as usize, hit.row as usize + 1, true);
                row.iter()
                    .zip(&queries[i * dim..(i + 1) * dim])
                    .map(|(a, b)| a * b)
                    .sum()
            };
            assert!((hit.similarity - exact_sim).abs() < 1e-5);
        }
    }
    let refined = narrow
        .top_k_refined(&store, &queries, &ranges, k, 60, 8, &indicatif::ProgressBar::hidden())
        .unwrap();
    let some = refine(&store, &queries, &ranges, one.clone(), 4, 8, Products::F32);
    let (r_one, r_some, r_all) = (
        recall_at_k(&exact, &one, k),
        recall_at_k(&exact, &some, k),
        recall_at_k(&exact, &refined, k),
    );
    assert!(
        r_one < r_some && r_some <= r_all,
        "recall {r_one} -> {r_some} -> {r_all}"
    );
    // No row appears twice in a query row's hits, and they stay best first.
    for i in 0..refined.n_queries() {
        let hits = refined.row(i);
        assert!(hits.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        let mut seen: Vec<u32> = hits.iter().map(|h| h.row).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), hits.len());
    }
    // bf16 products (the default): every list probed finds nearly exact search's rows, each
    // similarity within bf16 rounding (2^-8 of the sum of |products|, at most 2^-8 for unit rows)
    // of its exact cosine; the second stage too.
    let bf16 = IvfIndex::open_or_build(
        &store,
        &IvfParams {
            products: Products::Bf16,
            ..params
        },
    )
    .unwrap();
    let close = |table: &protfam::residue::search::HitTable| {
        for i in 0..table.n_queries() {
            for hit in table.row(i) {
                let row = store.rows_f32(hit.row as usize, hit.row as usize + 1, true);
                let exact_sim: f32 = row
                    .iter()
                    .zip(&queries[i * dim..(i + 1) * dim])
                    .map(|(a, b)| a * b)
                    .sum();
                assert!(
                    (hit.similarity - exact_sim).abs() <= 1.0 / 256.0,
                    "{} vs {exact_sim}",
                    hit.similarity
                );
            }
        }
    };
    let bf16_all = bf16
        .top_k(&store, &queries, k, &indicatif::ProgressBar::hidden())
        .unwrap();
    close(&bf16_all);
    assert!(recall_at_k(&exact, &bf16_all, k) >= 0.9);
    let bf16_refined = bf16
        .with_probes(1)
        .top_k_refined(&store, &queries, &ranges, k, 60, 8, &indicatif::ProgressBar::hidden())
        .unwrap();
    close(&bf16_refined);
    let (f32_recall, bf16_recall) = (recall_at_k(&exact, &refined, k), recall_at_k(&exact, &bf16_refined, k));
    assert!(
        bf16_recall >= f32_recall - 0.1,
        "recall of f32 {f32_recall}, of bf16 {bf16_recall}"
    );
}

#[test]
fn an_ivf_index_is_reused_and_a_damaged_one_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = random_store(dir.path(), 8, 40, 22);
    let params = IvfParams {
        lists: 8,
        ..IvfParams::default()
    };
    let path = IvfIndex::open_or_build(&store, &params).unwrap().path().to_path_buf();
    let written = std::fs::read(&path).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    // Reopened, not rebuilt; search-time parameters share the file.
    let again = IvfIndex::open_or_build(&store, &IvfParams { probes: 2, ..params }).unwrap();
    assert_eq!(again.path(), path);
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified);
    // Other list counts get their own file.
    assert_ne!(
        IvfIndex::stem(&store, &params),
        IvfIndex::stem(&store, &IvfParams { lists: 4, ..params })
    );
    // Damaged bytes are detected by the checksums and the index rebuilt the same (seeded).
    let mut bytes = written.clone();
    let end = bytes.len();
    bytes[end - 16..].iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(&path, &bytes).unwrap();
    let rebuilt = IvfIndex::open_or_build(&store, &params).unwrap();
    let now = std::fs::read(rebuilt.path()).unwrap();
    assert_ne!(now, bytes);
    // The build time in the metadata differs; the centroids and lists are the same.
    let tensors = |b: &[u8]| {
        let st = safetensors::SafeTensors::deserialize(b).unwrap();
        (
            st.tensor("centroids").unwrap().data().to_vec(),
            st.tensor("assignment").unwrap().data().to_vec(),
        )
    };
    assert_eq!(tensors(&now), tensors(&written));
    // A truncated file is rebuilt too.
    std::fs::write(&path, &written[..written.len() / 2]).unwrap();
    assert!(IvfIndex::open_or_build(&store, &params).is_ok());
}

#[test]
fn a_search_split_over_store_parts_merges_into_the_one_part_search() {
    let dim = 16;
    let encoder = RandomEncoder::new(dim);
    let dir = tempfile::tempdir().unwrap();
    let train = random_records(50, 31);
    let vocab = LabelVocab::from_families(train.iter().filter_map(|r| r.family.as_ref()));
    // Exact search: its split is the one that must equal the whole (ivf parts below).
    let params = ResidueKnnParams {
        stride: 1,
        query_stride: 1,
        shard_sequences: 6,
        index: protfam::residue::IndexKind::Exact,
        ..Default::default()
    };
    let knn = params.fit(&encoder, &train, &vocab, dir.path()).unwrap();
    let queries = random_records(7, 32);
    // The table level: parts of the store's shards, merged.
    let (rows, _) = query_rows(
        &encoder,
        &queries.iter().map(|r| r.sequence.as_str()).collect::<Vec<_>>(),
    );
    let opts = SearchOptions::default();
    let hidden = indicatif::ProgressBar::hidden();
    let whole = exact_top_k(&rows, dim, &knn.store, 5, &opts, &hidden).unwrap();
    let mut merged =
        exact_top_k_of_part(&rows, dim, &knn.store, WorkShard::new(0, 3).unwrap(), 5, &opts, &hidden).unwrap();
    assert_ne!(merged, whole, "one part alone misses rows");
    for k in 1..3 {
        let part =
            exact_top_k_of_part(&rows, dim, &knn.store, WorkShard::new(k, 3).unwrap(), 5, &opts, &hidden).unwrap();
        merged.merge(&part).unwrap();
    }
    assert_eq!(merged, whole);
    // The task level: each task saves its part's hits; the merge scores like one search.
    let hits_dir = dir.path().join("parts");
    for k in 0..3 {
        search_store_part(&knn, &encoder, &queries, WorkShard::new(k, 3).unwrap(), &hits_dir).unwrap();
    }
    let searched = merge_store_parts(&knn, &queries, 3, &hits_dir).unwrap();
    let one = search_part(&knn, &encoder, &queries).unwrap();
    assert_eq!(searched.hits.table, one.hits.table);
    assert_eq!(
        knn.predict_hits(&searched.hits, &knn.params.score, 0.0),
        knn.predict_hits(&one.hits, &knn.params.score, 0.0)
    );
    // A missing part, or a part of another run, is refused, naming the file.
    let missing = part_hits_path(&hits_dir, WorkShard::new(1, 3).unwrap());
    std::fs::rename(&missing, dir.path().join("aside")).unwrap();
    let err = merge_store_parts(&knn, &queries, 3, &hits_dir)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("hits-00001-of-00003"), "{err}");
    search_store_part(&knn, &encoder, &queries[..3], WorkShard::new(1, 3).unwrap(), &hits_dir).unwrap();
    assert!(merge_store_parts(&knn, &queries, 3, &hits_dir).is_err());
    // With ivf, each part searches through an IVF index of its own rows, saved beside the
    // store; one that probes every list is that part's exact search, so the merge is too.
    let ivf = ResidueKnnParams {
        index: protfam::residue::IndexKind::Ivf,
        ivf: IvfParams {
            lists: 4,
            probes: 4,
            sequences: 0,
            window: 8,
            products: Products::F32,
        },
        ..knn.params.clone()
    };
    let ivf_knn = ivf.fit_for_store_parts(&encoder, &train, &vocab, dir.path()).unwrap();
    assert!(ivf_knn.ivf_index().is_none(), "no whole-store index for a split search");
    let residues = protfam::residue::classifier::QueryResidues::embed(&encoder, &queries, 1, 1024).unwrap();
    let err = ivf_knn.search(&residues).err().unwrap().to_string();
    assert!(err.contains("--store-part"), "{err}");
    for k in 0..3 {
        search_store_part(&ivf_knn, &encoder, &queries, WorkShard::new(k, 3).unwrap(), &hits_dir).unwrap();
    }
    let part_indexes = std::fs::read_dir(&knn.store.dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().to_string_lossy().into_owned();
            name.starts_with("index-ivf-c4-p") && name.ends_with(".safetensors")
        })
        .count();
    assert_eq!(part_indexes, 3, "one IVF index per part");
    let merged = merge_store_parts(&ivf_knn, &queries, 3, &hits_dir).unwrap();
    assert_eq!(merged.hits.table, one.hits.table);
    // Exact-search parts are not merged into an ivf run (their key differs).
    for k in 0..3 {
        search_store_part(&knn, &encoder, &queries, WorkShard::new(k, 3).unwrap(), &hits_dir).unwrap();
    }
    assert!(merge_store_parts(&ivf_knn, &queries, 3, &hits_dir).is_err());
    // Other indexes cover the whole store only.
    let usearch = ResidueKnnParams {
        index: protfam::residue::IndexKind::Usearch,
        ..knn.params.clone()
    };
    assert!(usearch
        .fit_for_store_parts(&encoder, &train, &vocab, dir.path())
        .is_err());
}
