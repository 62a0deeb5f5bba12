//! ESM parity and loading tests against the fixtures of `scripts/fixtures_esm.py`: tiny
//! random-weight ESM-2 (rotary) and ESM-1b (learned positions, token dropout) checkpoints in
//! the exact Hugging Face layouts, with reference outputs from transformers' `EsmModel`.
//! Every model is loaded through `protfam::models::load`, the path real weights take.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use protfam::models::esm::{Config, EsmTokenizer};
use protfam::models::{load, LoadOptions};

const FIXTURES: [&str; 4] = ["esm2_tiny", "esm2_tiny_mlm", "esm1b_tiny", "esm1b_tiny_bin"];

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models")
}

struct Reference {
    sequences: Vec<String>,
    layer: i64,
    tensors: HashMap<String, Tensor>,
}

impl Reference {
    fn read(dir: &Path) -> Self {
        let path = dir.join("reference.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        let sequences: Vec<String> = serde_json::from_str(&meta["sequences"]).unwrap();
        let layer = meta["layer"].parse().unwrap();
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        Reference {
            sequences,
            layer,
            tensors,
        }
    }

    fn matrix(&self, key: &str) -> Vec<Vec<f32>> {
        self.tensors[key].to_dtype(DType::F32).unwrap().to_vec2().unwrap()
    }
}

fn opts(layer: Option<i64>) -> LoadOptions {
    LoadOptions {
        layer,
        ..LoadOptions::default()
    }
}

fn max_abs_diff_rows(ours: &protfam::embedder::ResidueMatrix, reference: &[Vec<f32>]) -> f32 {
    assert_eq!(ours.len, reference.len(), "residue count");
    let mut worst = 0f32;
    for (i, row) in reference.iter().enumerate() {
        assert_eq!(ours.dim, row.len());
        for (a, b) in ours.row(i).iter().zip(row) {
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

#[test]
fn last_layer_and_pooled_match_transformers() {
    for name in FIXTURES {
        let dir = models_dir().join(name);
        let reference = Reference::read(&dir);
        let model = load(dir.to_str().unwrap(), &opts(None)).unwrap();
        assert_eq!(model.spec().architecture, "esm");
        assert_eq!(model.spec().dim, 32);
        assert_eq!(model.spec().max_residues, Some(1022));
        let seqs: Vec<&str> = reference.sequences.iter().map(String::as_str).collect();
        let residues = model.embed_residues(&seqs).unwrap();
        for (i, ours) in residues.iter().enumerate() {
            let diff = max_abs_diff_rows(ours, &reference.matrix(&format!("residues_{i}")));
            assert!(
                diff <= 1e-4,
                "{name} sequence {i} ({} residues): max |diff| {diff}",
                seqs[i].len()
            );
        }
        let pooled = model.embed_pooled(&seqs).unwrap();
        let want = reference.matrix("pooled");
        for (i, (p, w)) in pooled.iter().zip(&want).enumerate() {
            let diff = p.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff <= 1e-4, "{name} pooled {i}: max |diff| {diff}");
        }
    }
}

#[test]
fn intermediate_layer_matches_transformers() {
    for name in FIXTURES {
        let dir = models_dir().join(name);
        let reference = Reference::read(&dir);
        let layer = reference.layer;
        let seqs: Vec<&str> = reference.sequences.iter().map(String::as_str).collect();
        let model = load(dir.to_str().unwrap(), &opts(Some(layer))).unwrap();
        let residues = model.embed_residues(&seqs).unwrap();
        for (i, ours) in residues.iter().enumerate() {
            let diff = max_abs_diff_rows(ours, &reference.matrix(&format!("layer{layer}_{i}")));
            assert!(diff <= 1e-4, "{name} layer {layer} sequence {i}: max |diff| {diff}");
        }
        // The same block output counted from the end.
        let config = Config::from_file(&dir.join("config.json")).unwrap();
        let from_end = layer - config.num_hidden_layers as i64 - 1;
        let model = load(dir.to_str().unwrap(), &opts(Some(from_end))).unwrap();
        let again = model.embed_residues(&seqs[..2]).unwrap();
        for (a, b) in again.iter().zip(&residues) {
            let worst = a
                .data
                .iter()
                .zip(&b.data)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(
                a.len == b.len && worst <= 1e-5,
                "{name}: layer {from_end} differs from layer {layer}"
            );
        }
    }
}

#[test]
fn batched_equals_one_by_one() {
    for name in ["esm2_tiny", "esm1b_tiny"] {
        let dir = models_dir().join(name);
        let reference = Reference::read(&dir);
        let seqs: Vec<&str> = reference.sequences.iter().map(String::as_str).collect();
        let model = load(dir.to_str().unwrap(), &opts(None)).unwrap();
        let batched = model.embed_residues(&seqs).unwrap();
        // Reversed order changes which sequences share a padded sub-batch.
        let reversed: Vec<&str> = seqs.iter().rev().copied().collect();
        let reversed_out = model.embed_residues(&reversed).unwrap();
        for (i, seq) in seqs.iter().enumerate() {
            let single = model.embed_residues(&[seq]).unwrap().remove(0);
            for other in [&batched[i], &reversed_out[seqs.len() - 1 - i]] {
                let worst = single
                    .data
                    .iter()
                    .zip(&other.data)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst <= 1e-5, "{name} sequence {i}: batched vs alone differ by {worst}");
            }
        }
    }
}

#[test]
fn tokenizer_matches_hf_esm_tokenizer() {
    let path = models_dir().join("esm_tokenizer.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let strings: Vec<String> = serde_json::from_str(&meta.metadata().clone().unwrap()["strings"]).unwrap();
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let builtin = EsmTokenizer::builtin();
    let from_file = EsmTokenizer::from_vocab_file(&models_dir().join("esm2_tiny/vocab.txt")).unwrap();
    for (i, s) in strings.iter().enumerate() {
        let want: Vec<u32> = tensors[&format!("ids_{i}")]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect();
        assert_eq!(builtin.encode(s), want, "{s}");
        assert_eq!(from_file.encode(s), want, "{s}");
    }
    // And the ids the reference models were run on.
    let reference = Reference::read(&models_dir().join("esm2_tiny"));
    for (i, s) in reference.sequences.iter().enumerate() {
        let want: Vec<u32> = reference.tensors[&format!("ids_{i}")]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect();
        assert_eq!(builtin.encode(s), want);
    }
}

#[test]
fn long_sequences_are_windowed_not_truncated() {
    let dir = models_dir().join("esm1b_tiny");
    let reference = Reference::read(&dir);
    let mut long = String::new();
    while long.len() < 2500 {
        for s in &reference.sequences {
            long.push_str(s);
        }
    }
    long.truncate(2500);
    let model = load(dir.to_str().unwrap(), &opts(None)).unwrap();
    let out = model.embed_residues(&[&long, &reference.sequences[0]]).unwrap();
    assert_eq!((out[0].len, out[0].dim), (2500, 32));
    assert!(out[0].data.iter().all(|v| v.is_finite()));
    // Windows of 2500 are 0..1022, 739..1761, 1478..2500: residues before 739 are seen by the
    // first window only, so they equal the embedding of that window on its own.
    let first = model.embed_residues(&[&long[..1022]]).unwrap().remove(0);
    for i in [0, 100, 738] {
        let worst = out[0]
            .row(i)
            .iter()
            .zip(first.row(i))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-5, "residue {i}: {worst}");
    }
    // Residue 1000 is in two windows: the mean of both.
    let second = model.embed_residues(&[&long[739..1761]]).unwrap().remove(0);
    for (d, v) in out[0].row(1000).iter().enumerate() {
        let want = (first.row(1000)[d] + second.row(1000 - 739)[d]) / 2.0;
        assert!((v - want).abs() <= 1e-5);
    }
}

/// Copies a fixture model directory to a temporary one for corrupting.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(models_dir().join(name)).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != ".protfam-digests.json" {
            std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        }
    }
    tmp
}

