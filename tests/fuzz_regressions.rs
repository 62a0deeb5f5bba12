//! Replays every input the fuzzers found a crash with (`fuzz/regressions/<target>/`,
//! committed, small) and the reader fixtures of `tests/data/io` through the
//! fuzz targets' bodies ([`protfam::fuzzing`]), so a fixed crash stays fixed
//! on every `cargo test`, without the nightly fuzzing build.

use std::path::Path;

use protfam::fuzzing;

#[test]
fn fuzz_regressions_and_reader_fixtures_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    for target in fuzzing::TARGETS {
        let dir = root.join("fuzz/regressions").join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            eprintln!("{target}: {}", path.display());
            fuzzing::run(target, &data);
            replayed += 1;
        }
    }
    for entry in std::fs::read_dir(root.join("tests/data/io")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let data = std::fs::read(&path).unwrap();
            for target in ["fasta", "stockholm", "pfam_csv"] {
                fuzzing::run(target, &data);
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0);
}

/// Seeds per target: the library's own ([`fuzzing::library_seeds`]), the reader
/// fixtures of `tests/data/io`, the small safetensors checkpoints of `tests/data`,
/// and a tiny `.npz` written here.
fn smoke_seeds(root: &Path) -> Vec<fuzzing::Seed> {
    let mut seeds = fuzzing::library_seeds();
    for entry in std::fs::read_dir(root.join("tests/data/io")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let data = std::fs::read(&path).unwrap();
            for target in ["fasta", "stockholm", "pfam_csv"] {
                seeds.push((target, path.display().to_string(), data.clone()));
            }
        }
    }
    for dir in [
        "tests/data/models/esm2_tiny",
        "tests/data/t5_tiny_enc",
        "tests/data/bert_tiny_base",
    ] {
        let path = root.join(dir).join("model.safetensors");
        if let Ok(data) = std::fs::read(&path) {
            if data.len() < 400_000 {
                seeds.push(("safetensors", path.display().to_string(), data));
            }
        }
    }
    let mut npz = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let npy = |shape: &str, values: &[f32]| {
        let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
        header.push_str(&" ".repeat(63 - (10 + header.len()) % 64));
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    };
    for (name, shape, values) in [
        ("w.npy", "2,2,", &[1.0f32, 2.0, 3.0, 4.0][..]),
        ("b.npy", "2,", &[0.5, -0.5][..]),
    ] {
        npz.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut npz, &npy(shape, values)).unwrap();
    }
    seeds.push(("npz", "tiny.npz".into(), npz.finish().unwrap().into_inner()));
    seeds
}

/// One random edit of the kinds that break parsers: a flipped bit, a boundary byte,
/// a cut, a deleted, repeated or inserted stretch.
fn mutate(data: &mut Vec<u8>, rng: &mut impl rand::Rng) {
    let len = data.len();
    match rng.gen_range(0..6) {
        0 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] = [0u8, 0xff, 0x7f, 0x80, b'\n', b'>', b',', b'"'][rng.gen_range(0..8)];
        }
        2 if len > 0 => data.truncate(rng.gen_range(0..len)),
        3 if len > 1 => {
            let a = rng.gen_range(0..len);
            let b = rng.gen_range(a..len.min(a + 64) + 1).min(len);
            data.drain(a..b);
        }
        4 if len > 0 => {
            let a = rng.gen_range(0..len);
            let b = (a + rng.gen_range(1..65)).min(len);
            let piece = data[a..b].to_vec();
            let at = rng.gen_range(0..=data.len());
            data.splice(at..at, piece);
        }
        _ => {
            let at = rng.gen_range(0..=len);
            let piece: Vec<u8> = (0..rng.gen_range(1..17)).map(|_| rng.gen()).collect();
            data.splice(at..at, piece);
        }
    }
}

/// A short mutation fuzz of every target in the ordinary test build, so the
/// harness never rots between `make fuzz` runs (libFuzzer's coverage-guided build
/// takes most of an hour; this is seeded random mutation, a few seconds per target,
/// `PROTFAM_FUZZ_SMOKE_SECONDS`). A panicking input is kept under `target/` and named.
#[test]
fn every_fuzz_target_survives_a_short_mutation_run() {
    use rand::{Rng, SeedableRng};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seconds: f64 = std::env::var("PROTFAM_FUZZ_SMOKE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5);
    let seeds = smoke_seeds(root);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
    for target in fuzzing::TARGETS {
        let mine: Vec<&Vec<u8>> = seeds.iter().filter(|s| s.0 == target).map(|s| &s.2).collect();
        assert!(!mine.is_empty(), "no seed for fuzz target {target}");
        let start = std::time::Instant::now();
        let mut runs = 0usize;
        while start.elapsed().as_secs_f64() < seconds || runs < 20 {
            let mut input = mine[rng.gen_range(0..mine.len())].clone();
            for _ in 0..rng.gen_range(1..5) {
                mutate(&mut input, &mut rng);
            }
            if std::panic::catch_unwind(|| fuzzing::run(target, &input)).is_err() {
                let dir = root.join("target/fuzz-smoke").join(target);
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join(format!("crash-{runs}"));
                std::fs::write(&path, &input).unwrap();
                panic!(
                    "fuzz target {target} panicked on {} (copy it to fuzz/regressions/{target}/ once fixed)",
                    path.display()
                );
            }
            runs += 1;
        }
        eprintln!(
            "{target}: {runs} mutated inputs in {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
}

/// The `cargo fuzz` crate (`fuzz/`, built only by `make fuzz` with nightly
/// flags) stays in step with the library without being compiled here: one
/// target file per [`fuzzing::TARGETS`] name, each a one-line call of
/// [`fuzzing::run`] with its own name, each declared once in `fuzz/Cargo.toml`,
/// and no file or binary for a target the library does not have.
#[test]
fn the_fuzz_crate_wraps_every_library_target_and_nothing_else() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(fuzz.join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected: Vec<String> = fuzzing::TARGETS.iter().map(|t| format!("{t}.rs")).collect();
    expected.sort();
    assert_eq!(files, expected, "fuzz/fuzz_targets/ against protfam::fuzzing::TARGETS");
    for target in fuzzing::TARGETS {
        let source = std::fs::read_to_string(fuzz.join("fuzz_targets").join(format!("{target}.rs"))).unwrap();
        let call = format!("fuzz_target!(|data: &[u8]| protfam::fuzzing::run(\"{target}\", data));");
        assert!(
            source.contains(&call),
            "fuzz/fuzz_targets/{target}.rs does not call its own target:\n{source}"
        );
        let bin = format!("name = \"{target}\"\npath = \"fuzz_targets/{target}.rs\"");
        assert_eq!(
            manifest.matches(&bin).count(),
            1,
            "fuzz/Cargo.toml declares {target} once"
        );
    }
    assert_eq!(
        manifest.matches("[[bin]]").count(),
        fuzzing::TARGETS.len(),
        "fuzz/Cargo.toml binaries"
    );
    assert!(
        manifest.contains("protfam = { path = \"..\" }"),
        "the fuzz crate builds this checkout"
    );
}
