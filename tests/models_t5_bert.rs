//! Parity of the ProtT5 (T5 encoder) and ProtBert (BERT) embedders with HF
//! transformers, on tiny random-weight models in the Rostlab layouts made by
//! `scripts/fixtures_t5_bert.py` (reference outputs in each fixture's
//! `reference.safetensors`), plus loader error reporting and a full-size
//! ProtT5-XL shape smoke test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use protfam::embedder::Embedder;
use protfam::models::{bert, t5, LoadOptions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

struct Reference {
    sequences: Vec<String>,
    probes: Vec<String>,
    tensors: HashMap<String, Tensor>,
}

impl Reference {
    fn load(dir: &Path) -> Self {
        let path = dir.join("reference.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        let list = |key: &str| -> Vec<String> { serde_json::from_str(&meta[key]).unwrap() };
        Reference {
            sequences: list("sequences"),
            probes: list("probes"),
            tensors: candle_core::safetensors::load(&path, &Device::Cpu).unwrap(),
        }
    }

    fn ids(&self, key: &str) -> Vec<u32> {
        self.tensors[key]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect()
    }

    fn matrix(&self, key: &str) -> Vec<f32> {
        self.tensors[key].flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn seqs(&self) -> Vec<&str> {
        self.sequences.iter().map(String::as_str).collect()
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn opts(layer: Option<i64>) -> LoadOptions {
    LoadOptions {
        layer,
        ..LoadOptions::default()
    }
}

fn load(dir: &Path, layer: Option<i64>) -> Box<dyn Embedder> {
    let name = dir.file_name().unwrap().to_str().unwrap();
    let result = if name.starts_with("t5") {
        t5::load_embedder(dir, name, &opts(layer))
    } else {
        bert::load_embedder(dir, name, &opts(layer))
    };
    result.unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

/// Per-residue outputs (one batch of all sequences) and pooled vectors against the reference.
fn check_parity(name: &str) {
    let dir = fixture(name);
    let reference = Reference::load(&dir);
    let seqs = reference.seqs();
    assert_eq!(seqs.len(), 10);

    let model = load(&dir, None);
    let residues = model.embed_residues(&seqs).unwrap();
    let pooled = model.embed_pooled(&seqs).unwrap();
    for (i, seq) in seqs.iter().enumerate() {
        let got = &residues[i];
        assert_eq!((got.len, got.dim), (seq.len(), model.spec().dim), "{name} seq{i} shape");
        let diff = max_abs_diff(&got.data, &reference.matrix(&format!("seq{i}.last")));
        assert!(
            diff <= 1e-4,
            "{name} seq{i} ({} residues): per-residue max |diff| {diff}",
            seq.len()
        );
        let diff = max_abs_diff(&pooled[i], &reference.matrix(&format!("seq{i}.pooled")));
        assert!(diff <= 1e-4, "{name} seq{i}: pooled max |diff| {diff}");
    }

    // An intermediate layer, chosen from the front and from the back.
    for layer in [1, -2] {
        let model = load(&dir, Some(layer));
        assert_eq!(model.spec().layer, Some(layer));
        let residues = model.embed_residues(&seqs).unwrap();
        for (i, got) in residues.iter().enumerate() {
            let diff = max_abs_diff(&got.data, &reference.matrix(&format!("seq{i}.layer1")));
            assert!(diff <= 1e-4, "{name} layer {layer} seq{i}: max |diff| {diff}");
        }
    }
}

/// Outputs must not depend on batch composition.
fn check_batch_invariance(name: &str) {
    let dir = fixture(name);
    let reference = Reference::load(&dir);
    let seqs = reference.seqs();
    let model = load(&dir, None);
    let batched = model.embed_residues(&seqs).unwrap();
    let mut reversed: Vec<&str> = seqs.clone();
    reversed.reverse();
    let reversed_out = model.embed_residues(&reversed).unwrap();
    for (i, seq) in seqs.iter().enumerate() {
        let single = model.embed_residues(&[seq]).unwrap().remove(0);
        let diff = max_abs_diff(&single.data, &batched[i].data);
        assert!(diff <= 1e-5, "{name} seq{i}: batched vs single max |diff| {diff}");
        let diff = max_abs_diff(&reversed_out[seqs.len() - 1 - i].data, &batched[i].data);
        assert!(diff <= 1e-5, "{name} seq{i}: batch order changed output by {diff}");
    }
}

#[test]
fn t5_full_checkpoint_matches_transformers() {
    check_parity("t5_tiny_full");
}

#[test]
fn t5_half_encoder_only_matches_transformers() {
    check_parity("t5_tiny_enc");
}

#[test]
fn bert_masked_lm_checkpoint_matches_transformers() {
    check_parity("bert_tiny_mlm");
}

#[test]
fn bert_base_checkpoint_matches_transformers() {
    check_parity("bert_tiny_base");
}

#[test]
fn t5_batches_equal_one_at_a_time() {
    check_batch_invariance("t5_tiny_full");
    check_batch_invariance("t5_tiny_enc");
}

#[test]
fn bert_batches_equal_one_at_a_time() {
    check_batch_invariance("bert_tiny_mlm");
}

#[test]
fn t5_tokenization_equals_hf_t5_tokenizer() {
    // spiece.model (full) and tokenizer.json (encoder-only) vocabularies.
    for name in ["t5_tiny_full", "t5_tiny_enc"] {
        let dir = fixture(name);
        let reference = Reference::load(&dir);
        let model = t5::load_prot_t5(&dir, name, &opts(None)).unwrap();
        assert_ne!(model.vocab().source, "built-in", "{name} must read its tokenizer file");
        let builtin = t5::T5Vocab::builtin();
        for (i, seq) in reference.sequences.iter().enumerate() {
            let want = reference.ids(&format!("seq{i}.ids"));
            assert_eq!(model.tokenize(seq).unwrap(), want, "{name} seq{i}");
            assert_eq!(builtin.encode(seq).unwrap(), want, "built-in vocabulary, seq{i}");
        }
        for (j, probe) in reference.probes.iter().enumerate() {
            let want = reference.ids(&format!("probe{j}.ids"));
            assert_eq!(model.tokenize(probe).unwrap(), want, "{name} probe {probe}");
        }
    }
}

#[test]
fn bert_tokenization_equals_hf_bert_tokenizer() {
    let dir = fixture("bert_tiny_mlm");
    let reference = Reference::load(&dir);
    let model = bert::load_prot_bert(&dir, "bert_tiny_mlm", &opts(None)).unwrap();
    let builtin = bert::BertVocab::builtin();
    for (i, seq) in reference.sequences.iter().enumerate() {
        let want = reference.ids(&format!("seq{i}.ids"));
        assert_eq!(model.tokenize(seq), want, "seq{i}");
        assert_eq!(builtin.encode(seq), want, "built-in vocabulary, seq{i}");
    }
    for (j, probe) in reference.probes.iter().enumerate() {
        assert_eq!(
            model.tokenize(probe),
            reference.ids(&format!("probe{j}.ids")),
            "probe {probe}"
        );
    }
}

#[test]
fn t5_relative_buckets_equal_transformers() {
    let reference = Reference::load(&fixture("t5_tiny_full"));
    let relative = reference.tensors["buckets_relative"].to_vec1::<i64>().unwrap();
    let want = reference.tensors["buckets"].to_vec1::<i64>().unwrap();
    for (rel, want) in relative.iter().zip(want) {
        assert_eq!(
            t5::relative_position_bucket(*rel, 32, 128) as i64,
            want,
            "relative position {rel}"
        );
    }
}

#[test]
fn spec_describes_the_model() {
    let t5 = load(&fixture("t5_tiny_enc"), None);
    let spec = t5.spec();
    assert_eq!(
        (spec.architecture.as_str(), spec.dim, spec.max_residues),
        ("t5", 32, None)
    );
    assert_eq!(spec.weights_digest.len(), 64);
    let bert = load(&fixture("bert_tiny_base"), Some(-1));
    let spec = bert.spec();
    assert_eq!(
        (spec.architecture.as_str(), spec.dim, spec.max_residues),
        ("bert", 32, Some(510))
    );
    assert_ne!(t5.spec().key(), bert.spec().key());
}

/// `--dtype bf16` on the CPU: an f32 model whose projections multiply in bf16 (AMX, AVX512-BF16
/// or f32 products of bf16-rounded values, whichever this CPU has), norms, attention and the
/// residual stream in f32. Against transformers' f32 outputs every residue value stays within
/// 2% of the largest magnitude of its sequence's hidden states and every pooled value within 1%
/// (bf16 keeps 8 bits of mantissa, a relative step of 0.4%; bf16 sums or RMS/LayerNorm
/// statistics would be off by tens of percent). Batching changes values by far less than that, and the spec,
/// and so the cache directory, keys bf16 apart from f32.
#[test]
fn bf16_on_cpu_stays_within_bf16_rounding_of_transformers_and_is_keyed_apart() {
    let bf16 = LoadOptions {
        dtype: candle_core::DType::BF16,
        ..LoadOptions::default()
    };
    for name in ["t5_tiny_enc", "t5_tiny_full", "bert_tiny_base", "bert_tiny_mlm"] {
        let dir = fixture(name);
        let reference = Reference::load(&dir);
        let seqs = reference.seqs();
        let model = if name.starts_with("t5") {
            t5::load_embedder(&dir, name, &bf16)
        } else {
            bert::load_embedder(&dir, name, &bf16)
        }
        .unwrap();
        let f32_model = load(&dir, None);
        assert_eq!(
            (model.spec().dtype.as_str(), f32_model.spec().dtype.as_str()),
            ("bf16", "f32")
        );
        assert_ne!(
            model.spec().key(),
            f32_model.spec().key(),
            "{name}: bf16 and f32 share a cache key"
        );
        let residues = model.embed_residues(&seqs).unwrap();
        let pooled = model.embed_pooled(&seqs).unwrap();
        let mut worst = 0f32;
        for (i, seq) in seqs.iter().enumerate() {
            let want = reference.matrix(&format!("seq{i}.last"));
            let relative = max_abs_diff(&residues[i].data, &want) / scale_of(&want);
            worst = worst.max(relative);
            assert!(
                relative <= 0.02,
                "{name} seq{i}: bf16 residues off by {relative} of the largest value"
            );
            let want = reference.matrix(&format!("seq{i}.pooled"));
            let relative = max_abs_diff(&pooled[i], &want) / scale_of(&want);
            assert!(
                relative <= 0.01,
                "{name} seq{i}: bf16 pooled vector off by {relative} of its largest value"
            );
            // Padding changes the f32 attention sums in their last bits, and a last-bit change can
            // flip the bf16 rounding of a projection's input, which the next blocks carry on:
            // batching moves values, but by a quarter of the rounding bound above at most.
            let single = model.embed_residues(&[seq]).unwrap().remove(0);
            let relative = max_abs_diff(&single.data, &residues[i].data) / scale_of(&residues[i].data);
            assert!(
                relative <= 5e-3,
                "{name} seq{i}: bf16 batched vs single off by {relative} of the largest value"
            );
        }
        assert!(worst > 1e-6, "{name}: bf16 products changed nothing (not taken?)");
        eprintln!("{name}: bf16 residues within {worst:.2e} of the largest value");
    }
}

/// The largest magnitude in `values`.
fn scale_of(values: &[f32]) -> f32 {
    values.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// Copies a fixture directory so a test can damage it.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    tmp
}

fn load_error(dir: &Path, t5_model: bool, layer: Option<i64>) -> String {
    let result = if t5_model {
        t5::load_embedder(dir, "damaged", &opts(layer)).map(|_| ())
    } else {
        bert::load_embedder(dir, "damaged", &opts(layer)).map(|_| ())
    };
    result.expect_err("loading must fail").to_string()
}

#[test]
fn missing_tensor_error_names_file_and_tensor() {
    for (name, is_t5, tensor) in [
        (
            "t5_tiny_enc",
            true,
            "encoder.block.1.layer.1.DenseReluDense.wi_1.weight",
        ),
        ("bert_tiny_base", false, "encoder.layer.1.attention.self.value.bias"),
    ] {
        let tmp = copy_fixture(name);
        let path = tmp.path().join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert!(tensors.remove(tensor).is_some());
        candle_core::safetensors::save(&tensors, &path).unwrap();
        let message = load_error(tmp.path(), is_t5, None);
        assert!(message.contains("model.safetensors"), "{message}");
        assert!(message.contains(tensor), "{message}");
        assert!(message.contains("missing"), "{message}");
    }
}

#[test]
fn shape_mismatch_error_names_file_tensor_and_shapes() {
    let tmp = copy_fixture("t5_tiny_enc");
    let config = tmp.path().join("config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"d_ff\": 64", "\"d_ff\": 48");
    std::fs::write(&config, text).unwrap();
    let message = load_error(tmp.path(), true, None);
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(
        message.contains("encoder.block.0.layer.1.DenseReluDense.wi_0.weight"),
        "{message}"
    );
    assert!(
        message.contains("[64, 32]") && message.contains("[48, 32]"),
        "{message}"
    );

    // The PyTorch-pickle path reports mismatches the same way.
    let tmp = copy_fixture("bert_tiny_mlm");
    let config = tmp.path().join("config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"intermediate_size\": 64", "\"intermediate_size\": 80");
    std::fs::write(&config, text).unwrap();
    let message = load_error(tmp.path(), false, None);
    assert!(message.contains("pytorch_model.bin"), "{message}");
    assert!(
        message.contains("bert.encoder.layer.0.intermediate.dense.weight"),
        "{message}"
    );
}

#[test]
fn bad_directories_give_clear_errors() {
    let tmp = copy_fixture("t5_tiny_full");
    std::fs::remove_file(tmp.path().join("config.json")).unwrap();
    let message = load_error(tmp.path(), true, None);
    assert!(message.contains("config.json"), "{message}");

    let tmp = copy_fixture("t5_tiny_full");
    std::fs::remove_file(tmp.path().join("pytorch_model.bin")).unwrap();
    let message = load_error(tmp.path(), true, None);
    assert!(message.contains("no weights"), "{message}");

    let message = load_error(&fixture("bert_tiny_base"), true, None);
    assert!(message.contains("model_type") && message.contains("bert"), "{message}");

    let message = load_error(&fixture("t5_tiny_full"), true, Some(3));
    assert!(message.contains("layer 3 out of range"), "{message}");

    let tmp = copy_fixture("bert_tiny_mlm");
    std::fs::write(tmp.path().join("pytorch_model.bin"), b"not a zip archive").unwrap();
    let message = load_error(tmp.path(), false, None);
    assert!(message.contains("pytorch_model.bin"), "{message}");
}

#[test]
fn too_long_sequences_are_refused_by_bert_not_truncated() {
    let model = load(&fixture("bert_tiny_base"), None);
    let long = "A".repeat(511);
    let err = model.embed_residues(&[&long]).unwrap_err().to_string();
    assert!(err.contains("511 residues") && err.contains("510"), "{err}");
    assert!(model.embed_residues(&[&long[..510]]).is_ok());
}

/// Writes a safetensors file tensor by tensor (f16, small uniform values) so a
/// multi-GB checkpoint never has to sit in memory while it is written.
fn write_random_f16_safetensors(path: &Path, shapes: &[(String, Vec<usize>)]) {
    use std::io::Write;
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in shapes {
        let bytes = shape.iter().product::<usize>() * 2;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut header = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut file = std::io::BufWriter::with_capacity(1 << 22, std::fs::File::create(path).unwrap());
    file.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    file.write_all(&header).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = Vec::with_capacity(1 << 20);
    for (name, shape) in shapes {
        let n: usize = shape.iter().product();
        // Norm weights near 1, everything else small, so activations stay finite through 24 layers.
        let (centre, spread) = if name.contains("layer_norm") {
            (1.0f32, 0.1f32)
        } else {
            (0.0, 0.02)
        };
        let mut left = n;
        while left > 0 {
            let take = left.min(1 << 19);
            chunk.clear();
            for _ in 0..take {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let unit = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                chunk.extend_from_slice(&half::f16::from_f32(centre + spread * unit).to_le_bytes());
            }
            file.write_all(&chunk).unwrap();
            left -= take;
        }
    }
    file.flush().unwrap();
}

/// A ProtT5-XL-sized encoder (1024 wide, 24 layers, 32 heads, d_ff 16384; 1.2 B
/// parameters, stored in f16 like `prot_t5_xl_half_uniref50-enc`) with random
/// weights loads in f32 and embeds on CPU. Needs about 5 GB of memory and 2.4 GB
/// of temporary disk; run with `cargo test --release --test models_t5_bert -- --ignored`.
#[test]
#[ignore = "slow: writes and loads a 1.2 B-parameter checkpoint"]
fn prot_t5_xl_sized_encoder_loads_and_embeds() {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = t5::Config::prot_t5_xl();
    let config = serde_json::json!({
        "model_type": "t5", "vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "d_kv": cfg.d_kv,
        "d_ff": cfg.d_ff, "num_layers": cfg.num_layers, "num_heads": cfg.num_heads,
        "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
        "layer_norm_epsilon": 1e-6, "feed_forward_proj": "relu", "is_encoder_decoder": false,
        "pad_token_id": 0, "eos_token_id": 1
    });
    std::fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
    let (d, inner, ff) = (cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff);
    let mut shapes = vec![("shared.weight".to_string(), vec![cfg.vocab_size, d])];
    for i in 0..cfg.num_layers {
        let p = format!("encoder.block.{i}.layer");
        for m in ["q", "k", "v"] {
            shapes.push((format!("{p}.0.SelfAttention.{m}.weight"), vec![inner, d]));
        }
        shapes.push((format!("{p}.0.SelfAttention.o.weight"), vec![d, inner]));
        if i == 0 {
            shapes.push((
                format!("{p}.0.SelfAttention.relative_attention_bias.weight"),
                vec![32, cfg.num_heads],
            ));
        }
        shapes.push((format!("{p}.0.layer_norm.weight"), vec![d]));
        shapes.push((format!("{p}.1.DenseReluDense.wi.weight"), vec![ff, d]));
        shapes.push((format!("{p}.1.DenseReluDense.wo.weight"), vec![d, ff]));
        shapes.push((format!("{p}.1.layer_norm.weight"), vec![d]));
    }
    shapes.push(("encoder.final_layer_norm.weight".to_string(), vec![d]));
    let parameters: usize = shapes.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert!(parameters > 1_200_000_000, "{parameters} parameters");
    write_random_f16_safetensors(&tmp.path().join("model.safetensors"), &shapes);
    let written = started.elapsed();

    let model = t5::load_embedder(tmp.path(), "prot_t5_xl_random", &LoadOptions::default()).unwrap();
    let loaded = started.elapsed();
    assert_eq!(model.spec().dim, 1024);
    assert_eq!(model.spec().dtype, "f32");
    let seqs = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWSTPSELGHAGLNGDILVWNPVLEDAFELSSMGIRVDADTLKHQLALTGDEDRLELEWHQALLRGEMPQTIGGGIGQSRLTMLLLQLPHIGQVQAGVWPAACRESVPALL", "MUZOBX"];
    let vectors = model.embed_pooled(&seqs).unwrap();
    let embedded = started.elapsed();
    assert_eq!(vectors.len(), 2);
    for v in &vectors {
        assert_eq!(v.len(), 1024);
        assert!(v.iter().all(|x| x.is_finite()));
        assert!(v.iter().any(|&x| x != v[0]), "degenerate vector");
    }
    let single = model.embed_pooled(&seqs[1..]).unwrap().remove(0);
    assert!(max_abs_diff(&single, &vectors[1]) <= 1e-4);
    eprintln!(
        "ProtT5-XL-sized encoder: {parameters} parameters; wrote checkpoint in {:.1?}, loaded by {:.1?}, embedded by {:.1?}",
        written, loaded, embedded
    );
}