fn load_err(dir: &Path) -> String {
    load(dir.to_str().unwrap(), &opts(None))
        .err()
        .expect("loading must fail")
        .to_string()
}

#[test]
fn missing_tensor_is_named_with_its_file() {
    let tmp = copy_fixture("esm2_tiny");
    let weights = tmp.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    tensors.remove("encoder.layer.1.attention.self.key.weight").unwrap();
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let err = load_err(tmp.path());
    assert!(
        err.contains("model.safetensors") && err.contains("encoder.layer.1.attention.self.key.weight"),
        "{err}"
    );
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn shape_mismatch_with_config_is_named() {
    let tmp = copy_fixture("esm1b_tiny_bin");
    let config_path = tmp.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["intermediate_size"] = 40.into();
    std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
    let err = load_err(tmp.path());
    assert!(
        err.contains("pytorch_model.bin")
            && err.contains("esm.encoder.layer.0.intermediate.dense.weight")
            && err.contains("[48, 32]")
            && err.contains("[40, 32]"),
        "{err}"
    );
}

#[test]
fn bad_directories_and_files_are_named() {
    let tmp = copy_fixture("esm2_tiny");
    std::fs::remove_file(tmp.path().join("config.json")).unwrap();
    let err = load_err(tmp.path());
    assert!(
        err.contains("no config.json") && err.contains(&tmp.path().display().to_string()),
        "{err}"
    );

    let tmp = copy_fixture("esm2_tiny");
    std::fs::write(tmp.path().join("model.safetensors"), b"not a checkpoint").unwrap();
    let err = load_err(tmp.path());
    assert!(
        err.contains("model.safetensors") && err.contains("safetensors"),
        "{err}"
    );

    let tmp = copy_fixture("esm2_tiny");
    std::fs::remove_file(tmp.path().join("model.safetensors")).unwrap();
    let err = load_err(tmp.path());
    assert!(err.contains("no weights"), "{err}");

    let err = load("esm_no_such_model", &opts(None)).err().unwrap().to_string();
    assert!(
        err.contains("esm_no_such_model") && err.contains("models list"),
        "{err}"
    );

    let err = load(models_dir().join("esm2_tiny").to_str().unwrap(), &opts(Some(7)))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("layer 7 out of range") && err.contains("config.json"),
        "{err}"
    );
}

