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