#[test]
fn digest_identifies_weights() {
    let a = load(models_dir().join("esm2_tiny").to_str().unwrap(), &opts(None)).unwrap();
    let b = load(models_dir().join("esm2_tiny_mlm").to_str().unwrap(), &opts(None)).unwrap();
    assert_eq!(a.spec().weights_digest.len(), 64);
    assert_ne!(a.spec().weights_digest, b.spec().weights_digest);
    let tmp = copy_fixture("esm2_tiny");
    let c = load(tmp.path().to_str().unwrap(), &opts(None)).unwrap();
    assert_eq!(a.spec().weights_digest, c.spec().weights_digest);
}

/// ESM-2 t12_35M's real configuration (facebook/esm2_t12_35M_UR50D) with random weights in the
/// hub checkpoint layout (`esm.` prefix): the full-size code path loads and embeds on CPU.
#[test]
fn esm2_t12_35m_sized_model_embeds_on_cpu() {
    let config = r#"{
        "architectures": ["EsmForMaskedLM"], "attention_probs_dropout_prob": 0.0, "emb_layer_norm_before": false,
        "esmfold_config": null, "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": 480,
        "initializer_range": 0.02, "intermediate_size": 1920, "is_folding_model": false, "layer_norm_eps": 1e-05,
        "mask_token_id": 32, "max_position_embeddings": 1026, "model_type": "esm", "num_attention_heads": 20,
        "num_hidden_layers": 12, "pad_token_id": 1, "position_embedding_type": "rotary", "token_dropout": true,
        "torch_dtype": "float32", "transformers_version": "4.25.0.dev0", "use_cache": true, "vocab_list": null,
        "vocab_size": 33
    }"#;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.json"), config).unwrap();
    let cfg: Config = serde_json::from_str(config).unwrap();
    let mut tensors = HashMap::new();
    let mut params = 0;
    for (name, shape) in cfg.expected_tensors() {
        let t = if name.ends_with("LayerNorm.weight") || name.contains("layer_norm") && name.ends_with("weight") {
            Tensor::ones(shape.as_slice(), DType::F32, &Device::Cpu).unwrap()
        } else {
            Tensor::randn(0f32, 0.02, shape.as_slice(), &Device::Cpu).unwrap()
        };
        params += t.elem_count();
        tensors.insert(format!("esm.{name}"), t);
    }
    assert!((33_000_000..36_000_000).contains(&params), "{params} parameters");
    candle_core::safetensors::save(&tensors, tmp.path().join("model.safetensors")).unwrap();
    drop(tensors);
    let model = load(tmp.path().to_str().unwrap(), &opts(None)).unwrap();
    assert_eq!(model.spec().dim, 480);
    let reference = Reference::read(&models_dir().join("esm2_tiny"));
    let seqs: Vec<&str> = reference.sequences.iter().take(4).map(String::as_str).collect();
    let pooled = model.embed_pooled(&seqs).unwrap();
    for (p, s) in pooled.iter().zip(&seqs) {
        assert_eq!(p.len(), 480);
        assert!(p.iter().all(|v| v.is_finite()), "{s}");
        let spread = p.iter().cloned().fold(f32::MIN, f32::max) - p.iter().cloned().fold(f32::MAX, f32::min);
        assert!(spread > 0.1, "pooled vector is nearly constant");
    }
    assert_ne!(pooled[0], pooled[1]);
}

/// `--dtype bf16` on the CPU: an f32 model whose projections multiply in bf16 (AMX, AVX512-BF16
/// or f32 products of bf16-rounded values, whichever this CPU has). Against transformers' f32
/// outputs the residue embeddings stay within bf16 rounding: 0.1 max |diff| on these
/// LayerNorm-scaled hidden states (the f32 path is at 1e-4; bf16 sums or LayerNorm statistics
/// would be off by ~1), and pooled vectors, averages over residues, within 0.05.
/// The spec, and so the cache directory, keys bf16 apart from f32.
#[test]
fn bf16_on_cpu_stays_within_bf16_rounding_and_is_cached_apart() {
    let bf16 = LoadOptions {
        dtype: DType::BF16,
        ..LoadOptions::default()
    };
    for name in FIXTURES {
        let dir = models_dir().join(name);
        let reference = Reference::read(&dir);
        let model = load(dir.to_str().unwrap(), &bf16).unwrap();
        let f32_model = load(dir.to_str().unwrap(), &opts(None)).unwrap();
        assert_eq!(model.spec().dtype, "bf16");
        assert_eq!(f32_model.spec().dtype, "f32");
        assert_ne!(
            model.spec().key(),
            f32_model.spec().key(),
            "{name}: bf16 and f32 share a cache key"
        );
        let seqs: Vec<&str> = reference.sequences.iter().map(String::as_str).collect();
        let residues = model.embed_residues(&seqs).unwrap();
        let mut worst = 0f32;
        for (i, ours) in residues.iter().enumerate() {
            worst = worst.max(max_abs_diff_rows(ours, &reference.matrix(&format!("residues_{i}"))));
        }
        assert!(
            worst <= 0.1,
            "{name}: bf16 residues differ from transformers f32 by {worst}"
        );
        assert!(worst > 1e-6, "{name}: bf16 products changed nothing (not taken?)");
        let pooled = model.embed_pooled(&seqs).unwrap();
        for (i, (p, w)) in pooled.iter().zip(&reference.matrix("pooled")).enumerate() {
            let diff = p.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff <= 0.05, "{name} pooled {i}: bf16 max |diff| {diff}");
        }
    }
    // One cache, two dtypes: two model directories.
    let tmp = tempfile::tempdir().unwrap();
    let cache = protfam::cache::Cache::new(tmp.path());
    let dir = models_dir().join("esm2_tiny");
    let a = cache
        .open_model(load(dir.to_str().unwrap(), &bf16).unwrap().spec())
        .unwrap();
    let b = cache
        .open_model(load(dir.to_str().unwrap(), &opts(None)).unwrap().spec())
        .unwrap();
    assert_ne!(a.dir(), b.dir());
}
